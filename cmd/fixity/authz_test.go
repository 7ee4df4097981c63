package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

const authzCLIPolicy = `
policy_version = 1
issuer "gitlab" {
  preset             = "gitlab-ci"
  url                = "https://gitlab.com"
  audience           = "https://authz.example.internal"
  algorithms         = ["ES256"]
  max_token_lifetime = "10m"
  tenant { namespace_id = "77" }
  jwks {
    mode = "pinned"
    file = "gitlab.jwks.json"
  }
}
identity "deployer" {
  issuer = issuer.gitlab
  match {
    project_id    = "1234"
    ref_protected = "true"
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
`

// authzCLIBundle renders a one-identity GitLab policy pinned to a fresh P-256 key.
func authzCLIBundle(t *testing.T) (string, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err := os.WriteFile(filepath.Join(dir, "gitlab.jwks.json"), jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(dir, "p.fixity.hcl")
	if err := os.WriteFile(pf, []byte(authzCLIPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.LoadFiles(pf)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bundle")
	if _, err := policy.Render(p, out, policy.RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	return out, key
}

func gitlabToken(t *testing.T, key *ecdsa.PrivateKey, project string) string {
	t.Helper()
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{
		"iss": "https://gitlab.com", "aud": "https://authz.example.internal",
		"sub": "project_path:acme/app:ref_type:branch:ref:main", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"project_id": project, "namespace_id": "77", "ref_protected": "true", "ref": "main", "ref_type": "branch",
	})
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := obj.CompactSerialize()
	return tok
}

func TestAuthzCheckExitCodes(t *testing.T) {
	bundle, key := authzCLIBundle(t)
	good := gitlabToken(t, key, "1234")
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte(good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"allow text", []string{"--bundle", bundle, "--token", good, "--permission", "service:deploy", "--resource", "svc/app/web"}, exitOK, "allow: identity deployer"},
		{"allow token file json", []string{"--bundle", bundle, "--token-file", tf, "--permission", "service:deploy", "--resource", "svc/app/web", "-o", "json"}, exitOK, `"reason": "allow"`},
		{"other project", []string{"--bundle", bundle, "--token", gitlabToken(t, key, "999"), "--permission", "service:deploy", "--resource", "svc/app/web"}, exitNegative, "deny: no_identity"},
		{"garbage token", []string{"--bundle", bundle, "--token", "x", "--permission", "service:deploy", "-o", "json"}, exitNegative, `"reason": "token_malformed"`},
		{"missing bundle", []string{"--bundle", filepath.Join(t.TempDir(), "nope"), "--token", good, "--permission", "p"}, exitUsage, "--bundle"},
		{"no permission", []string{"--bundle", bundle, "--token", good}, exitUsage, "--permission is required"},
		{"both token flags", []string{"--bundle", bundle, "--token", good, "--token-file", tf, "--permission", "p"}, exitUsage, "exactly one"},
		{"bad output", []string{"--bundle", bundle, "--token", good, "--permission", "p", "-o", "yaml"}, exitUsage, "want text or json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"authz", "check"}, c.args...), &out, &errb)
			if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
				t.Fatalf("exit %d (want %d), output %q %q, want %q", code, c.code, out.String(), errb.String(), c.want)
			}
			if strings.Contains(out.String()+errb.String(), good) {
				t.Fatal("the token was printed")
			}
		})
	}
}

func TestAuthzCheckTamperedBundleIsUnusable(t *testing.T) {
	bundle, key := authzCLIBundle(t)
	p := filepath.Join(bundle, "policy.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Replace(b, []byte(`"1234"`), []byte(`"9999"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"authz", "check", "--bundle", bundle, "--token", gitlabToken(t, key, "9999"), "--permission", "service:deploy", "--resource", "svc/app/web"}, &out, &errb)
	if code != exitUsage {
		t.Fatalf("tampered bundle: exit %d, output %q %q", code, out.String(), errb.String())
	}
}
