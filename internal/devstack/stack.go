//go:build unix

// Package devstack runs a private Sigstore instance on 127.0.0.1 for tests, end-to-end
// tests and the demo: a local OIDC issuer that mints GitHub Actions and GitLab CI tokens,
// and the real Fulcio, timestamp-server and Rekor v2 (rekor-tiles, POSIX storage) binaries
// built by scripts/tools.sh, plus the trusted_root.json and signing_config.json a client
// needs to use them. Nothing leaves loopback; everything it starts stops on Close.
// Unix only (process groups, flock).
//
// Pinned programs (scripts/tools.sh names): fulcio v1.8.8, timestamp-server v2.1.3,
// rekor-server (rekor-tiles/v2 v2.3.0 cmd/rekor-server/posix).
package devstack

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// Program names looked up on PATH (scripts/tools.sh installs them).
const (
	FulcioProgram = "fulcio"
	TSAProgram    = "timestamp-server"
	RekorProgram  = "rekor-server"
)

// Options configure Start.
type Options struct {
	// Dir holds configs, keys, logs and Rekor's tiles; it is created if missing. Start
	// replaces the files it owns inside (trusted_root.json, signing_config.json,
	// fulcio/, tsa/, rekor/, logs/) and leaves anything else alone.
	Dir string
	// IssuerOnly starts only the OIDC issuers: for tests of token handling that need
	// no certificates. The server URLs and file paths stay empty.
	IssuerOnly bool
	// GitHubJob is the job the GitHub token request endpoint mints tokens for
	// (SetGitHubJob changes it later). The zero value is acme/images on main.
	GitHubJob GitHubToken
	// FulcioBin, TSABin and RekorBin override the programs found on PATH.
	FulcioBin, TSABin, RekorBin string
	// StartTimeout bounds the wait for each server to answer; default 90 s.
	StartTimeout time.Duration
	// TSALockWait bounds the wait for another stack's timestamp-server on this machine to
	// stop (timestamp-server v2.1.3 always binds :2112 for metrics, so only one runs at a
	// time); default 4 minutes, below `go test`'s default 10-minute timeout.
	TSALockWait time.Duration
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Stack is a running private Sigstore instance. Its exported fields are what a client
// needs; all URLs are http://127.0.0.1:PORT.
type Stack struct {
	// Dir is Options.Dir, absolute.
	Dir string
	// IssuerURL is the GitHub Actions-shaped issuer (the iss of MintGitHubToken tokens).
	IssuerURL string
	// GitLabIssuerURL is the GitLab CI-shaped issuer.
	GitLabIssuerURL string
	// GitHub and GitLab are the issuers themselves.
	GitHub, GitLab *Issuer
	// FulcioURL is Fulcio's base URL (sigstore-go sign.FulcioOptions.BaseURL).
	FulcioURL string
	// TSAURL is the full timestamp endpoint, .../api/v1/timestamp (what signing_config
	// lists and sign.TimestampAuthorityOptions.URL wants).
	TSAURL string
	// RekorURL is the Rekor v2 base URL; its host is the checkpoint origin.
	RekorURL string
	// TrustedRootPath and SigningConfigPath are the generated client files.
	TrustedRootPath, SigningConfigPath string
	// FulcioChainPath, TSAChainPath (PEM) and RekorPublicKeyPath (PEM) are the raw trust
	// material, for tools that take them one by one.
	FulcioChainPath, TSAChainPath, RekorPublicKeyPath string

	opts     Options
	rekorPub ed25519.PublicKey
	logf     func(string, ...any)
	mu       sync.Mutex
	procs    map[string]*proc
	tsaLock  *fileLock
	closed   bool
}

// Start launches the issuers and, unless opts.IssuerOnly, Fulcio, the timestamp
// authority and Rekor v2, waits until each answers, and writes the trusted root and
// signing config. On error everything already started is stopped again.
func Start(ctx context.Context, opts Options) (s *Stack, err error) {
	if opts.Dir == "" {
		return nil, errors.New("devstack: Options.Dir is empty: pass a directory for configs, keys and logs (t.TempDir() in tests)")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("devstack: dir %q: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("devstack: dir %q: %w", dir, err)
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 90 * time.Second
	}
	if opts.TSALockWait == 0 {
		opts.TSALockWait = 4 * time.Minute
	}
	s = &Stack{Dir: dir, opts: opts, procs: map[string]*proc{}, logf: opts.Logf}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	defer func() {
		if err != nil {
			_ = s.Close()
			s = nil
		}
	}()

	if s.GitHub, err = NewIssuer(KindGitHub); err != nil {
		return s, err
	}
	s.GitHub.SetGitHubJob(opts.GitHubJob)
	if s.GitLab, err = NewIssuer(KindGitLab); err != nil {
		return s, err
	}
	s.IssuerURL, s.GitLabIssuerURL = s.GitHub.URL, s.GitLab.URL
	s.logf("devstack: OIDC issuers: github %s, gitlab %s", s.IssuerURL, s.GitLabIssuerURL)
	if opts.IssuerOnly {
		return s, nil
	}

	bins := map[string]string{FulcioProgram: opts.FulcioBin, TSAProgram: opts.TSABin, RekorProgram: opts.RekorBin}
	for name, p := range bins {
		if p == "" {
			if p, err = exec.LookPath(name); err != nil {
				return s, fmt.Errorf("devstack: %s not on PATH: run `bash scripts/tools.sh fulcio timestamp-server rekor-server` and add `$(bash scripts/tools.sh --path)` to PATH", name)
			}
		}
		bins[name] = p
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return s, err
	}
	// The three servers do not depend on each other (Fulcio only on the issuers), so
	// they start together: the stack is ready as soon as the slowest is.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, start := range []func() error{
		func() error { return s.startRekor(ctx, bins[RekorProgram]) },
		func() error { return s.startTSA(ctx, bins[TSAProgram]) },
		func() error { return s.startFulcio(ctx, bins[FulcioProgram]) },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = start()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	if err := s.writeClientFiles(ctx); err != nil {
		return s, err
	}
	s.logf("devstack: ready: fulcio %s, tsa %s, rekor %s", s.FulcioURL, s.TSAURL, s.RekorURL)
	return s, nil
}

// MintGitHubToken signs a GitHub Actions ID token (audience "sigstore" unless set).
func (s *Stack) MintGitHubToken(g GitHubToken) (string, error) { return s.GitHub.MintGitHub(g) }

// MintGitLabToken signs a GitLab CI `id_tokens:` token (audience "sigstore" unless set).
func (s *Stack) MintGitLabToken(g GitLabToken) (string, error) { return s.GitLab.MintGitLab(g) }

// SetGitHubJob changes the job the GitHub token request endpoint mints tokens for.
func (s *Stack) SetGitHubJob(g GitHubToken) { s.GitHub.SetGitHubJob(g) }

// GitHubRequestEnv returns ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN
// (as KEY=VALUE) so code under test fetches tokens "as if in GitHub Actions". A non-empty
// audience is appended to the URL, the way actions/toolkit does; signing code normally
// appends "&audience=sigstore" itself, so pass "" for that.
func (s *Stack) GitHubRequestEnv(audience string) []string {
	u := s.GitHub.RequestURL()
	if audience != "" {
		u += "&audience=" + audience
	}
	return []string{
		"ACTIONS_ID_TOKEN_REQUEST_URL=" + u,
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + s.GitHub.RequestToken(),
	}
}

// GitHubContextEnv returns the GITHUB_* variables a runner sets for the current
// GitHub job (GITHUB_ACTIONS=true, GITHUB_REPOSITORY, GITHUB_SHA, GITHUB_RUN_ID…), so
// code that reads them sees the same job the tokens describe.
func (s *Stack) GitHubContextEnv() []string {
	g := s.GitHub.GitHubJob()
	c, err := g.Claims()
	if err != nil {
		return nil
	}
	str := func(k string) string { v, _ := c[k].(string); return v }
	return []string{
		"GITHUB_ACTIONS=true",
		"CI=true",
		"GITHUB_SERVER_URL=https://github.com",
		"GITHUB_REPOSITORY=" + str("repository"),
		"GITHUB_REPOSITORY_OWNER=" + str("repository_owner"),
		"GITHUB_REPOSITORY_ID=" + str("repository_id"),
		"GITHUB_REPOSITORY_OWNER_ID=" + str("repository_owner_id"),
		"GITHUB_REF=" + str("ref"),
		"GITHUB_REF_TYPE=" + str("ref_type"),
		"GITHUB_SHA=" + str("sha"),
		"GITHUB_EVENT_NAME=" + str("event_name"),
		"GITHUB_WORKFLOW=" + str("workflow"),
		"GITHUB_WORKFLOW_REF=" + str("workflow_ref"),
		"GITHUB_WORKFLOW_SHA=" + str("workflow_sha"),
		"GITHUB_RUN_ID=" + str("run_id"),
		"GITHUB_RUN_NUMBER=" + str("run_number"),
		"GITHUB_RUN_ATTEMPT=" + str("run_attempt"),
		"GITHUB_ACTOR=" + str("actor"),
		"RUNNER_ENVIRONMENT=" + str("runner_environment"),
	}
}

// GitHubIdentity returns the certificate identity (SAN) and issuer a Fulcio certificate
// issued for the current GitHub job carries — what a verifier pins.
func (s *Stack) GitHubIdentity() (san, issuer string) {
	return GitHubSAN(s.GitHub.GitHubJob()), s.IssuerURL
}

// GitHubSAN is the certificate SAN Fulcio derives from a GitHub token:
// https://github.com/{job_workflow_ref}.
func GitHubSAN(g GitHubToken) string {
	c, err := g.Claims()
	if err != nil {
		return ""
	}
	ref, _ := c["job_workflow_ref"].(string)
	return "https://github.com/" + ref
}

// GitLabSAN is the certificate SAN Fulcio derives from a GitLab token:
// https://{ci_config_ref_uri}.
func GitLabSAN(g GitLabToken) string {
	c, err := g.Claims()
	if err != nil {
		return ""
	}
	ref, _ := c["ci_config_ref_uri"].(string)
	return "https://" + ref
}

// StopFulcio stops Fulcio (fault tests: "Fulcio down"); its URL then refuses connections.
func (s *Stack) StopFulcio() error { return s.stop(FulcioProgram) }

// StopTSA stops the timestamp authority.
func (s *Stack) StopTSA() error { return s.stop(TSAProgram) }

// StopRekor stops Rekor.
func (s *Stack) StopRekor() error { return s.stop(RekorProgram) }

func (s *Stack) stop(name string) error {
	s.mu.Lock()
	p := s.procs[name]
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("devstack: %s is not running in this stack", name)
	}
	err := p.stop()
	if name == TSAProgram {
		s.releaseTSALock()
	}
	return err
}

// Close stops every server and issuer; it is safe to call more than once.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	procs := s.procs
	s.mu.Unlock()
	var errs []error
	for _, name := range []string{FulcioProgram, TSAProgram, RekorProgram} {
		if p := procs[name]; p != nil {
			if err := p.stop(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.releaseTSALock()
	if s.GitHub != nil {
		errs = append(errs, s.GitHub.Close())
	}
	if s.GitLab != nil {
		errs = append(errs, s.GitLab.Close())
	}
	return errors.Join(errs...)
}

// LogPath is the file that collects a server's stdout and stderr.
func (s *Stack) LogPath(program string) string {
	return filepath.Join(s.Dir, "logs", program+".log")
}

// GitLabJobEnv mints a GitLab token for g and returns what a GitLab CI job with
// `id_tokens: { SIGSTORE_ID_TOKEN: { aud: sigstore } }` sees: SIGSTORE_ID_TOKEN plus the
// predefined CI_* variables of the same job.
func (s *Stack) GitLabJobEnv(g GitLabToken) ([]string, error) {
	tok, err := s.MintGitLabToken(g)
	if err != nil {
		return nil, err
	}
	c, err := g.Claims()
	if err != nil {
		return nil, err
	}
	str := func(k string) string { v, _ := c[k].(string); return v }
	host := or(g.Host, "gitlab.com")
	env := []string{
		"SIGSTORE_ID_TOKEN=" + tok,
		"GITLAB_CI=true",
		"CI=true",
		"CI_SERVER_URL=https://" + host,
		"CI_SERVER_HOST=" + host,
		"CI_PROJECT_PATH=" + str("project_path"),
		"CI_PROJECT_ID=" + str("project_id"),
		"CI_PROJECT_NAMESPACE=" + str("namespace_path"),
		"CI_PROJECT_URL=https://" + host + "/" + str("project_path"),
		"CI_COMMIT_SHA=" + str("sha"),
		"CI_COMMIT_REF_NAME=" + str("ref"),
		"CI_COMMIT_REF_PROTECTED=" + str("ref_protected"),
		"CI_PIPELINE_ID=" + str("pipeline_id"),
		"CI_PIPELINE_SOURCE=" + str("pipeline_source"),
		"CI_JOB_ID=" + str("job_id"),
		"CI_JOB_URL=https://" + host + "/" + str("project_path") + "/-/jobs/" + str("job_id"),
		"GITLAB_USER_LOGIN=" + str("user_login"),
	}
	if str("ref_type") == "tag" {
		env = append(env, "CI_COMMIT_TAG="+str("ref"))
	} else {
		env = append(env, "CI_COMMIT_BRANCH="+str("ref"))
	}
	if e := str("environment"); e != "" {
		env = append(env, "CI_ENVIRONMENT_NAME="+e)
	}
	return env, nil
}
