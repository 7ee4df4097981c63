package authz

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// fakeIssuer is a real HTTP server on loopback serving OIDC discovery and a JWKS, and
// counting key fetches.
type fakeIssuer struct {
	srv     *httptest.Server
	fetches atomic.Int32
	jwks    atomic.Value // []byte
}

func newFakeIssuer(t *testing.T) *fakeIssuer {
	t.Helper()
	f := &fakeIssuer{}
	f.jwks.Store(jwksJSON(t))
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		f.fetches.Add(1)
		_, _ = w.Write(f.jwks.Load().([]byte))
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func remoteAuthorizer(t *testing.T, f *fakeIssuer, mode string, now *time.Time) *Authorizer {
	t.Helper()
	p := testPolicy(t, mode)
	p.Issuers[0].URL = f.srv.URL
	if mode == policy.JWKSPinnedRefresh {
		// Only the EC key is pinned: the RSA key is a "rotation" the server knows.
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(jwksJSON(t), &set); err != nil {
			t.Fatal(err)
		}
		set.Keys = set.Keys[1:]
		p.Issuers[0].JWKS.Keys, _ = json.Marshal(set)
	}
	a, err := New(p, "", Options{Now: func() time.Time { return *now }, HTTPClient: f.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRemoteModeFetchesOnceAndRateLimits(t *testing.T) {
	f := newFakeIssuer(t)
	now := testNow
	a := remoteAuthorizer(t, f, policy.JWKSRemote, &now)
	c := goodClaims()
	c["iss"] = f.srv.URL
	req := Request{Token: signRS(t, c), Permission: "service:deploy", Resource: "svc/payments/worker"}
	for i := 0; i < 3; i++ {
		if d := a.Check(context.Background(), req); !d.Allow {
			t.Fatalf("check %d: %+v", i, d)
		}
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d key fetches for 3 checks with a known kid, want 1", n)
	}
	// A storm of random kids costs at most one fetch per min_refresh_interval.
	for i := 0; i < 20; i++ {
		testKeys(t)
		tok := sign(t, jose.RS256, rsaKey, "random-"+string(rune('a'+i)), c)
		if d := a.Check(context.Background(), Request{Token: tok, Permission: "service:deploy"}); d.Allow || d.Reason != ReasonUnknownKID {
			t.Fatalf("random kid: %+v", d)
		}
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d key fetches after an unknown-kid storm inside min_refresh_interval, want still 1", n)
	}
	now = now.Add(2 * time.Minute) // past min_refresh_interval (1m): one more fetch allowed
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Minute).Unix()
	tok := sign(t, jose.RS256, rsaKey, "random-late", c)
	a.Check(context.Background(), Request{Token: tok, Permission: "service:deploy"})
	if n := f.fetches.Load(); n != 2 {
		t.Fatalf("%d key fetches after the interval, want 2", n)
	}
}

func TestPinnedRefreshFindsRotatedKey(t *testing.T) {
	f := newFakeIssuer(t)
	now := testNow
	a := remoteAuthorizer(t, f, policy.JWKSPinnedRefresh, &now)
	c := goodClaims()
	c["iss"] = f.srv.URL
	testKeys(t)
	// Pinned key: no fetch.
	if d := a.Check(context.Background(), Request{Token: sign(t, jose.ES256, ecKey, kidEC, c), Permission: "service:deploy", Resource: "svc/payments/worker"}); !d.Allow {
		t.Fatalf("pinned key: %+v", d)
	}
	if n := f.fetches.Load(); n != 0 {
		t.Fatalf("pinned key caused %d fetches", n)
	}
	// Rotated key (only on the server): one fetch, then allowed.
	if d := a.Check(context.Background(), Request{Token: sign(t, jose.RS256, rsaKey, kidRSA, c), Permission: "service:deploy", Resource: "svc/payments/worker"}); !d.Allow {
		t.Fatalf("rotated key: %+v", d)
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for a rotated key, want 1", n)
	}
	// A forged signature under a known kid never triggers a fetch.
	if d := a.Check(context.Background(), Request{Token: sign(t, jose.RS256, rogueKey, kidRSA, c), Permission: "service:deploy"}); d.Allow || d.Reason != ReasonBadSignature {
		t.Fatalf("forgery: %+v", d)
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("a forgery caused a fetch (%d)", n)
	}
}

func TestRemoteModeUnreachableFailsClosed(t *testing.T) {
	f := newFakeIssuer(t)
	now := testNow
	a := remoteAuthorizer(t, f, policy.JWKSRemote, &now)
	f.srv.Close()
	c := goodClaims()
	c["iss"] = f.srv.URL
	if d := a.Check(context.Background(), Request{Token: signRS(t, c), Permission: "service:deploy"}); d.Allow || d.Reason != ReasonKeysUnavailable {
		t.Fatalf("unreachable issuer: %+v", d)
	}
}

// TestConcurrentChecksShareOneFetch: many goroutines checking at once (run under
// -race in CI) share one key fetch and all get the right answer.
func TestConcurrentChecksShareOneFetch(t *testing.T) {
	f := newFakeIssuer(t)
	now := testNow
	a := remoteAuthorizer(t, f, policy.JWKSRemote, &now)
	c := goodClaims()
	c["iss"] = f.srv.URL
	good := signRS(t, c)
	c["repository_id"] = "1"
	other := signRS(t, c)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				tok, want := good, true
				if (g+i)%3 == 0 {
					tok, want = other, false
				}
				if d := a.Check(context.Background(), Request{Token: tok, Permission: "service:deploy", Resource: "svc/payments/worker"}); d.Allow != want {
					errs <- d.Reason
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for r := range errs {
		t.Errorf("wrong decision under concurrency: %s", r)
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d key fetches for concurrent checks, want 1", n)
	}
}
