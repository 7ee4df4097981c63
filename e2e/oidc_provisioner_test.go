//go:build e2e

package e2e

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// oidcTemplate fills a template's @NAME@ placeholders (HCL uses ${…} and the
// provisioner's execute_command uses {{…}}, so neither fmt nor text/template fits).
func oidcTemplate(tmpl string, vars map[string]string) string {
	pairs := []string{}
	for k, v := range vars {
		pairs = append(pairs, "@"+k+"@", v)
	}
	return requiredPlugins + strings.NewReplacer(pairs...).Replace(tmpl)
}

var digestLine = regexp.MustCompile(`FIXITY_DIGEST=(sha256:[0-9a-f]{64})`)

// buildStaticFixity builds the static linux fixity verifier from this checkout, the
// way a release would, for the provisioner's install_verifier.
// When FIXITY_BIN already is a static linux/amd64 binary (CGO_ENABLED=0) it is used
// as is, which saves a full cross-build.
func buildStaticFixity(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FIXITY_BIN"); p != "" && isStaticAMD64(p) {
		return p
	}
	out := filepath.Join(t.TempDir(), "fixity")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/fixity")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build static fixity: %v\n%s", err, b)
	}
	return out
}

// TestOIDCProvisionerSSHSudo bakes a tested policy over SSH into a real sshd as a
// non-root user who needs sudo (with a password) to write the destination, through
// Packer's null builder, then runs the installed verifier over SSH against a token
// signed with the policy's real key.
func TestOIDCProvisionerSSHSudo(t *testing.T) {
	target := startSSHD(t)
	ssh := tool(t, "ssh")
	verifierSrc := buildStaticFixity(t)
	dir := t.TempDir()
	keys := newAuthzKeys(t)
	writeAuthzPolicy(t, filepath.Join(dir, "policy"), keys, authzPolicy)

	suffix := sshRandomHex(t, 4)
	dest := "/etc/fixity-e2e-" + suffix
	stage := "/tmp/fixity-e2e-stage-" + suffix
	verifierDir := "/opt/fixity-e2e-" + suffix
	t.Cleanup(func() {
		for _, p := range []string{dest, stage, verifierDir} {
			_ = exec.Command("chmod", "-R", "u+w", p).Run()
			_ = os.RemoveAll(p)
		}
	})
	tmpl := oidcTemplate(`
data "fixity-policy" "payments" {
  files             = ["policy/payments.fixity.hcl"]
  output_dir        = "bundle"
  source_date_epoch = "1767225600"
}

source "null" "vm" {
  communicator         = "ssh"
  ssh_host             = "127.0.0.1"
  ssh_port             = @PORT@
  ssh_username         = "@USER@"
  ssh_private_key_file = "@KEY@"
  ssh_timeout          = "60s"
}

build {
  sources = ["source.null.vm"]

  provisioner "fixity-oidc" {
    source            = data.fixity-policy.payments.bundle_dir
    digest            = data.fixity-policy.payments.digest
    destination       = "@DEST@"
    staging_directory = "@STAGE@"
    execute_command   = "echo '@PASSWORD@' | sudo -S -p '' sh -c '{{ .Vars }} {{ .Path }}'"
    install_verifier  = true
    verifier_binary   = "@VERIFIER@"
    verifier_path     = "@VERIFIER_DIR@/bin/fixity"
  }

  provisioner "shell-local" {
    inline = ["echo FIXITY_DIGEST=${data.fixity-policy.payments.digest}"]
  }
}
`, map[string]string{
		"PORT": strconv.Itoa(target.Port), "USER": target.User, "KEY": target.KeyFile, "DEST": dest, "STAGE": stage,
		"PASSWORD": target.Password, "VERIFIER": verifierSrc, "VERIFIER_DIR": verifierDir,
	})
	r := packerBuild(t, dir, tmpl)
	if r.Code != 0 {
		t.Fatalf("packer build failed (exit %d)", r.Code)
	}
	m := digestLine.FindStringSubmatch(r.Output())
	if m == nil {
		t.Fatal("the data source's digest was not printed")
	}
	wantDigest := m[1]

	// Files and modes exactly as promised, owned by root (sudo did the install).
	for rel, mode := range map[string]os.FileMode{
		"": 0o555, "jwks": 0o555, "policy.json": 0o444, "manifest.json": 0o444, "jwks/github.json": 0o444,
	} {
		st, err := os.Stat(filepath.Join(dest, rel))
		if err != nil {
			t.Fatalf("%s/%s: %v", dest, rel, err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s/%s: mode %o, want %o", dest, rel, st.Mode().Perm(), mode)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 0 {
			t.Errorf("%s/%s: owner uid %d, want 0 (installed through sudo)", dest, rel, uid)
		}
	}
	got, err := policy.BundleDigest(dest)
	if err != nil {
		t.Fatalf("the installed bundle does not verify: %v", err)
	}
	if got != wantDigest {
		t.Fatalf("installed bundle digest %s, data source digest %s", got, wantDigest)
	}
	if !strings.Contains(r.Output(), "policy digest "+wantDigest) {
		t.Errorf("the provisioner did not report the verified digest")
	}
	if _, err := os.Stat(stage); !os.IsNotExist(err) {
		t.Errorf("staging directory %s left behind: %v", stage, err)
	}
	st, err := os.Stat(filepath.Join(verifierDir, "bin", "fixity"))
	if err != nil || st.Mode().Perm() != 0o555 {
		t.Fatalf("verifier: %v %v", err, st)
	}

	// The installed verifier, run by the non-root user over SSH, enforces the policy.
	sshRun := func(args ...string) result {
		base := []string{"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
			"-i", target.KeyFile, "-p", strconv.Itoa(target.Port), target.User + "@127.0.0.1"}
		return runCmd(t, dir, nil, time.Minute, ssh, append(base, strings.Join(args, " "))...)
	}
	good := authzSign(t, jose.ES256, keys.EC, "gh-ec-1", authzClaims(time.Now()))
	if r := sshRun(verifierDir+"/bin/fixity", "authz", "check", "--bundle", dest, "--token", good, "--permission", "service:deploy", "--resource", "svc/payments/worker"); r.Code != 0 {
		t.Fatalf("installed verifier denied a good token: exit %d\n%s", r.Code, r.Output())
	}
	c := authzClaims(time.Now())
	c["repository_id"] = "987654321"
	if r := sshRun(verifierDir+"/bin/fixity", "authz", "check", "--bundle", dest, "--token", authzSign(t, jose.ES256, keys.EC, "gh-ec-1", c), "--permission", "service:deploy", "--resource", "svc/payments/worker"); r.Code != 1 {
		t.Fatalf("installed verifier: other repository: exit %d, want 1\n%s", r.Code, r.Output())
	}
	// The login user cannot alter the baked policy.
	if r := sshRun("sh", "-c", "'echo x > "+dest+"/policy.json'"); r.Code == 0 {
		t.Fatal("the non-root user could overwrite the baked policy")
	}
}

// TestOIDCPolicyFindingsFailBuild: a policy with a failing test, and one with a lint
// error, each stop `packer build` at template evaluation with the finding in the output.
func TestOIDCPolicyFindingsFailBuild(t *testing.T) {
	keys := newAuthzKeys(t)
	tmpl := oidcTemplate(`
data "fixity-policy" "payments" {
  files = ["policy/payments.fixity.hcl"]
}

source "null" "none" {
  communicator = "none"
}

build {
  sources = ["source.null.none"]
  provisioner "fixity-oidc" {
    source = data.fixity-policy.payments.bundle_dir
  }
}
`, nil)

	t.Run("failing test", func(t *testing.T) {
		dir := t.TempDir()
		src := strings.Replace(authzPolicy, `claims  = { event_name = "pull_request_target", sub = "repo:acme@4242/payments@123456789:pull_request" }
  expect  = "deny"`, `claims  = { event_name = "pull_request_target", sub = "repo:acme@4242/payments@123456789:pull_request" }
  expect  = "allow"`, 1)
		if src == authzPolicy {
			t.Fatal("test fixture did not change")
		}
		writeAuthzPolicy(t, filepath.Join(dir, "policy"), keys, src)
		r := packerBuild(t, dir, tmpl)
		if r.Code == 0 {
			t.Fatal("packer build passed with a failing policy test")
		}
		if !strings.Contains(r.Output(), "pr_target_prod_denied") {
			t.Fatalf("the failing test is not named in the output")
		}
	})

	t.Run("lint error", func(t *testing.T) {
		dir := t.TempDir()
		// Drop the repository pin: every repository of the owner could deploy (L03).
		src := strings.Replace(authzPolicy, `    repository_id      = "123456789"
`, "", 1)
		if src == authzPolicy {
			t.Fatal("lint fixture did not change")
		}
		writeAuthzPolicy(t, filepath.Join(dir, "policy"), keys, src)
		r := packerBuild(t, dir, tmpl)
		if r.Code == 0 {
			t.Fatal("packer build passed with a lint error")
		}
		if !strings.Contains(r.Output(), "L03") || !strings.Contains(r.Output(), "payments.fixity.hcl:") {
			t.Fatalf("the lint finding (rule and file:line) is not in the output")
		}
	})
}

func isStaticAMD64(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return false
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// TestOIDCProvisionerOCI bakes the tested bundle and the static verifier into a
// reproducible fixity-oci image (no commands run), then unpacks the image with umoci,
// checks files, modes and digest, and runs the unpacked verifier on the unpacked
// bundle.
func TestOIDCProvisionerOCI(t *testing.T) {
	tool(t, "umoci")
	verifier := buildStaticFixity(t)
	dir := t.TempDir()
	keys := newAuthzKeys(t)
	writeAuthzPolicy(t, filepath.Join(dir, "policy"), keys, authzPolicy)
	tpl := ociTemplate(`
  base              = "scratch"
  output_dir        = "out"
  image_name        = "payments"
  version           = "1.0.0"
  source_date_epoch = "1767225600"
`, strings.NewReplacer("@VERIFIER@", verifier).Replace(`
  provisioner "fixity-oidc" {
    source           = data.fixity-policy.payments.bundle_dir
    digest           = data.fixity-policy.payments.digest
    install_verifier = true
    verifier_binary  = "@VERIFIER@"
  }
  provisioner "shell-local" {
    inline = ["echo FIXITY_DIGEST=${data.fixity-policy.payments.digest}"]
  }
`)) + `
data "fixity-policy" "payments" {
  files             = ["policy/payments.fixity.hcl"]
  source_date_epoch = "1767225600"
}
`
	r := packerBuild(t, dir, tpl)
	if r.Code != 0 {
		t.Fatalf("packer build failed (exit %d)", r.Code)
	}
	m := digestLine.FindStringSubmatch(r.Output())
	if m == nil {
		t.Fatal("the data source's digest was not printed")
	}
	rootfs := umociUnpack(t, filepath.Join(dir, "out"), "1.0.0")
	t.Cleanup(func() { _ = exec.Command("chmod", "-R", "u+w", rootfs).Run() })
	for rel, mode := range map[string]os.FileMode{
		"etc/fixity": 0o555, "etc/fixity/jwks": 0o555, "etc/fixity/policy.json": 0o444,
		"etc/fixity/manifest.json": 0o444, "etc/fixity/jwks/github.json": 0o444, "usr/local/bin/fixity": 0o555,
	} {
		st, err := os.Stat(filepath.Join(rootfs, rel))
		if err != nil {
			t.Fatalf("/%s missing from the image: %v", rel, err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("/%s: mode %o in the image, want %o", rel, st.Mode().Perm(), mode)
		}
	}
	got, err := policy.BundleDigest(filepath.Join(rootfs, "etc", "fixity"))
	if err != nil || got != m[1] {
		t.Fatalf("bundle in the image: digest %s (%v), data source %s", got, err, m[1])
	}
	good := authzSign(t, jose.RS256, keys.RSA, "gh-rsa-1", authzClaims(time.Now()))
	res := runCmd(t, dir, nil, time.Minute, filepath.Join(rootfs, "usr", "local", "bin", "fixity"),
		"authz", "check", "--bundle", filepath.Join(rootfs, "etc", "fixity"), "--token", good,
		"--permission", "service:deploy", "--resource", "svc/payments/worker", "-o", "json")
	if res.Code != 0 || !strings.Contains(res.Stdout, m[1]) {
		t.Fatalf("the image's verifier on the image's bundle: exit %d\n%s", res.Code, res.Output())
	}
}
