//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/devstack"
)

// startDevstack starts the real local Sigstore stack (OIDC issuers, Fulcio,
// timestamp-server, Rekor v2) for one test and stops it at cleanup. It fails when the
// servers are missing: `make tools` builds them. opts.Dir is set for you.
func startDevstack(t *testing.T, opts devstack.Options) *devstack.Stack {
	t.Helper()
	tool(t, devstack.FulcioProgram)
	tool(t, devstack.TSAProgram)
	tool(t, devstack.RekorProgram)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start devstack: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stop devstack: %v", err)
		}
	})
	return s
}

// cosignVerifyArgs are the flags cosign v3.1.3 needs to verify a bundle made on the
// devstack: its trusted root, and --insecure-ignore-sct because the local Fulcio runs
// without a CT log (certificates carry no SCT).
func cosignVerifyArgs(s *devstack.Stack, identity, issuer string) []string {
	return []string{"--trusted-root", s.TrustedRootPath, "--insecure-ignore-sct",
		"--certificate-identity", identity, "--certificate-oidc-issuer", issuer}
}

// cosignSignArgs point cosign at the devstack's services instead of public-good.
func cosignSignArgs(s *devstack.Stack) []string {
	return []string{"--yes", "--signing-config", s.SigningConfigPath, "--trusted-root", s.TrustedRootPath}
}

var (
	devstackBinOnce sync.Once
	devstackBinPath string
	devstackBinErr  string
)

// devstackBin is the fixity-devstack command: $FIXITY_DEVSTACK_BIN, or built once per
// test run from this checkout.
func devstackBin(t *testing.T) string {
	t.Helper()
	requireAcc(t)
	if p := os.Getenv("FIXITY_DEVSTACK_BIN"); p != "" {
		return p
	}
	devstackBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fixity-devstack-bin-")
		if err != nil {
			devstackBinErr = err.Error()
			return
		}
		out := filepath.Join(dir, "fixity-devstack")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/fixity-devstack")
		cmd.Dir = ".."
		if b, err := cmd.CombinedOutput(); err != nil {
			devstackBinErr = err.Error() + "\n" + string(b)
			return
		}
		devstackBinPath = out
	})
	if devstackBinErr != "" {
		t.Fatalf("build fixity-devstack: %s", devstackBinErr)
	}
	return devstackBinPath
}

// readEnvFile parses the `export K='V'` lines fixity-devstack writes into KEY=VALUE.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		v = strings.TrimSuffix(strings.TrimPrefix(v, "'"), "'")
		env[k] = strings.ReplaceAll(v, `'\''`, "'")
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

// envList turns a map into KEY=VALUE pairs for runCmd.
func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}
