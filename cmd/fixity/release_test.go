package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/ledgertest"
)

func releaseRun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var so, se bytes.Buffer
	code := run(args, &so, &se)
	return so.String(), se.String(), code
}

// TestReleaseAndRolloutVerbs drives the demo flow through the CLI entry point:
// record, promote staging then prod, plan, revoke, plan again, tamper, verify.
func TestReleaseAndRolloutVerbs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	L := "file://" + dir
	inv := "aws:" + filepath.Join("..", "..", "example", "release", "instances.json")
	d1, d2 := ledgertest.Digest("v1"), ledgertest.Digest("v2")
	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"release", "record", "--ledger", L, "--name", "web", "--version", "1.0.0", "--image", d1}, exitUsage, "--allow-unsigned"},
		{[]string{"release", "record", "--ledger", L, "--name", "web", "--version", "1.0.0", "--image", d1, "--allow-unsigned", "--artifact", "aws:us-east-1:ami-0f1x0000000000001"}, exitOK, "event 1: recorded web@1.0.0"},
		{[]string{"release", "record", "--ledger", L, "--name", "web", "--version", "1.1.0", "--image", d2, "--allow-unsigned", "--artifact", "aws:us-east-1:ami-0f1x0000000000002", "--artifact", "bad"}, exitUsage, "PROVIDER:REGION:ID"},
		{[]string{"release", "record", "--ledger", L, "--name", "web", "--version", "1.1.0", "--image", d2, "--allow-unsigned", "--artifact", "aws:us-east-1:ami-0f1x0000000000002", "--channel", "staging"}, exitOK, "promoted"},
		{[]string{"release", "promote", "--ledger", L, "web@1.1.0", "--channel", "prod", "--requires", "staging"}, exitOK, "event 4: promoted"},
		{[]string{"release", "promote", "--ledger", L, "web@1.0.0", "--channel", "prod"}, exitNegative, "requires staging"},
		{[]string{"rollout", "plan", "--ledger", L, "--channel", "prod", "--inventory", inv, "-o", "json"}, exitReplaceNow, `"replace_now"`},
		{[]string{"rollout", "plan", "--ledger", L, "--channel", "prod", "--inventory", "yaml:x"}, exitUsage, `unknown format "yaml"`},
		{[]string{"rollout", "plan", "--ledger", L, "--channel", "nope", "--inventory", inv}, exitUsage, "known: prod, staging"},
		{[]string{"release", "revoke", "--ledger", L, "web@1.1.0", "--reason", "CVE"}, exitNegative, "--rollback"},
		{[]string{"release", "revoke", "--ledger", L, "web@1.1.0", "--reason", "CVE", "--empty"}, exitOK, "now empty"},
		{[]string{"release", "show", "--ledger", L, "--channel", "prod"}, exitNegative, "is empty"},
		{[]string{"release", "show", "--ledger", L, "web@1.1.0", "-o", "json"}, exitOK, `"reason": "CVE"`},
		{[]string{"release", "list", "--ledger", L}, exitOK, "REVOKED: CVE"},
		{[]string{"release", "verify-chain", "--ledger", L, "-o", "json"}, exitOK, `"valid": true`},
		{[]string{"release", "list"}, exitUsage, "--ledger is required"},
		{[]string{"release", "list", "--ledger", "s3://x"}, exitUsage, "unknown scheme"},
	}
	for _, s := range steps {
		so, se, code := releaseRun(t, s.args...)
		if code != s.code || !strings.Contains(so+se, s.want) {
			t.Fatalf("fixity %s: exit %d (want %d), output does not contain %q:\n%s%s", strings.Join(s.args, " "), code, s.code, s.want, so, se)
		}
	}
	so, _, _ := releaseRun(t, "rollout", "plan", "--ledger", L, "--channel", "staging", "--inventory", inv, "-o", "json")
	var plan struct {
		Channel    string
		ReplaceNow []struct{ ID, Reason string } `json:"replace_now"`
		Batches    [][]string
	}
	if err := json.Unmarshal([]byte(so), &plan); err != nil || plan.Channel != "staging" || len(plan.ReplaceNow) == 0 {
		t.Fatalf("plan JSON: %v %s", err, so)
	}

	// Tampering: every read verb refuses the ledger.
	b, _ := os.ReadFile(filepath.Join(dir, "events.log"))
	os.WriteFile(filepath.Join(dir, "events.log"), bytes.Replace(b, []byte(`"1.0.0"`), []byte(`"1.0.1"`), 1), 0o644)
	for _, args := range [][]string{
		{"release", "verify-chain", "--ledger", L},
		{"release", "list", "--ledger", L},
		{"release", "show", "--ledger", L, "web@1.1.0"},
		{"rollout", "plan", "--ledger", L, "--channel", "prod", "--inventory", inv},
		{"release", "promote", "--ledger", L, "web@1.0.0", "--channel", "staging"},
	} {
		_, se, code := releaseRun(t, args...)
		if code != exitNegative || !strings.Contains(se, "chain broken at event 2") {
			t.Fatalf("fixity %s on a tampered ledger: exit %d: %s", strings.Join(args, " "), code, se)
		}
	}
}
