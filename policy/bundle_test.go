package policy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// copyPolicy copies the base policy and its key into a fresh folder tree, so a render
// from another absolute path can be compared.
func copyPolicy(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range []string{"lint/base.fixity.hcl", "keys/rsa.jwks.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, f)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "lint", "base.fixity.hcl")
}

func TestRenderByteIdentical(t *testing.T) {
	opts := RenderOptions{SourceDateEpoch: 1700000000, ToolVersion: "test"}
	p1, err := LoadFiles("testdata/lint/base.fixity.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := LoadFiles(copyPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	d1 := filepath.Join(t.TempDir(), "a")
	d2 := filepath.Join(t.TempDir(), "b", "c")
	g1, err := Render(p1, d1, opts)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := Render(p2, d2, opts)
	if err != nil {
		t.Fatal(err)
	}
	if g1 != g2 || !strings.HasPrefix(g1, "sha256:") || len(g1) != 71 {
		t.Fatalf("digests differ: %s %s", g1, g2)
	}
	t1, t2 := readTree(t, d1), readTree(t, d2)
	if len(t1) != 5 || len(t2) != len(t1) { // policy.json, manifest.json, 3 key files
		t.Fatalf("bundle files: %v / %v", keys(t1), keys(t2))
	}
	for name, b := range t1 {
		if !bytes.Equal(b, t2[name]) {
			t.Fatalf("%s differs between renders", name)
		}
	}
	if got := sha256Hex(t1[BundleManifestFile]); got != g1 {
		t.Fatalf("digest %s is not sha256(manifest.json) %s", g1, got)
	}
	if d, _ := Digest(p1, opts); d != g1 {
		t.Fatalf("Digest %s != Render %s", d, g1)
	}
	// Render again over the same folder: same bytes, and nothing left beside it.
	if g, err := Render(p1, d1, opts); err != nil || g != g1 {
		t.Fatalf("re-render: %s %v", g, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(d1))
	if len(entries) != 1 {
		t.Fatalf("temporary folders left behind: %v", entries)
	}
	// The epoch is part of the bundle.
	if g, _ := Digest(p1, RenderOptions{SourceDateEpoch: 1, ToolVersion: "test"}); g == g1 {
		t.Fatal("created time does not change the digest")
	}
	var m Manifest
	json.Unmarshal(t1[BundleManifestFile], &m)
	if m.Created != "2023-11-14T22:13:20Z" || m.PolicyVersion != 3 || m.ToolVersion != "test" {
		t.Fatalf("manifest %+v", m)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func renderBase(t *testing.T) (string, *Policy) {
	t.Helper()
	p, err := LoadFiles("testdata/lint/base.fixity.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := Render(p, dir, RenderOptions{ToolVersion: "test"}); err != nil {
		t.Fatal(err)
	}
	return dir, p
}

func TestLoadBundleRoundTrip(t *testing.T) {
	dir, p := renderBase(t)
	bp, m, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Schema != BundleSchema || len(bp.Issuer("github").JWKS.Keys) == 0 {
		t.Fatalf("bundle: %+v", m)
	}
	e1, _ := NewEvaluator(p)
	e2, err := NewEvaluator(bp)
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := RunTests(p, e1), RunTests(bp, e2)
	if !r2.OK() || r1.Tests != r2.Tests || r1.Mutants != r2.Mutants {
		t.Fatalf("bundle decides differently: %+v vs %+v", r1, r2)
	}
	if d, err := BundleDigest(dir); err != nil || d != sha256Hex(readTree(t, dir)[BundleManifestFile]) {
		t.Fatalf("BundleDigest %s %v", d, err)
	}
	// Re-rendering a loaded bundle reproduces it exactly.
	want, _ := Digest(p, RenderOptions{ToolVersion: "test"})
	if got, err := Digest(bp, RenderOptions{ToolVersion: "test"}); err != nil || got != want {
		t.Fatalf("re-render of the bundle: %s %v, want %s", got, err, want)
	}
}

func TestLoadBundleFailsClosed(t *testing.T) {
	for name, mutate := range map[string]func(dir string){
		"policy edited": func(dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "policy.json"))
			os.WriteFile(filepath.Join(dir, "policy.json"), bytes.Replace(b, []byte(`"123456789"`), []byte(`"123456780"`), 1), 0o644)
		},
		"key swapped": func(dir string) {
			os.WriteFile(filepath.Join(dir, "jwks", "github.json"), []byte(`{"keys":[{"kty":"RSA"}]}`), 0o644)
		},
		"key removed":   func(dir string) { os.Remove(filepath.Join(dir, "jwks", "corp.json")) },
		"extra file":    func(dir string) { os.WriteFile(filepath.Join(dir, "jwks", "evil.json"), []byte(`{}`), 0o644) },
		"extra folder":  func(dir string) { os.Mkdir(filepath.Join(dir, "more"), 0o755) },
		"no manifest":   func(dir string) { os.Remove(filepath.Join(dir, "manifest.json")) },
		"manifest junk": func(dir string) { os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`{"schema":1}`), 0o644) },
		"path escape": func(dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
			os.WriteFile(filepath.Join(dir, "manifest.json"), bytes.Replace(b, []byte(`"jwks/corp.json"`), []byte(`"../corp.json"`), 1), 0o644)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir, _ := renderBase(t)
			mutate(dir)
			if _, _, err := LoadBundle(dir); err == nil {
				t.Fatal("tampered bundle loaded")
			}
		})
	}
}

func TestRenderRefusesForeignFolder(t *testing.T) {
	p, _ := LoadFiles("testdata/lint/base.fixity.hcl")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "precious.txt"), []byte("x"), 0o644)
	if _, err := Render(p, dir, RenderOptions{}); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious.txt")); err != nil {
		t.Fatal("foreign file removed")
	}
}

func TestRenderFetchesPinnedKeysByDiscovery(t *testing.T) {
	jwks, _ := os.ReadFile("testdata/keys/rsa.jwks.json")
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys"})
		case "/keys":
			w.Write(jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	src := `
issuer "local" {
  preset   = "generic-oidc"
  url      = "` + srv.URL + `"
  audience = "https://rp.test"
  jwks { mode = "pinned" }
}
`
	p, err := LoadSource("d.fixity.hcl", []byte(src), ".")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "b")
	if _, err := Render(p, dir, RenderOptions{HTTPClient: srv.Client()}); err != nil {
		t.Fatal(err)
	}
	if len(p.Issuers[0].JWKS.Keys) != 0 {
		t.Fatal("Render modified its input policy")
	}
	bp, _, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(bp.Issuers[0].JWKS.Keys, []byte("example-2026-01")) {
		t.Fatalf("keys not pinned: %s", bp.Issuers[0].JWKS.Keys)
	}
	// A discovery document for another issuer is refused.
	p.Issuers[0].URL = srv.URL + "/other"
	if _, err := Render(p, filepath.Join(t.TempDir(), "c"), RenderOptions{HTTPClient: srv.Client()}); err == nil {
		t.Fatal("discovery of a different issuer accepted")
	}
}
