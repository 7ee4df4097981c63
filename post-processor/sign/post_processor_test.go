package sign

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/fixity-dev/packer-plugin-fixity/internal/artifactstate"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// fakeArtifact is a builder artifact as it arrives over Packer's RPC.
type fakeArtifact struct {
	id, builder string
	files       []string
	state       map[string]interface{}
	destroyed   bool
}

func (a *fakeArtifact) BuilderId() string             { return a.builder }
func (a *fakeArtifact) Files() []string               { return a.files }
func (a *fakeArtifact) Id() string                    { return a.id }
func (a *fakeArtifact) String() string                { return "fake " + a.id }
func (a *fakeArtifact) State(name string) interface{} { return a.state[name] }
func (a *fakeArtifact) Destroy() error                { a.destroyed = true; return nil }
func newFake(id string, files ...string) *fakeArtifact {
	return &fakeArtifact{id: id, builder: "test.builder", files: files, state: map[string]interface{}{}}
}
func (a *fakeArtifact) with(k string, v interface{}) *fakeArtifact { a.state[k] = v; return a }

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		raw  map[string]interface{}
		want string
	}{
		{map[string]interface{}{"policy_digest": "sha256:abc"}, "policy_digest"},
		{map[string]interface{}{"identity_token": "a", "identity_token_file": "b"}, "mutually exclusive"},
		{map[string]interface{}{"identity_provider": "jenkins"}, "unknown identity provider"},
		{map[string]interface{}{"fulcio_url": "http://127.0.0.1:1"}, "trusted_root: required"},
		{map[string]interface{}{"fulcio_url": "ftp://x", "trusted_root": filepath.Join(dir, "nope.json")}, "want an http(s) URL"},
		{map[string]interface{}{"rekor_version": 3}, "rekor_version 3"},
		{map[string]interface{}{"skip_transparency_log": true}, "only allowed with `key`"},
		{map[string]interface{}{"timeout": "soon"}, "timeout"},
		{map[string]interface{}{"template_files": []string{filepath.Join(dir, "missing.pkr.hcl")}}, "template_files[0]"},
		{map[string]interface{}{"output": dir}, "is a directory"},
	}
	for _, c := range cases {
		var cfg Config
		err := cfg.Prepare(c.raw)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Prepare(%v) = %v, want %q", c.raw, err, c.want)
		}
	}
	// Prepare is idempotent and fills defaults.
	var cfg Config
	raw := map[string]interface{}{"packer_build_name": "web", "version": "1"}
	for i := 0; i < 2; i++ {
		if err := cfg.Prepare(raw); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.ImageName != "web" || cfg.timeout.Minutes() != 5 {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestSubjectsOf(t *testing.T) {
	dir := t.TempDir()
	d := "sha256:" + strings.Repeat("ab", 32)
	oci := newFake(d).with(artifactstate.OCIManifestDigest, d).with(artifactstate.OCILayoutDir, dir).
		with(artifactstate.OCIManifestSize, float64(512)).with(artifactstate.OCIPushedReference, "127.0.0.1:5000/acme/web@"+d)
	tg, err := subjectsOf(oci, "acme/web")
	if err != nil || len(tg.subjects) != 1 || tg.subjects[0].Digest != d || tg.oci == nil || tg.oci.desc.Size != 512 || tg.subjects[0].Name != "127.0.0.1:5000/acme/web@"+d {
		t.Fatalf("oci: %+v %v", tg, err)
	}
	if repoOf(tg.oci.pushedRef) != "127.0.0.1:5000/acme/web" || repoOf("reg:5000/a/b:1.2") != "reg:5000/a/b" {
		t.Fatal("repoOf")
	}
	f1 := filepath.Join(dir, "disk.qcow2")
	_ = os.WriteFile(f1, []byte("disk"), 0o644)
	_ = os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	tg, err = subjectsOf(newFake("x", f1, filepath.Join(dir, "sub")), "img")
	if err != nil || len(tg.subjects) != 1 || tg.subjects[0].Name != "disk.qcow2" || tg.oci != nil {
		t.Fatalf("files: %+v %v", tg, err)
	}
	tg, err = subjectsOf(newFake("us-east-1:ami-1"), "img")
	want := signing.DescriptorSubject("test.builder", "us-east-1:ami-1")
	if err != nil || tg.subjects[0] != want {
		t.Fatalf("descriptor: %+v %v", tg, err)
	}
	if _, err := subjectsOf(newFake(""), "img"); err != errNoSubjects {
		t.Fatalf("empty: %v", err)
	}
	if _, err := subjectsOf(newFake("x", filepath.Join(dir, "gone")), "img"); err == nil {
		t.Fatal("missing file accepted")
	}
}

// TestPostProcessKeyMode runs the whole post-processor offline in key mode: the bundle
// verifies, the artifact forwards the input, and Destroy keeps the image.
func TestPostProcessKeyMode(t *testing.T) {
	dir := t.TempDir()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyPath := filepath.Join(dir, "key.pem")
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	disk := filepath.Join(dir, "disk.img")
	_ = os.WriteFile(disk, []byte("image bytes"), 0o644)
	out := filepath.Join(dir, "disk.sigstore.json")
	var p PostProcessor
	if err := p.Configure(map[string]interface{}{"key": keyPath, "skip_transparency_log": true, "output": out, "image_name": "acme/disk",
		"policy_digest": "sha256:" + strings.Repeat("01", 32), "slsa_provenance": true}); err != nil {
		t.Fatal(err)
	}
	in := newFake("disk", disk)
	ui := packersdk.TestUi(t)
	a, keep, force, err := p.PostProcess(context.Background(), ui, in)
	if err != nil {
		t.Fatal(err)
	}
	if !keep || !force || a.Id() != "disk" || a.BuilderId() != "test.builder" || len(a.Files()) != 1 {
		t.Fatalf("artifact %v keep=%v force=%v", a, keep, force)
	}
	if a.State(artifactstate.SignBundlePath) != out || len(a.State(artifactstate.SignSubjects).([]string)) != 1 {
		t.Fatalf("state: %v %v", a.State(artifactstate.SignBundlePath), a.State(artifactstate.SignSubjects))
	}
	if err := a.Destroy(); err != nil || in.destroyed {
		t.Fatal("Destroy must not touch the image")
	}
	ds, _ := signing.ArtifactDigests(disk)
	v, err := signing.VerifyBundleFile(out, ds[0], signing.VerifyOptions{PublicKey: priv.Public(), TlogThreshold: -1, TimestampThreshold: -1})
	if err != nil || v.Predicate.Image != "acme/disk" || v.Predicate.PolicyDigest == "" {
		t.Fatalf("verify: %v %+v", err, v)
	}
	slsa := strings.TrimSuffix(out, ".sigstore.json") + ".slsa.sigstore.json"
	if _, err := signing.VerifyBundleFile(slsa, ds[0], signing.VerifyOptions{PublicKey: priv.Public(), TlogThreshold: -1, TimestampThreshold: -1, PredicateType: signing.PredicateSLSAProvenance}); err != nil {
		t.Fatalf("slsa: %v", err)
	}
}
