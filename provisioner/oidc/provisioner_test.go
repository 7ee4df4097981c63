package oidc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// localComm is a unit-test communicator for the staged path: remote paths are local
// absolute paths and commands run with the local sh, like an SSH session to localhost.
type localComm struct {
	commands []string
	// corrupt, when set, alters every uploaded file whose name ends with it.
	corrupt string
}

func (c *localComm) Start(ctx context.Context, cmd *packersdk.RemoteCmd) error {
	c.commands = append(c.commands, cmd.Command)
	ex := exec.CommandContext(ctx, "sh", "-c", cmd.Command)
	ex.Stdout, ex.Stderr = cmd.Stdout, cmd.Stderr
	if err := ex.Start(); err != nil {
		return err
	}
	go func() {
		st := 0
		if err := ex.Wait(); err != nil {
			st = 1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				st = ee.ExitCode()
			}
		}
		cmd.SetExited(st)
	}()
	return nil
}

func (c *localComm) Upload(dst string, r io.Reader, fi *os.FileInfo) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if c.corrupt != "" && strings.HasSuffix(dst, c.corrupt) {
		b = append(b, '!')
	}
	mode := os.FileMode(0o644)
	if fi != nil {
		mode = (*fi).Mode().Perm()
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

func (c *localComm) UploadDir(dst, src string, exclude []string) error {
	return errors.New("not used")
}

func (c *localComm) Download(src string, w io.Writer) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func (c *localComm) DownloadDir(src, dst string, exclude []string) error {
	return errors.New("not used")
}

// testPolicy is a small valid policy; writeBundle renders it with a fresh key.
const testPolicy = `
policy_version = 1
issuer "gitlab" {
  preset             = "gitlab-ci"
  url                = "https://gitlab.com"
  audience           = "https://authz.example.internal"
  algorithms         = ["ES256"]
  max_token_lifetime = "10m"
  tenant { namespace_id = "77" }
  jwks {
    mode = "pinned"
    file = "gitlab.jwks.json"
  }
}
identity "deployer" {
  issuer = issuer.gitlab
  match {
    project_id    = "1234"
    ref_protected = "true"
  }
}
profile "deploy" {
  environment = "staging"
  permissions = ["service:deploy"]
  max_session = "10m"
}
binding {
  identity = identity.deployer
  profiles = [profile.deploy]
}
`

// writeBundle renders a real policy bundle (policy.json, jwks/gitlab.json,
// manifest.json) into a new directory.
func writeBundle(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err := os.WriteFile(filepath.Join(src, "gitlab.jwks.json"), jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(src, "p.fixity.hcl")
	if err := os.WriteFile(pf, []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.LoadFiles(pf)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "bundle")
	if _, err := policy.Render(p, out, policy.RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	return out
}

func prepared(t *testing.T, raw map[string]interface{}) *Provisioner {
	t.Helper()
	p := &Provisioner{}
	if err := p.Prepare(raw); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	// Packer prepares provisioners twice; the second pass must give the same config.
	if err := p.Prepare(raw); err != nil {
		t.Fatalf("second Prepare: %v", err)
	}
	return p
}

func modeOf(t *testing.T, p string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestProvisionStagedInstallsWithModesAndReplaces(t *testing.T) {
	src := writeBundle(t)
	root := t.TempDir()
	dest := filepath.Join(root, "etc", "fixity")
	stage := filepath.Join(root, "stage")
	// An older bundle with a stale file: it must be gone afterwards.
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "stale.json"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := prepared(t, map[string]interface{}{
		"source":            src,
		"destination":       dest,
		"staging_directory": stage,
		"execute_command":   "sh -c '{{ .Command }}'",
	})
	comm := &localComm{}
	if err := p.Provision(context.Background(), packersdk.TestUi(t), comm, nil); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	for _, f := range []string{"policy.json", "jwks/gitlab.json", "manifest.json"} {
		got, err := os.ReadFile(filepath.Join(dest, f))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(src, f))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: content differs", f)
		}
		if m := modeOf(t, filepath.Join(dest, f)); m != 0o444 {
			t.Errorf("%s: mode %o, want 444", f, m)
		}
	}
	for _, d := range []string{dest, filepath.Join(dest, "jwks")} {
		if m := modeOf(t, d); m != 0o555 {
			t.Errorf("%s: mode %o, want 555", d, m)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "stale.json")); !os.IsNotExist(err) {
		t.Errorf("stale file survived the replacement: %v", err)
	}
	if _, err := os.Stat(stage); !os.IsNotExist(err) {
		t.Errorf("staging directory not removed: %v", err)
	}
	var ran string
	for _, c := range comm.commands {
		if strings.Contains(c, "install.sh") {
			ran = c
		}
	}
	want := "sh -c 'FIXITY_STAGING=" + stage + " FIXITY_DEST=" + dest + " sh " + stage + "/install.sh'"
	if ran != want {
		t.Errorf("execute_command rendered as %q, want %q", ran, want)
	}
	// Leave the tree removable for t.TempDir cleanup.
	t.Cleanup(func() { exec.Command("chmod", "-R", "u+w", root).Run() })
}

func TestProvisionFailsWhenReadBackDiffers(t *testing.T) {
	src := writeBundle(t)
	root := t.TempDir()
	t.Cleanup(func() { exec.Command("chmod", "-R", "u+w", root).Run() })
	p := prepared(t, map[string]interface{}{
		"source":            src,
		"destination":       filepath.Join(root, "dest"),
		"staging_directory": filepath.Join(root, "stage"),
	})
	err := p.Provision(context.Background(), packersdk.TestUi(t), &localComm{corrupt: "policy.json"}, nil)
	if err == nil || !strings.Contains(err.Error(), "policy.json in the image has sha256") {
		t.Fatalf("want a read-back mismatch error, got %v", err)
	}
}

func TestProvisionExecuteCommandFailureFailsBuild(t *testing.T) {
	src := writeBundle(t)
	root := t.TempDir()
	p := prepared(t, map[string]interface{}{
		"source":            src,
		"destination":       filepath.Join(root, "dest"),
		"staging_directory": filepath.Join(root, "stage"),
		"execute_command":   "exit 3",
	})
	err := p.Provision(context.Background(), packersdk.TestUi(t), &localComm{}, nil)
	if err == nil || !strings.Contains(err.Error(), "status 3") || !strings.Contains(err.Error(), "sudo") {
		t.Fatalf("want the exit status and the sudo hint, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "stage")); !os.IsNotExist(err) {
		t.Errorf("staging directory not removed after a failure: %v", err)
	}
}

func TestPrepareRejects(t *testing.T) {
	src := writeBundle(t)
	cases := []struct {
		name string
		raw  map[string]interface{}
		want string
	}{
		{"nothing", map[string]interface{}{}, "set `source`"},
		{"both", map[string]interface{}{"source": src, "policy_files": []string{"a.fixity.hcl"}}, "mutually exclusive"},
		{"not a bundle", map[string]interface{}{"source": t.TempDir()}, "no manifest.json"},
		{"relative destination", map[string]interface{}{"source": src, "destination": "etc/fixity"}, "absolute path"},
		{"quote in destination", map[string]interface{}{"source": src, "destination": "/etc/fix'ity"}, "no spaces or quotes"},
		{"root destination", map[string]interface{}{"source": src, "destination": "/"}, "refusing to replace /"},
		{"dotdot", map[string]interface{}{"source": src, "destination": "/etc/../root"}, "must not contain .."},
		{"bad digest", map[string]interface{}{"source": src, "digest": "abc"}, "sha256:<64 hex"},
		{"bad template", map[string]interface{}{"source": src, "execute_command": "{{ .Nope }}"}, "execute_command"},
		{"verifier without source", map[string]interface{}{"source": src, "install_verifier": true}, "set verifier_binary"},
		{"verifier binary unused", map[string]interface{}{"source": src, "verifier_binary": "/bin/true"}, "install_verifier is false"},
		{"bad arch", map[string]interface{}{"source": src, "verifier_arch": "mips"}, "verifier_arch"},
		{"unknown key", map[string]interface{}{"source": src, "bogus": 1}, "bogus"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := (&Provisioner{}).Prepare(c.raw)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want error containing %q, got %v", c.want, err)
			}
		})
	}
}

func TestPrepareDefaults(t *testing.T) {
	p := prepared(t, map[string]interface{}{"source": writeBundle(t)})
	c := p.config
	if c.Destination != DefaultDestination || c.ExecuteCommand != DefaultExecuteCommand || c.VerifierArch != "amd64" || c.VerifierPath != DefaultVerifierPath {
		t.Errorf("defaults: %+v", c)
	}
	if !strings.HasPrefix(c.StagingDirectory, "/tmp/fixity-oidc-") {
		t.Errorf("staging directory %q", c.StagingDirectory)
	}
	if c.direct() {
		t.Error("direct upload must default off for ordinary builders")
	}
	oci := prepared(t, map[string]interface{}{"source": writeBundle(t), "packer_builder_type": "fixity-oci"})
	if !oci.config.direct() {
		t.Error("direct upload must default on for fixity-oci builds")
	}
}

func TestCheckStaticELF(t *testing.T) {
	notELF := filepath.Join(t.TempDir(), "fixity")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkStaticELF(notELF, "amd64"); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0 GOOS=linux") {
		t.Fatalf("script accepted as verifier: %v", err)
	}
	if runtime.GOOS != "linux" {
		t.Skip("needs a linux test binary")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if other == "" {
		t.Skip("unusual GOARCH")
	}
	if err := checkStaticELF(self, other); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("verifier_arch is %s", other)) {
		t.Fatalf("wrong-architecture binary accepted: %v", err)
	}
}

// rootComm is a unit-test communicator for the direct path, shaped like the fixity-oci
// one: image paths map under root, modes come from the FileInfo, commands are refused.
type rootComm struct{ root string }

func (c *rootComm) path(p string) string { return filepath.Join(c.root, filepath.FromSlash(p)) }

func (c *rootComm) Start(context.Context, *packersdk.RemoteCmd) error {
	return errors.New("this communicator runs no commands")
}

func (c *rootComm) Upload(dst string, r io.Reader, fi *os.FileInfo) error {
	p := c.path(dst)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return err
	}
	return os.Chmod(p, (*fi).Mode().Perm())
}

func (c *rootComm) UploadDir(dst, src string, _ []string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(c.path(dst), rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return errors.New("unexpected file in the directory-mode tree: " + rel)
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		return os.Chmod(target, info.Mode().Perm())
	})
}

func (c *rootComm) Download(src string, w io.Writer) error {
	b, err := os.ReadFile(c.path(src))
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (c *rootComm) DownloadDir(src, dst string, _ []string) error {
	base := c.path(src)
	return filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

func TestProvisionDirectForOCIBuilder(t *testing.T) {
	src := writeBundle(t)
	root := t.TempDir()
	t.Cleanup(func() { exec.Command("chmod", "-R", "u+w", root).Run() })
	p := prepared(t, map[string]interface{}{"source": src, "packer_builder_type": OCIBuilderType})
	if err := p.Provision(context.Background(), packersdk.TestUi(t), &rootComm{root: root}, nil); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	dest := filepath.Join(root, "etc", "fixity")
	for f, want := range map[string]fs.FileMode{"": 0o555, "jwks": 0o555, "policy.json": 0o444, "jwks/gitlab.json": 0o444, "manifest.json": 0o444} {
		if m := modeOf(t, filepath.Join(dest, f)); m != want {
			t.Errorf("%s: mode %o, want %o", f, m, want)
		}
	}

	// A file left in the destination by an earlier layer is refused: it would ride
	// along unverified.
	root2 := t.TempDir()
	t.Cleanup(func() { exec.Command("chmod", "-R", "u+w", root2).Run() })
	if err := os.MkdirAll(filepath.Join(root2, "etc", "fixity"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root2, "etc", "fixity", "extra.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := p.Provision(context.Background(), packersdk.TestUi(t), &rootComm{root: root2}, nil)
	if err == nil || !strings.Contains(err.Error(), "extra.json, which is not part of the bundle") {
		t.Fatalf("want the extra file refused, got %v", err)
	}
}

func TestProvisionRefusesOtherDigest(t *testing.T) {
	src := writeBundle(t)
	root := t.TempDir()
	p := prepared(t, map[string]interface{}{
		"source":      src,
		"destination": filepath.Join(root, "dest"),
		"digest":      "sha256:" + strings.Repeat("0", 64),
	})
	comm := &localComm{}
	err := p.Provision(context.Background(), packersdk.TestUi(t), comm, nil)
	if err == nil || !strings.Contains(err.Error(), "bundle changed since the data source rendered it") {
		t.Fatalf("want a digest mismatch, got %v", err)
	}
	if len(comm.commands) != 0 {
		t.Fatalf("commands ran before the digest check: %v", comm.commands)
	}
}

func TestProvisionPolicyFilesAreLintedAndTested(t *testing.T) {
	dir := t.TempDir()
	// The test policy has no test blocks: lint (L12) must stop the build.
	pf := filepath.Join(dir, "p.fixity.hcl")
	if err := os.WriteFile(pf, []byte(strings.Replace(testPolicy, `file = "gitlab.jwks.json"`, `file = "keys.json"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys.json"), []byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := prepared(t, map[string]interface{}{"policy_files": []string{pf}, "destination": filepath.Join(dir, "dest")})
	err := p.Provision(context.Background(), packersdk.TestUi(t), &localComm{}, nil)
	if err == nil || !strings.Contains(err.Error(), "L12") || !strings.Contains(err.Error(), "p.fixity.hcl:") {
		t.Fatalf("want the L12 finding with file:line, got %v", err)
	}
}

func TestProvisionRefusesExistingStagingDirectory(t *testing.T) {
	src := writeBundle(t)
	root := t.TempDir()
	stage := filepath.Join(root, "stage")
	if err := os.Mkdir(stage, 0o777); err != nil { // e.g. planted by another user
		t.Fatal(err)
	}
	p := prepared(t, map[string]interface{}{"source": src, "destination": filepath.Join(root, "dest"), "staging_directory": stage})
	comm := &localComm{}
	err := p.Provision(context.Background(), packersdk.TestUi(t), comm, nil)
	if err == nil || !strings.Contains(err.Error(), "must not exist yet") {
		t.Fatalf("want the existing staging directory refused, got %v", err)
	}
	for _, c := range comm.commands {
		if strings.Contains(c, "install.sh") {
			t.Fatalf("the install script ran: %q", c)
		}
	}
}
