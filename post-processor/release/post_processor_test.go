package release

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/fixity-dev/packer-plugin-fixity/internal/artifactstate"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		raw  map[string]interface{}
		want string
	}{
		{map[string]interface{}{}, "ledger: set the ledger URL"},
		{map[string]interface{}{"ledger": "s3://x", "allow_unsigned": true}, "unknown scheme"},
		{map[string]interface{}{"ledger": "file:///tmp/l"}, "pin the signer"},
		{map[string]interface{}{"ledger": "file:///tmp/l", "allow_unsigned": true, "channel": "Prod"}, `channel "Prod"`},
		{map[string]interface{}{"ledger": "file:///tmp/l", "allow_unsigned": true, "requires": []string{"staging"}}, "only meaningful with channel"},
		{map[string]interface{}{"ledger": "file:///tmp/l", "allow_unsigned": true, "policy_digest": "md5:1"}, "policy_digest"},
	}
	for _, c := range cases {
		var cfg Config
		err := cfg.Prepare(c.raw)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Prepare(%v) = %v, want an error containing %q", c.raw, err, c.want)
		}
	}
	var cfg Config
	ok := map[string]interface{}{"ledger": "file:///tmp/l", "certificate_identity": "x", "certificate_oidc_issuer": "y", "channel": "prod", "requires": []string{"staging"}}
	for i := 0; i < 2; i++ { // idempotent
		if err := cfg.Prepare(ok); err != nil {
			t.Fatal(err)
		}
	}
}

func run(t *testing.T, raw map[string]interface{}, a packersdk.Artifact) (packersdk.Artifact, bool, bool, error) {
	t.Helper()
	var p PostProcessor
	if err := p.Configure(raw); err != nil {
		t.Fatal(err)
	}
	return p.PostProcess(context.Background(), packersdk.TestUi(t), a)
}

func TestRecordsAMIsAndFilesUnsigned(t *testing.T) {
	dir := t.TempDir()
	L := "file://" + filepath.Join(dir, "ledger")
	ami := &packersdk.MockArtifact{BuilderIdValue: "mitchellh.amazonebs", IdValue: "us-east-1:ami-0123abcd,eu-west-1:ami-0456ef01", FilesValue: []string{}, StateValues: map[string]interface{}{}}
	// Unsigned artifacts are refused unless allowed.
	if _, _, _, err := run(t, map[string]interface{}{"ledger": L, "certificate_identity": "x", "certificate_oidc_issuer": "y", "image_name": "web", "version": "1"}, ami); err == nil || !strings.Contains(err.Error(), "no fixity-sign bundle") {
		t.Fatalf("unsigned without allow_unsigned: %v", err)
	}
	out, keep, force, err := run(t, map[string]interface{}{"ledger": L, "allow_unsigned": true, "image_name": "web", "version": "1", "channel": "staging"}, ami)
	if err != nil || out != ami || !keep || !force {
		t.Fatalf("PostProcess = %v %v %v %v", out, keep, force, err)
	}
	f := filepath.Join(dir, "disk.raw")
	os.WriteFile(f, []byte("disk image"), 0o644)
	file := &packersdk.MockArtifact{BuilderIdValue: "packer.file", FilesValue: []string{f}, StateValues: map[string]interface{}{}}
	if _, _, _, err := run(t, map[string]interface{}{"ledger": L, "allow_unsigned": true, "image_name": "disk", "version": "1", "channel": "prod", "requires": []string{"staging"}}, file); err == nil || !strings.Contains(err.Error(), "requires staging") {
		t.Fatalf("prod before staging: %v", err)
	}
	l, _ := ledger.Open(L)
	st, err := l.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	web, err := st.Lookup("web@1")
	if err != nil {
		t.Fatal(err)
	}
	if web.Record.Image.Digest != signing.DescriptorSubject("mitchellh.amazonebs", ami.IdValue).Digest {
		t.Fatalf("AMI image digest = %s", web.Record.Image.Digest)
	}
	if len(web.Record.Artifacts) != 2 || web.Record.Artifacts[1] != (ledger.Artifact{Provider: "aws", Region: "eu-west-1", ID: "ami-0456ef01"}) {
		t.Fatalf("AMI artifacts = %+v", web.Record.Artifacts)
	}
	disk, err := st.Lookup("disk@1")
	if err != nil || disk.Record.Image.Digest != ledger.DigestBytes([]byte("disk image")) || disk.Record.Artifacts[0].Provider != "file" {
		t.Fatalf("file record = %+v %v", disk, err)
	}
	if st.Channels["staging"].Head != web.Record.Image.Digest {
		t.Fatal("not promoted to staging")
	}
}

func TestRefusesBundleForAnotherHash(t *testing.T) {
	a := &packersdk.MockArtifact{BuilderIdValue: "fixity-dev.oci", FilesValue: []string{}, StateValues: map[string]interface{}{
		artifactstate.OCIManifestDigest: ledger.DigestBytes([]byte("a")),
		artifactstate.SignSubjects:      []interface{}{ledger.DigestBytes([]byte("b"))},
		artifactstate.SignBundlePath:    "/nonexistent.sigstore.json",
	}}
	if _, err := SubjectOf(a); err == nil || !strings.Contains(err.Error(), "not this artifact's hash") {
		t.Fatalf("SubjectOf = %v", err)
	}
	a.StateValues[artifactstate.SignSubjects] = []interface{}{ledger.DigestBytes([]byte("a"))}
	_, _, _, err := run(t, map[string]interface{}{"ledger": "file://" + t.TempDir(), "certificate_identity": "x", "certificate_oidc_issuer": "y", "image_name": "web", "version": "1"}, a)
	if err == nil || !strings.Contains(err.Error(), "not recorded") {
		t.Fatalf("unreadable bundle: %v", err)
	}
}
