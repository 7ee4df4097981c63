//go:build e2e

// Package e2e drives the real parts a user meets: the real packer binary running the
// installed plugin, skopeo and umoci reading images, the Sigstore servers, cosign, sshd
// and registries on loopback. Run through `make testacc`, which builds and installs the
// plugin first; every test skips unless PACKER_ACC is set.
package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// requireAcc skips the test unless acceptance tests were asked for.
func requireAcc(t *testing.T) {
	t.Helper()
	if os.Getenv("PACKER_ACC") == "" {
		t.Skip("set PACKER_ACC=1 (make testacc) to run end-to-end tests")
	}
}

// tool returns the path of a program the e2e suite needs; it fails (not skips) when
// acceptance tests were asked for and the program is missing, so CI cannot pass by
// silently skipping a real part.
func tool(t *testing.T, name string) string {
	t.Helper()
	requireAcc(t)
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not on PATH: run `make tools` (or apt-get install it): %v", name, err)
	}
	return p
}

// fixityBin is the fixity CLI built by `make testacc`.
func fixityBin(t *testing.T) string {
	t.Helper()
	requireAcc(t)
	if p := os.Getenv("FIXITY_BIN"); p != "" {
		return p
	}
	return tool(t, "fixity")
}

// result is what one command printed and how it exited.
type result struct {
	Stdout, Stderr string
	Code           int
}

func (r result) Output() string { return r.Stdout + r.Stderr }

// runCmd runs name with args in dir and env additions, bounded by timeout.
func runCmd(t *testing.T, dir string, env []string, timeout time.Duration, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("%s %v: %v", name, args, err)
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v timed out after %s\n%s%s", name, args, timeout, so.String(), se.String())
	}
	return result{Stdout: so.String(), Stderr: se.String(), Code: code}
}

// packerBuild writes template as build.pkr.hcl into dir and runs the real
// `packer build` there with the plugin installed by `make dev`.
func packerBuild(t *testing.T, dir, template string, extraArgs ...string) result {
	t.Helper()
	packer := tool(t, "packer")
	if err := os.WriteFile(filepath.Join(dir, "build.pkr.hcl"), []byte(template), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"build", "-color=false"}, extraArgs...)
	args = append(args, ".")
	r := runCmd(t, dir, []string{"PACKER_NO_COLOR=1", "CHECKPOINT_DISABLE=1"}, 20*time.Minute, packer, args...)
	t.Logf("packer build exit %d\n%s", r.Code, r.Output())
	return r
}

// requiredPlugins is the packer block every e2e template starts with.
const requiredPlugins = `
packer {
  required_plugins {
    fixity = {
      source  = "github.com/fixity-dev/fixity"
      version = ">= 0.1.0"
    }
  }
}
`
