//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// TestReleaseE2E: real packer runs fixity-oci → fixity-sign → fixity-release against
// the local Sigstore stack; the record's hash, policy digest and signer identity must
// match the bundle. A second template reads the channel with data "fixity-release";
// after a revocation that empties the channel, the data source stops the build.
func TestReleaseE2E(t *testing.T) {
	s := signStack(t)
	san, issuer := s.GitHubIdentity()
	fixity := fixityBin(t)
	dir := t.TempDir()
	writeFiles(t, dir, inputFiles, time.Unix(1700000000, 0))
	bundle := filepath.Join(dir, "web.sigstore.json")
	ledgerDir := filepath.Join(dir, "ledger")
	L := "file://" + ledgerDir
	pins := `
    trusted_root            = "` + s.TrustedRootPath + `"
    certificate_identity    = "` + san + `"
    certificate_oidc_issuer = "` + issuer + `"
`
	tmpl := requiredPlugins + `
source "fixity-oci" "img" {
  base       = "scratch"
  output_dir = "layout"
  image_name = "acme/web"
  version    = "1.2.3"
}

build {
  sources = ["source.fixity-oci.img"]
` + provisionFiles + `
  post-processors {
` + signPP(s, bundle, `
    image_name    = "acme/web"
    version       = "1.2.3"
    policy_digest = "`+policyDigest+`"
`) + `
    post-processor "fixity-release" {
      ledger  = "` + L + `"
      channel = "staging"
` + pins + `
    }
  }
}
`
	r := packerBuild(t, dir, tmpl)
	if r.Code != 0 || !strings.Contains(r.Output(), "fixity-release: recorded acme/web@1.2.3") {
		t.Fatalf("packer build: exit %d", r.Code)
	}
	ds, err := signing.ArtifactDigests(filepath.Join(dir, "layout"))
	if err != nil || len(ds) != 1 {
		t.Fatalf("layout digests: %v %v", ds, err)
	}
	v, err := signing.VerifyBundleFile(bundle, ds[0], signing.VerifyOptions{TrustedRootPath: s.TrustedRootPath, Identities: []signing.Identity{{Issuer: issuer, SAN: san}}})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := ledger.Open(L)
	st, err := l.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rel, err := st.Current("staging")
	if err != nil {
		t.Fatal(err)
	}
	rec := rel.Record
	if rec.Name != "acme/web" || rec.Version != "1.2.3" || rec.Image.Digest != ds[0] || rec.PolicyDigest != policyDigest ||
		rec.Signer.SAN != v.Signer.SAN || rec.Signer.Issuer != v.Signer.Issuer || rec.BundleDigest != v.BundleDigest || rec.SourceRevision != v.Predicate.SourceRevision {
		t.Fatalf("record does not match the bundle:\nrecord %+v signer %+v\nbundle %+v %+v", rec, rec.Signer, v.Signer, v.Predicate)
	}
	if !strings.HasPrefix(rec.CIRunURL, "http") {
		t.Fatalf("record misses the CI run URL: %+v", rec)
	}

	// A second template builds on the verified parent.
	child := t.TempDir()
	readTmpl := requiredPlugins + `
data "fixity-release" "parent" {
  ledger  = "` + L + `"
  channel = "staging"
` + pins + `
}

source "file" "parent" {
  content = "${data.fixity-release.parent.image_digest} ${data.fixity-release.parent.version} ${data.fixity-release.parent.policy_digest} ${data.fixity-release.parent.signer_identity}"
  target  = "parent.txt"
}

build {
  sources = ["source.file.parent"]
}
`
	if r := packerBuild(t, child, readTmpl); r.Code != 0 {
		t.Fatalf("data fixity-release build failed")
	}
	got, _ := os.ReadFile(filepath.Join(child, "parent.txt"))
	if want := ds[0] + " 1.2.3 " + policyDigest + " " + san; string(got) != want {
		t.Fatalf("data source output %q, want %q", got, want)
	}

	// The CLI records the same signed build into another ledger (what `make demo` does),
	// filling policy digest and signer from the verified bundle.
	L2 := "oci://" + startRegistry(t, "olareg") + "/acme/ledger"
	cr := runCmd(t, dir, nil, time.Minute, fixity, "release", "record", "--ledger", L2, "--name", "acme/web", "--image", ds[0],
		"--bundle", bundle, "--trusted-root", s.TrustedRootPath, "--certificate-identity", san, "--certificate-oidc-issuer", issuer,
		"--artifact", "aws:us-east-1:ami-0f1x0000000000001", "--channel", "staging", "-o", "json")
	if cr.Code != 0 || !strings.Contains(cr.Stdout, policyDigest) || !strings.Contains(cr.Stdout, `"version": "1.2.3"`) || !strings.Contains(cr.Stdout, san) {
		t.Fatalf("fixity release record --bundle: exit %d\n%s", cr.Code, cr.Output())
	}
	cr = runCmd(t, dir, nil, time.Minute, fixity, "release", "record", "--ledger", L2, "--name", "acme/web", "--image", "sha256:"+strings.Repeat("cd", 32),
		"--bundle", bundle, "--trusted-root", s.TrustedRootPath, "--certificate-identity", san, "--certificate-oidc-issuer", issuer)
	if cr.Code != 1 || !strings.Contains(cr.Stderr, "not recorded") {
		t.Fatalf("bundle recorded for another hash: exit %d\n%s", cr.Code, cr.Output())
	}

	// The rollout plan re-verifies the stored bundle: with the right pins the machine
	// running the recorded hash is current, with wrong pins the plan fails closed.
	inv := filepath.Join(dir, "fleet.csv")
	os.WriteFile(inv, []byte("id,image\nweb-1,"+ds[0]+"\nweb-2,sha256:"+strings.Repeat("ab", 32)+"\n"), 0o644)
	planArgs := []string{"rollout", "plan", "--ledger", L, "--channel", "staging", "--inventory", "csv:" + inv, "--verify", "--trusted-root", s.TrustedRootPath, "--certificate-oidc-issuer", issuer, "-o", "json"}
	pr := runCmd(t, dir, nil, time.Minute, fixity, append(planArgs, "--certificate-identity", san)...)
	if pr.Code != 3 || !strings.Contains(pr.Stdout, `"current": [
    "web-1"`) || !strings.Contains(pr.Stdout, "never-recorded") {
		t.Fatalf("rollout plan --verify: exit %d\n%s", pr.Code, pr.Output())
	}
	pr = runCmd(t, dir, nil, time.Minute, fixity, append(planArgs, "--certificate-identity", "https://github.com/evil/x/.github/workflows/x.yml@refs/heads/main")...)
	if pr.Code != 1 || !strings.Contains(pr.Stderr, "unverified") {
		t.Fatalf("rollout plan --verify with wrong pins: exit %d\n%s", pr.Code, pr.Output())
	}

	// A wrong identity pin is refused.
	wrong := strings.Replace(readTmpl, `certificate_identity    = "`+san+`"`, `certificate_identity    = "https://github.com/evil/repo/.github/workflows/x.yml@refs/heads/main"`, 1)
	if r := packerBuild(t, t.TempDir(), wrong); r.Code == 0 || !strings.Contains(r.Output(), "unverified") {
		t.Fatalf("data source accepted a head signed by another identity (exit %d)", r.Code)
	}

	// Revoked with --empty: consumers fail closed.
	if r := runCmd(t, dir, nil, time.Minute, fixity, "release", "revoke", "--ledger", L, "acme/web@1.2.3", "--reason", "e2e", "--empty"); r.Code != 0 {
		t.Fatalf("revoke: %s", r.Output())
	}
	if r := packerBuild(t, t.TempDir(), readTmpl); r.Code == 0 || !strings.Contains(r.Output(), "is empty") {
		t.Fatalf("data source did not refuse the emptied channel (exit %d)", r.Code)
	}
	if r := runCmd(t, dir, nil, time.Minute, fixity, "release", "verify-chain", "--ledger", L); r.Code != 0 {
		t.Fatalf("verify-chain: %s", r.Output())
	}
}
