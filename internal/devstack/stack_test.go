//go:build unix

package devstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// startStack starts the real servers, or skips when scripts/tools.sh has not put them
// on PATH (e2e/devstack_test.go requires them instead).
func startStack(t testing.TB) *Stack {
	t.Helper()
	for _, p := range []string{FulcioProgram, TSAProgram, RekorProgram} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not on PATH: run `bash scripts/tools.sh fulcio timestamp-server rekor-server` and PATH=$(bash scripts/tools.sh --path):$PATH", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	begin := time.Now()
	s, err := Start(ctx, Options{Dir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	t.Logf("stack started in %s", time.Since(begin).Round(time.Millisecond))
	return s
}

// signDSSE signs an in-toto statement over digest with sigstore-go, using only what
// the stack's signing config and trusted root say.
func signDSSE(t testing.TB, s *Stack, token string, digest []byte) ([]byte, error) {
	t.Helper()
	sc, err := root.NewSigningConfigFromPath(s.SigningConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRootFromPath(s.TrustedRootPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	fs, err := root.SelectService(sc.FulcioCertificateAuthorityURLs(), sign.FulcioAPIVersions, now)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := root.SelectService(sc.TimestampAuthorityURLs(), sign.TimestampAuthorityAPIVersions, now)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := root.SelectService(sc.RekorLogURLs(), sign.RekorAPIVersions, now)
	if err != nil {
		t.Fatal(err)
	}
	if rs.MajorAPIVersion != 2 {
		t.Fatalf("signing config offers Rekor API %d, want 2", rs.MajorAPIVersion)
	}
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	stmt, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "image", "digest": map[string]string{"sha256": hexs(digest)}}},
		"predicateType": "https://fixity.dev/devstack-test/v1",
		"predicate":     map[string]any{},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pb, err := sign.Bundle(&sign.DSSEData{Data: stmt, PayloadType: "application/vnd.in-toto+json"}, kp, sign.BundleOptions{
		CertificateProvider:        sign.NewFulcio(&sign.FulcioOptions{BaseURL: fs.URL, Timeout: 20 * time.Second}),
		CertificateProviderOptions: &sign.CertificateProviderOptions{IDToken: token},
		TimestampAuthorities:       []*sign.TimestampAuthority{sign.NewTimestampAuthority(&sign.TimestampAuthorityOptions{URL: ts.URL, Timeout: 20 * time.Second})},
		TransparencyLogs:           []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: rs.URL, Version: rs.MajorAPIVersion, Timeout: 20 * time.Second})},
		TrustedRoot:                tr,
		Context:                    ctx,
	})
	if err != nil {
		return nil, err
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		t.Fatal(err)
	}
	return b.MarshalJSON()
}

func hexs(b []byte) string {
	const h = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(h[c>>4])
		sb.WriteByte(h[c&15])
	}
	return sb.String()
}

// verifyBundle checks a bundle against the trusted root with Rekor and TSA proofs
// required, pinning SAN, issuer and the given extensions.
func verifyBundle(t *testing.T, s *Stack, b []byte, digest []byte, san, issuer string, ext certificate.Extensions) (*verify.VerificationResult, error) {
	t.Helper()
	tr, err := root.NewTrustedRootFromPath(s.TrustedRootPath)
	if err != nil {
		t.Fatal(err)
	}
	var bb bundle.Bundle
	if err := bb.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	v, err := verify.NewVerifier(tr, verify.WithTransparencyLog(1), verify.WithSignedTimestamps(1))
	if err != nil {
		t.Fatal(err)
	}
	sm, err := verify.NewSANMatcher(san, "")
	if err != nil {
		t.Fatal(err)
	}
	im, err := verify.NewIssuerMatcher(issuer, "")
	if err != nil {
		t.Fatal(err)
	}
	id, err := verify.NewCertificateIdentity(sm, im, ext)
	if err != nil {
		t.Fatal(err)
	}
	return v.Verify(&bb, verify.NewPolicy(verify.WithArtifactDigest("sha256", digest), verify.WithCertificateIdentity(id)))
}

// TestStackSignsLikeProduction signs through the real Fulcio, TSA and Rekor v2 with
// GitHub- and GitLab-shaped tokens and checks the certificates carry production's SAN
// and extensions, and that the generated trusted root verifies the bundles.
func TestStackSignsLikeProduction(t *testing.T) {
	s := startStack(t)
	digest := sha256.New().Sum(nil)

	tok, err := s.MintGitHubToken(GitHubToken{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := signDSSE(t, s, tok, digest)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	san, iss := s.GitHubIdentity()
	res, err := verifyBundle(t, s, b, digest, san, iss, certificate.Extensions{
		SourceRepositoryURI: "https://github.com/acme/images",
		SourceRepositoryRef: "refs/heads/main",
		RunnerEnvironment:   "github-hosted",
	})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	c := res.Signature.Certificate
	claims, _ := GitHubToken{}.Claims()
	want := map[string]string{
		"GithubWorkflowRepository":            "acme/images",
		"GithubWorkflowTrigger":               "push",
		"BuildSignerURI":                      "https://github.com/acme/images/.github/workflows/release.yml@refs/heads/main",
		"BuildConfigURI":                      "https://github.com/acme/images/.github/workflows/release.yml@refs/heads/main",
		"SourceRepositoryOwnerURI":            "https://github.com/acme",
		"SourceRepositoryIdentifier":          claims["repository_id"].(string),
		"SourceRepositoryDigest":              claims["sha"].(string),
		"BuildTrigger":                        "push",
		"RunInvocationURI":                    "https://github.com/acme/images/actions/runs/4242/attempts/1",
		"SourceRepositoryVisibilityAtSigning": "private",
	}
	got := map[string]string{
		"GithubWorkflowRepository":            c.GithubWorkflowRepository,
		"GithubWorkflowTrigger":               c.GithubWorkflowTrigger,
		"BuildSignerURI":                      c.BuildSignerURI,
		"BuildConfigURI":                      c.BuildConfigURI,
		"SourceRepositoryOwnerURI":            c.SourceRepositoryOwnerURI,
		"SourceRepositoryIdentifier":          c.SourceRepositoryIdentifier,
		"SourceRepositoryDigest":              c.SourceRepositoryDigest,
		"BuildTrigger":                        c.BuildTrigger,
		"RunInvocationURI":                    c.RunInvocationURI,
		"SourceRepositoryVisibilityAtSigning": c.SourceRepositoryVisibilityAtSigning,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("certificate %s = %q, want %q", k, got[k], w)
		}
	}
	if c.Issuer != s.IssuerURL {
		t.Errorf("certificate issuer %q, want %q", c.Issuer, s.IssuerURL)
	}
	if _, err := verifyBundle(t, s, b, digest, san, iss, certificate.Extensions{SourceRepositoryURI: "https://github.com/evil/images"}); err == nil {
		t.Error("bundle verified with a wrong repository pin")
	}
	if _, err := verifyBundle(t, s, b, digest, san, s.GitLabIssuerURL, certificate.Extensions{}); err == nil {
		t.Error("bundle verified with a wrong issuer")
	}

	// GitLab: SAN and extensions follow production's gitlab-pipeline templates.
	gtok, err := s.MintGitLabToken(GitLabToken{})
	if err != nil {
		t.Fatal(err)
	}
	gb, err := signDSSE(t, s, gtok, digest)
	if err != nil {
		t.Fatalf("sign with GitLab token: %v", err)
	}
	if _, err := verifyBundle(t, s, gb, digest, GitLabSAN(GitLabToken{}), s.GitLabIssuerURL, certificate.Extensions{
		SourceRepositoryURI: "https://gitlab.com/acme/images",
		SourceRepositoryRef: "refs/heads/main",
		BuildTrigger:        "push",
	}); err != nil {
		t.Fatalf("verify GitLab bundle: %v", err)
	}

	// Fulcio refuses tokens it must not certify.
	for name, o := range map[string]TokenOptions{
		"expired":      Expired(),
		"wrong aud":    {Audience: []string{"not-sigstore"}},
		"other issuer": {Issuer: "https://token.actions.githubusercontent.com"},
	} {
		bad, err := s.MintGitHubToken(GitHubToken{TokenOptions: o})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := signDSSE(t, s, bad, digest); err == nil {
			t.Errorf("%s token: signing succeeded", name)
		}
	}
	gbad, _ := s.MintGitLabToken(GitLabToken{NoCIConfigRefURI: true})
	if _, err := signDSSE(t, s, gbad, digest); err == nil {
		t.Error("GitLab token without ci_config_ref_uri: signing succeeded")
	}
}

// TestStackStopServers checks the fault switches: each stopped server refuses
// connections and signing fails; Close then stops the rest.
func TestStackStopServers(t *testing.T) {
	s := startStack(t)
	digest := sha256.New().Sum(nil)
	tok, _ := s.MintGitHubToken(GitHubToken{})
	for _, c := range []struct {
		name string
		stop func() error
		url  string
	}{
		{"rekor", s.StopRekor, s.RekorURL + "/healthz"},
		{"tsa", s.StopTSA, strings.TrimSuffix(s.TSAURL, "/timestamp") + "/timestamp/certchain"},
		{"fulcio", s.StopFulcio, s.FulcioURL + "/api/v1/rootCert"},
	} {
		if err := c.stop(); err != nil {
			t.Fatalf("stop %s: %v", c.name, err)
		}
		hc := http.Client{Timeout: 2 * time.Second}
		if resp, err := hc.Get(c.url); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after stop", c.name)
		}
		if _, err := signDSSE(t, s, tok, digest); err == nil {
			t.Errorf("signing succeeded with %s down", c.name)
		}
	}
	logs, _ := os.ReadFile(s.LogPath(FulcioProgram))
	if !bytes.Contains(logs, []byte("serve")) {
		t.Errorf("fulcio log %s does not record the command line", s.LogPath(FulcioProgram))
	}
}

// TestTSAQueue: timestamp-server v2.1.3 always binds :2112, so a second stack on the
// machine must wait for the first one's TSA instead of crashing, and give up with an
// actionable error when the wait is bounded.
func TestTSAQueue(t *testing.T) {
	first := startStack(t)
	_, err := Start(context.Background(), Options{Dir: t.TempDir(), TSALockWait: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "TSALockWait") || !strings.Contains(err.Error(), "held by pid ") {
		t.Fatalf("second stack while the first runs: err = %v, want a bounded wait naming TSALockWait", err)
	}
	if err := first.StopTSA(); err != nil {
		t.Fatal(err)
	}
	second, err := Start(context.Background(), Options{Dir: t.TempDir(), TSALockWait: time.Minute})
	if err != nil {
		t.Fatalf("second stack after the first TSA stopped: %v", err)
	}
	defer second.Close()
	if second.TSAURL == first.TSAURL {
		t.Errorf("both stacks report TSA %s", second.TSAURL)
	}
}

// BenchmarkSignDSSE measures one keyless signature through the local stack with
// sigstore-go: ephemeral key, Fulcio certificate, TSA timestamp, Rekor v2 inclusion
// (checkpoint interval 250 ms), and self-verification against the trusted root.
func BenchmarkSignDSSE(b *testing.B) {
	s := startStack(b)
	tok, err := s.MintGitHubToken(GitHubToken{TokenOptions: TokenOptions{Lifetime: time.Hour}})
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.New().Sum(nil)
	for b.Loop() {
		if _, err := signDSSE(b, s, tok, digest); err != nil {
			b.Fatal(err)
		}
	}
}
