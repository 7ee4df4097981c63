package signing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/testing/ca"
)

// TestVerifyWithVirtualSigstore runs the verifier against sigstore-go's in-memory
// Sigstore: a DSSE attestation with a Rekor v1 entry (inclusion proof + integrated
// time), an email SAN and the legacy issuer extension.
func TestVerifyWithVirtualSigstore(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	st := testStatement(t, imageDigest)
	ent, err := vs.Attest("release@acme.test", "https://issuer.acme.test", st)
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{Issuer: "https://issuer.acme.test", SAN: "release@acme.test"}
	noSCT := false // VirtualSigstore lists a CT log but its leaf certificates carry no SCT
	v, err := NewVerifier(VerifyOptions{TrustedMaterial: vs, Identities: []Identity{id}, RequireSCT: &noSCT})
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.verifyEntity(ent, []string{strings.TrimPrefix(imageDigest, "sha256:")})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got.Signer.SAN != "release@acme.test" || got.Predicate == nil || got.Predicate.Image != "acme/web" || len(got.Timestamps) == 0 {
		t.Fatalf("verified = %+v", got)
	}
	// Wrong SAN, wrong issuer, wrong digest, entity from another Sigstore.
	for name, c := range map[string]struct {
		id     Identity
		digest string
		check  string
	}{
		"san":    {Identity{Issuer: id.Issuer, SAN: "mallory@acme.test"}, imageDigest, CheckIdentity},
		"issuer": {Identity{Issuer: "https://evil.test", SAN: id.SAN}, imageDigest, CheckIdentity},
		"digest": {id, "sha256:" + strings.Repeat("00", 32), CheckDigest},
	} {
		v, err := NewVerifier(VerifyOptions{TrustedMaterial: vs, Identities: []Identity{c.id}, RequireSCT: &noSCT})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.verifyEntity(ent, []string{strings.TrimPrefix(c.digest, "sha256:")}); FailedCheck(err) != c.check {
			t.Errorf("%s: err = %v, want check %s", name, err, c.check)
		}
	}
	other, _ := ca.NewVirtualSigstore()
	vo, _ := NewVerifier(VerifyOptions{TrustedMaterial: other, Identities: []Identity{id}, RequireSCT: &noSCT})
	if _, err := vo.verifyEntity(ent, []string{strings.TrimPrefix(imageDigest, "sha256:")}); err == nil {
		t.Fatal("verified against another trusted root")
	} else if c := FailedCheck(err); c != CheckTlog && c != CheckCertificate {
		t.Fatalf("foreign root: check %q (%v)", c, err)
	}
	// An entity signed before the CA's validity window started (integrated time in the past) fails the chain.
	old, err := vs.AttestAtTime("release@acme.test", "https://issuer.acme.test", st, time.Now().Add(-365*24*time.Hour), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.verifyEntity(old, []string{strings.TrimPrefix(imageDigest, "sha256:")}); err == nil {
		t.Fatal("verified a signature made outside the certificate's validity")
	}
}

func TestIdentityValidation(t *testing.T) {
	for _, c := range []struct {
		id   Identity
		want string
	}{
		{Identity{SAN: "x"}, "no OIDC issuer"},
		{Identity{Issuer: "https://x"}, "no signer pinned"},
		{Identity{Issuer: "https://x", SANRegexp: "("}, "regexp"},
		{Identity{Issuer: "https://x", Extensions: map[string]string{"nope": "1"}}, "unknown certificate extension"},
	} {
		if _, err := c.id.compile(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.id, err, c.want)
		}
	}
	// Extension pins alone (no SAN) are a valid identity.
	if _, err := (Identity{Issuer: "https://x", Extensions: map[string]string{"source-repository-uri": "https://github.com/a/b"}}).compile(); err != nil {
		t.Fatal(err)
	}
	names := strings.Join(ExtensionNames(), ",")
	for _, n := range []string{"github_workflow_repository", "source_repository_uri", "build_signer_uri", "runner_environment", "run_invocation_uri"} {
		if !strings.Contains(names, n) {
			t.Errorf("ExtensionNames lacks %s: %s", n, names)
		}
	}
	if _, err := NewVerifier(VerifyOptions{TrustedRootPath: "/nonexistent/trusted_root.json", Identities: []Identity{githubIdentity}}); !IsUnusable(err) {
		t.Fatalf("missing trusted root: %v", err)
	}
}

func TestDescriptorDigestIsDocumented(t *testing.T) {
	d := NewDescriptor("amazon.ebs", "us-west-2:ami-2,us-east-1:ami-1")
	want := `{"_type":"https://fixity.dev/image-descriptor/v1","builder_id":"amazon.ebs","id":"us-west-2:ami-2,us-east-1:ami-1","images":[{"id":"ami-1","region":"us-east-1"},{"id":"ami-2","region":"us-west-2"}]}`
	if string(d.CanonicalJSON()) != want {
		t.Fatalf("canonical JSON\n got %s\nwant %s", d.CanonicalJSON(), want)
	}
	// Non REGION:ID ids have no images list.
	if got := string(NewDescriptor("azure-arm", "/subscriptions/x/images/y").CanonicalJSON()); strings.Contains(got, `"images":`) {
		t.Fatalf("azure id parsed as regions: %s", got)
	}
	s := DescriptorSubject("amazon.ebs", "us-west-2:ami-2,us-east-1:ami-1")
	if s.Digest != d.Digest() || s.Name != "amazon.ebs:us-west-2:ami-2,us-east-1:ami-1" {
		t.Fatalf("subject = %+v", s)
	}
}

func TestStatementAndDigests(t *testing.T) {
	if _, err := NewStatement(nil, PredicateImageRelease, ImageRelease{}); err == nil {
		t.Fatal("no subjects accepted")
	}
	if _, err := NewStatement([]Subject{{Digest: "sha512:00"}}, PredicateImageRelease, ImageRelease{}); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("sha512: %v", err)
	}
	for _, bad := range []string{"", "sha256:", "sha256:zz" + strings.Repeat("0", 62), strings.Repeat("0", 63)} {
		if _, err := ParseDigest(bad); err == nil {
			t.Errorf("ParseDigest(%q) accepted", bad)
		}
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "disk.qcow2")
	_ = os.WriteFile(f, []byte("disk"), 0o644)
	s, err := FileSubject(f)
	sum := sha256.Sum256([]byte("disk"))
	if err != nil || s.Name != "disk.qcow2" || s.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("file subject %+v %v", s, err)
	}
	ds, err := ArtifactDigests(f)
	if err != nil || len(ds) != 1 || ds[0] != s.Digest {
		t.Fatalf("ArtifactDigests(file) = %v %v", ds, err)
	}
	// OCI layout: referrer entries (artifactType set) are not images.
	layout := filepath.Join(dir, "layout")
	_ = os.MkdirAll(layout, 0o755)
	_ = os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	img := "sha256:" + strings.Repeat("11", 32)
	_ = os.WriteFile(filepath.Join(layout, "index.json"), []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+img+`","size":1},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+strings.Repeat("22", 32)+`","size":1,"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"}]}`), 0o644)
	if ds, err := ArtifactDigests(layout); err != nil || len(ds) != 1 || ds[0] != img {
		t.Fatalf("ArtifactDigests(layout) = %v %v", ds, err)
	}
	if _, err := ArtifactDigests(dir); err == nil || !strings.Contains(err.Error(), "oci-layout") {
		t.Fatalf("plain dir: %v", err)
	}
}

func TestTokenProviders(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	// GitHub: missing permission says the fix.
	_, _, err := FetchToken(context.Background(), TokenOptions{Getenv: env(map[string]string{"GITHUB_ACTIONS": "true"})})
	if err == nil || !strings.Contains(err.Error(), "permissions: id-token: write") {
		t.Fatalf("github without id-token: %v", err)
	}
	// GitHub: the request carries the bearer and the audience; a 5xx is retried.
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Authorization") != "bearer req-token" || r.URL.Query().Get("audience") != "sigstore" || r.URL.Query().Get("api-version") != "2.0" {
			http.Error(w, "bad request", 400)
			return
		}
		_, _ = w.Write([]byte(`{"value":"` + mintToken(nil) + `"}`))
	}))
	defer srv.Close()
	tok, prov, err := FetchToken(context.Background(), TokenOptions{Getenv: env(map[string]string{
		"GITHUB_ACTIONS": "true", "ACTIONS_ID_TOKEN_REQUEST_URL": srv.URL + "/token?api-version=2.0", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "req-token"})})
	if err != nil || prov != ProviderGitHub || calls != 2 {
		t.Fatalf("github: %v %s calls=%d", err, prov, calls)
	}
	if _, err := (Preflight{Provider: prov}).Check(tok); err != nil {
		t.Fatal(err)
	}
	// GitLab without id_tokens.
	if _, _, err := FetchToken(context.Background(), TokenOptions{Getenv: env(map[string]string{"GITLAB_CI": "true"})}); err == nil || !strings.Contains(err.Error(), "id_tokens") {
		t.Fatalf("gitlab: %v", err)
	}
	// GitLab with id_tokens.
	if tok, prov, err := FetchToken(context.Background(), TokenOptions{Getenv: env(map[string]string{"GITLAB_CI": "true", "SIGSTORE_ID_TOKEN": "a.b.c"})}); err != nil || prov != ProviderGitLab || tok != "a.b.c" {
		t.Fatalf("gitlab id_tokens: %q %s %v", tok, prov, err)
	}
	// Buildkite and CircleCI exec their agents with the audience.
	var ran []string
	exec := func(_ context.Context, name string, args ...string) ([]byte, error) {
		ran = append(ran, name+" "+strings.Join(args, " "))
		return []byte("x.y.z\n"), nil
	}
	for _, c := range []struct{ env, want string }{
		{"BUILDKITE", "buildkite-agent oidc request-token --audience sigstore"},
		{"CIRCLECI", `circleci run oidc get --claims {"aud":"sigstore"}`},
	} {
		ran = nil
		tok, _, err := FetchToken(context.Background(), TokenOptions{Exec: exec, Getenv: env(map[string]string{c.env: "true"})})
		if err != nil || tok != "x.y.z" || len(ran) != 1 || ran[0] != c.want {
			t.Fatalf("%s: %q %v %v", c.env, tok, ran, err)
		}
	}
	failing := func(context.Context, string, ...string) ([]byte, error) { return nil, errors.New("not found") }
	if _, _, err := FetchToken(context.Background(), TokenOptions{Exec: failing, Getenv: env(map[string]string{"CIRCLECI": "true"})}); err == nil || !strings.Contains(err.Error(), "org id") {
		t.Fatalf("circleci failing: %v", err)
	}
	// Google metadata server.
	md := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Query().Get("audience") != "sigstore" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte("g.o.o"))
	}))
	defer md.Close()
	if tok, prov, err := FetchToken(context.Background(), TokenOptions{Getenv: env(map[string]string{"GCE_METADATA_HOST": strings.TrimPrefix(md.URL, "http://")})}); err != nil || prov != ProviderGoogle || tok != "g.o.o" {
		t.Fatalf("google: %q %s %v", tok, prov, err)
	}
	// Nothing at all: the error lists the options.
	if _, _, err := FetchToken(context.Background(), TokenOptions{Getenv: env(nil)}); err == nil || !strings.Contains(err.Error(), "key mode") {
		t.Fatalf("none: %v", err)
	}
	// Explicit file.
	p := filepath.Join(t.TempDir(), "tok")
	_ = os.WriteFile(p, []byte(" f.i.le \n"), 0o600)
	if tok, prov, err := FetchToken(context.Background(), TokenOptions{TokenFile: p, Getenv: env(nil)}); err != nil || prov != ProviderFile || tok != "f.i.le" {
		t.Fatalf("file: %q %s %v", tok, prov, err)
	}
	// Audience advice depends on the provider.
	_, err = Preflight{Provider: ProviderGitLab}.Check(mintToken(map[string]any{"aud": []string{"https://gitlab.com"}}))
	if err == nil || !strings.Contains(err.Error(), "aud: sigstore") {
		t.Fatalf("gitlab aud: %v", err)
	}
	// Wildcard issuers (CircleCI org issuers) match by pattern.
	if _, err := (Preflight{Issuers: []AcceptedIssuer{{URL: "https://oidc.circleci.com/org/*", Wildcard: true}}}).Check(mintToken(map[string]any{"iss": "https://oidc.circleci.com/org/1234"})); err != nil {
		t.Fatalf("wildcard issuer: %v", err)
	}
}
