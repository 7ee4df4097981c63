package authz

import (
	"context"
	"crypto"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// The authz benchmarks (docs/benchmarks.md "authz decisions"):
//
//	BenchmarkCheck/*          full Check: shape, header, routing, go-oidc signature,
//	                          time, audience, policy decision (allow path)
//	BenchmarkBareGoOIDC/*     go-oidc Verify alone on the same token with a
//	                          StaticKeySet: the floor every RP pays
//	BenchmarkCheckDenyEarly   a token refused before any signature work
//	BenchmarkServe            `authz serve`'s handler on loopback under 8 concurrent
//	                          clients; reports req/s, p50 and p99

func benchToken(b *testing.B, alg string) string {
	testKeys(b)
	if alg == "ES256" {
		return sign(b, jose.ES256, ecKey, kidEC, goodClaims())
	}
	return signRS(b, goodClaims())
}

func BenchmarkCheck(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			a := newTestAuthorizer(b, policy.JWKSPinned)
			req := Request{Token: benchToken(b, alg), Permission: "service:deploy", Resource: "svc/payments/worker"}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if d := a.Check(ctx, req); !d.Allow {
					b.Fatal(d.Reason)
				}
			}
		})
	}
}

func BenchmarkBareGoOIDC(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			testKeys(b)
			var pub crypto.PublicKey = &rsaKey.PublicKey
			if alg == "ES256" {
				pub = &ecKey.PublicKey
			}
			v := oidc.NewVerifier(ghIssuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{pub}}, &oidc.Config{
				ClientID: ghAudience, SupportedSigningAlgs: []string{alg}, Now: func() time.Time { return testNow },
			})
			tok := benchToken(b, alg)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t, err := v.Verify(ctx, tok)
				if err != nil {
					b.Fatal(err)
				}
				var claims map[string]any
				if err := t.Claims(&claims); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCheckDenyEarly(b *testing.B) {
	a := newTestAuthorizer(b, policy.JWKSPinned)
	req := Request{Token: hs256WithPublicKey(b, goodClaims()), Permission: "service:deploy"}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := a.Check(ctx, req); d.Allow {
			b.Fatal("allowed")
		}
	}
}

func BenchmarkServe(b *testing.B) {
	a := newTestAuthorizer(b, policy.JWKSPinned)
	srv := httptest.NewServer(Handler(a, HandlerOptions{DefaultPermission: "service:deploy"}))
	defer srv.Close()
	tok := benchToken(b, "ES256")
	const workers = 8
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	lat := make([]time.Duration, b.N)
	var next int64
	var mu sync.Mutex
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= int64(b.N) {
					return
				}
				req, _ := http.NewRequest("GET", srv.URL+CheckPath, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set(HeaderOriginalURI, "/svc/payments/worker")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
