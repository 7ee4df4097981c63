package authz

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// FuzzVerifyToken drives the whole token path (shape, header, routing, go-oidc,
// time, audience, decision) with mutated tokens. Properties: it never panics (a
// recovered panic shows up as internal_error), every deny has a reason, and nothing
// is ever allowed unless its header and claims are byte-for-byte those of a token the
// test signed itself — a mutation cannot mint a new identity.
func FuzzVerifyToken(f *testing.F) {
	testKeys(f)
	valid := map[string]bool{}
	seed := func(tok string, isValid bool) {
		f.Add(tok)
		if isValid {
			p := strings.Split(tok, ".")
			valid[decodeSeg(p[0])+"."+decodeSeg(p[1])] = true
		}
	}
	seed(sign(f, jose.RS256, rsaKey, kidRSA, goodClaims()), true)
	seed(sign(f, jose.ES256, ecKey, kidEC, goodClaims()), true)
	c := goodClaims()
	c["aud"] = []string{ghAudience, "other"}
	seed(sign(f, jose.RS256, rsaKey, kidRSA, c), false)
	seed(hs256WithPublicKey(f, goodClaims()), false)
	seed(rawToken(f, map[string]any{"alg": "none"}, goodClaims(), func(string) []byte { return nil }), false)
	seed(sign(f, jose.RS256, rogueKey, kidRSA, goodClaims()), false)
	seed("", false)
	seed("a.b.c", false)
	seed("eyJhbGciOiJSUzI1NiJ9.e30.", false)

	a, err := New(testPolicy(f, policy.JWKSPinned), "", Options{Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		d := a.Check(context.Background(), Request{Token: tok, Permission: "service:deploy", Resource: "svc/payments/worker"})
		if d.Reason == "" || d.Reason == ReasonInternal {
			t.Fatalf("reason %q for %q", d.Reason, tok)
		}
		if d.Allow {
			p := strings.Split(tok, ".")
			if len(p) != 3 || !valid[decodeSeg(p[0])+"."+decodeSeg(p[1])] {
				t.Fatalf("allowed a token the test never signed: %q", tok)
			}
		}
	})
}

func decodeSeg(s string) string {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "\x00invalid"
	}
	return string(b)
}
