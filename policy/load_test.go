package policy

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func loadErr(t *testing.T, src string) string {
	t.Helper()
	_, err := LoadSource("bad.fixity.hcl", []byte(src), t.TempDir())
	if err == nil {
		t.Fatalf("policy loaded, want an error:\n%s", src)
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("error is %T, want *LoadError: %v", err, err)
	}
	for _, l := range le.Lines() {
		if !regexp.MustCompile(`^bad\.fixity\.hcl:\d+:\d+: `).MatchString(l) {
			t.Errorf("error line without file:line:col: %q", l)
		}
	}
	return err.Error()
}

func TestLoadErrorsCarryPositions(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"unknown attribute":   {`profile "p" {` + "\n" + `environment = "x"` + "\n" + `permissions = ["a"]` + "\n" + `colour = "red"` + "\n}", "bad.fixity.hcl:4:1: Unsupported argument"},
		"unknown block":       {"polcy {}\n", "bad.fixity.hcl:1:1"},
		"syntax":              {"issuer \"x\" {\n  url = \n}\n", "bad.fixity.hcl:2:"},
		"unknown preset":      {"issuer \"x\" {\n  preset = \"github\"\n  url = \"https://a\"\n  audience = \"b\"\n  jwks { mode = \"remote\" }\n}\n", "unknown preset"},
		"unknown reference":   {"binding {\n  identity = identity.nobody\n  profiles = [profile.none]\n}\n", "bad.fixity.hcl:2:14: unknown identity"},
		"wildcard in match":   {"identity \"i\" {\n  issuer = issuer.x\n  match { ref = \"refs/*\" }\n}\n", "wildcard in exact match"},
		"two audiences":       {"issuer \"x\" {\n  preset = \"generic-oidc\"\n  url = \"https://a\"\n  audience = [\"a\", \"b\"]\n  jwks { mode = \"remote\" }\n}\n", "exactly one audience"},
		"hmac algorithm":      {"issuer \"x\" {\n  preset = \"generic-oidc\"\n  url = \"https://a\"\n  audience = \"a\"\n  algorithms = [\"HS256\"]\n  jwks { mode = \"remote\" }\n}\n", "unsupported algorithm"},
		"bad duration":        {"profile \"p\" {\n  environment = \"x\"\n  permissions = [\"a\"]\n  max_session = \"ten minutes\"\n}\n", "bad.fixity.hcl:4:3: invalid duration"},
		"variables":           {"profile \"p\" {\n  environment = var.env\n  permissions = [\"a\"]\n}\n", "literal values"},
		"missing jwks file":   {"issuer \"x\" {\n  preset = \"generic-oidc\"\n  url = \"https://a\"\n  audience = \"a\"\n  jwks {\n    mode = \"pinned\"\n    file = \"nope.json\"\n  }\n}\n", "relative to the policy file's folder"},
		"extends cycle":       {"test \"a\" {\n  extends = test.b\n}\ntest \"b\" {\n  extends = test.a\n}\n", "extends cycle"},
		"bad CEL":             {"identity \"i\" {\n  issuer = issuer.x\n  condition = \"claims.a ==\"\n}\n", "invalid CEL condition"},
		"test without claims": {"test \"t\" {\n  expect = \"allow\"\n  request { permission = \"a\" }\n}\n", "missing claims"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := loadErr(t, tc.src); !strings.Contains(got, tc.want) {
				t.Fatalf("error %q does not contain %q", got, tc.want)
			}
		})
	}
}

func TestDuplicateAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.fixity.hcl")
	b := filepath.Join(dir, "b.fixity.hcl")
	prof := "profile \"p\" {\n  environment = \"x\"\n  permissions = [\"a\"]\n}\n"
	os.WriteFile(a, []byte(prof), 0o644)
	os.WriteFile(b, []byte("\n"+prof), 0o644)
	_, err := LoadFiles(a, b)
	if err == nil || !strings.Contains(err.Error(), "b.fixity.hcl:2:1: duplicate profile") || !strings.Contains(err.Error(), "a.fixity.hcl:1") {
		t.Fatalf("got %v", err)
	}
}

func TestSizeAndNestingCaps(t *testing.T) {
	big := strings.Repeat("# padding line for the size cap test\n", MaxFileSize/36+10)
	if got := loadErr(t, big); !strings.Contains(got, "too large") {
		t.Fatalf("oversized: %s", got)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "big.fixity.hcl")
	os.WriteFile(f, []byte(big), 0o644)
	if _, err := LoadFiles(f); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized file: %v", err)
	}
	deep := "x = " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n"
	if got := loadErr(t, deep); !strings.Contains(got, "nesting too deep") {
		t.Fatalf("deep: %s", got)
	}
	// Brackets inside strings and comments do not count.
	ok := "# " + strings.Repeat("{", 100) + "\nprofile \"p\" {\n  environment = \"" + strings.Repeat("[", 100) + "\"\n  permissions = [\"a\"]\n}\n"
	if _, err := LoadSource("ok.fixity.hcl", []byte(ok), dir); err != nil {
		t.Fatalf("brackets in strings/comments: %v", err)
	}
}

func TestPresetNames(t *testing.T) {
	want := []string{"buildkite", "circleci", "generic-oidc", "github-actions", "gitlab-ci", "hcp-terraform", "kubernetes"}
	if got := strings.Join(PresetNames(), ","); got != strings.Join(want, ",") {
		t.Fatalf("presets %s, want %s", got, strings.Join(want, ","))
	}
}

func TestExtendsMergesClaims(t *testing.T) {
	p, err := LoadFiles("testdata/lint/base.fixity.hcl")
	if err != nil {
		t.Fatal(err)
	}
	var child *Test
	for i := range p.Tests {
		if p.Tests[i].ID == "gh_pr_target_denied" {
			child = &p.Tests[i]
		}
	}
	if child == nil || child.Claims["event_name"] != "pull_request_target" || child.Claims["repository_id"] != "123456789" ||
		child.Request.Permission != "service:deploy" || len(child.Mutants) != 0 {
		t.Fatalf("extends: %+v", child)
	}
}

func TestJWKSRelativeToPolicyFolder(t *testing.T) {
	wd, _ := os.Getwd()
	abs := filepath.Join(wd, "testdata", "lint", "base.fixity.hcl")
	t.Chdir(t.TempDir())
	p, err := LoadFiles(abs)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Issuer("github").JWKS.Keys) == 0 {
		t.Fatal("pinned keys not loaded")
	}
}

func TestKubernetesAndCircleCIClaimsMap(t *testing.T) {
	src := `
issuer "k8s" {
  preset             = "kubernetes"
  url                = "https://kubernetes.cluster.test"
  audience           = "https://rp.test"
  max_token_lifetime = "1h"
  jwks {
    mode                 = "remote"
    min_refresh_interval = "1m"
  }
}
identity "sa" {
  issuer = issuer.k8s
  match {
    claims = { "kubernetes.io.serviceaccount.uid" = "uid-1", "kubernetes.io.namespace" = "prod" }
  }
}
profile "p" {
  environment = "staging"
  permissions = ["a:read"]
}
binding {
  identity = identity.sa
  profiles = [profile.p]
}
`
	p, err := LoadSource("k.fixity.hcl", []byte(src), ".")
	if err != nil {
		t.Fatal(err)
	}
	e, _ := NewEvaluator(p)
	claims := map[string]any{"iss": "https://kubernetes.cluster.test", "aud": []any{"https://rp.test"}, "sub": "system:serviceaccount:prod:deployer",
		"iat": float64(100), "exp": float64(700), "kubernetes.io": map[string]any{"namespace": "prod", "serviceaccount": map[string]any{"name": "deployer", "uid": "uid-1"}}}
	d := e.Decide(Request{Claims: claims, Permission: "a:read", Now: timeUnix(200)})
	if !d.Allow {
		t.Fatalf("%+v", d)
	}
	claims["kubernetes.io"].(map[string]any)["serviceaccount"].(map[string]any)["uid"] = "uid-2"
	if d := e.Decide(Request{Claims: claims, Permission: "a:read", Now: timeUnix(200)}); d.Allow {
		t.Fatalf("other service account uid allowed: %+v", d)
	}
}

func TestNonRegularFilesRefused(t *testing.T) {
	src := "issuer \"x\" {\n  preset = \"generic-oidc\"\n  url = \"https://a\"\n  audience = \"a\"\n  jwks {\n    mode = \"pinned\"\n    file = \"/dev/zero\"\n  }\n}\n"
	if got := loadErr(t, src); !strings.Contains(got, "not a regular file") {
		t.Fatalf("got %s", got)
	}
	if _, err := LoadFiles(t.TempDir()); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("directory: %v", err)
	}
}
