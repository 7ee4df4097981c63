package oidc

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
)

// elfMachines maps verifier_arch to the ELF machine a binary for it declares.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

// verifierBinary returns the path of the static fixity binary to install, building it
// from verifier_source when no binary was given. cleanup removes what it built.
func (c *Config) verifierBinary(ctx context.Context, ui packersdk.Ui) (string, func(), error) {
	nothing := func() {}
	if c.VerifierBinary != "" {
		if err := checkStaticELF(c.VerifierBinary, c.VerifierArch); err != nil {
			return "", nothing, fmt.Errorf("fixity-oidc: verifier_binary %s: %w", c.VerifierBinary, err)
		}
		return c.VerifierBinary, nothing, nil
	}
	tmp, err := os.MkdirTemp("", "fixity-oidc-verifier-")
	if err != nil {
		return "", nothing, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	out := filepath.Join(tmp, "fixity")
	ui.Say(fmt.Sprintf("fixity-oidc: building the static fixity verifier for linux/%s from %s", c.VerifierArch, c.VerifierSource))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/fixity")
	cmd.Dir = c.VerifierSource
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+c.VerifierArch)
	var so bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &so
	if err := cmd.Run(); err != nil {
		cleanup()
		return "", nothing, fmt.Errorf("fixity-oidc: build the verifier in %s: %v\n%s\nset verifier_binary to a prebuilt static linux fixity binary instead", c.VerifierSource, err, so.String())
	}
	if err := checkStaticELF(out, c.VerifierArch); err != nil {
		cleanup()
		return "", nothing, fmt.Errorf("fixity-oidc: built verifier: %w", err)
	}
	return out, cleanup, nil
}

// checkStaticELF refuses anything that would not run in a minimal Linux image of the
// given architecture: another OS or CPU, or a dynamically linked binary.
func checkStaticELF(p, arch string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("not a Linux ELF binary (%v): build it with `CGO_ENABLED=0 GOOS=linux GOARCH=%s go build ./cmd/fixity`", err, arch)
	}
	defer f.Close()
	if want := elfMachines[arch]; f.Machine != want {
		return fmt.Errorf("built for %s, but verifier_arch is %s: build it with GOARCH=%s or fix verifier_arch", f.Machine, arch, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("dynamically linked: build it with CGO_ENABLED=0 so it runs in any image")
		}
	}
	return nil
}
