package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type edit struct{ old, new string } // old == "" appends new

func variant(t *testing.T, edits ...edit) *Policy {
	t.Helper()
	src, err := os.ReadFile("testdata/lint/base.fixity.hcl")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, e := range edits {
		if e.old == "" {
			s += "\n" + e.new + "\n"
			continue
		}
		if !strings.Contains(s, e.old) {
			t.Fatalf("fixture edit: %q not in base policy", e.old)
		}
		s = strings.Replace(s, e.old, e.new, 1)
	}
	p, err := LoadSource(filepath.Join("testdata", "lint", "variant.fixity.hcl"), []byte(s), filepath.Join("testdata", "lint"))
	if err != nil {
		t.Fatalf("variant does not load: %v", err)
	}
	return p
}

func rulesOf(fs []Finding) map[string][]Finding {
	m := map[string][]Finding{}
	for _, f := range fs {
		m[f.Rule] = append(m[f.Rule], f)
	}
	return m
}

func TestBasePolicyIsLintClean(t *testing.T) {
	p := variant(t)
	if fs := Lint(p, LintOptions{}); len(fs) != 0 {
		t.Fatalf("base policy has findings: %v", fs)
	}
}

// Each rule has a positive fixture (the rule must fire, as an error unless noted) and a
// negative one (a near miss the rule must accept).
var lintCases = []struct {
	rule     string
	severity string
	bad      []edit
	good     []edit
}{
	{"L01", SeverityError,
		[]edit{{`url                = "https://token.actions.githubusercontent.com"`, `url                = "https://token.actions.githubusercontent.com/"`}},
		[]edit{{`url                = "https://login.acme.example/oauth2/default"`, `url                = "https://login.acme.example/oauth2/default/"`}}},
	{"L01", SeverityError,
		[]edit{{`url                = "https://login.acme.example/oauth2/default"`, `url                = "http://login.acme.example/oauth2/default"`}}, nil},
	{"L02", SeverityError,
		[]edit{{`tenant { repository_owner_id = "4242" }`, ``}},
		[]edit{{`tenant { repository_owner_id = "4242" }`, ``}, {`url                = "https://token.actions.githubusercontent.com"`, `url                = "https://token.actions.githubusercontent.com/acme-enterprise"`}}},
	{"L03", SeverityError,
		[]edit{{"    project_id    = \"1001\"\n", ""}},
		[]edit{{"    project_id    = \"1001\"\n", "    project_id    = [\"1001\"]\n"}}},
	{"L04", SeverityError,
		[]edit{{`condition = "claims.email_verified == true"`, `condition = "claims.email_verified == true || true"`}},
		[]edit{{`condition = "claims.email_verified == true"`, `condition = "claims.email_verified == true || claims.sub == 'x'"`}}},
	{"L04", SeverityError,
		[]edit{{"", `identity "globbed" {
  issuer = issuer.gitlab
  match_glob {
    project_id = "1001"
    ref        = "*"
  }
}`}}, nil},
	{"L05", SeverityError,
		[]edit{{"", `identity "rel" {
  issuer = issuer.gitlab
  match_glob {
    project_id = "1001"
    ref        = "release-*"
  }
}`}},
		[]edit{{"", `identity "rel" {
  issuer = issuer.gitlab
  match_glob {
    project_id = "1001"
    ref        = "release/*"
  }
}`}}},
	{"L05", SeverityError,
		[]edit{{"", `identity "owner" {
  issuer = issuer.github
  match_glob {
    repository_id = "5"
    sub           = "repo:acme*/x:ref:refs/heads/main"
  }
}`}}, nil},
	{"L06", SeverityError,
		[]edit{{`audience           = "https://authz.test.internal"`, `audience           = "https://github.com/acme"`}},
		[]edit{{`audience           = "https://authz.test.internal"`, `audience           = "https://github.acme.internal/authz"`}}},
	{"L07", SeverityError,
		[]edit{{`    repository_id      = "123456789"`, `    repository         = "acme/payments"`}},
		[]edit{{`    repository_id      = "123456789"`, "    repository_id      = \"123456789\"\n    repository         = \"acme/payments\""}}},
	{"L07", SeverityError, // sub does not follow the declared immutable format
		[]edit{{`    environment        = "production"`, "    environment        = \"production\"\n    sub                = \"repo:acme/payments:environment:production\""}},
		[]edit{{`    environment        = "production"`, "    environment        = \"production\"\n    sub                = \"repo:acme@4242/payments@123456789:environment:production\""}}},
	{"L08", SeverityError,
		[]edit{{`    event_name       = ["push", "workflow_dispatch"]`, ``}},
		[]edit{{`    event_name       = ["push", "workflow_dispatch"]`, `    event_name       = ["push"]`}}},
	{"L08", SeverityError,
		[]edit{{`    event_name       = ["push", "workflow_dispatch"]`, `    event_name       = ["push", "pull_request_target"]`}}, nil},
	{"L09", SeverityError,
		[]edit{{`    job_workflow_sha = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"`, ``}},
		[]edit{{`    job_workflow_sha = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"`, ``},
			{`deploy.yml@refs/heads/main"`, `deploy.yml@9f3182061f1e2cca4702c368cbc039b7dc9d4485"`}}},
	{"L10", SeverityError,
		[]edit{{`    repository_id      = "123456789"`, `    repository_id      = ["123456789", "555"]`}},
		[]edit{{`    project_id    = "1001"`, `    project_id    = ["1001", "1002"]`}}},
	{"L11", SeverityError,
		[]edit{{`permissions = ["service:deploy"]
  resources   = ["svc/api"]`, `permissions = ["*"]
  resources   = ["svc/api"]`}},
		[]edit{{`permissions = ["service:deploy"]
  resources   = ["svc/api"]`, `permissions = ["service:deploy", "service:restart"]
  resources   = ["svc/api"]`}}},
	{"L11", SeverityError,
		[]edit{{`max_session = "10m"`, `max_session = "45m"`}}, nil},
	{"L12", SeverityError,
		[]edit{{"", `binding {
  name     = "untested"
  identity = identity.gl_stage
  profiles = [profile.ops_read]
}`}},
		[]edit{{"", `binding {
  name     = "tested"
  identity = identity.gl_stage
  profiles = [profile.ops_read]
}
test "gl_read_allowed" {
  extends = test.gl_main_allowed
  request { permission = "artifact:read" }
  expect  = "allow"
}
test "gl_feature_read_denied" {
  extends = test.gl_feature_denied
  request { permission = "artifact:read" }
  expect  = "deny"
}`}}},
	{"L12", SeverityError, // a failing test is an L12 error
		[]edit{{`  claims  = { event_name = "pull_request_target" }
  expect  = "deny"`, `  claims  = { event_name = "pull_request_target" }
  expect  = "allow"`}}, nil},
	{"L13", SeverityWarning,
		[]edit{{"", `profile "stage_other" {
  environment = "staging"
  permissions = ["service:restart"]
  resources   = ["svc/*"]
  max_session = "15m"
}
binding {
  name     = "gl_other"
  identity = identity.gl_stage
  profiles = [profile.stage_other]
}`}},
		[]edit{{"", `profile "stage_other" {
  environment = "qa"
  permissions = ["service:restart"]
  resources   = ["svc/*"]
  max_session = "15m"
}
binding {
  name     = "gl_other"
  identity = identity.gl_stage
  profiles = [profile.stage_other]
}`}}},
	{"L14", SeverityError,
		[]edit{{`  jwks {
    mode                 = "pinned+refresh"
    file                 = "../keys/rsa.jwks.json"
    min_refresh_interval = "5m"
  }
}

identity "gh_prod"`, `  jwks { mode = "remote" }
}

identity "gh_prod"`}},
		[]edit{{`  jwks {
    mode                 = "pinned+refresh"
    file                 = "../keys/rsa.jwks.json"
    min_refresh_interval = "5m"
  }
}

identity "gh_prod"`, `  jwks {
    mode                 = "remote"
    min_refresh_interval = "1m"
  }
}

identity "gh_prod"`}}},
	{"L14", SeverityError, // key alg outside the issuer's algorithms
		[]edit{{`  algorithms         = ["RS256"]
  clock_skew         = "30s"`, `  algorithms         = ["ES256"]
  clock_skew         = "30s"`}}, nil},
	{"L15", SeverityError,
		[]edit{{`clock_skew         = "30s"`, `clock_skew         = "10m"`}},
		[]edit{{`clock_skew         = "30s"`, `clock_skew         = "120s"`}}},
	{"L16", SeverityError,
		[]edit{{`    ref           = "main"`, `    ref           = "refs/heads/main"`}},
		[]edit{{`    ref           = "main"`, `    ref_path      = "refs/heads/main"`}}},
	{"L16", SeverityError,
		[]edit{{`    repository_id      = "123456789"`, "    repository_id      = \"123456789\"\n    repo_name          = \"x\""}}, nil},
	{"L17", SeverityError,
		[]edit{{`condition = "claims.email_verified == true"`, `condition = "!(claims.email in ['mallory@acme.example'])"`}},
		[]edit{{`condition = "claims.email_verified == true"`, `condition = "claims.email_verified == true && !(claims.email in ['mallory@acme.example'])"`}}},
	{"L17", SeverityError,
		[]edit{{`condition = "claims.email_verified == true"`, `condition = "size(claims.groups)"`}}, nil},
}

func TestLintRules(t *testing.T) {
	covered := map[string]bool{}
	for i, tc := range lintCases {
		t.Run(tc.rule+"/"+string(rune('a'+i%26)), func(t *testing.T) {
			covered[tc.rule] = true
			bad := rulesOf(Lint(variant(t, tc.bad...), LintOptions{}))[tc.rule]
			if len(bad) == 0 {
				t.Fatalf("%s did not fire on its positive fixture", tc.rule)
			}
			sevOK := false
			for _, f := range bad {
				if f.Severity == tc.severity {
					sevOK = true
				}
				if f.File == "" || f.Line <= 0 || f.Message == "" || f.Fix == "" {
					t.Errorf("finding lacks file/line/message/fix: %+v", f)
				}
				if strings.Contains(f.Fix, "\n") {
					t.Errorf("fix is not one line: %q", f.Fix)
				}
			}
			if !sevOK {
				t.Errorf("%s findings %v: want severity %s", tc.rule, bad, tc.severity)
			}
			if tc.good != nil {
				if good := rulesOf(Lint(variant(t, tc.good...), LintOptions{}))[tc.rule]; len(good) != 0 {
					t.Fatalf("%s fired on its negative fixture: %v", tc.rule, good)
				}
			}
		})
	}
	for _, r := range Rules() {
		if !covered[r.ID] {
			t.Errorf("rule %s has no test case", r.ID)
		}
		if _, err := os.Stat(filepath.Join("..", "docs", "policy", "lint", r.ID+".md")); err != nil {
			t.Errorf("rule %s has no docs page: %v", r.ID, err)
		}
	}
}

func TestLintKeySnapshotAge(t *testing.T) {
	base := `  jwks {
    mode                 = "pinned+refresh"
    file                 = "../keys/rsa.jwks.json"
    min_refresh_interval = "5m"
  }`
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		jwks string
		want string // "" = no L14 finding
	}{
		{strings.Replace(base, `min_refresh_interval = "5m"`, `min_refresh_interval = "5m"
    snapshot_date        = "2026-11-20"`, 1), ""},
		{strings.Replace(base, `min_refresh_interval = "5m"`, `min_refresh_interval = "5m"
    snapshot_date        = "2026-01-01"`, 1), SeverityWarning},
		{strings.Replace(strings.Replace(base, `"pinned+refresh"`, `"pinned"`, 1), `min_refresh_interval = "5m"`, `snapshot_date = "2026-01-01"`, 1), SeverityError},
		{strings.Replace(base, `min_refresh_interval = "5m"`, `min_refresh_interval = "5m"
    snapshot_date        = "2026-11-20"
    max_snapshot_age     = "48h"`, 1), SeverityWarning},
		{strings.Replace(base, `min_refresh_interval = "5m"`, `min_refresh_interval = "5m"
    snapshot_date        = "2027-06-01"`, 1), SeverityError},
	}
	for i, tc := range cases {
		p := variant(t, edit{base, tc.jwks})
		var got []Finding
		for _, f := range rulesOf(Lint(p, LintOptions{Now: now}))["L14"] {
			if strings.Contains(f.Message, "snapshot") {
				got = append(got, f)
			}
		}
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("case %d: unexpected %v", i, got)
		case tc.want != "" && (len(got) != 1 || got[0].Severity != tc.want):
			t.Errorf("case %d: findings %v, want one %s", i, got, tc.want)
		}
	}
	if _, err := LoadSource("x.fixity.hcl", []byte(`issuer "a" {
  preset   = "generic-oidc"
  url      = "https://issuer.example"
  audience = "x"
  jwks {
    mode          = "pinned"
    snapshot_date = "last tuesday"
  }
}`), t.TempDir()); err == nil || !strings.Contains(err.Error(), "snapshot_date") {
		t.Fatalf("a bad snapshot_date must be refused naming the field: %v", err)
	}
}

func TestFailOn(t *testing.T) {
	warn := []Finding{{Rule: "L13", Severity: SeverityWarning}}
	if Failed(warn, SeverityError) || !Failed(warn, SeverityWarning) {
		t.Fatal("warnings must fail only with fail_on = warning")
	}
	if !Failed([]Finding{{Rule: "L01", Severity: SeverityError}}, SeverityError) {
		t.Fatal("errors must fail")
	}
}

func TestLintFindingPointsAtLine(t *testing.T) {
	p := variant(t, edit{`audience           = "https://authz.test.internal"`, `audience           = "sts.amazonaws.com"`})
	for _, f := range Lint(p, LintOptions{}) {
		if f.Rule == "L06" {
			if f.Line != 7 || !strings.HasSuffix(f.File, "variant.fixity.hcl") {
				t.Fatalf("L06 at %s:%d, want variant.fixity.hcl:7 (the audience attribute)", f.File, f.Line)
			}
			return
		}
	}
	t.Fatal("no L06 finding")
}
