//go:build unix

package devstack

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

func newIssuer(t *testing.T, kind Kind) *Issuer {
	t.Helper()
	is, err := NewIssuer(kind)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = is.Close() })
	return is
}

// verifier checks tokens the way Fulcio does: discovery, JWKS, audience "sigstore".
func verifier(t *testing.T, is *Issuer) *oidc.IDTokenVerifier {
	t.Helper()
	p, err := oidc.NewProvider(context.Background(), is.URL)
	if err != nil {
		t.Fatalf("discovery of %s: %v", is.URL, err)
	}
	return p.Verifier(&oidc.Config{ClientID: "sigstore"})
}

func claimsOf(t *testing.T, tok *oidc.IDToken) map[string]any {
	t.Helper()
	var c map[string]any
	if err := tok.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGitHubTokenVerifiesWithRealClaims(t *testing.T) {
	is := newIssuer(t, KindGitHub)
	v := verifier(t, is)
	for _, alg := range []string{"RS256", "ES256"} {
		raw, err := is.MintGitHub(GitHubToken{TokenOptions: TokenOptions{Algorithm: alg}})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := v.Verify(context.Background(), raw)
		if err != nil {
			t.Fatalf("%s: verify: %v", alg, err)
		}
		c := claimsOf(t, tok)
		want := map[string]string{
			"sub":                "repo:acme/images:ref:refs/heads/main",
			"repository":         "acme/images",
			"repository_owner":   "acme",
			"ref":                "refs/heads/main",
			"ref_type":           "branch",
			"event_name":         "push",
			"runner_environment": "github-hosted",
			"workflow_ref":       "acme/images/.github/workflows/release.yml@refs/heads/main",
			"job_workflow_ref":   "acme/images/.github/workflows/release.yml@refs/heads/main",
			"aud":                "sigstore",
			"iss":                is.URL,
		}
		for k, w := range want {
			if got, _ := c[k].(string); got != w {
				t.Errorf("%s: claim %s = %q, want %q", alg, k, got, w)
			}
		}
		for _, k := range []string{"repository_id", "repository_owner_id", "sha", "job_workflow_sha", "run_id", "run_attempt", "actor", "jti"} {
			if s, _ := c[k].(string); s == "" {
				t.Errorf("%s: claim %s missing", alg, k)
			}
		}
		if _, ok := c["environment"]; ok {
			t.Errorf("environment claim present without an environment")
		}
	}
}

func TestGitHubSubjectFormats(t *testing.T) {
	cases := []struct {
		g    GitHubToken
		want string
	}{
		{GitHubToken{Repository: "evil/images"}, "repo:evil/images:ref:refs/heads/main"},
		{GitHubToken{Environment: "prod:eu"}, "repo:acme/images:environment:prod%3Aeu"},
		{GitHubToken{EventName: "pull_request"}, "repo:acme/images:pull_request"},
		{GitHubToken{Ref: "refs/tags/v1.2.0"}, "repo:acme/images:ref:refs/tags/v1.2.0"},
		{GitHubToken{ImmutableSubject: true, RepositoryID: "9", RepositoryOwnerID: "8"}, "repo:acme@8/images@9:ref:refs/heads/main"},
		{GitHubToken{Subject: "custom"}, "custom"},
	}
	for _, c := range cases {
		cl, err := c.g.Claims()
		if err != nil {
			t.Fatal(err)
		}
		if cl["sub"] != c.want {
			t.Errorf("%+v: sub = %v, want %s", c.g, cl["sub"], c.want)
		}
	}
	cl, _ := GitHubToken{EventName: "pull_request"}.Claims()
	if cl["ref"] != "refs/pull/1/merge" || cl["head_ref"] != "feature" || cl["base_ref"] != "main" {
		t.Errorf("pull_request claims: %v", cl)
	}
	cl, _ = GitHubToken{Ref: "refs/tags/v1"}.Claims()
	if cl["ref_type"] != "tag" {
		t.Errorf("tag ref_type = %v", cl["ref_type"])
	}
}

func TestGitHubClaimsRejectImpossibleValues(t *testing.T) {
	for _, g := range []GitHubToken{
		{Repository: "noslash"},
		{Repository: "a/b/c"},
		{Ref: "main"},
		{RunnerEnvironment: "laptop"},
		{JobWorkflowRef: "acme/images/.github/workflows/x.yml"},
	} {
		if _, err := g.Claims(); err == nil {
			t.Errorf("%+v: want error", g)
		}
	}
	for _, g := range []GitLabToken{{ProjectPath: "noslash"}, {Ref: "refs/heads/main"}, {RefType: "commit"}, {RunnerEnvironment: "x"}} {
		if _, err := g.Claims(); err == nil {
			t.Errorf("%+v: want error", g)
		}
	}
}

func TestDefectiveTokensFailVerification(t *testing.T) {
	is := newIssuer(t, KindGitHub)
	v := verifier(t, is)
	cases := map[string]TokenOptions{
		"expired":       Expired(),
		"wrong aud":     {Audience: []string{"not-sigstore"}},
		"other issuer":  {Issuer: "https://token.actions.githubusercontent.com"},
		"untrusted key": {UntrustedKey: true},
	}
	for name, o := range cases {
		raw, err := is.MintGitHub(GitHubToken{TokenOptions: o})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), raw); err == nil {
			t.Errorf("%s: token verified, want failure", name)
		}
	}
	if _, err := is.MintGitHub(GitHubToken{TokenOptions: TokenOptions{Algorithm: "HS256"}}); err == nil {
		t.Error("HS256: want error")
	}
	raw, err := is.MintGitHub(GitHubToken{TokenOptions: TokenOptions{Audience: []string{"a", "sigstore"}, Extra: map[string]any{"actor": nil, "x": "y"}}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("multi-audience token: %v", err)
	}
	c := claimsOf(t, tok)
	if _, ok := c["actor"]; ok || c["x"] != "y" {
		t.Errorf("Extra not applied: %v", c)
	}
}

func TestGitLabToken(t *testing.T) {
	is := newIssuer(t, KindGitLab)
	v := verifier(t, is)
	raw, err := is.MintGitLab(GitLabToken{ProjectPath: "grp/sub/proj", Ref: "v1.0", RefType: "tag", Environment: "production"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	c := claimsOf(t, tok)
	want := map[string]string{
		"sub":                   "project_path:grp/sub/proj:ref_type:tag:ref:v1.0",
		"namespace_path":        "grp/sub",
		"project_path":          "grp/sub/proj",
		"ref_path":              "refs/tags/v1.0",
		"ref_protected":         "true",
		"pipeline_source":       "push",
		"runner_environment":    "gitlab-hosted",
		"ci_config_ref_uri":     "gitlab.com/grp/sub/proj//.gitlab-ci.yml@refs/tags/v1.0",
		"environment":           "production",
		"environment_protected": "true",
	}
	for k, w := range want {
		if got, _ := c[k].(string); got != w {
			t.Errorf("claim %s = %q, want %q", k, got, w)
		}
	}
	if got := GitLabSAN(GitLabToken{ProjectPath: "grp/sub/proj", Ref: "v1.0", RefType: "tag"}); got != "https://gitlab.com/grp/sub/proj//.gitlab-ci.yml@refs/tags/v1.0" {
		t.Errorf("GitLabSAN = %s", got)
	}
	cl, _ := GitLabToken{NoCIConfigRefURI: true}.Claims()
	if _, ok := cl["ci_config_ref_uri"]; ok {
		t.Error("NoCIConfigRefURI kept ci_config_ref_uri")
	}
	if _, err := is.MintGitHub(GitHubToken{}); err == nil {
		t.Error("a GitLab issuer minted a GitHub token")
	}
}

// TestGitHubRequestEndpoint drives the ACTIONS_ID_TOKEN_REQUEST_URL endpoint the way
// actions/toolkit and cosign do.
func TestGitHubRequestEndpoint(t *testing.T) {
	is := newIssuer(t, KindGitHub)
	v := verifier(t, is)
	get := func(url, auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(is.RequestURL()+"&audience=sigstore", ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: HTTP %d, want 401", code)
	}
	if code, _ := get(is.RequestURL()+"&audience=sigstore", "bearer wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong credentials: HTTP %d, want 401", code)
	}
	is.SetGitHubJob(GitHubToken{Repository: "other/repo", RunnerEnvironment: "self-hosted"})
	code, body := get(is.RequestURL()+"&audience=sigstore", "Bearer "+is.RequestToken())
	if code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", code, body)
	}
	var resp struct{ Value string }
	if err := json.Unmarshal([]byte(body), &resp); err != nil || resp.Value == "" {
		t.Fatalf("response %q: %v", body, err)
	}
	tok, err := v.Verify(context.Background(), resp.Value)
	if err != nil {
		t.Fatal(err)
	}
	c := claimsOf(t, tok)
	if c["repository"] != "other/repo" || c["runner_environment"] != "self-hosted" {
		t.Errorf("job context not applied: %v", c)
	}
	is.SetTokenRequestFailures(2, http.StatusServiceUnavailable)
	for i := 0; i < 2; i++ {
		if code, _ := get(is.RequestURL()+"&audience=sigstore", "bearer "+is.RequestToken()); code != http.StatusServiceUnavailable {
			t.Errorf("injected failure %d: HTTP %d, want 503", i, code)
		}
	}
	if code, _ := get(is.RequestURL()+"&audience=sigstore", "bearer "+is.RequestToken()); code != http.StatusOK {
		t.Errorf("after injected failures: HTTP %d, want 200", code)
	}
	// Without audience GitHub uses the owner's URL, which Fulcio refuses.
	_, body = get(is.RequestURL(), "bearer "+is.RequestToken())
	_ = json.Unmarshal([]byte(body), &resp)
	if _, err := v.Verify(context.Background(), resp.Value); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Errorf("default audience token: err = %v, want audience mismatch", err)
	}
}

func TestIssuerClose(t *testing.T) {
	is := newIssuer(t, KindGitHub)
	if err := is.Close(); err != nil {
		t.Fatal(err)
	}
	c := http.Client{Timeout: 2 * time.Second}
	if _, err := c.Get(is.URL + "/.well-known/openid-configuration"); err == nil {
		t.Error("issuer still answers after Close")
	}
	if err := is.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestStartIssuerOnly(t *testing.T) {
	s, err := Start(context.Background(), Options{Dir: t.TempDir(), IssuerOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	env := s.GitHubRequestEnv("")
	if len(env) != 2 || !strings.HasPrefix(env[0], "ACTIONS_ID_TOKEN_REQUEST_URL="+s.IssuerURL) {
		t.Errorf("GitHubRequestEnv = %v", env)
	}
	san, iss := s.GitHubIdentity()
	if san != "https://github.com/acme/images/.github/workflows/release.yml@refs/heads/main" || iss != s.IssuerURL {
		t.Errorf("GitHubIdentity = %s %s", san, iss)
	}
	genv, err := s.GitLabJobEnv(GitLabToken{Ref: "v2", RefType: "tag"})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(genv, "\n")
	for _, want := range []string{"SIGSTORE_ID_TOKEN=ey", "CI_PROJECT_PATH=acme/images", "CI_COMMIT_TAG=v2", "GITLAB_CI=true"} {
		if !strings.Contains(joined, want) {
			t.Errorf("GitLabJobEnv lacks %q:\n%s", want, joined)
		}
	}
	if _, err := Start(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Errorf("empty Dir: %v", err)
	}
}
