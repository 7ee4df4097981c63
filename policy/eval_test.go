package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const evalPolicy = `
issuer "gh" {
  preset             = "github-actions"
  url                = "https://token.actions.githubusercontent.com"
  audience           = "https://rp.test"
  max_token_lifetime = "10m"
  clock_skew         = "30s"
  tenant { repository_owner_id = "42" }
  jwks {
    mode                 = "remote"
    min_refresh_interval = "1m"
  }
}
identity "app" {
  issuer = issuer.gh
  match {
    repository_id = "7"
    ref           = "refs/heads/main"
  }
  match_glob {
    repository_id = "7"
    ref           = "refs/heads/release/*"
  }
}
identity "app_release" {
  issuer = issuer.gh
  match_glob {
    repository_id = "7"
    ref           = "refs/heads/release/*"
  }
}
profile "deploy" {
  environment = "staging"
  permissions = ["service:deploy", "artifact:*"]
  resources   = ["svc/app/*"]
}
profile "unscoped" {
  environment = "staging"
  permissions = ["metrics:read"]
}
binding {
  identity = identity.app
  profiles = [profile.deploy, profile.unscoped]
}
binding {
  name     = "no_release_deploys"
  identity = identity.app_release
  profiles = [profile.deploy]
  effect   = "deny"
}
`

func evalFixture(t testing.TB) *Evaluator {
	t.Helper()
	p, err := LoadSource("eval.fixity.hcl", []byte(evalPolicy), ".")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEvaluator(p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var evalNow = time.Unix(1_800_000_000, 0)

func ghClaims(mut func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss": "https://token.actions.githubusercontent.com", "aud": "https://rp.test",
		"sub": "repo:acme/app:ref:refs/heads/main", "repository_id": "7", "repository_owner_id": "42",
		"ref": "refs/heads/main", "iat": float64(evalNow.Unix() - 10), "exp": float64(evalNow.Unix() + 290),
	}
	if mut != nil {
		mut(c)
	}
	return c
}

func TestDecide(t *testing.T) {
	e := evalFixture(t)
	cases := []struct {
		name   string
		claims map[string]any
		perm   string
		res    string
		prof   string
		allow  bool
		reason string
	}{
		{"allow main", ghClaims(nil), "service:deploy", "svc/app/api", "", true, ReasonAllow},
		{"suffix wildcard permission", ghClaims(nil), "artifact:push", "svc/app/x", "", true, ReasonAllow},
		{"resource outside profile", ghClaims(nil), "service:deploy", "svc/other/api", "", false, ReasonResourceNotGranted},
		{"resource glob does not cross /", ghClaims(nil), "service:deploy", "svc/app/a/b", "", false, ReasonResourceNotGranted},
		{"empty resource on scoped profile", ghClaims(nil), "service:deploy", "", "", false, ReasonResourceNotGranted},
		{"empty resource on unscoped profile", ghClaims(nil), "metrics:read", "", "", true, ReasonAllow},
		{"permission not granted (default deny)", ghClaims(nil), "service:delete", "svc/app/api", "", false, ReasonNotGranted},
		{"profile request", ghClaims(nil), "", "", "unscoped", true, ReasonAllow},
		{"unknown profile", ghClaims(nil), "", "", "nope", false, ReasonUnknownProfile},
		{"no question", ghClaims(nil), "", "", "", false, ReasonBadRequest},
		{"deny wins", ghClaims(func(c map[string]any) { c["ref"] = "refs/heads/release/1.2" }), "service:deploy", "svc/app/api", "", false, ReasonDeniedByBinding},
		{"deny binding only covers its profiles", ghClaims(func(c map[string]any) { c["ref"] = "refs/heads/release/1.2" }), "metrics:read", "", "", true, ReasonAllow},
		{"glob anchored", ghClaims(func(c map[string]any) { c["ref"] = "refs/heads/release/1:x" }), "metrics:read", "", "", false, ReasonNoIdentity},
		{"other repo", ghClaims(func(c map[string]any) { c["repository_id"] = "8" }), "metrics:read", "", "", false, ReasonNoIdentity},
		{"numeric repo id claim", ghClaims(func(c map[string]any) { c["repository_id"] = float64(7) }), "metrics:read", "", "", true, ReasonAllow},
		{"other tenant", ghClaims(func(c map[string]any) { c["repository_owner_id"] = "43" }), "metrics:read", "", "", false, ReasonTenantMismatch},
		{"missing tenant claim", ghClaims(func(c map[string]any) { delete(c, "repository_owner_id") }), "metrics:read", "", "", false, ReasonSchemaViolation},
		{"unknown issuer", ghClaims(func(c map[string]any) { c["iss"] = "https://evil.test" }), "metrics:read", "", "", false, ReasonUnknownIssuer},
		{"trailing slash issuer", ghClaims(func(c map[string]any) { c["iss"] = "https://token.actions.githubusercontent.com/" }), "metrics:read", "", "", false, ReasonUnknownIssuer},
		{"wrong audience", ghClaims(func(c map[string]any) { c["aud"] = "https://github.com/acme" }), "metrics:read", "", "", false, ReasonAudienceMismatch},
		{"audience array of one", ghClaims(func(c map[string]any) { c["aud"] = []any{"https://rp.test"} }), "metrics:read", "", "", true, ReasonAllow},
		{"two audiences", ghClaims(func(c map[string]any) { c["aud"] = []any{"https://rp.test", "x"} }), "metrics:read", "", "", false, ReasonMultipleAudiences},
		{"missing audience", ghClaims(func(c map[string]any) { delete(c, "aud") }), "metrics:read", "", "", false, ReasonAudienceMismatch},
		{"expired", ghClaims(func(c map[string]any) { c["exp"] = float64(evalNow.Unix() - 31) }), "metrics:read", "", "", false, ReasonExpired},
		{"expired within leeway", ghClaims(func(c map[string]any) { c["exp"] = float64(evalNow.Unix() - 29) }), "metrics:read", "", "", true, ReasonAllow},
		{"no exp", ghClaims(func(c map[string]any) { delete(c, "exp") }), "metrics:read", "", "", false, ReasonExpMissing},
		{"no iat", ghClaims(func(c map[string]any) { delete(c, "iat") }), "metrics:read", "", "", false, ReasonIatMissing},
		{"string exp", ghClaims(func(c map[string]any) { c["exp"] = "soon" }), "metrics:read", "", "", false, ReasonBadTimeClaim},
		{"not yet valid", ghClaims(func(c map[string]any) { c["nbf"] = float64(evalNow.Unix() + 60) }), "metrics:read", "", "", false, ReasonNotYetValid},
		{"issued in future", ghClaims(func(c map[string]any) { c["iat"] = float64(evalNow.Unix() + 60) }), "metrics:read", "", "", false, ReasonIssuedInFuture},
		{"over-long", ghClaims(func(c map[string]any) {
			c["iat"] = float64(evalNow.Unix() - 60)
			c["exp"] = float64(evalNow.Unix() + 600)
		}), "metrics:read", "", "", false, ReasonLifetimeExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Decide(Request{Claims: tc.claims, Permission: tc.perm, Resource: tc.res, Profile: tc.prof, Now: evalNow})
			if d.Allow != tc.allow || d.Reason != tc.reason {
				t.Fatalf("got allow=%v reason=%s (%s), want allow=%v reason=%s", d.Allow, d.Reason, d.Detail, tc.allow, tc.reason)
			}
			if d.Allow && (d.Identity == "" || d.Binding == "" || d.Profile == "") {
				t.Fatalf("allow without identity/binding/profile: %+v", d)
			}
			// Explain scans every identity; Decide uses the pin index: same answer.
			if x, _ := e.Explain(Request{Claims: tc.claims, Permission: tc.perm, Resource: tc.res, Profile: tc.prof, Now: evalNow}); x.Allow != d.Allow || x.Reason != d.Reason || x.Identity != d.Identity || x.Binding != d.Binding {
				t.Fatalf("Explain %+v differs from Decide %+v", x, d)
			}
		})
	}
}

func TestDecideRoutesByIssuerID(t *testing.T) {
	e := evalFixture(t)
	d := e.Decide(Request{Issuer: "gh", Claims: ghClaims(nil), Permission: "metrics:read", Now: evalNow})
	if !d.Allow {
		t.Fatalf("routing by issuer id: %+v", d)
	}
	d = e.Decide(Request{Issuer: "gh", Claims: ghClaims(func(c map[string]any) { c["iss"] = "https://other.test" }), Permission: "metrics:read", Now: evalNow})
	if d.Allow || d.Reason != ReasonIssuerMismatch {
		t.Fatalf("iss must equal the routed issuer's url: %+v", d)
	}
}

func TestCheckTokenTimesError(t *testing.T) {
	is := &Issuer{ClockSkew: Duration(time.Minute), MaxTokenLifetime: Duration(5 * time.Minute)}
	err := CheckTokenTimes(is, map[string]any{"iat": float64(100), "exp": float64(200)}, time.Unix(1000, 0))
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Reason != ReasonExpired || !strings.Contains(ce.Error(), "expired") {
		t.Fatalf("got %v", err)
	}
	if err := CheckTokenTimes(is, map[string]any{"iat": float64(990), "exp": float64(1200)}, time.Unix(1000, 0)); err != nil {
		t.Fatalf("valid token: %v", err)
	}
}

func TestConditionFailsClosed(t *testing.T) {
	src := strings.Replace(evalPolicy, `identity "app_release" {
  issuer = issuer.gh`, `identity "app_release" {
  issuer    = issuer.gh
  condition = "claims.missing.deep == 'x'"`, 1)
	src = strings.Replace(src, `effect   = "deny"`, `effect   = "allow"`, 1)
	p, err := LoadSource("c.fixity.hcl", []byte(src), ".")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEvaluator(p)
	if err != nil {
		t.Fatal(err)
	}
	// The condition errors at run time (no such claim): the identity must not match.
	d := e.Decide(Request{Claims: ghClaims(func(c map[string]any) { c["ref"] = "refs/heads/release/1" }), Permission: "service:deploy", Resource: "svc/app/x", Now: evalNow})
	if d.Identity == "app_release" {
		t.Fatalf("erroring condition matched: %+v", d)
	}
}

func TestLookupClaimNested(t *testing.T) {
	c := map[string]any{"kubernetes.io": map[string]any{"serviceaccount": map[string]any{"uid": "u-1"}}, "a.b": "flat"}
	if v, ok := LookupClaim(c, "kubernetes.io.serviceaccount.uid"); !ok || v != "u-1" {
		t.Fatalf("nested: %v %v", v, ok)
	}
	if v, ok := LookupClaim(c, "a.b"); !ok || v != "flat" {
		t.Fatalf("dotted key: %v %v", v, ok)
	}
	if _, ok := LookupClaim(c, "kubernetes.io.pod.uid"); ok {
		t.Fatal("missing nested claim found")
	}
}

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		pat, s string
		want   bool
	}{
		{"refs/heads/release/*", "refs/heads/release/1.2", true},
		{"refs/heads/release/*", "refs/heads/release/1/2", false},
		{"refs/heads/release/**", "refs/heads/release/1/2", true},
		{"repo:acme/*", "repo:acme/x:pull_request", false},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/x:ref:refs/heads/main", true},
		{"a*b", "ab", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
	} {
		if got := matchGlob(tc.pat, tc.s); got != tc.want {
			t.Errorf("matchGlob(%q, %q) = %v", tc.pat, tc.s, got)
		}
	}
}

func TestRunTestsReportsFailuresAndMutants(t *testing.T) {
	p, err := LoadFiles("testdata/lint/base.fixity.hcl")
	if err != nil {
		t.Fatal(err)
	}
	e, _ := NewEvaluator(p)
	rep := RunTests(p, e)
	if !rep.OK() || rep.Mutants < 20 || rep.Tests != 6 {
		t.Fatalf("base: ok=%v tests=%d mutants=%d", rep.OK(), rep.Tests, rep.Mutants)
	}
	kinds := map[string]bool{}
	for _, r := range rep.Results {
		if r.Mutant != "" {
			kinds[strings.SplitN(r.Mutant, ":", 2)[0]] = true
		}
	}
	for _, k := range MutantKinds() {
		if !kinds[k] {
			t.Errorf("mutant kind %s never generated for the base policy", k)
		}
	}
	// Widen the GitHub identity: the pull_request_target mutant must now be allowed, so fail.
	wide := variant(t, edit{`    event_name       = ["push", "workflow_dispatch"]`, ``})
	e2, _ := NewEvaluator(wide)
	rep = RunTests(wide, e2)
	if rep.OK() {
		t.Fatal("a policy that lets pull_request_target through passed its mutants")
	}
	var sb strings.Builder
	rep.WriteText(&sb, false)
	out := sb.String()
	for _, want := range []string{"--- FAIL: gh_prod_allowed/mutant:pull_request:pull_request_target", "must be denied", "FAIL\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func timeUnix(s int64) time.Time { return time.Unix(s, 0) }

func TestRequireOnlyIdentityMatches(t *testing.T) {
	src := strings.Replace(evalPolicy, `identity "app" {
  issuer = issuer.gh
  match {
    repository_id = "7"
    ref           = "refs/heads/main"
  }
  match_glob {
    repository_id = "7"
    ref           = "refs/heads/release/*"
  }
}`, `identity "app" {
  issuer = issuer.gh
  require {
    repository_id = "7"
    ref           = "refs/heads/main"
  }
}`, 1)
	p, err := LoadSource("r.fixity.hcl", []byte(src), ".")
	if err != nil {
		t.Fatal(err)
	}
	e, _ := NewEvaluator(p)
	if d := e.Decide(Request{Claims: ghClaims(nil), Permission: "metrics:read", Now: evalNow}); !d.Allow || d.Identity != "app" {
		t.Fatalf("require-only identity: %+v", d)
	}
	if d := e.Decide(Request{Claims: ghClaims(func(c map[string]any) { c["ref"] = "refs/heads/dev" }), Permission: "metrics:read", Now: evalNow}); d.Allow {
		t.Fatalf("require-only identity matched another ref: %+v", d)
	}
}

func TestPinIndexKeepsDeclarationOrder(t *testing.T) {
	// "a_glob" (unindexed: its only pin is a pattern) sorts before "b_exact" (indexed):
	// both match, so the first allow must come from a_glob, as a full scan would give.
	src := strings.SplitN(evalPolicy, "identity \"app\"", 2)[0] + `
identity "a_glob" {
  issuer = issuer.gh
  match_glob { repository_id = "7*" }
}
identity "b_exact" {
  issuer = issuer.gh
  match { repository_id = "7" }
}
profile "p" {
  environment = "staging"
  permissions = ["metrics:read"]
}
binding {
  identity = identity.b_exact
  profiles = [profile.p]
}
binding {
  identity = identity.a_glob
  profiles = [profile.p]
}
`
	p, err := LoadSource("o.fixity.hcl", []byte(src), ".")
	if err != nil {
		t.Fatal(err)
	}
	e, _ := NewEvaluator(p)
	req := Request{Claims: ghClaims(nil), Permission: "metrics:read", Now: evalNow}
	d := e.Decide(req)
	x, _ := e.Explain(req)
	if !d.Allow || d.Identity != "a_glob" || x.Identity != d.Identity {
		t.Fatalf("Decide %+v, Explain %+v", d, x)
	}
	// A numeric pin claim bypasses the index (string lookup) and still matches both.
	req.Claims = ghClaims(func(c map[string]any) { c["repository_id"] = float64(7) })
	if d, _ := e.Explain(req); !d.Allow || d.Identity != "a_glob" || e.Decide(req) != d {
		t.Fatalf("numeric pin: %+v", d)
	}
	// "75" reaches only the unindexed glob identity.
	req.Claims = ghClaims(func(c map[string]any) { c["repository_id"] = "75" })
	if d := e.Decide(req); !d.Allow || d.Identity != "a_glob" {
		t.Fatalf("glob identity via the unindexed list: %+v", d)
	}
	req.Claims = ghClaims(func(c map[string]any) { c["repository_id"] = "6" })
	if d := e.Decide(req); d.Allow {
		t.Fatalf("no identity should match 6: %+v", d)
	}
}
