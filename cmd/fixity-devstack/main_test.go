//go:build unix

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/fixity-dev/packer-plugin-fixity/internal/devstack"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "usage:"},
		{[]string{"help"}, exitOK, "usage:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"up"}, exitUsage, "--dir is required"},
		{[]string{"up", "--dir", t.TempDir(), "--repo", "noslash"}, exitUsage, "want OWNER/NAME"},
		{[]string{"up", "--dir", t.TempDir(), "extra"}, exitUsage, "unexpected argument"},
		{[]string{"wait"}, exitUsage, "--dir is required"},
		{[]string{"token"}, exitUsage, "--dir is required"},
		{[]string{"token", "--dir", t.TempDir()}, exitFailure, "fixity-devstack up --dir"},
		{[]string{"wait", "--dir", t.TempDir(), "--timeout", "300ms"}, exitFailure, "not ready after"},
	}
	for _, c := range cases {
		code, out, errs := runCLI(c.args...)
		if code != c.code || !strings.Contains(out+errs, c.want) {
			t.Errorf("%v: exit %d (want %d), output %q lacks %q", c.args, code, c.code, out+errs, c.want)
		}
	}
}

// TestTokenAndWaitAgainstRunningStack uses an issuer-only stack with a state file, as
// `up` leaves it, and mints through the CLI.
func TestTokenAndWaitAgainstRunningStack(t *testing.T) {
	s, err := devstack.Start(context.Background(), devstack.Options{Dir: t.TempDir(), IssuerOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.WriteState(); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI("wait", "--dir", s.Dir, "--timeout", "10s"); code != exitOK {
		t.Fatalf("wait: exit %d: %s", code, errs)
	}
	code, out, errs := runCLI("token", "--dir", s.Dir, "--repo", "other/repo", "--runner", "self-hosted", "--alg", "ES256")
	if code != exitOK {
		t.Fatalf("token: exit %d: %s", code, errs)
	}
	p, err := oidc.NewProvider(context.Background(), s.IssuerURL)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: "sigstore"}).Verify(context.Background(), strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	var c map[string]any
	_ = idt.Claims(&c)
	if c["repository"] != "other/repo" || c["runner_environment"] != "self-hosted" {
		t.Errorf("flags not applied: %v", c)
	}
	code, out, _ = runCLI("token", "--dir", s.Dir, "--expired")
	if code != exitOK {
		t.Fatal("token --expired failed")
	}
	if _, err := p.Verifier(&oidc.Config{ClientID: "sigstore"}).Verify(context.Background(), strings.TrimSpace(out)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("--expired token: %v", err)
	}
	if code, _, errs := runCLI("token", "--dir", s.Dir, "--kind", "gitlab", "--aud", "a,b"); code != exitOK {
		t.Errorf("gitlab token: exit %d: %s", code, errs)
	}
	if code, _, errs := runCLI("token", "--dir", s.Dir, "--kind", "circleci"); code != exitUsage || !strings.Contains(errs, "want github or gitlab") {
		t.Errorf("--kind circleci: exit %d: %s", code, errs)
	}
}
