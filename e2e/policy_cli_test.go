//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPolicyCLI drives the real fixity binary over the example policies: lint exit
// codes and JSON shape, go-test style test output, byte-identical renders from two
// folders, and a tampered bundle refused by the runtime loader (authz check exit 2).
func TestPolicyCLI(t *testing.T) {
	fx := fixityBin(t)
	ex, err := filepath.Abs(filepath.Join("..", "example", "policy"))
	if err != nil {
		t.Fatal(err)
	}
	good := []string{filepath.Join(ex, "github-actions.fixity.hcl"), filepath.Join(ex, "gitlab-ci.fixity.hcl")}
	run := func(args ...string) result { return runCmd(t, t.TempDir(), nil, 2*time.Minute, fx, args...) }

	t.Run("lint", func(t *testing.T) {
		for _, c := range []struct {
			file string
			code int
			want string
		}{
			{good[0], 0, ""}, {good[1], 0, ""},
			{filepath.Join(ex, "bad", "wildcard-owner.fixity.hcl"), 1, "L05"},
			{filepath.Join(ex, "bad", "failing-test.fixity.hcl"), 1, "L12"},
			{filepath.Join(ex, "bad", "unparsable.fixity.hcl"), 2, ""},
		} {
			r := run("policy", "lint", "-o", "json", c.file)
			if r.Code != c.code {
				t.Fatalf("lint %s: exit %d, want %d\n%s", c.file, r.Code, c.code, r.Output())
			}
			if c.code == 2 {
				if !strings.Contains(r.Stderr, "unparsable.fixity.hcl:5:3:") {
					t.Fatalf("load error without file:line:col:\n%s", r.Stderr)
				}
				continue
			}
			var doc map[string][]map[string]any
			if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil || len(doc) != 1 || doc["findings"] == nil {
				t.Fatalf("lint -o json: %v\n%s", err, r.Stdout)
			}
			seen := false
			for _, f := range doc["findings"] {
				if len(f) != 6 || f["rule"] == nil || f["severity"] == nil || f["file"] == nil || f["line"] == nil || f["message"] == nil || f["fix"] == nil {
					t.Fatalf("finding shape: %v", f)
				}
				if f["rule"] == c.want {
					seen = true
				}
			}
			if c.want != "" && !seen {
				t.Fatalf("%s: no %s finding in %s", c.file, c.want, r.Stdout)
			}
		}
		// Several files form one policy.
		if r := run(append([]string{"policy", "lint"}, good...)...); r.Code != 0 {
			t.Fatalf("two good files together: %d\n%s", r.Code, r.Output())
		}
	})

	t.Run("test", func(t *testing.T) {
		r := run("policy", "test", "-v", good[0])
		if r.Code != 0 || !strings.Contains(r.Stdout, "--- PASS: prod_env_allowed/mutant:expired (deny: token_expired)") || !strings.Contains(r.Stdout, "\nPASS\n") {
			t.Fatalf("exit %d\n%s", r.Code, r.Output())
		}
		r = run("policy", "test", filepath.Join(ex, "bad", "failing-test.fixity.hcl"))
		if r.Code != 1 || !strings.Contains(r.Stdout, "--- FAIL: main_allowed/mutant:pull_request:pull_request_target") || !strings.Contains(r.Stdout, "\nFAIL\n") {
			t.Fatalf("exit %d\n%s", r.Code, r.Output())
		}
	})

	t.Run("render", func(t *testing.T) {
		// Copy the policy elsewhere: the bundle must not depend on the folder.
		other := t.TempDir()
		for _, f := range []string{"github-actions.fixity.hcl", "keys/github-actions.jwks.json"} {
			b, err := os.ReadFile(filepath.Join(ex, f))
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(other, filepath.Dir(f)), 0o755)
			os.WriteFile(filepath.Join(other, f), b, 0o644)
		}
		d1, d2 := filepath.Join(t.TempDir(), "bundle"), filepath.Join(t.TempDir(), "bundle")
		r1 := run("policy", "render", good[0], "-o", d1, "--source-date-epoch", "1700000000")
		r2 := runCmd(t, other, []string{"SOURCE_DATE_EPOCH=1700000000"}, time.Minute, fx, "policy", "render", "github-actions.fixity.hcl", "-o", d2, "--json")
		if r1.Code != 0 || r2.Code != 0 {
			t.Fatalf("render: %s\n%s", r1.Output(), r2.Output())
		}
		var j struct{ Digest string }
		json.Unmarshal([]byte(r2.Stdout), &j)
		digest := strings.Fields(r1.Stdout)[0]
		if j.Digest != digest {
			t.Fatalf("digests differ: %s vs %s", digest, j.Digest)
		}
		for _, f := range []string{"policy.json", "manifest.json", "jwks/github.json"} {
			a, _ := os.ReadFile(filepath.Join(d1, f))
			b, _ := os.ReadFile(filepath.Join(d2, f))
			if len(a) == 0 || !bytes.Equal(a, b) {
				t.Fatalf("%s is not byte-identical", f)
			}
		}
		m, _ := os.ReadFile(filepath.Join(d1, "manifest.json"))
		sum := sha256.Sum256(m)
		if digest != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Fatalf("digest %s is not sha256(manifest.json)", digest)
		}
		// The runtime refuses a modified bundle (unusable bundle: exit 2), before any token.
		p := filepath.Join(d1, "policy.json")
		b, _ := os.ReadFile(p)
		os.WriteFile(p, bytes.Replace(b, []byte(`"123456789"`), []byte(`"123456780"`), 1), 0o644)
		tok := filepath.Join(t.TempDir(), "token")
		os.WriteFile(tok, []byte("a.b.c"), 0o600)
		if r := run("authz", "check", "--bundle", d1, "--token-file", tok, "--permission", "service:deploy"); r.Code != 2 {
			t.Fatalf("tampered bundle: authz check exit %d, want 2\n%s", r.Code, r.Output())
		}
	})

	t.Run("explain", func(t *testing.T) {
		claims := map[string]any{
			"iss": "https://token.actions.githubusercontent.com", "aud": "https://authz.payments.acme.internal",
			"sub": "repo:acme@4242/payments@123456789:pull_request", "repository_id": "123456789", "repository_owner_id": "4242",
			"event_name": "pull_request_target", "runner_environment": "github-hosted", "environment": "production",
			"job_workflow_ref": "acme/deploy-workflows/.github/workflows/deploy.yml@refs/heads/main",
			"job_workflow_sha": "9f3182061f1e2cca4702c368cbc039b7dc9d4485",
		}
		f := filepath.Join(t.TempDir(), "claims.json")
		b, _ := json.Marshal(claims)
		os.WriteFile(f, b, 0o644)
		r := run("policy", "explain", good[0], "--claims", f, "--profile", "payments_prod_deploy")
		if r.Code != 1 || !strings.Contains(r.Stdout, `claim "event_name" is "pull_request_target"`) || !strings.Contains(r.Stdout, "DENY no_identity") {
			t.Fatalf("exit %d\n%s", r.Code, r.Output())
		}
		claims["event_name"] = "push"
		claims["sub"] = "repo:acme@4242/payments@123456789:environment:production"
		b, _ = json.Marshal(claims)
		os.WriteFile(f, b, 0o644)
		r = run("policy", "explain", good[0], "--claims", f, "--permission", "service:deploy", "--resource", "svc/payments/api", "-o", "json")
		var doc struct {
			Decision struct {
				Allow             bool
				Identity, Profile string
			}
		}
		if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil || r.Code != 0 || !doc.Decision.Allow || doc.Decision.Profile != "payments_prod_deploy" {
			t.Fatalf("exit %d %v\n%s", r.Code, err, r.Output())
		}
	})
}
