package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// goodPolicy passes lint (fail_on = error) and its tests.
const goodPolicy = `
policy_version = 7
issuer "gitlab" {
  preset             = "gitlab-ci"
  url                = "https://gitlab.example.com"
  audience           = "https://authz.example.internal"
  algorithms         = ["ES256"]
  clock_skew         = "30s"
  max_token_lifetime = "10m"
  jwks {
    mode                 = "pinned+refresh"
    file                 = "keys/gitlab.jwks.json"
    min_refresh_interval = "5m"
  }
}
identity "deployer" {
  issuer = issuer.gitlab
  match {
    project_id      = "1234"
    ref_protected   = "true"
    pipeline_source = "push"
  }
}
profile "deploy" {
  environment = "staging"
  permissions = ["service:deploy"]
  resources   = ["svc/app/*"]
  max_session = "10m"
}
binding {
  identity = identity.deployer
  profiles = [profile.deploy]
}
test "main_allowed" {
  claims = {
    iss = "https://gitlab.example.com"
    aud = "https://authz.example.internal"
    sub = "project_path:acme/app:ref_type:branch:ref:main"
    project_id = "1234", namespace_id = "77", ref_protected = "true", pipeline_source = "push"
    ref = "main", ref_type = "branch"
  }
  request {
    permission = "service:deploy"
    resource   = "svc/app/web"
  }
  expect  = "allow"
  mutants = "auto"
}
test "unprotected_denied" {
  extends = test.main_allowed
  claims  = { ref_protected = "false" }
  expect  = "deny"
}
`

func writePolicy(t *testing.T, src string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "gitlab.jwks.json"), jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "app.fixity.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExecuteRendersReproducibly(t *testing.T) {
	file := writePolicy(t, goodPolicy)
	out := filepath.Join(t.TempDir(), "bundle")
	d := &Datasource{}
	raw := map[string]interface{}{"file": file, "output_dir": out, "source_date_epoch": "1767225600"}
	if err := d.Configure(raw); err != nil {
		t.Fatal(err)
	}
	v, err := d.Execute()
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	m := v.AsValueMap()
	digest := m["digest"].AsString()
	if !strings.HasPrefix(digest, "sha256:") || m["bundle_dir"].AsString() != out {
		t.Fatalf("outputs: %v", m)
	}
	if got, err := policy.BundleDigest(out); err != nil || got != digest {
		t.Fatalf("bundle digest %s (%v), output %s", got, err, digest)
	}
	if n, _ := m["policy_version"].AsBigFloat().Int64(); n != 7 {
		t.Errorf("policy_version %d", n)
	}
	if n, _ := m["tests"].AsBigFloat().Int64(); n < 3 {
		t.Errorf("tests %d: want the 2 tests plus generated mutants", n)
	}
	// Same inputs, same digest: a second evaluation into another folder.
	out2 := filepath.Join(t.TempDir(), "bundle")
	raw["output_dir"] = out2
	if err := d.Configure(raw); err != nil {
		t.Fatal(err)
	}
	v2, err := d.Execute()
	if err != nil {
		t.Fatal(err)
	}
	if v2.AsValueMap()["digest"].AsString() != digest {
		t.Fatal("the digest changed between two renders of the same policy")
	}
}

func TestBuildFailsOnFindingsAndTests(t *testing.T) {
	cases := map[string]struct {
		src, failOn string
		want        []string
	}{
		"failing test": {
			src: strings.Replace(goodPolicy, `claims  = { ref_protected = "false" }
  expect  = "deny"`, `claims  = { ref_protected = "false" }
  expect  = "allow"`, 1),
			want: []string{"unprotected_denied", "fails", "app.fixity.hcl:"},
		},
		"lint error": {
			src: strings.Replace(goodPolicy, `    project_id      = "1234"
`, "", 1),
			want: []string{"L03", "app.fixity.hcl:", "fix:"},
		},
		"warning with fail_on warning": {
			src:    strings.Replace(goodPolicy, `mode                 = "pinned+refresh"`, `mode                 = "pinned"`, 1),
			failOn: "warning",
			want:   []string{"L14", "warning"},
		},
		"syntax error": {
			src:  goodPolicy + "\nidentity {",
			want: []string{"app.fixity.hcl:"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if c.src == goodPolicy {
				t.Fatal("fixture did not change the policy")
			}
			_, err := Build(BuildOptions{Files: []string{writePolicy(t, c.src)}, FailOn: c.failOn, OutputDir: filepath.Join(t.TempDir(), "b")})
			if err == nil {
				t.Fatal("Build passed")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestConfigureRejects(t *testing.T) {
	file := writePolicy(t, goodPolicy)
	for name, c := range map[string]struct {
		raw  map[string]interface{}
		want string
	}{
		"nothing":     {map[string]interface{}{}, "files: list the policy files"},
		"both":        {map[string]interface{}{"file": file, "files": []string{file}}, "mutually exclusive"},
		"missing":     {map[string]interface{}{"file": "/nonexistent.fixity.hcl"}, "files[0]"},
		"fail_on":     {map[string]interface{}{"file": file, "fail_on": "info"}, "fail_on"},
		"epoch":       {map[string]interface{}{"file": file, "source_date_epoch": "yesterday"}, "source_date_epoch"},
		"unknown key": {map[string]interface{}{"file": file, "bogus": "x"}, "bogus"},
	} {
		t.Run(name, func(t *testing.T) {
			err := (&Datasource{}).Configure(c.raw)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want %q, got %v", c.want, err)
			}
		})
	}
}
