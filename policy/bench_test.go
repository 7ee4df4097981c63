package policy

import (
	"fmt"
	"strings"
	"testing"
)

// Decision-only cost per request (the token is already verified), on the example
// GitHub policy: the allow path walks issuer, audience, times, schema, tenant,
// identities and bindings.
func BenchmarkDecideAllow(b *testing.B) {
	p, err := LoadFiles("../example/policy/github-actions.fixity.hcl")
	if err != nil {
		b.Fatal(err)
	}
	e, _ := NewEvaluator(p)
	t := p.Tests[0]
	for i := range p.Tests {
		if p.Tests[i].ID == "prod_env_allowed" {
			t = p.Tests[i]
		}
	}
	claims, now := CompleteFixture(p, t.Claims, t.Now)
	req := Request{Claims: claims, Profile: t.Request.Profile, Now: now}
	if d := e.Decide(req); !d.Allow {
		b.Fatalf("fixture denied: %+v", d)
	}
	benchDecide(b, e, req)
}

func BenchmarkDecideDenyNoIdentity(b *testing.B) {
	e := evalFixture(b)
	req := Request{Claims: ghClaims(func(c map[string]any) { c["repository_id"] = "8" }), Permission: "metrics:read", Now: evalNow}
	if e.Decide(req).Allow {
		b.Fatal("fixture allowed")
	}
	benchDecide(b, e, req)
}

// 100 identities on one issuer, the last one matches: the linear scan's worst case.
func BenchmarkDecide100Identities(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(strings.SplitN(evalPolicy, "identity \"app\"", 2)[0])
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&sb, "identity \"i%d\" {\n  issuer = issuer.gh\n  match {\n    repository_id = \"%d\"\n    ref = \"refs/heads/main\"\n  }\n}\n", i, 1000+i)
	}
	sb.WriteString("profile \"p\" {\n  environment = \"staging\"\n  permissions = [\"metrics:read\"]\n}\nbinding {\n  identity = identity.i99\n  profiles = [profile.p]\n}\n")
	p, err := LoadSource("b.fixity.hcl", []byte(sb.String()), ".")
	if err != nil {
		b.Fatal(err)
	}
	e, _ := NewEvaluator(p)
	req := Request{Claims: ghClaims(func(c map[string]any) { c["repository_id"] = "1099" }), Permission: "metrics:read", Now: evalNow}
	if d := e.Decide(req); !d.Allow {
		b.Fatalf("fixture denied: %+v", d)
	}
	benchDecide(b, e, req)
}

// An identity with a CEL condition (human SRE with verified email).
func BenchmarkDecideCEL(b *testing.B) {
	p, err := LoadFiles("testdata/lint/base.fixity.hcl")
	if err != nil {
		b.Fatal(err)
	}
	e, _ := NewEvaluator(p)
	var t Test
	for _, x := range p.Tests {
		if x.ID == "sre_allowed" {
			t = x
		}
	}
	claims, now := CompleteFixture(p, t.Claims, t.Now)
	req := Request{Claims: claims, Permission: "artifact:read", Now: now}
	if d := e.Decide(req); !d.Allow {
		b.Fatalf("fixture denied: %+v", d)
	}
	benchDecide(b, e, req)
}

// benchDecide times Decide and also reports CPU ns per decision (see processCPU).
func benchDecide(b *testing.B, e *Evaluator, req Request) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		e.Decide(req)
	}
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
