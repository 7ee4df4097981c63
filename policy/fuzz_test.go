package policy

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// seedBlocks seeds the fuzzer with every top-level block of real policy files, one by
// one: whole files are ~5 KB, and the fuzzer minimises each interesting input, which
// crawls at HCL+CEL speed on inputs that large.
func seedBlocks(f *testing.F, paths ...string) {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, block := range strings.Split(string(b), "\n\n") {
			if strings.TrimSpace(block) != "" {
				f.Add([]byte(block + "\n"))
			}
		}
	}
}

// FuzzLoadPolicy: any input either loads into a policy the evaluator accepts and the
// bundle encoder can write, or is refused with a LoadError; it never panics.
func FuzzLoadPolicy(f *testing.F) {
	seedBlocks(f, "testdata/lint/base.fixity.hcl", "../example/policy/github-actions.fixity.hcl", "../example/policy/gitlab-ci.fixity.hcl")
	f.Add([]byte("x = " + "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["))
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := LoadSource("fuzz.fixity.hcl", src, "testdata/lint")
		if err != nil {
			if _, ok := err.(*LoadError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if _, err := NewEvaluator(p); err != nil {
			t.Fatalf("loaded policy rejected by the evaluator: %v", err)
		}
		if _, err := CanonicalJSON(p); err != nil {
			t.Fatal(err)
		}
		// Lint and the test runner are exercised on small inputs only: the fuzzer
		// minimises every interesting input, and full lint runs make that crawl.
		if len(src) < 1024 {
			_ = Lint(p, LintOptions{Now: FixtureEpoch})
		}
	})
}

// FuzzDecide: arbitrary claims never panic the evaluator, and an allow always comes
// with the issuer's exact iss and audience.
func FuzzDecide(f *testing.F) {
	b, _ := json.Marshal(ghClaims(nil))
	f.Add(b, "service:deploy", "svc/app/api", "")
	f.Add([]byte(`{"iss":"https://token.actions.githubusercontent.com","aud":["https://rp.test"],"exp":1e300}`), "metrics:read", "", "unscoped")
	f.Add([]byte(`{"kubernetes.io":{"serviceaccount":{"uid":[1,2]}}}`), "", "", "deploy")
	e := evalFixture(f)
	f.Fuzz(func(t *testing.T, claimsJSON []byte, perm, res, prof string) {
		var claims map[string]any
		if json.Unmarshal(claimsJSON, &claims) != nil {
			return
		}
		req := Request{Claims: claims, Permission: perm, Resource: res, Profile: prof, Now: evalNow}
		d := e.Decide(req)
		if d.Reason == "" {
			t.Fatal("decision without reason")
		}
		if x, _ := e.Explain(req); x.Allow != d.Allow || x.Reason != d.Reason || x.Identity != d.Identity || x.Binding != d.Binding {
			t.Fatalf("indexed Decide %+v differs from scanning Explain %+v", d, x)
		}
		if d.Allow {
			if claims["iss"] != "https://token.actions.githubusercontent.com" || CheckAudience(e.Policy().Issuer("gh"), claims) != nil {
				t.Fatalf("allowed a token of another issuer/audience: %v", claims)
			}
			if CheckTokenTimes(e.Policy().Issuer("gh"), claims, evalNow) != nil {
				t.Fatalf("allowed a token outside its time window: %v", claims)
			}
		}
	})
}

// FuzzLoadBundle: a bundle with arbitrary policy.json (correctly hashed, so parsing is
// reached) or an arbitrary manifest never panics LoadBundleFS (in memory, so the
// fuzzer stays fast); what loads also evaluates.
func FuzzLoadBundle(f *testing.F) {
	// A small real policy (compact JSON) keeps minimisation of interesting inputs fast.
	p, err := LoadSource("eval.fixity.hcl", []byte(evalPolicy), ".")
	if err != nil {
		f.Fatal(err)
	}
	p.Tests = nil
	pj, _ := json.Marshal(p)
	f.Add(pj, []byte(""))
	f.Add([]byte(`{"policy_version":1,"issuers":[{"id":"x","preset":"generic-oidc","jwks":{"mode":"remote"}}]}`), []byte(""))
	f.Add(pj, []byte(`{"schema":"fixity.dev/policy-bundle/v1","files":{"../x":"sha256:00"}}`))
	f.Fuzz(func(t *testing.T, policyJSON, manifest []byte) {
		fsys := fstest.MapFS{BundlePolicyFile: {Data: policyJSON}}
		if len(manifest) == 0 {
			var v struct {
				Version int `json:"policy_version"`
			}
			json.Unmarshal(policyJSON, &v)
			m := Manifest{Schema: BundleSchema, PolicyVersion: v.Version, Files: map[string]string{BundlePolicyFile: sha256Hex(policyJSON)}}
			manifest, _ = json.Marshal(m)
		}
		fsys[BundleManifestFile] = &fstest.MapFile{Data: manifest}
		bp, _, err := LoadBundleFS(fsys)
		if err != nil {
			return
		}
		e, err := NewEvaluator(bp)
		if err != nil {
			t.Fatalf("LoadBundle returned a policy the evaluator rejects: %v", err)
		}
		e.Decide(Request{Claims: ghClaims(nil), Permission: "service:deploy", Now: time.Unix(1_800_000_000, 0)})
	})
}
