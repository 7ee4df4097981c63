//go:build unix

package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/atomicfile"
)

// StateFile is the name, inside Options.Dir, of the file a stack run by
// `fixity-devstack up` writes so other processes can find and use it.
const StateFile = "devstack.json"

// State describes a running stack to other processes. It holds the issuers' request
// tokens, so it is written with mode 0600 and never printed.
type State struct {
	PID               int    `json:"pid"`
	Dir               string `json:"dir"`
	IssuerURL         string `json:"issuer_url"`
	GitLabIssuerURL   string `json:"gitlab_issuer_url"`
	FulcioURL         string `json:"fulcio_url"`
	TSAURL            string `json:"tsa_url"`
	RekorURL          string `json:"rekor_url"`
	TrustedRootPath   string `json:"trusted_root"`
	SigningConfigPath string `json:"signing_config"`
	GitHubRequestURL  string `json:"github_request_url"`
	GitHubToken       string `json:"github_request_token"`
	GitLabToken       string `json:"gitlab_mint_token"`
	// Identity and IdentityIssuer are what certificates for the default GitHub job carry.
	Identity       string `json:"identity"`
	IdentityIssuer string `json:"identity_issuer"`
}

// State returns the description of this stack for other processes.
func (s *Stack) State() State {
	san, iss := s.GitHubIdentity()
	return State{
		PID:               os.Getpid(),
		Dir:               s.Dir,
		IssuerURL:         s.IssuerURL,
		GitLabIssuerURL:   s.GitLabIssuerURL,
		FulcioURL:         s.FulcioURL,
		TSAURL:            s.TSAURL,
		RekorURL:          s.RekorURL,
		TrustedRootPath:   s.TrustedRootPath,
		SigningConfigPath: s.SigningConfigPath,
		GitHubRequestURL:  s.GitHub.RequestURL(),
		GitHubToken:       s.GitHub.RequestToken(),
		GitLabToken:       s.GitLab.RequestToken(),
		Identity:          san,
		IdentityIssuer:    iss,
	}
}

// WriteState writes the state file into the stack's directory (mode 0600).
func (s *Stack) WriteState() (string, error) {
	b, err := json.MarshalIndent(s.State(), "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(s.Dir, StateFile)
	if err := atomicfile.WriteFile(p, b, 0o600); err != nil {
		return "", err
	}
	return p, nil
}

// LoadState reads the state file of a stack started by another process in dir.
func LoadState(dir string) (State, error) {
	p := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return State{}, fmt.Errorf("devstack: %s does not exist: start the stack with `fixity-devstack up --dir %s` first", p, dir)
		}
		return State{}, fmt.Errorf("devstack: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("devstack: %s: %w (delete it and restart the stack)", p, err)
	}
	if st.IssuerURL == "" || st.GitHubToken == "" {
		return State{}, fmt.Errorf("devstack: %s: issuer_url or github_request_token missing (delete it and restart the stack)", p)
	}
	return st, nil
}

// Alive reports whether the stack's GitHub issuer still answers.
func (st State) Alive(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.IssuerURL+"/.well-known/openid-configuration", nil)
	if err != nil {
		return false
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// MintGitHub asks the running stack's GitHub issuer for a token.
func (st State) MintGitHub(ctx context.Context, g GitHubToken) (string, error) {
	return mintRemote(ctx, st.IssuerURL, st.GitHubToken, g)
}

// MintGitLab asks the running stack's GitLab issuer for a token.
func (st State) MintGitLab(ctx context.Context, g GitLabToken) (string, error) {
	return mintRemote(ctx, st.GitLabIssuerURL, st.GitLabToken, g)
}

func mintRemote(ctx context.Context, issuer, cred string, body any) (string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, issuer+MintPath, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "bearer "+cred)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", fmt.Errorf("devstack: issuer %s: %w (is `fixity-devstack up` still running?)", issuer, err)
	}
	defer resp.Body.Close()
	var out struct {
		Value   string `json:"value"`
		Message string `json:"message"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return "", fmt.Errorf("devstack: issuer %s: HTTP %d: %w", issuer, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("devstack: issuer %s: HTTP %d: %s", issuer, resp.StatusCode, out.Message)
	}
	return out.Value, nil
}

// Env returns the variables `fixity-devstack up --env-file` exports: FIXITY_DEVSTACK_*
// (URLs, trust files, the identity to pin), the GitHub token request variables and the
// GITHUB_* context of the job, sorted by name.
func (s *Stack) Env() []string {
	st := s.State()
	env := []string{
		"FIXITY_DEVSTACK_DIR=" + st.Dir,
		"FIXITY_DEVSTACK_PID=" + fmt.Sprint(st.PID),
		"FIXITY_DEVSTACK_ISSUER_URL=" + st.IssuerURL,
		"FIXITY_DEVSTACK_GITLAB_ISSUER_URL=" + st.GitLabIssuerURL,
		"FIXITY_DEVSTACK_FULCIO_URL=" + st.FulcioURL,
		"FIXITY_DEVSTACK_TSA_URL=" + st.TSAURL,
		"FIXITY_DEVSTACK_REKOR_URL=" + st.RekorURL,
		"FIXITY_DEVSTACK_TRUSTED_ROOT=" + st.TrustedRootPath,
		"FIXITY_DEVSTACK_SIGNING_CONFIG=" + st.SigningConfigPath,
		"FIXITY_DEVSTACK_IDENTITY=" + st.Identity,
		"FIXITY_DEVSTACK_IDENTITY_ISSUER=" + st.IdentityIssuer,
	}
	env = append(env, s.GitHubRequestEnv("")...)
	env = append(env, s.GitHubContextEnv()...)
	sort.Strings(env)
	return env
}

// ShellEnv renders KEY=VALUE pairs as POSIX shell `export` lines with single-quoted
// values, safe to `source` whatever the values contain.
func ShellEnv(env []string) []byte {
	var b bytes.Buffer
	b.WriteString("# written by fixity-devstack; source it: . FILE\n")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "export %s='%s'\n", k, strings.ReplaceAll(v, "'", `'\''`))
	}
	return b.Bytes()
}

// WriteEnvFile writes the Env of the stack as a shell file (mode 0600: it holds the
// token request credential).
func (s *Stack) WriteEnvFile(path string) error {
	return atomicfile.WriteFile(path, ShellEnv(s.Env()), 0o600)
}
