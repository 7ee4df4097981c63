package authz

import (
	"context"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

func TestCheckAllowsRealSignatures(t *testing.T) {
	a := newTestAuthorizer(t, policy.JWKSPinned)
	testKeys(t)
	for name, tok := range map[string]string{
		"RS256": sign(t, jose.RS256, rsaKey, kidRSA, goodClaims()),
		"ES256": sign(t, jose.ES256, ecKey, kidEC, goodClaims()),
	} {
		t.Run(name, func(t *testing.T) {
			d := a.Check(context.Background(), Request{Token: tok, Permission: "service:deploy", Resource: "svc/payments/worker"})
			if !d.Allow || d.Reason != ReasonAllow {
				t.Fatalf("want allow, got %+v", d)
			}
			if d.Identity != "payments_deploy_main" || d.Profile != "payments_staging_deploy" || d.Issuer != "github" || d.PolicyDigest != "sha256:test" {
				t.Errorf("decision fields: %+v", d)
			}
			if d.Subject != "repo:acme@4242/payments@123456789:ref:refs/heads/main" {
				t.Errorf("sub %q", d.Subject)
			}
		})
	}
}

func TestCheckDeniesBadTokensWithReason(t *testing.T) {
	a := newTestAuthorizer(t, policy.JWKSPinned)
	testKeys(t)
	with := func(k string, v any) map[string]any { c := goodClaims(); c[k] = v; return c }
	without := func(k string) map[string]any { c := goodClaims(); delete(c, k); return c }
	good := signRS(t, goodClaims())
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + strings.Split(signRS(t, with("repository_id", "999")), ".")[1] + "." + parts[2]

	cases := []struct {
		name, token, reason string
	}{
		{"empty", "", ReasonTokenMissing},
		{"garbage", "not-a-token", ReasonTokenMalformed},
		{"two segments", parts[0] + "." + parts[1], ReasonTokenMalformed},
		{"header not json", "bm90IGpzb24." + parts[1] + "." + parts[2], ReasonTokenMalformed},
		{"alg none", rawToken(t, map[string]any{"alg": "none", "typ": "JWT"}, goodClaims(), func(string) []byte { return nil }), ReasonAlgNotAllowed},
		{"alg none with a signature", rawToken(t, map[string]any{"alg": "none", "typ": "JWT"}, goodClaims(), func(string) []byte { return []byte("x") }), ReasonAlgNotAllowed},
		{"no signature", parts[0] + "." + parts[1] + ".", ReasonTokenMalformed},
		{"HS256 keyed with the public key", hs256WithPublicKey(t, goodClaims()), ReasonAlgNotAllowed},
		{"RS384 not in allowlist", sign(t, jose.RS384, rsaKey, kidRSA, goodClaims()), ReasonAlgNotAllowed},
		{"crit header", rawToken(t, map[string]any{"alg": "RS256", "kid": kidRSA, "crit": []string{"exp"}, "exp": 1}, goodClaims(), func(string) []byte { return []byte("x") }), ReasonCritHeader},
		{"unknown kid", sign(t, jose.RS256, rsaKey, "rotated-away", goodClaims()), ReasonUnknownKID},
		{"forged with rogue key and known kid", sign(t, jose.RS256, rogueKey, kidRSA, goodClaims()), ReasonBadSignature},
		{"tampered payload", tampered, ReasonBadSignature},
		{"wrong iss", signRS(t, with("iss", "https://token.actions.githubusercontent.com/")), ReasonUnknownIssuer},
		{"other issuer", signRS(t, with("iss", "https://gitlab.com")), ReasonUnknownIssuer},
		{"wrong aud", signRS(t, with("aud", "https://github.com/acme")), ReasonAudienceMismatch},
		{"extra aud", signRS(t, with("aud", []string{ghAudience, "sts.amazonaws.com"})), ReasonMultipleAudiences},
		{"azp mismatch", signRS(t, with("azp", "other-client")), ReasonAZPMismatch},
		{"expired", signRS(t, with("exp", testNow.Add(-61*time.Second).Unix())), ReasonExpired},
		{"not yet valid", signRS(t, with("nbf", testNow.Add(2*time.Minute).Unix())), ReasonNotYetValid},
		{"issued in the future", signRS(t, with("iat", testNow.Add(2*time.Minute).Unix())), ReasonIssuedInFuture},
		{"over-long lifetime", signRS(t, with("exp", testNow.Add(2*time.Hour).Unix())), ReasonLifetimeExceeded},
		{"no exp", signRS(t, without("exp")), ReasonExpMissing},
		{"no iat", signRS(t, without("iat")), ReasonIatMissing},
		{"oversized", signRS(t, with("padding", strings.Repeat("A", DefaultMaxTokenBytes))), ReasonTokenTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := a.Check(context.Background(), Request{Token: c.token, Permission: "service:deploy", Resource: "svc/payments/worker"})
			if d.Allow {
				t.Fatalf("allowed: %+v", d)
			}
			if d.Reason != c.reason {
				t.Fatalf("reason %q (%s), want %q", d.Reason, d.Detail, c.reason)
			}
			if c.token != "" && strings.Contains(d.Detail, c.token) {
				t.Fatal("the token leaked into the decision detail")
			}
		})
	}
}

// TestCheckDeniesBrokenPatternMutants: validly signed tokens of the wrong workload —
// the research's broken token patterns — are refused by the policy, not the verifier.
func TestCheckDeniesBrokenPatternMutants(t *testing.T) {
	a := newTestAuthorizer(t, policy.JWKSPinned)
	mutants := map[string]map[string]any{
		"other repository id":         {"repository_id": "987654321"},
		"other owner id (tenant)":     {"repository_owner_id": "6666"},
		"pull_request_target context": {"event_name": "pull_request_target", "sub": "repo:acme@4242/payments@123456789:pull_request"},
		"pull_request context":        {"event_name": "pull_request"},
		"self-hosted runner":          {"runner_environment": "self-hosted"},
		"other workflow sha":          {"job_workflow_sha": "0000000000000000000000000000000000000000"},
		"workflow from a tag":         {"job_workflow_ref": "acme/deploy-workflows/.github/workflows/deploy.yml@refs/tags/v1"},
		"name-only match":             {"repository_id": "1", "repository": "acme/payments"},
	}
	for name, m := range mutants {
		t.Run(name, func(t *testing.T) {
			c := goodClaims()
			for k, v := range m {
				c[k] = v
			}
			d := a.Check(context.Background(), Request{Token: signRS(t, c), Permission: "service:deploy", Resource: "svc/payments/worker"})
			if d.Allow {
				t.Fatalf("mutant allowed: %+v", d)
			}
			if IsTokenReason(d.Reason) || d.Reason == "" {
				t.Fatalf("mutant denied for a token reason %q, want a policy reason", d.Reason)
			}
		})
	}
	// A permission or resource outside every profile is denied for a valid identity.
	for name, req := range map[string]Request{
		"unbound permission": {Permission: "db:drop", Resource: "svc/payments/worker"},
		"resource outside":   {Permission: "service:deploy", Resource: "svc/billing/api"},
		"no permission":      {Permission: ""},
	} {
		t.Run(name, func(t *testing.T) {
			req.Token = signRS(t, goodClaims())
			if d := a.Check(context.Background(), req); d.Allow {
				t.Fatalf("allowed: %+v", d)
			}
		})
	}
}

func TestCheckSingleUseReplay(t *testing.T) {
	a := newTestAuthorizer(t, policy.JWKSPinned)
	tok := signRS(t, goodClaims())
	req := Request{Token: tok, Permission: "service:release", Resource: "svc/payments/api"}
	if d := a.Check(context.Background(), req); !d.Allow || d.Profile != "payments_prod_deploy" {
		t.Fatalf("first use: %+v", d)
	}
	if d := a.Check(context.Background(), req); d.Allow || d.Reason != ReasonReplay {
		t.Fatalf("second use: want replay, got %+v", d)
	}
	// Profiles that are not single_use accept the same token again.
	req2 := Request{Token: tok, Permission: "service:deploy", Resource: "svc/payments/worker"}
	for i := 0; i < 2; i++ {
		if d := a.Check(context.Background(), req2); !d.Allow {
			t.Fatalf("reuse %d on a multi-use profile: %+v", i, d)
		}
	}
	c := goodClaims()
	delete(c, "jti")
	if d := a.Check(context.Background(), Request{Token: signRS(t, c), Permission: "service:release", Resource: "svc/payments/api"}); d.Allow || d.Reason != ReasonJTIMissing {
		t.Fatalf("single_use without jti: %+v", d)
	}
}

func TestMemoryReplayCacheBoundsAndExpiry(t *testing.T) {
	c := NewMemoryReplayCache(2)
	now := time.Unix(100, 0)
	if !c.Use("a", now.Add(time.Minute), now) || c.Use("a", now.Add(time.Minute), now) {
		t.Fatal("a: first use must pass, second must fail")
	}
	if !c.Use("b", now.Add(time.Second), now) {
		t.Fatal("b")
	}
	if c.Use("c", now.Add(time.Minute), now) {
		t.Fatal("a full cache must fail closed")
	}
	later := now.Add(2 * time.Second) // b expired: room again
	if !c.Use("c", later.Add(time.Minute), later) {
		t.Fatal("expired entries must be evicted")
	}
}

func TestNewRejectsBrokenConfig(t *testing.T) {
	p := testPolicy(t, policy.JWKSPinned)
	p.Issuers[0].Algorithms = []string{"HS256"}
	if _, err := New(p, "", Options{}); err == nil || !strings.Contains(err.Error(), "HS256") {
		t.Fatalf("HS256 issuer accepted: %v", err)
	}
	p = testPolicy(t, policy.JWKSPinned)
	p.Issuers[0].JWKS.Keys = []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)
	if _, err := New(p, "", Options{}); err == nil || !strings.Contains(err.Error(), "no usable public signing keys") {
		t.Fatalf("symmetric-only key set accepted: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer": "", "": ""} {
		if got := BearerToken(in); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", in, got, want)
		}
	}
}
