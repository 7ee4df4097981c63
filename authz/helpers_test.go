package authz

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// Real keys, generated once per test binary (RSA generation is slow).
var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	rogueKey *rsa.PrivateKey // same kid as rsaKey, different key: a forgery
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if rogueKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
}

const (
	ghIssuer   = "https://token.actions.githubusercontent.com"
	ghAudience = "https://authz.payments.acme.internal"
	kidRSA     = "rsa-1"
	kidEC      = "ec-1"
	workflow   = "acme/deploy-workflows/.github/workflows/deploy.yml@refs/heads/main"
	wfSHA      = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
)

// testNow is the fixed clock of the tests.
var testNow = time.Unix(1_780_000_000, 0)

func jwksJSON(t testing.TB) []byte {
	t.Helper()
	testKeys(t)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &rsaKey.PublicKey, KeyID: kidRSA, Algorithm: "RS256", Use: "sig"},
		{Key: &ecKey.PublicKey, KeyID: kidEC, Algorithm: "ES256", Use: "sig"},
	}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testPolicy is the research §6.2 example in IR form: one GitHub issuer, one pipeline
// identity (repository, tenant, workflow pins), a staging profile and a single_use
// production profile.
func testPolicy(t testing.TB, mode string) *policy.Policy {
	t.Helper()
	is := policy.Issuer{
		ID: "github", Preset: "github-actions", URL: ghIssuer, Audience: ghAudience,
		Algorithms: []string{"RS256", "ES256"}, ClockSkew: policy.Duration(60 * time.Second),
		MaxTokenLifetime: policy.Duration(10 * time.Minute), SubjectFormat: "immutable",
		Tenant: []policy.Constraint{{Claim: "repository_owner_id", Values: []string{"4242"}}},
		JWKS:   policy.JWKS{Mode: mode, MinRefreshInterval: policy.Duration(time.Minute)},
	}
	if mode != policy.JWKSRemote {
		is.JWKS.Keys = jwksJSON(t)
	}
	return &policy.Policy{
		Version: 1,
		Issuers: []policy.Issuer{is},
		Identities: []policy.Identity{{
			ID: "payments_deploy_main", Issuer: "github", Kind: "pipeline",
			Match: []policy.Alternative{{Constraints: []policy.Constraint{
				{Claim: "repository_id", Values: []string{"123456789"}},
				{Claim: "event_name", Values: []string{"push", "workflow_dispatch"}},
				{Claim: "runner_environment", Values: []string{"github-hosted"}},
			}}},
			Require: []policy.Constraint{
				{Claim: "job_workflow_ref", Values: []string{workflow}},
				{Claim: "job_workflow_sha", Values: []string{wfSHA}},
			},
		}},
		Profiles: []policy.Profile{
			{ID: "payments_staging_deploy", Environment: "staging", Permissions: []string{"artifact:read", "service:deploy"}, Resources: []string{"svc/payments/*"}, MaxSession: policy.Duration(15 * time.Minute)},
			{ID: "payments_prod_deploy", Environment: "production", Permissions: []string{"service:release"}, Resources: []string{"svc/payments/api"}, MaxSession: policy.Duration(10 * time.Minute), SingleUse: true},
		},
		Bindings: []policy.Binding{{ID: "deploy", Identity: "payments_deploy_main", Profiles: []string{"payments_staging_deploy", "payments_prod_deploy"}, Effect: policy.EffectAllow}},
	}
}

// goodClaims is a GitHub Actions token of the allowed pipeline, issued at testNow-30s.
func goodClaims() map[string]any {
	return map[string]any{
		"iss": ghIssuer, "aud": ghAudience,
		"sub":                 "repo:acme@4242/payments@123456789:ref:refs/heads/main",
		"jti":                 "6f1c2f39-1b55-4c1c-9a5c-0d9e0f6f1a11",
		"iat":                 testNow.Add(-30 * time.Second).Unix(),
		"nbf":                 testNow.Add(-30 * time.Second).Unix(),
		"exp":                 testNow.Add(270 * time.Second).Unix(),
		"repository_id":       "123456789",
		"repository_owner_id": "4242",
		"repository":          "acme/payments",
		"repository_owner":    "acme",
		"event_name":          "push",
		"ref":                 "refs/heads/main",
		"ref_type":            "branch",
		"runner_environment":  "github-hosted",
		"job_workflow_ref":    workflow,
		"job_workflow_sha":    wfSHA,
		"actor":               "octocat",
		"run_id":              "1234",
	}
}

// sign makes a compact JWS with a real key.
func sign(t testing.TB, alg jose.SignatureAlgorithm, key crypto.Signer, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
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

func signRS(t testing.TB, claims map[string]any) string {
	testKeys(t)
	return sign(t, jose.RS256, rsaKey, kidRSA, claims)
}

// rawToken assembles a token from a literal header, claims and signature bytes, for
// the attacks go-jose refuses to produce (alg none, HS256 keyed with a public key).
func rawToken(t testing.TB, hdr map[string]any, claims map[string]any, sig func(signingInput string) []byte) string {
	t.Helper()
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return in + "." + base64.RawURLEncoding.EncodeToString(sig(in))
}

// hs256WithPublicKey is the classic key-confusion forgery: HMAC keyed with the bytes
// of the issuer's public key.
func hs256WithPublicKey(t testing.TB, claims map[string]any) string {
	testKeys(t)
	pub, _ := json.Marshal(jose.JSONWebKey{Key: &rsaKey.PublicKey})
	return rawToken(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": kidRSA}, claims, func(in string) []byte {
		m := hmac.New(sha256.New, pub)
		m.Write([]byte(in))
		return m.Sum(nil)
	})
}

// noNetwork fails the test on any HTTP request: the pinned mode must never fetch.
type noNetwork struct{ t testing.TB }

func (n noNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	n.t.Errorf("unexpected network request: %s %s", r.Method, r.URL)
	return nil, http.ErrNotSupported
}

func newTestAuthorizer(t testing.TB, mode string) *Authorizer {
	t.Helper()
	a, err := New(testPolicy(t, mode), "sha256:test", Options{
		Now:        func() time.Time { return testNow },
		HTTPClient: &http.Client{Transport: noNetwork{t}},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}
