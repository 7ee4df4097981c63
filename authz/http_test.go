package authz

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

func TestHandlerNginxAndEnvoy(t *testing.T) {
	a := newTestAuthorizer(t, policy.JWKSPinned)
	var audit bytes.Buffer
	srv := httptest.NewServer(Handler(a, HandlerOptions{DefaultPermission: "service:deploy", Audit: &audit}))
	t.Cleanup(srv.Close)
	good := signRS(t, goodClaims())
	c := goodClaims()
	c["repository_id"] = "987654321"
	otherRepo := signRS(t, c)

	do := func(method, path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		reason             string
	}{
		{"nginx allow", "GET", CheckPath, map[string]string{"Authorization": "Bearer " + good, HeaderOriginalURI: "/svc/payments/worker?x=1"}, 200, ReasonAllow},
		{"nginx explicit permission header", "GET", CheckPath, map[string]string{"Authorization": "Bearer " + good, HeaderPermission: "db:drop", HeaderOriginalURI: "/svc/payments/worker"}, 403, ""},
		{"nginx no token", "GET", CheckPath, map[string]string{HeaderOriginalURI: "/svc/payments/worker"}, 401, ReasonTokenMissing},
		{"nginx bad token", "GET", CheckPath, map[string]string{"Authorization": "Bearer x.y.z", HeaderOriginalURI: "/svc/payments/worker"}, 401, ReasonTokenMalformed},
		{"nginx other repo", "GET", CheckPath, map[string]string{"Authorization": "Bearer " + otherRepo, HeaderOriginalURI: "/svc/payments/worker"}, 403, ""},
		{"nginx resource outside profile", "GET", CheckPath, map[string]string{"Authorization": "Bearer " + good, HeaderOriginalURI: "/svc/billing/api"}, 403, ""},
		{"nginx dot segments", "GET", CheckPath, map[string]string{"Authorization": "Bearer " + good, HeaderOriginalURI: "/svc/payments/../billing/api"}, 403, ReasonBadRequest},
		{"envoy allow", "POST", EnvoyPrefix + "/svc/payments/worker", map[string]string{"Authorization": "Bearer " + good}, 200, ReasonAllow},
		{"envoy resource outside profile", "POST", EnvoyPrefix + "/svc/billing/api", map[string]string{"Authorization": "Bearer " + good}, 403, ""},
		{"envoy encoded dot segments", "GET", EnvoyPrefix + "/svc/payments/%2e%2e/billing", map[string]string{"Authorization": "Bearer " + good}, 403, ReasonBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := do(c.method, c.path, c.hdr)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (reason %s)", resp.StatusCode, c.status, resp.Header.Get(HeaderReason))
			}
			if c.reason != "" && resp.Header.Get(HeaderReason) != c.reason {
				t.Fatalf("reason %q, want %q", resp.Header.Get(HeaderReason), c.reason)
			}
			if c.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("401 without a Bearer challenge")
			}
			if c.status == 200 && resp.Header.Get(HeaderIdentity) != "payments_deploy_main" {
				t.Errorf("identity header %q", resp.Header.Get(HeaderIdentity))
			}
			var d Decision
			if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
				t.Fatalf("body: %v", err)
			}
			if d.Allow != (c.status == 200) {
				t.Errorf("body allow=%v for status %d", d.Allow, c.status)
			}
		})
	}
	resp := do("GET", HealthPath, nil)
	if resp.StatusCode != 200 || resp.Header.Get(HeaderDigest) != "sha256:test" {
		t.Fatalf("health: %d %q", resp.StatusCode, resp.Header.Get(HeaderDigest))
	}
	lines := strings.Split(strings.TrimSpace(audit.String()), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("%d audit lines for %d requests", len(lines), len(cases))
	}
	if strings.Contains(audit.String(), good) || strings.Contains(audit.String(), strings.Split(good, ".")[2]) {
		t.Fatal("the token leaked into the audit log")
	}
}

func TestResourceFromURI(t *testing.T) {
	for in, want := range map[string]string{
		"/svc/payments/api":       "svc/payments/api",
		"/svc/payments/api?q=../": "svc/payments/api",
		"/svc/a%20b":              "svc/a b",
		"":                        "",
	} {
		if got, ok := resourceFromURI(in); !ok || got != want {
			t.Errorf("resourceFromURI(%q) = %q,%v want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"/svc/../x", "/svc/./x", "/svc/%2e%2e/x", "/svc/%zz"} {
		if _, ok := resourceFromURI(bad); ok {
			t.Errorf("resourceFromURI(%q) accepted", bad)
		}
	}
}
