//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/devstack"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

const policyDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

// TestSignE2E: the real packer runs fixity-oci then fixity-sign as if inside GitHub
// Actions against the real local Sigstore stack; the real cosign CLI and `fixity verify`
// then agree on every verdict; faults fail the build with clear errors and leave no
// bundle behind.
func TestSignE2E(t *testing.T) {
	s := signStack(t)
	san, issuer := s.GitHubIdentity()
	dir := t.TempDir()
	writeFiles(t, dir, inputFiles, time.Unix(1700000000, 0))
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(dir, "layout")
	bundle := filepath.Join(out, "web.sigstore.json")
	tmpl := requiredPlugins + `
source "fixity-oci" "img" {
  base       = "scratch"
  output_dir = "layout"
  image_name = "acme/web"
  version    = "1.2.3"
}

build {
  sources = ["source.fixity-oci.img"]
` + provisionFiles + signPP(s, bundle, `
    image_name      = "acme/web"
    version         = "1.2.3"
    policy_digest   = "`+policyDigest+`"
    template_files  = ["build.pkr.hcl"]
    slsa_provenance = true
`) + `}
`
	r := packerBuild(t, dir, tmpl)
	if r.Code != 0 {
		t.Fatalf("packer build failed: %s", r.Output())
	}
	if !strings.Contains(r.Output(), "fixity-sign: wrote") {
		t.Fatalf("no signing in the build output")
	}
	ds, err := signing.ArtifactDigests(layout)
	if err != nil || len(ds) != 1 {
		t.Fatalf("layout digests: %v %v", ds, err)
	}
	digest := ds[0]
	hexd := strings.TrimPrefix(digest, "sha256:")

	// What the bundle says, read by our verifier.
	r = fixityVerify(t, s, "--bundle", bundle, "--artifact", layout, "--certificate-identity", san,
		"--certificate-oidc-issuer", issuer, "--certificate-github-workflow-repository", "acme/images", "-o", "json")
	if r.Code != 0 {
		t.Fatalf("fixity verify: %s", r.Output())
	}
	var v struct {
		Digest    string               `json:"digest"`
		Predicate signing.ImageRelease `json:"predicate"`
		Signer    signing.Signer       `json:"signer"`
		Subjects  []signing.Subject    `json:"subjects"`
		SignedAt  []time.Time          `json:"signed_at"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		t.Fatalf("json: %v\n%s", err, r.Stdout)
	}
	if v.Digest != digest || v.Predicate.Image != "acme/web" || v.Predicate.Version != "1.2.3" || v.Predicate.PolicyDigest != policyDigest ||
		!strings.HasPrefix(v.Predicate.TemplateDigest, "sha256:") || v.Predicate.SourceRevision == "" || !strings.Contains(v.Predicate.CIRunURL, "/actions/runs/") {
		t.Fatalf("verified statement = %+v", v)
	}
	if v.Signer.Extensions["source_repository_uri"] != "https://github.com/acme/images" || len(v.SignedAt) == 0 {
		t.Fatalf("signer = %+v", v.Signer)
	}

	// cosign and fixity must agree on every case.
	tampered := strings.Repeat("0", 64)
	cases := []struct {
		name   string
		ok     bool
		cosign []string
		fixity []string
	}{
		{"right identity", true,
			[]string{"--certificate-identity", san, "--certificate-oidc-issuer", issuer, "--certificate-github-workflow-repository", "acme/images"},
			[]string{"--certificate-identity", san, "--certificate-oidc-issuer", issuer, "--certificate-github-workflow-repository", "acme/images"}},
		{"wrong repository", false,
			[]string{"--certificate-identity", san, "--certificate-oidc-issuer", issuer, "--certificate-github-workflow-repository", "evil/images"},
			[]string{"--certificate-identity", san, "--certificate-oidc-issuer", issuer, "--certificate-github-workflow-repository", "evil/images"}},
		{"wrong issuer", false,
			[]string{"--certificate-identity", san, "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com"},
			[]string{"--certificate-identity", san, "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com"}},
		{"wrong identity regexp", false,
			[]string{"--certificate-identity-regexp", "^https://github.com/evil/", "--certificate-oidc-issuer", issuer},
			[]string{"--certificate-identity-regexp", "^https://github.com/evil/", "--certificate-oidc-issuer", issuer}},
	}
	for _, c := range cases {
		t.Run("blob/"+c.name, func(t *testing.T) {
			cr := cosignVerify(t, s, append([]string{"verify-blob-attestation", "--bundle", bundle, "--digest", hexd, "--digestAlg", "sha256",
				"--type", signing.PredicateImageRelease}, c.cosign...)...)
			fr := fixityVerify(t, s, append([]string{"--bundle", bundle, "--digest", digest}, c.fixity...)...)
			if (cr.Code == 0) != c.ok || (fr.Code == 0) != c.ok {
				t.Fatalf("want verified=%v: cosign exit %d, fixity exit %d\n%s\n%s", c.ok, cr.Code, fr.Code, cr.Output(), fr.Output())
			}
			if !c.ok && (fr.Code != 1 || !strings.Contains(fr.Stdout, "identity check failed")) {
				t.Fatalf("fixity must say the identity check failed with exit 1: %d %s", fr.Code, fr.Output())
			}
		})
		t.Run("local-image/"+c.name, func(t *testing.T) {
			cr := cosignVerify(t, s, append([]string{"verify-attestation", "--local-image", "--type", signing.PredicateImageRelease}, append(c.cosign, layout)...)...)
			fr := fixityVerify(t, s, append([]string{"--bundle", bundle, "--artifact", layout}, c.fixity...)...)
			if (cr.Code == 0) != c.ok || (fr.Code == 0) != c.ok {
				t.Fatalf("want verified=%v: cosign exit %d, fixity exit %d\n%s\n%s", c.ok, cr.Code, fr.Code, cr.Output(), fr.Output())
			}
		})
	}
	t.Run("tampered digest", func(t *testing.T) {
		cr := cosignVerify(t, s, "verify-blob-attestation", "--bundle", bundle, "--digest", tampered, "--digestAlg", "sha256",
			"--type", signing.PredicateImageRelease, "--certificate-identity", san, "--certificate-oidc-issuer", issuer)
		fr := fixityVerify(t, s, "--bundle", bundle, "--digest", "sha256:"+tampered, "--certificate-identity", san, "--certificate-oidc-issuer", issuer)
		if cr.Code == 0 || fr.Code != 1 || !strings.Contains(fr.Stdout, "digest check failed") {
			t.Fatalf("cosign exit %d, fixity exit %d: %s", cr.Code, fr.Code, fr.Output())
		}
	})
	t.Run("slsa provenance", func(t *testing.T) {
		slsa := strings.TrimSuffix(bundle, ".sigstore.json") + ".slsa.sigstore.json"
		cr := cosignVerify(t, s, "verify-blob-attestation", "--bundle", slsa, "--digest", hexd, "--digestAlg", "sha256",
			"--type", "slsaprovenance1", "--certificate-identity", san, "--certificate-oidc-issuer", issuer)
		fr := fixityVerify(t, s, "--bundle", slsa, "--digest", digest, "--type", "slsaprovenance1", "--certificate-identity", san, "--certificate-oidc-issuer", issuer)
		if cr.Code != 0 || fr.Code != 0 {
			t.Fatalf("cosign exit %d, fixity exit %d\n%s\n%s", cr.Code, fr.Code, cr.Output(), fr.Output())
		}
	})
	t.Run("damaged bundles", func(t *testing.T) {
		good, _ := os.ReadFile(bundle)
		trunc := filepath.Join(t.TempDir(), "trunc.sigstore.json")
		_ = os.WriteFile(trunc, good[:len(good)/2], 0o644)
		var doc map[string]any
		_ = json.Unmarshal(good, &doc)
		sig := doc["dsseEnvelope"].(map[string]any)["signatures"].([]any)[0].(map[string]any)
		// Change one base64 character of the signature to another valid one (a flip that
		// made the base64 invalid would be an unusable bundle, exit 2, not a bad one).
		b := []byte(sig["sig"].(string))
		if b[20] == 'A' {
			b[20] = 'B'
		} else {
			b[20] = 'A'
		}
		sig["sig"] = string(b)
		flippedBytes, _ := json.Marshal(doc)
		flipped := filepath.Join(t.TempDir(), "flipped.sigstore.json")
		_ = os.WriteFile(flipped, flippedBytes, 0o644)
		id := []string{"--certificate-identity", san, "--certificate-oidc-issuer", issuer}
		for name, c := range map[string]struct {
			path string
			code int
			msg  string
		}{"truncated": {trunc, 2, "bundle"}, "flipped byte": {flipped, 1, "check failed"}} {
			cr := cosignVerify(t, s, append([]string{"verify-blob-attestation", "--bundle", c.path, "--digest", hexd, "--digestAlg", "sha256", "--type", signing.PredicateImageRelease}, id...)...)
			fr := fixityVerify(t, s, append([]string{"--bundle", c.path, "--digest", digest}, id...)...)
			if cr.Code == 0 || fr.Code != c.code || !strings.Contains(fr.Output(), c.msg) {
				t.Fatalf("%s: cosign exit %d, fixity exit %d (want %d, %q)\n%s", name, cr.Code, fr.Code, c.code, c.msg, fr.Output())
			}
		}
	})
}

// TestSignE2EFilesAndFaults: fixity-sign after Packer's own `file` builder (sha256 per
// file, verified by cosign against the file itself) and the `null` builder (canonical
// descriptor), then every fault: bad tokens and each Sigstore service down.
func TestSignE2EFilesAndFaults(t *testing.T) {
	s := signStack(t)
	san, issuer := s.GitHubIdentity()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	_ = os.MkdirAll(out, 0o755)

	// File artifact.
	fileBundle := filepath.Join(out, "disk.sigstore.json")
	tmpl := requiredPlugins + `
source "file" "disk" {
  content = "pretend this is a qcow2 disk image\n"
  target  = "disk.img"
}
build {
  sources = ["source.file.disk"]
` + signPP(s, fileBundle, `    image_name = "acme/disk"`) + `}
`
	if r := packerBuild(t, dir, tmpl); r.Code != 0 {
		t.Fatalf("packer build (file): %s", r.Output())
	}
	disk := filepath.Join(dir, "disk.img")
	if r := cosignVerify(t, s, "verify-blob-attestation", "--bundle", fileBundle, "--type", signing.PredicateImageRelease,
		"--certificate-identity", san, "--certificate-oidc-issuer", issuer, disk); r.Code != 0 {
		t.Fatalf("cosign on the file: %s", r.Output())
	}
	if r := fixityVerify(t, s, "--bundle", fileBundle, "--artifact", disk, "--certificate-identity", san, "--certificate-oidc-issuer", issuer); r.Code != 0 {
		t.Fatalf("fixity on the file: %s", r.Output())
	}

	// Cloud-id style artifact (null builder): the canonical descriptor digest.
	nullBundle := filepath.Join(out, "null.sigstore.json")
	nullTmpl := func(extra string, bundle string) string {
		return requiredPlugins + `
source "null" "n" {
  communicator = "none"
}
build {
  sources = ["source.null.n"]
` + signPP(s, bundle, `    image_name = "acme/ami"
`+extra) + `}
`
	}
	if r := packerBuild(t, dir, nullTmpl("", nullBundle)); r.Code != 0 {
		t.Fatalf("packer build (null): %s", r.Output())
	}
	if r := fixityVerify(t, s, "--bundle", nullBundle, "--builder-id", "fnoeding.null", "--artifact-id", "Null",
		"--certificate-identity", san, "--certificate-oidc-issuer", issuer); r.Code != 0 {
		t.Fatalf("fixity on the descriptor: %s", r.Output())
	}

	// Explicit service URLs instead of a signing config.
	explicit := filepath.Join(out, "explicit.sigstore.json")
	explicitTmpl := requiredPlugins + `
source "null" "n" {
  communicator = "none"
}
build {
  sources = ["source.null.n"]
  post-processor "fixity-sign" {
    image_name    = "acme/ami"
    trusted_root  = "` + s.TrustedRootPath + `"
    fulcio_url    = "` + s.FulcioURL + `"
    tsa_url       = "` + s.TSAURL + `"
    rekor_url     = "` + s.RekorURL + `"
    rekor_version = 2
    oidc_issuer   = "` + issuer + `"
    output        = "` + explicit + `"
  }
}
`
	if r := packerBuild(t, dir, explicitTmpl); r.Code != 0 {
		t.Fatalf("packer build (explicit URLs): %s", r.Output())
	}
	if r := fixityVerify(t, s, "--bundle", explicit, "--builder-id", "fnoeding.null", "--artifact-id", "Null",
		"--certificate-identity", san, "--certificate-oidc-issuer", issuer); r.Code != 0 {
		t.Fatalf("fixity on the explicit-URL bundle: %s", r.Output())
	}

	// Faults. Each must fail the build, say what is wrong, and write nothing.
	failDir := filepath.Join(dir, "fail")
	_ = os.MkdirAll(failDir, 0o755)
	failBundle := filepath.Join(failDir, "x.sigstore.json")
	must := func(tok string, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tokenFile := func(name string, tok string) string {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(tok), 0o600)
		return p
	}
	expired := tokenFile("expired", must(s.MintGitHubToken(devstack.GitHubToken{TokenOptions: devstack.Expired()})))
	wrongAud := tokenFile("aud", must(s.MintGitHubToken(devstack.GitHubToken{TokenOptions: devstack.TokenOptions{Audience: []string{"not-sigstore"}}})))
	otherIss := tokenFile("iss", must(s.MintGitHubToken(devstack.GitHubToken{TokenOptions: devstack.TokenOptions{Issuer: "https://token.other.invalid"}})))
	faults := []struct {
		name  string
		extra string
		stop  func() error
		want  string
	}{
		{"token expired", `    identity_token_file = "` + expired + `"`, nil, "expired"},
		{"wrong audience", `    identity_token_file = "` + wrongAud + `"`, nil, `Fulcio expects "sigstore"`},
		{"token for another issuer", `    identity_token_file = "` + otherIss + `"`, nil, "not accepted by this Fulcio"},
		{"rekor down", "", s.StopRekor, "rekor"},
		{"tsa down", "", s.StopTSA, "timestamp authority"},
		{"fulcio down", "", s.StopFulcio, "unreachable"},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			if f.stop != nil {
				if err := f.stop(); err != nil {
					t.Fatal(err)
				}
			}
			r := packerBuild(t, dir, nullTmpl(f.extra, failBundle))
			if r.Code == 0 {
				t.Fatalf("build succeeded")
			}
			if !strings.Contains(r.Output(), f.want) {
				t.Fatalf("error does not say %q:\n%s", f.want, r.Output())
			}
			for _, tok := range []string{expired, wrongAud, otherIss} {
				b, _ := os.ReadFile(tok)
				if strings.Contains(r.Output(), string(b)) {
					t.Fatal("the token was printed")
				}
			}
			noBundles(t, failDir)
		})
	}
}

// BenchmarkSigning measures, on the real local stack: sign latency split into token,
// Fulcio, TSA and Rekor (sign); bundles verified per second in one process with the
// local trusted root (verify; run with -cpu 1 for one core); and the same bundles
// verified by a loop of `cosign verify-blob-attestation` processes (cosign).
//
//	go test -tags e2e -run '^$' -bench BenchmarkSigning -benchtime 20x -cpu 1 ./e2e/
func BenchmarkSigning(b *testing.B) {
	if os.Getenv("PACKER_ACC") == "" {
		b.Skip("set PACKER_ACC=1")
	}
	for _, p := range []string{devstack.FulcioProgram, devstack.TSAProgram, devstack.RekorProgram, "cosign"} {
		if _, err := exec.LookPath(p); err != nil {
			b.Fatalf("%s not on PATH: %v", p, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	svc := githubActionsSigner(b, s)
	san, issuer := s.GitHubIdentity()
	dir := b.TempDir()
	type signed struct{ path, digest string }
	var bundles []signed
	signOne := func(i int) signing.Timings {
		d := fmt.Sprintf("sha256:%064x", i+1)
		st, err := signing.NewStatement([]signing.Subject{{Name: "bench", Digest: d}}, signing.PredicateImageRelease, signing.ImageRelease{Image: "bench", Version: fmt.Sprint(i)})
		if err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("b%04d.sigstore.json", i))
		res, err := svc.SignToFile(context.Background(), st, p)
		if err != nil {
			b.Fatal(err)
		}
		bundles = append(bundles, signed{p, d})
		return res.Timings
	}

	b.Run("sign", func(b *testing.B) {
		var sum signing.Timings
		for i := 0; i < b.N; i++ {
			t := signOne(len(bundles))
			sum.Token += t.Token
			sum.Fulcio += t.Fulcio
			sum.TSA += t.TSA
			sum.Rekor += t.Rekor
			sum.Verify += t.Verify
		}
		n := float64(b.N)
		b.ReportMetric(float64(sum.Token.Microseconds())/n/1000, "token-ms")
		b.ReportMetric(float64(sum.Fulcio.Microseconds())/n/1000, "fulcio-ms")
		b.ReportMetric(float64(sum.TSA.Microseconds())/n/1000, "tsa-ms")
		b.ReportMetric(float64(sum.Rekor.Microseconds())/n/1000, "rekor-ms")
		b.ReportMetric(float64(sum.Verify.Microseconds())/n/1000, "selfverify-ms")
	})
	for len(bundles) < 10 {
		signOne(len(bundles))
	}
	raw := make([][]byte, len(bundles))
	for i, x := range bundles {
		raw[i], _ = os.ReadFile(x.path)
	}
	b.Run("verify", func(b *testing.B) {
		v, err := signing.NewVerifier(signing.VerifyOptions{TrustedRootPath: s.TrustedRootPath,
			Identities: []signing.Identity{{Issuer: issuer, SAN: san, Extensions: map[string]string{"github_workflow_repository": "acme/images"}}}})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		cpu0 := cpuTime()
		for i := 0; i < b.N; i++ {
			j := i % len(raw)
			if _, err := v.VerifyBundle(raw[j], bundles[j].digest); err != nil {
				b.Fatal(err)
			}
		}
		// The machine is shared: CPU time says what one core does, wall time what we got.
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "bundles/s")
		b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "bundles/cpu-s")
	})
	// One Verifier shared by all cores, as `fixity verify --bundles` uses it.
	b.Run("verify-parallel", func(b *testing.B) {
		v, err := signing.NewVerifier(signing.VerifyOptions{TrustedRootPath: s.TrustedRootPath,
			Identities: []signing.Identity{{Issuer: issuer, SAN: san, Extensions: map[string]string{"github_workflow_repository": "acme/images"}}}})
		if err != nil {
			b.Fatal(err)
		}
		var next atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				j := int(next.Add(1)) % len(raw)
				if _, err := v.VerifyBundle(raw[j], bundles[j].digest); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "bundles/s")
	})
	b.Run("cosign", func(b *testing.B) {
		tuf := b.TempDir()
		var cpu time.Duration
		for i := 0; i < b.N; i++ {
			x := bundles[i%len(bundles)]
			cmd := exec.Command("cosign", "verify-blob-attestation", "--bundle", x.path, "--digest", strings.TrimPrefix(x.digest, "sha256:"),
				"--digestAlg", "sha256", "--type", signing.PredicateImageRelease, "--certificate-identity", san, "--certificate-oidc-issuer", issuer,
				"--certificate-github-workflow-repository", "acme/images", "--trusted-root", s.TrustedRootPath, "--insecure-ignore-sct")
			cmd.Env = append(os.Environ(), "TUF_ROOT="+tuf)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("cosign: %v\n%s", err, out)
			}
			cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "bundles/s")
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "bundles/cpu-s")
	})
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSignE2EPushedReferrer: fixity-oci pushes the image to a real registry on loopback
// (olareg, with the OCI 1.1 referrers API); fixity-sign pushes the bundle as a referrer;
// the real cosign finds and verifies it in the registry.
func TestSignE2EPushedReferrer(t *testing.T) {
	s := signStack(t)
	san, issuer := s.GitHubIdentity()
	addr := startRegistry(t, "olareg")
	dir := t.TempDir()
	writeFiles(t, dir, inputFiles, time.Unix(1700000000, 0))
	bundle := filepath.Join(dir, "web.sigstore.json")
	tmpl := requiredPlugins + `
source "fixity-oci" "img" {
  base              = "scratch"
  output_dir        = "layout"
  image_name        = "acme/web"
  version           = "2.0.0"
  push              = "` + addr + `/acme/web:2.0.0"
  insecure_registry = true
}

build {
  sources = ["source.fixity-oci.img"]
` + provisionFiles + signPP(s, bundle, `
    image_name        = "acme/web"
    version           = "2.0.0"
    insecure_registry = true
`) + `}
`
	r := packerBuild(t, dir, tmpl)
	if r.Code != 0 {
		t.Fatalf("packer build: %s", r.Output())
	}
	if !strings.Contains(r.Output(), "pushed referrer") {
		t.Fatalf("no referrer push in the output")
	}
	ds, err := signing.ArtifactDigests(filepath.Join(dir, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	ref := addr + "/acme/web@" + ds[0]
	good := cosignVerify(t, s, "verify-attestation", "--type", signing.PredicateImageRelease, "--allow-http-registry", "--allow-insecure-registry",
		"--certificate-identity", san, "--certificate-oidc-issuer", issuer, "--certificate-github-workflow-repository", "acme/images", ref)
	if good.Code != 0 {
		t.Fatalf("cosign verify-attestation in the registry: %s", good.Output())
	}
	bad := cosignVerify(t, s, "verify-attestation", "--type", signing.PredicateImageRelease, "--allow-http-registry", "--allow-insecure-registry",
		"--certificate-identity", san, "--certificate-oidc-issuer", issuer, "--certificate-github-workflow-repository", "evil/images", ref)
	if bad.Code == 0 {
		t.Fatal("cosign accepted the wrong repository")
	}
}

// TestSignE2ELedgerChannel: fixity-sign then fixity-release record the signed build in a
// file ledger; `fixity verify --ledger --channel` re-verifies the channel head with the
// same pins a security team uses for single bundles.
func TestSignE2ELedgerChannel(t *testing.T) {
	s := signStack(t)
	san, issuer := s.GitHubIdentity()
	dir := t.TempDir()
	ledgerDir := filepath.Join(dir, "ledger")
	bundle := filepath.Join(dir, "ami.sigstore.json")
	tmpl := requiredPlugins + `
source "null" "n" {
  communicator = "none"
}
build {
  sources = ["source.null.n"]
  post-processors {
` + signPP(s, bundle, `    image_name = "acme/ami"
    version    = "3.0.0"`) + `
    post-processor "fixity-release" {
      ledger                  = "file://` + ledgerDir + `"
      image_name              = "acme/ami"
      version                 = "3.0.0"
      channel                 = "prod"
      trusted_root            = "` + s.TrustedRootPath + `"
      certificate_identity    = "` + san + `"
      certificate_oidc_issuer = "` + issuer + `"
    }
  }
}
`
	if r := packerBuild(t, dir, tmpl); r.Code != 0 {
		t.Fatalf("packer build: %s", r.Output())
	}
	ok := fixityVerify(t, s, "--ledger", "file://"+ledgerDir, "--channel", "prod", "--certificate-identity", san,
		"--certificate-oidc-issuer", issuer, "--certificate-github-workflow-repository", "acme/images")
	if ok.Code != 0 || !strings.Contains(ok.Stdout, "acme/ami@3.0.0") {
		t.Fatalf("channel head: %s", ok.Output())
	}
	bad := fixityVerify(t, s, "--ledger", "file://"+ledgerDir, "--channel", "prod", "--certificate-identity", san,
		"--certificate-oidc-issuer", issuer, "--certificate-github-workflow-repository", "evil/images")
	if bad.Code != 1 || !strings.Contains(bad.Stdout, "identity check failed") {
		t.Fatalf("wrong repository on the channel head: %d %s", bad.Code, bad.Output())
	}
}
