//go:build unix

package devstack

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateRoundTripAndRemoteMint(t *testing.T) {
	s, err := Start(context.Background(), Options{Dir: t.TempDir(), IssuerOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := s.WriteState()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file %s: mode %v, err %v; want 0600 (it holds request tokens)", p, fi.Mode(), err)
	}
	st, err := LoadState(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.IssuerURL != s.IssuerURL || st.GitHubToken != s.GitHub.RequestToken() {
		t.Fatalf("state %+v does not describe the stack", st)
	}
	if !st.Alive(context.Background()) {
		t.Fatal("Alive = false for a running stack")
	}
	v := verifier(t, s.GitHub)
	tok, err := st.MintGitHub(context.Background(), GitHubToken{Repository: "other/repo", TokenOptions: TokenOptions{Algorithm: "ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	idt, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c := claimsOf(t, idt); c["repository"] != "other/repo" {
		t.Errorf("remote mint ignored options: %v", c)
	}
	if _, err := st.MintGitLab(context.Background(), GitLabToken{Ref: "refs/heads/main"}); err == nil || !strings.Contains(err.Error(), "refs/ prefix") {
		t.Errorf("bad GitLab ref: err = %v, want the claim check's message", err)
	}
	bad := st
	bad.GitHubToken = "wrong"
	if _, err := bad.MintGitHub(context.Background(), GitHubToken{}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong credential: err = %v, want HTTP 401", err)
	}

	if _, err := LoadState(t.TempDir()); err == nil || !strings.Contains(err.Error(), "fixity-devstack up") {
		t.Errorf("missing state: %v", err)
	}
	d := t.TempDir()
	_ = os.WriteFile(filepath.Join(d, StateFile), []byte("{"), 0o600)
	if _, err := LoadState(d); err == nil || !strings.Contains(err.Error(), StateFile) {
		t.Errorf("corrupt state: %v", err)
	}
}

// TestEnvFileSourcesInShell sources the env file in a real shell and checks the values
// survive quoting, including one with a single quote.
func TestEnvFileSourcesInShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	s, err := Start(context.Background(), Options{Dir: t.TempDir(), IssuerOnly: true,
		GitHubJob: GitHubToken{Repository: "acme/it's", Environment: "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	env := filepath.Join(s.Dir, "env")
	if err := s.WriteEnvFile(env); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sh, "-c", `. "$1" && printf '%s\n%s\n%s\n' "$GITHUB_REPOSITORY" "$ACTIONS_ID_TOKEN_REQUEST_URL" "$FIXITY_DEVSTACK_IDENTITY"`, "sh", env).CombinedOutput()
	if err != nil {
		t.Fatalf("sourcing %s: %v\n%s", env, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{"acme/it's", s.GitHub.RequestURL(), "https://github.com/acme/it's/.github/workflows/release.yml@refs/heads/main"}
	for i, w := range want {
		if i >= len(lines) || lines[i] != w {
			t.Errorf("line %d = %q, want %q", i, lines, w)
		}
	}
	b, _ := os.ReadFile(env)
	if !bytes.Contains(b, []byte("ACTIONS_ID_TOKEN_REQUEST_TOKEN=")) {
		t.Error("env file lacks ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	}
}

// FuzzMintRequest feeds arbitrary bodies to the mint endpoint: it must never panic, and
// anything it answers 200 to must be a token the issuer's own keys verify.
func FuzzMintRequest(f *testing.F) {
	f.Add([]byte(`{"Repository":"acme/images","Environment":"prod"}`))
	f.Add([]byte(`{"Repository":"x","Audience":["a","b"],"Lifetime":1}`))
	f.Add([]byte(`{"Algorithm":"ES256","Extra":{"sub":null,"x":[1,2]}}`))
	f.Add([]byte(`{"Ref":"main"}`))
	f.Add([]byte(`[]`))
	is, err := NewIssuer(KindGitHub)
	if err != nil {
		f.Fatal(err)
	}
	defer is.Close()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, MintPath, bytes.NewReader(body))
		req.Header.Set("Authorization", "bearer "+is.RequestToken())
		rec := httptest.NewRecorder()
		is.serveMint(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("HTTP %d for %q", rec.Code, body)
		}
	})
}

// FuzzLoadState: a damaged state file is an error naming the file, never a panic or a
// half-filled State.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"pid":1,"issuer_url":"http://127.0.0.1:1","github_request_token":"x"}`))
	f.Add([]byte(`{"issuer_url":""}`))
	f.Add([]byte(`nul`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, StateFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := LoadState(dir)
		if err != nil {
			if !strings.Contains(err.Error(), StateFile) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if st.IssuerURL == "" || st.GitHubToken == "" {
			t.Fatalf("incomplete state accepted: %+v", st)
		}
	})
}

func BenchmarkMintGitHub(b *testing.B) {
	is, err := NewIssuer(KindGitHub)
	if err != nil {
		b.Fatal(err)
	}
	defer is.Close()
	for b.Loop() {
		if _, err := is.MintGitHub(GitHubToken{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStart measures a full stack start (issuers, three servers in parallel,
// trusted root and signing config) and stop.
func BenchmarkStart(b *testing.B) {
	for _, p := range []string{FulcioProgram, TSAProgram, RekorProgram} {
		if _, err := exec.LookPath(p); err != nil {
			b.Skipf("%s not on PATH", p)
		}
	}
	for b.Loop() {
		s, err := Start(context.Background(), Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = s.Close()
		b.StartTimer()
	}
}
