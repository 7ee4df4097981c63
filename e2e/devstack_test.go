//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/devstack"
)

const devstackPredicateType = "https://fixity.dev/image-release/v1"

// TestDevstackCosignInterop proves the local stack with an independent client: the real
// cosign v3 signs blob attestations through it (explicit tokens and GitHub's ambient
// token request) and verifies them against the generated trusted root, accepting the
// right identity and rejecting a wrong identity, issuer, repository and digest.
func TestDevstackCosignInterop(t *testing.T) {
	cosign := tool(t, "cosign")
	s := startDevstack(t, devstack.Options{})
	dir := t.TempDir()
	art := filepath.Join(dir, "image-manifest.json")
	if err := os.WriteFile(art, []byte(`{"image":"demo","version":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(`{"image":"demo","version":"1.0.0"}`))
	digest := hex.EncodeToString(sum[:])
	pred := filepath.Join(dir, "predicate.json")
	if err := os.WriteFile(pred, []byte(`{"image":"demo"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	attest := func(bundle string, env []string, extra ...string) result {
		args := append([]string{"attest-blob", "--predicate", pred, "--type", devstackPredicateType, "--bundle", bundle}, cosignSignArgs(s)...)
		args = append(append(args, extra...), art)
		return runCmd(t, dir, env, 2*time.Minute, cosign, args...)
	}
	verify := func(bundle, identity, issuer string, extra ...string) result {
		args := append([]string{"verify-blob-attestation", "--bundle", bundle, "--type", devstackPredicateType}, cosignVerifyArgs(s, identity, issuer)...)
		args = append(args, extra...)
		return runCmd(t, dir, nil, 2*time.Minute, cosign, args...)
	}
	mustFail := func(name string, r result, want string) {
		t.Helper()
		if r.Code == 0 {
			t.Errorf("%s: cosign exited 0, want failure\n%s", name, r.Output())
		} else if !strings.Contains(r.Output(), want) {
			t.Errorf("%s: output lacks %q:\n%s", name, want, r.Output())
		}
	}

	// 1. Explicit GitHub token.
	tok, err := s.MintGitHubToken(devstack.GitHubToken{})
	if err != nil {
		t.Fatal(err)
	}
	gh := filepath.Join(dir, "github.sigstore.json")
	if r := attest(gh, nil, "--identity-token", tok); r.Code != 0 {
		t.Fatalf("cosign attest-blob: exit %d\n%s", r.Code, r.Output())
	}
	san, iss := s.GitHubIdentity()
	if r := verify(gh, san, iss, art); r.Code != 0 || !strings.Contains(r.Output(), "Verified OK") {
		t.Fatalf("cosign verify-blob-attestation: exit %d\n%s", r.Code, r.Output())
	}
	if r := verify(gh, san, iss, "--digest", digest, "--digestAlg", "sha256"); r.Code != 0 {
		t.Fatalf("verify by digest: exit %d\n%s", r.Code, r.Output())
	}
	if r := verify(gh, san, iss, "--certificate-github-workflow-repository", "acme/images", "--certificate-github-workflow-trigger", "push", art); r.Code != 0 {
		t.Errorf("GitHub extension pins: exit %d\n%s", r.Code, r.Output())
	}
	mustFail("wrong identity", verify(gh, strings.Replace(san, "acme/images", "evil/images", 1), iss, art), "expected SAN value")
	mustFail("wrong issuer", verify(gh, san, "https://token.actions.githubusercontent.com", art), "issuer")
	mustFail("wrong repository", verify(gh, san, iss, "--certificate-github-workflow-repository", "evil/images", art), `expected GithubWorkflowRepository to be "evil/images"`)
	mustFail("tampered digest", verify(gh, san, iss, "--digest", strings.Repeat("0", 64), "--digestAlg", "sha256"), "digest")
	// Without --insecure-ignore-sct cosign insists on an SCT the local Fulcio cannot give.
	noSCT := runCmd(t, dir, nil, 2*time.Minute, cosign, "verify-blob-attestation", "--bundle", gh, "--type", devstackPredicateType,
		"--trusted-root", s.TrustedRootPath, "--certificate-identity", san, "--certificate-oidc-issuer", iss, art)
	mustFail("no --insecure-ignore-sct", noSCT, "SCT")

	// 2. Ambient: cosign's GitHub provider fetches the token from the request endpoint,
	// here for another repository on a self-hosted runner.
	other := devstack.GitHubToken{Repository: "other/repo", RunnerEnvironment: "self-hosted", EventName: "workflow_dispatch"}
	s.SetGitHubJob(other)
	amb := filepath.Join(dir, "ambient.sigstore.json")
	if r := attest(amb, s.GitHubRequestEnv("")); r.Code != 0 {
		t.Fatalf("cosign attest-blob with ambient GitHub token: exit %d\n%s", r.Code, r.Output())
	}
	if r := verify(amb, devstack.GitHubSAN(other), iss, "--certificate-github-workflow-repository", "other/repo", "--certificate-github-workflow-trigger", "workflow_dispatch", art); r.Code != 0 {
		t.Errorf("verify ambient bundle: exit %d\n%s", r.Code, r.Output())
	}
	mustFail("ambient bundle, default identity", verify(amb, san, iss, art), "expected SAN value")
	s.SetGitHubJob(devstack.GitHubToken{})

	// 3. GitLab token: production's gitlab-pipeline SAN.
	gtok, err := s.MintGitLabToken(devstack.GitLabToken{})
	if err != nil {
		t.Fatal(err)
	}
	gl := filepath.Join(dir, "gitlab.sigstore.json")
	if r := attest(gl, nil, "--identity-token", gtok); r.Code != 0 {
		t.Fatalf("cosign attest-blob with GitLab token: exit %d\n%s", r.Code, r.Output())
	}
	if r := verify(gl, "https://gitlab.com/acme/images//.gitlab-ci.yml@refs/heads/main", s.GitLabIssuerURL, art); r.Code != 0 {
		t.Errorf("verify GitLab bundle: exit %d\n%s", r.Code, r.Output())
	}
	mustFail("GitLab bundle, GitHub issuer", verify(gl, "https://gitlab.com/acme/images//.gitlab-ci.yml@refs/heads/main", iss, art), "issuer")
}

// TestDevstackFaults: tokens Fulcio must refuse and servers that are down make the real
// cosign fail without writing a bundle.
func TestDevstackFaults(t *testing.T) {
	cosign := tool(t, "cosign")
	s := startDevstack(t, devstack.Options{})
	dir := t.TempDir()
	art := filepath.Join(dir, "a.txt")
	_ = os.WriteFile(art, []byte("a"), 0o644)
	signWith := func(name, tok string) result {
		t.Helper()
		bundle := filepath.Join(dir, name+".sigstore.json")
		args := append([]string{"sign-blob", "--bundle", bundle, "--identity-token", tok}, cosignSignArgs(s)...)
		r := runCmd(t, dir, nil, 2*time.Minute, cosign, append(args, art)...)
		if r.Code == 0 {
			t.Errorf("%s: cosign sign-blob succeeded, want failure", name)
		}
		if _, err := os.Stat(bundle); err == nil {
			t.Errorf("%s: bundle %s written although signing failed", name, bundle)
		}
		return r
	}
	for name, o := range map[string]devstack.TokenOptions{
		"expired":       devstack.Expired(),
		"wrong-aud":     {Audience: []string{"not-sigstore"}},
		"other-issuer":  {Issuer: "https://token.actions.githubusercontent.com"},
		"untrusted-key": {UntrustedKey: true},
	} {
		tok, err := s.MintGitHubToken(devstack.GitHubToken{TokenOptions: o})
		if err != nil {
			t.Fatal(err)
		}
		if r := signWith(name, tok); !strings.Contains(r.Output(), "Fulcio returned 400") {
			t.Errorf("%s: want Fulcio's 400, got:\n%s", name, r.Output())
		}
	}
	tok, _ := s.MintGitHubToken(devstack.GitHubToken{})
	if err := s.StopRekor(); err != nil {
		t.Fatal(err)
	}
	signWith("rekor-down", tok)
	if err := s.StopTSA(); err != nil {
		t.Fatal(err)
	}
	signWith("tsa-down", tok)
	if err := s.StopFulcio(); err != nil {
		t.Fatal(err)
	}
	signWith("fulcio-down", tok)
}

// TestDevstackCommand runs `fixity-devstack up` the way `make demo` does: wait, source
// the env file, sign with cosign's ambient GitHub provider and a GitLab token from
// `fixity-devstack token`, verify, then SIGTERM stops every server.
func TestDevstackCommand(t *testing.T) {
	cosign := tool(t, "cosign")
	tool(t, devstack.FulcioProgram)
	bin := devstackBin(t)
	dir := t.TempDir()
	sd := filepath.Join(dir, "stack")
	envFile := filepath.Join(dir, "devstack.env")
	up := exec.Command(bin, "up", "--dir", sd, "--env-file", envFile, "--repo", "acme/demo", "--environment", "release")
	up.Dir = dir
	var upOut strings.Builder
	up.Stdout, up.Stderr = &upOut, &upOut
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	t.Cleanup(func() {
		_ = up.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = up.Process.Kill()
		}
	})
	if r := runCmd(t, dir, nil, 5*time.Minute, bin, "wait", "--dir", sd, "--timeout", "4m"); r.Code != 0 {
		t.Fatalf("fixity-devstack wait: exit %d\n%s\nup output:\n%s", r.Code, r.Output(), upOut.String())
	}
	env := readEnvFile(t, envFile)
	for _, k := range []string{"FIXITY_DEVSTACK_TRUSTED_ROOT", "FIXITY_DEVSTACK_SIGNING_CONFIG", "FIXITY_DEVSTACK_IDENTITY",
		"FIXITY_DEVSTACK_IDENTITY_ISSUER", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "GITHUB_REPOSITORY"} {
		if env[k] == "" {
			t.Fatalf("env file %s lacks %s", envFile, k)
		}
	}
	if env["GITHUB_REPOSITORY"] != "acme/demo" {
		t.Errorf("GITHUB_REPOSITORY = %q, want acme/demo", env["GITHUB_REPOSITORY"])
	}
	art := filepath.Join(dir, "a.txt")
	_ = os.WriteFile(art, []byte("demo"), 0o644)
	bundle := filepath.Join(dir, "a.sigstore.json")
	r := runCmd(t, dir, envList(env), 2*time.Minute, cosign, "sign-blob", "--yes", "--bundle", bundle,
		"--signing-config", env["FIXITY_DEVSTACK_SIGNING_CONFIG"], "--trusted-root", env["FIXITY_DEVSTACK_TRUSTED_ROOT"], art)
	if r.Code != 0 {
		t.Fatalf("cosign sign-blob (ambient, from env file): exit %d\n%s", r.Code, r.Output())
	}
	verify := func(b, id, iss string) result {
		return runCmd(t, dir, nil, 2*time.Minute, cosign, "verify-blob", "--bundle", b, "--trusted-root", env["FIXITY_DEVSTACK_TRUSTED_ROOT"],
			"--insecure-ignore-sct", "--certificate-identity", id, "--certificate-oidc-issuer", iss, art)
	}
	if r := verify(bundle, env["FIXITY_DEVSTACK_IDENTITY"], env["FIXITY_DEVSTACK_IDENTITY_ISSUER"]); r.Code != 0 {
		t.Fatalf("cosign verify-blob: exit %d\n%s", r.Code, r.Output())
	}

	gr := runCmd(t, dir, nil, time.Minute, bin, "token", "--dir", sd, "--kind", "gitlab", "--repo", "grp/proj")
	if gr.Code != 0 {
		t.Fatalf("fixity-devstack token --kind gitlab: exit %d\n%s", gr.Code, gr.Output())
	}
	gb := filepath.Join(dir, "gitlab.sigstore.json")
	r = runCmd(t, dir, nil, 2*time.Minute, cosign, "sign-blob", "--yes", "--bundle", gb, "--identity-token", strings.TrimSpace(gr.Stdout),
		"--signing-config", env["FIXITY_DEVSTACK_SIGNING_CONFIG"], "--trusted-root", env["FIXITY_DEVSTACK_TRUSTED_ROOT"], art)
	if r.Code != 0 {
		t.Fatalf("cosign sign-blob with GitLab token: exit %d\n%s", r.Code, r.Output())
	}
	if r := verify(gb, "https://gitlab.com/grp/proj//.gitlab-ci.yml@refs/heads/main", env["FIXITY_DEVSTACK_GITLAB_ISSUER_URL"]); r.Code != 0 {
		t.Errorf("verify GitLab bundle: exit %d\n%s", r.Code, r.Output())
	}
	if r := runCmd(t, dir, nil, time.Minute, bin, "token", "--dir", sd, "--kind", "gitlab", "--ref", "refs/heads/main"); r.Code != 1 || !strings.Contains(r.Stderr, "refs/ prefix") {
		t.Errorf("token with a GitHub-style ref for GitLab: exit %d, want 1 and the fix\n%s", r.Code, r.Output())
	}
	if r := runCmd(t, dir, nil, time.Minute, bin, "up"); r.Code != 2 || !strings.Contains(r.Stderr, "--dir is required") {
		t.Errorf("up without --dir: exit %d\n%s", r.Code, r.Output())
	}

	// SIGTERM stops the servers and removes the files that would point at dead ports.
	if err := up.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("fixity-devstack up after SIGTERM: %v\n%s", err, upOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("fixity-devstack up still running 60 s after SIGTERM\n%s", upOut.String())
	}
	exited <- nil // let the cleanup's receive return at once
	for _, p := range []string{envFile, filepath.Join(sd, devstack.StateFile)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s still exists after the stack stopped", p)
		}
	}
	hc := http.Client{Timeout: 2 * time.Second}
	for _, u := range []string{env["FIXITY_DEVSTACK_FULCIO_URL"] + "/api/v1/rootCert", env["FIXITY_DEVSTACK_REKOR_URL"] + "/healthz", env["FIXITY_DEVSTACK_ISSUER_URL"]} {
		if resp, err := hc.Get(u); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after the stack stopped", u)
		}
	}
}
