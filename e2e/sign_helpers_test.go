//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/devstack"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// signStack starts the real local Sigstore stack (our OIDC issuers, Fulcio,
// timestamp-server, rekor-tiles) and puts the process "in GitHub Actions": the
// ACTIONS_ID_TOKEN_REQUEST_* and GITHUB_* variables point at the stack's issuer, so a
// packer child process signs exactly as it would in a real workflow.
func signStack(t *testing.T) *devstack.Stack {
	t.Helper()
	for _, p := range []string{devstack.FulcioProgram, devstack.TSAProgram, devstack.RekorProgram} {
		tool(t, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Options{Dir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	for _, kv := range append(s.GitHubRequestEnv(""), s.GitHubContextEnv()...) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	// cosign must never reach for the public-good TUF repository.
	t.Setenv("TUF_ROOT", t.TempDir())
	return s
}

// cosignVerify runs the real cosign CLI offline against the stack's trusted root.
// The local stack has no CT log, hence --insecure-ignore-sct (as for any private
// Fulcio without one).
func cosignVerify(t *testing.T, s *devstack.Stack, args ...string) result {
	t.Helper()
	cosign := tool(t, "cosign")
	args = append(args, "--trusted-root", s.TrustedRootPath, "--insecure-ignore-sct")
	r := runCmd(t, "", nil, 2*time.Minute, cosign, args...)
	t.Logf("cosign %s\n-> exit %d %s", strings.Join(args, " "), r.Code, firstLines(r.Output(), 4))
	return r
}

// fixityVerify runs our CLI.
func fixityVerify(t *testing.T, s *devstack.Stack, args ...string) result {
	t.Helper()
	args = append([]string{"verify", "--trusted-root", s.TrustedRootPath}, args...)
	r := runCmd(t, "", nil, 2*time.Minute, fixityBin(t), args...)
	t.Logf("fixity %s\n-> exit %d %s", strings.Join(args, " "), r.Code, firstLines(r.Output(), 4))
	return r
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// noBundles fails when dir holds a bundle or a temporary file left by a failed write.
func noBundles(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".sigstore.json") {
			t.Fatalf("failed signing left %s behind", filepath.Join(dir, e.Name()))
		}
	}
}

// signPP is a fixity-sign post-processor block for the stack (extra lines appended).
func signPP(s *devstack.Stack, output string, extra string) string {
	return `
  post-processor "fixity-sign" {
    trusted_root   = "` + s.TrustedRootPath + `"
    signing_config = "` + s.SigningConfigPath + `"
    output         = "` + output + `"
    timeout        = "90s"
    retries        = 1
` + extra + `
  }
`
}

// githubActionsSigner is a signing service that takes its ID token the way a GitHub
// Actions job does, from the stack's GitHub-shaped issuer.
func githubActionsSigner(tb testing.TB, s *devstack.Stack) *signing.Service {
	tb.Helper()
	env := map[string]string{"GITHUB_ACTIONS": "true"}
	for _, kv := range s.GitHubRequestEnv("") {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	svc, err := signing.NewService(signing.SignOptions{TrustedRootPath: s.TrustedRootPath, SigningConfigPath: s.SigningConfigPath,
		Token: signing.TokenOptions{Getenv: func(k string) string { return env[k] }}})
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}
