//go:build e2e

package e2e

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// authzKeys are real signing keys generated for one test run.
type authzKeys struct {
	RSA, Rogue *rsa.PrivateKey
	EC         *ecdsa.PrivateKey
}

func newAuthzKeys(t *testing.T) *authzKeys {
	t.Helper()
	k := &authzKeys{}
	var err error
	if k.RSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.Rogue, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.EC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	return k
}

// jwks is the issuer's public key set, as a pinned snapshot would hold it.
func (k *authzKeys) jwks(t *testing.T) []byte {
	t.Helper()
	b, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &k.RSA.PublicKey, KeyID: "gh-rsa-1", Algorithm: "RS256", Use: "sig"},
		{Key: &k.EC.PublicKey, KeyID: "gh-ec-1", Algorithm: "ES256", Use: "sig"},
	}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func authzSign(t *testing.T, alg jose.SignatureAlgorithm, key crypto.Signer, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func authzRawToken(hdr, claims map[string]any, sig func(string) []byte) string {
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return in + "." + base64.RawURLEncoding.EncodeToString(sig(in))
}

const (
	authzAudience = "https://authz.payments.acme.internal"
	authzWorkflow = "acme/deploy-workflows/.github/workflows/deploy.yml@refs/heads/main"
	authzWfSHA    = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
)

// authzPolicy is a GitHub Actions policy in the shape of research §6.2 that passes
// lint: tenant and repository pins, protected context, pinned reusable workflow,
// a staging profile and a single_use production profile, allow and deny tests.
const authzPolicy = `
policy_version = 3

issuer "github" {
  preset             = "github-actions"
  url                = "https://token.actions.githubusercontent.com"
  audience           = "https://authz.payments.acme.internal"
  algorithms         = ["RS256", "ES256"]
  clock_skew         = "60s"
  max_token_lifetime = "10m"
  subject_format     = "immutable"
  tenant { repository_owner_id = "4242" }
  jwks {
    mode = "pinned"
    file = "keys/github-actions.jwks.json"
  }
}

identity "payments_deploy_main" {
  issuer = issuer.github
  kind   = "pipeline"
  match {
    repository_id      = "123456789"
    event_name         = ["push", "workflow_dispatch"]
    ref                = "refs/heads/main"
    runner_environment = "github-hosted"
  }
  require {
    job_workflow_ref = "acme/deploy-workflows/.github/workflows/deploy.yml@refs/heads/main"
    job_workflow_sha = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
  }
}

profile "payments_staging_deploy" {
  environment = "staging"
  permissions = ["artifact:read", "service:deploy"]
  resources   = ["svc/payments/*"]
  max_session = "15m"
}

profile "payments_prod_release" {
  environment = "production"
  permissions = ["service:release"]
  resources   = ["svc/payments/api"]
  max_session = "10m"
  single_use  = true
}

binding {
  name     = "deploy"
  identity = identity.payments_deploy_main
  profiles = [profile.payments_staging_deploy, profile.payments_prod_release]
}

test "main_push_prod_allowed" {
  claims = {
    iss = "https://token.actions.githubusercontent.com"
    aud = "https://authz.payments.acme.internal"
    sub = "repo:acme@4242/payments@123456789:ref:refs/heads/main"
    repository_id = "123456789", repository_owner_id = "4242"
    event_name = "push", runner_environment = "github-hosted", ref = "refs/heads/main"
    job_workflow_ref = "acme/deploy-workflows/.github/workflows/deploy.yml@refs/heads/main"
    job_workflow_sha = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
  }
  request { profile = profile.payments_prod_release }
  expect  = "allow"
  mutants = "auto"
}

test "main_push_staging_allowed" {
  extends = test.main_push_prod_allowed
  request {
    permission = "service:deploy"
    resource   = "svc/payments/worker"
  }
  expect  = "allow"
  mutants = "none"
}

test "pr_target_prod_denied" {
  extends = test.main_push_prod_allowed
  claims  = { event_name = "pull_request_target", sub = "repo:acme@4242/payments@123456789:pull_request" }
  expect  = "deny"
}
`

// writeAuthzPolicy writes the policy and its pinned JWKS into dir and returns the
// policy file's path.
func writeAuthzPolicy(t *testing.T, dir string, keys *authzKeys, src string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "github-actions.jwks.json"), keys.jwks(t), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "payments.fixity.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func authzClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss": "https://token.actions.githubusercontent.com", "aud": authzAudience,
		"sub": "repo:acme@4242/payments@123456789:ref:refs/heads/main",
		"jti": fmt.Sprintf("jti-%d", now.UnixNano()),
		"iat": now.Add(-20 * time.Second).Unix(), "nbf": now.Add(-20 * time.Second).Unix(),
		"exp":           now.Add(280 * time.Second).Unix(),
		"repository_id": "123456789", "repository_owner_id": "4242", "repository": "acme/payments",
		"repository_owner": "acme", "event_name": "push", "ref": "refs/heads/main", "ref_type": "branch",
		"runner_environment": "github-hosted", "job_workflow_ref": authzWorkflow, "job_workflow_sha": authzWfSHA,
		"actor": "octocat", "run_id": "42",
	}
}

// renderAuthzBundle renders the policy with the library the data source uses.
func renderAuthzBundle(t *testing.T, policyFile, out string) string {
	t.Helper()
	p, err := policy.LoadFiles(policyFile)
	if err != nil {
		t.Fatalf("load policy: %v", err)
	}
	digest, err := policy.Render(p, out, policy.RenderOptions{})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return digest
}

// TestAuthzCheckRealTokens drives the real fixity binary with tokens signed by real
// RSA and ECDSA keys, inside a network namespace without any network: the pinned key
// set must be all it needs.
func TestAuthzCheckRealTokens(t *testing.T) {
	fixity := fixityBin(t)
	unshare := tool(t, "unshare")
	if os.Geteuid() != 0 {
		t.Fatal("run as root: the test isolates fixity in a network namespace (unshare --net)")
	}
	dir := t.TempDir()
	keys := newAuthzKeys(t)
	bundle := filepath.Join(dir, "bundle")
	digest := renderAuthzBundle(t, writeAuthzPolicy(t, dir, keys, authzPolicy), bundle)
	now := time.Now()

	check := func(t *testing.T, token, perm, res string) (int, map[string]any) {
		t.Helper()
		tf := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tf, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"--net", fixity, "authz", "check", "--bundle", bundle, "--token-file", tf, "--permission", perm, "-o", "json"}
		if res != "" {
			args = append(args, "--resource", res)
		}
		r := runCmd(t, dir, nil, time.Minute, unshare, args...)
		var d map[string]any
		if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
			t.Fatalf("exit %d, output is not a JSON decision: %v\n%s", r.Code, err, r.Output())
		}
		if sig := strings.Split(token+"..", ".")[2]; len(sig) > 8 && strings.Contains(r.Output(), sig) {
			t.Fatalf("the token's signature appears in the output")
		}
		return r.Code, d
	}

	t.Run("allowed", func(t *testing.T) {
		for alg, tok := range map[string]string{
			"RS256": authzSign(t, jose.RS256, keys.RSA, "gh-rsa-1", authzClaims(now)),
			"ES256": authzSign(t, jose.ES256, keys.EC, "gh-ec-1", authzClaims(now)),
		} {
			code, d := check(t, tok, "service:deploy", "svc/payments/worker")
			if code != 0 || d["allow"] != true || d["reason"] != "allow" {
				t.Fatalf("%s: exit %d decision %v", alg, code, d)
			}
			if d["identity"] != "payments_deploy_main" || d["profile"] != "payments_staging_deploy" || d["policy_digest"] != digest {
				t.Fatalf("%s: decision %v (bundle digest %s)", alg, d, digest)
			}
		}
	})

	t.Run("single_use replay across processes is per process", func(t *testing.T) {
		tok := authzSign(t, jose.RS256, keys.RSA, "gh-rsa-1", authzClaims(now))
		if code, d := check(t, tok, "service:release", "svc/payments/api"); code != 0 || d["profile"] != "payments_prod_release" {
			t.Fatalf("exit %d decision %v", code, d)
		}
	})

	with := func(k string, v any) map[string]any { c := authzClaims(now); c[k] = v; return c }
	pub, _ := json.Marshal(jose.JSONWebKey{Key: &keys.RSA.PublicKey})
	hs256 := authzRawToken(map[string]any{"alg": "HS256", "kid": "gh-rsa-1", "typ": "JWT"}, authzClaims(now), func(in string) []byte {
		m := hmac.New(sha256.New, pub)
		m.Write([]byte(in))
		return m.Sum(nil)
	})
	bad := []struct{ name, token, reason string }{
		{"alg none", authzRawToken(map[string]any{"alg": "none", "typ": "JWT"}, authzClaims(now), func(string) []byte { return nil }), "alg_not_allowed"},
		{"HS256 with the public key", hs256, "alg_not_allowed"},
		{"unknown kid", authzSign(t, jose.RS256, keys.RSA, "gh-rsa-2", authzClaims(now)), "unknown_kid"},
		{"forged signature", authzSign(t, jose.RS256, keys.Rogue, "gh-rsa-1", authzClaims(now)), "bad_signature"},
		{"wrong iss", authzSign(t, jose.RS256, keys.RSA, "gh-rsa-1", with("iss", "https://token.actions.githubusercontent.com/")), "unknown_issuer"},
		{"wrong aud", authzSign(t, jose.RS256, keys.RSA, "gh-rsa-1", with("aud", "https://github.com/acme")), "audience_mismatch"},
		{"expired", authzSign(t, jose.ES256, keys.EC, "gh-ec-1", with("exp", now.Add(-2*time.Minute).Unix())), "token_expired"},
		{"not yet valid", authzSign(t, jose.ES256, keys.EC, "gh-ec-1", with("nbf", now.Add(5*time.Minute).Unix())), "token_not_yet_valid"},
		{"over-long lifetime", authzSign(t, jose.RS256, keys.RSA, "gh-rsa-1", with("exp", now.Add(6*time.Hour).Unix())), "token_lifetime_exceeded"},
		{"oversized", authzSign(t, jose.RS256, keys.RSA, "gh-rsa-1", with("pad", strings.Repeat("x", 20000))), "token_too_large"},
		{"garbage", "definitely-not-a-jwt", "token_malformed"},
	}
	for _, c := range bad {
		t.Run("denied/"+c.name, func(t *testing.T) {
			code, d := check(t, c.token, "service:deploy", "svc/payments/worker")
			if code != 1 || d["allow"] != false || d["reason"] != c.reason {
				t.Fatalf("exit %d reason %v (%v), want exit 1 reason %s", code, d["reason"], d["detail"], c.reason)
			}
		})
	}
	mutants := map[string]map[string]any{
		"other repository id":  {"repository_id": "987654321"},
		"other owner (tenant)": {"repository_owner_id": "31337"},
		"pull_request_target":  {"event_name": "pull_request_target", "sub": "repo:acme@4242/payments@123456789:pull_request"},
		"self-hosted runner":   {"runner_environment": "self-hosted"},
		"other workflow sha":   {"job_workflow_sha": "0000000000000000000000000000000000000000"},
		"feature branch":       {"ref": "refs/heads/feature"},
	}
	for name, m := range mutants {
		t.Run("mutant/"+name, func(t *testing.T) {
			c := authzClaims(now)
			for k, v := range m {
				c[k] = v
			}
			code, d := check(t, authzSign(t, jose.RS256, keys.RSA, "gh-rsa-1", c), "service:deploy", "svc/payments/worker")
			if code != 1 || d["allow"] != false {
				t.Fatalf("mutant: exit %d decision %v", code, d)
			}
		})
	}

	t.Run("unusable invocation exits 2", func(t *testing.T) {
		r := runCmd(t, dir, nil, time.Minute, fixity, "authz", "check", "--bundle", filepath.Join(dir, "missing"), "--token", "x", "--permission", "p")
		if r.Code != 2 {
			t.Fatalf("missing bundle: exit %d\n%s", r.Code, r.Output())
		}
		r = runCmd(t, dir, nil, time.Minute, fixity, "authz", "check", "--bundle", bundle, "--token", "x")
		if r.Code != 2 || !strings.Contains(r.Stderr, "--permission") {
			t.Fatalf("no permission: exit %d\n%s", r.Code, r.Output())
		}
	})
}

// TestAuthzServe runs `fixity authz serve` on loopback, checks the nginx and Envoy
// request shapes, then stops it with SIGTERM and expects a clean exit.
func TestAuthzServe(t *testing.T) {
	fixity := fixityBin(t)
	dir := t.TempDir()
	keys := newAuthzKeys(t)
	bundle := filepath.Join(dir, "bundle")
	digest := renderAuthzBundle(t, writeAuthzPolicy(t, dir, keys, authzPolicy), bundle)

	cmd := exec.Command(fixity, "authz", "serve", "--bundle", bundle, "--listen", "127.0.0.1:0", "--permission", "service:deploy")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { exited <- cmd.Wait() }()
	if err != nil {
		t.Fatalf("no listening line: %v\n%s", err, stderr.String())
	}
	i := strings.Index(line, "http://")
	if i < 0 || !strings.Contains(line, digest) {
		t.Fatalf("unexpected first line %q (digest %s)", line, digest)
	}
	base := strings.TrimSpace(line[i:])

	good := authzSign(t, jose.RS256, keys.RSA, "gh-rsa-1", authzClaims(time.Now()))
	get := func(method, path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, c := range []struct {
		name, method, path string
		hdr                map[string]string
		status             int
	}{
		{"health", "GET", "/healthz", nil, 200},
		{"nginx allowed", "GET", "/check", map[string]string{"Authorization": "Bearer " + good, "X-Original-URI": "/svc/payments/worker?a=1"}, 200},
		{"nginx no token", "GET", "/check", map[string]string{"X-Original-URI": "/svc/payments/worker"}, 401},
		{"nginx other resource", "GET", "/check", map[string]string{"Authorization": "Bearer " + good, "X-Original-URI": "/svc/billing/api"}, 403},
		{"envoy allowed", "POST", "/envoy/svc/payments/worker", map[string]string{"Authorization": "Bearer " + good}, 200},
		{"envoy forged", "POST", "/envoy/svc/payments/worker", map[string]string{"Authorization": "Bearer " + authzSign(t, jose.RS256, keys.Rogue, "gh-rsa-1", authzClaims(time.Now()))}, 401},
	} {
		if resp := get(c.method, c.path, c.hdr); resp.StatusCode != c.status {
			t.Errorf("%s: status %d (reason %s), want %d", c.name, resp.StatusCode, resp.Header.Get("X-Fixity-Reason"), c.status)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve did not exit cleanly on SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15s of SIGTERM")
	}
	if strings.Contains(stderr.String(), strings.Split(good, ".")[2]) {
		t.Fatal("the token leaked into the audit log")
	}
	if n := strings.Count(stderr.String(), `"reason":`); n != 5 {
		t.Errorf("%d audit records for 5 checks:\n%s", n, stderr.String())
	}
}
