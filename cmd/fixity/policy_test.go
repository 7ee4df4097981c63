package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	goodPolicy    = "../../example/policy/github-actions.fixity.hcl"
	gitlabPolicy  = "../../example/policy/gitlab-ci.fixity.hcl"
	badLint       = "../../example/policy/bad/wildcard-owner.fixity.hcl"
	badTest       = "../../example/policy/bad/failing-test.fixity.hcl"
	badUnparsable = "../../example/policy/bad/unparsable.fixity.hcl"
)

func policyRun(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPolicyLintExitCodesAndJSON(t *testing.T) {
	for _, tc := range []struct {
		file string
		code int
	}{{goodPolicy, exitOK}, {gitlabPolicy, exitOK}, {badLint, exitNegative}, {badTest, exitNegative}, {badUnparsable, exitUsage}} {
		code, out, errs := policyRun("policy", "lint", tc.file, "-o", "json")
		if code != tc.code {
			t.Fatalf("lint %s: exit %d, want %d\n%s%s", tc.file, code, tc.code, out, errs)
		}
		if code == exitUsage {
			if !strings.Contains(errs, "unparsable.fixity.hcl:5:3: Unsupported argument") {
				t.Fatalf("load error lacks file:line:col: %s", errs)
			}
			continue
		}
		var doc struct {
			Findings []map[string]any `json:"findings"`
		}
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil || doc.Findings == nil {
			t.Fatalf("lint -o json output %q: %v", out, err)
		}
		for _, f := range doc.Findings {
			for _, k := range []string{"rule", "severity", "file", "line", "message", "fix"} {
				if _, ok := f[k]; !ok || len(f) != 6 {
					t.Fatalf("finding %v lacks %s (or has extra keys)", f, k)
				}
			}
		}
		if tc.code == exitNegative && len(doc.Findings) == 0 {
			t.Fatalf("%s: exit 1 without findings", tc.file)
		}
	}
}

func TestPolicyLintFailOnWarning(t *testing.T) {
	dir := t.TempDir()
	src, _ := os.ReadFile(goodPolicy)
	// pinned mode without refresh is an L14 warning.
	s := strings.Replace(string(src), `mode                 = "pinned+refresh"`, `mode                 = "pinned"`, 1)
	s = strings.Replace(s, `file                 = "keys/github-actions.jwks.json"`, `file                 = "`+filepath.Join(mustAbs(t, "../../example/policy"), "keys/github-actions.jwks.json")+`"`, 1)
	f := filepath.Join(dir, "w.fixity.hcl")
	os.WriteFile(f, []byte(s), 0o644)
	if code, out, errs := policyRun("policy", "lint", f); code != exitOK || !strings.Contains(out, "warning L14") {
		t.Fatalf("warnings only: exit %d\n%s%s", code, out, errs)
	}
	if code, _, _ := policyRun("policy", "lint", "--fail-on", "warning", f); code != exitNegative {
		t.Fatalf("--fail-on warning: exit %d", code)
	}
	if code, _, _ := policyRun("policy", "lint", "--fail-on", "panic", f); code != exitUsage {
		t.Fatalf("bad --fail-on: exit %d", code)
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestPolicyTestOutput(t *testing.T) {
	code, out, _ := policyRun("policy", "test", "-v", goodPolicy)
	if code != exitOK || !strings.Contains(out, "--- PASS: prod_env_allowed/mutant:pull_request:pull_request_target") || !strings.HasSuffix(out, "5 tests, 32 mutants\n") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	code, out, _ = policyRun("policy", "test", badTest)
	if code != exitNegative || !strings.Contains(out, "--- FAIL: feature_branch_denied (") || !strings.Contains(out, "expected allow, got deny: no_identity") ||
		!strings.Contains(out, "--- FAIL: main_allowed/mutant:self_hosted_runner") || strings.Contains(out, "--- PASS") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if code, _, _ := policyRun("policy", "test", badUnparsable); code != exitUsage {
		t.Fatalf("unparsable: exit %d", code)
	}
}

func TestPolicyRenderDeterministic(t *testing.T) {
	d1, d2 := filepath.Join(t.TempDir(), "b"), filepath.Join(t.TempDir(), "b")
	code, out1, errs := policyRun("policy", "render", goodPolicy, "-o", d1, "--source-date-epoch", "1700000000")
	if code != exitOK {
		t.Fatalf("render: %d %s", code, errs)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	code, out2, _ := policyRun("policy", "render", "--json", "-o", d2, goodPolicy)
	if code != exitOK {
		t.Fatalf("render 2: %d", code)
	}
	var j struct{ Digest, Dir string }
	json.Unmarshal([]byte(out2), &j)
	if !strings.HasPrefix(out1, j.Digest+"  ") || j.Dir != d2 {
		t.Fatalf("digests differ: %q vs %+v", out1, j)
	}
	for _, f := range []string{"policy.json", "manifest.json", "jwks/github.json"} {
		a, _ := os.ReadFile(filepath.Join(d1, f))
		b, _ := os.ReadFile(filepath.Join(d2, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Fatalf("%s differs", f)
		}
	}
	if code, _, errs := policyRun("policy", "render", badLint, "-o", filepath.Join(t.TempDir(), "x")); code != exitNegative || !strings.Contains(errs, "L06") {
		t.Fatalf("render of a failing policy: %d %s", code, errs)
	}
	if code, _, _ := policyRun("policy", "render", goodPolicy); code != exitUsage {
		t.Fatal("render without -o must be a usage error")
	}
}

func TestPolicyExplain(t *testing.T) {
	claims := `{"iss":"https://token.actions.githubusercontent.com","aud":"https://authz.payments.acme.internal",
	"sub":"repo:acme@4242/payments@123456789:environment:production","repository_id":"123456789","repository_owner_id":"4242",
	"event_name":"push","runner_environment":"github-hosted","environment":"production",
	"job_workflow_ref":"acme/deploy-workflows/.github/workflows/deploy.yml@refs/heads/main",
	"job_workflow_sha":"9f3182061f1e2cca4702c368cbc039b7dc9d4485"}`
	f := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(f, []byte(claims), 0o644)
	code, out, errs := policyRun("policy", "explain", goodPolicy, "--claims", f, "--permission", "service:deploy", "--resource", "svc/payments/api")
	if code != exitOK || !strings.Contains(out, "ALLOW identity=payments_production binding=production_env_to_prod profile=payments_prod_deploy") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	pr := strings.Replace(claims, `"event_name":"push"`, `"event_name":"pull_request_target"`, 1)
	os.WriteFile(f, []byte(pr), 0o644)
	code, out, _ = policyRun("policy", "explain", goodPolicy, "--claims", f, "--profile", "payments_prod_deploy", "-o", "json")
	var doc struct {
		Decision struct {
			Allow  bool
			Reason string
		}
		Trace []struct {
			Step, Detail string
			OK           bool
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != exitNegative || doc.Decision.Reason != "no_identity" || len(doc.Trace) < 5 {
		t.Fatalf("exit %d %v\n%s", code, err, out)
	}
	if code, _, _ := policyRun("policy", "explain", goodPolicy, "--claims", f); code != exitUsage {
		t.Fatal("explain without a question must be a usage error")
	}
}
