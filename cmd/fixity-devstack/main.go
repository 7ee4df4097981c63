//go:build unix

// Command fixity-devstack runs a private Sigstore instance on 127.0.0.1 for the demo and
// for scripts: a GitHub Actions-/GitLab CI-shaped OIDC issuer, Fulcio, a timestamp
// authority and Rekor v2 (see internal/devstack). It is a development tool and is not
// part of the plugin.
//
//	fixity-devstack up    --dir DIR [--env-file FILE] [job flags]   run until SIGINT/SIGTERM
//	fixity-devstack wait  --dir DIR [--timeout 3m]                  block until `up` is ready
//	fixity-devstack token --dir DIR [--kind github|gitlab] [job and token flags]
//
// Exit codes: 0 ok, 1 failure (stack did not start, not ready in time), 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/devstack"
)

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	switch args[0] {
	case "up":
		return up(ctx, args[1:], stdout, stderr)
	case "wait":
		return wait(ctx, args[1:], stdout, stderr)
	case "token":
		return token(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "fixity-devstack: unknown command %q; want up, wait or token\n", args[0])
	return exitUsage
}

const usage = `usage: fixity-devstack <command> [flags]

commands:
  up     start the issuers, Fulcio, timestamp-server and Rekor v2 on 127.0.0.1 and run
         until SIGINT/SIGTERM; writes DIR/devstack.json, DIR/trusted_root.json,
         DIR/signing_config.json and, with --env-file, shell exports to source
  wait   wait until the stack started by "up --dir DIR" answers
  token  print an ID token minted by the running stack's issuer

The servers come from PATH: bash scripts/tools.sh fulcio timestamp-server rekor-server
and PATH=$(bash scripts/tools.sh --path):$PATH.
Run "fixity-devstack <command> -h" for the flags of a command.
`

// jobFlags are the CI context flags shared by up (the job the GitHub token request
// endpoint answers for) and token.
type jobFlags struct {
	repo, ref, workflow, jobWorkflowRef, environment, event, runner, sha string
}

func (j *jobFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&j.repo, "repo", "", "repository OWNER/NAME (GitHub) or project path GROUP/PROJECT (GitLab); default acme/images")
	fs.StringVar(&j.ref, "ref", "", "git ref: refs/heads/main style for GitHub, a branch or tag name for GitLab")
	fs.StringVar(&j.workflow, "workflow", "", "GitHub workflow file (default .github/workflows/release.yml) or GitLab CI file (default .gitlab-ci.yml)")
	fs.StringVar(&j.jobWorkflowRef, "job-workflow-ref", "", "GitHub reusable workflow OWNER/REPO/PATH@REF (the certificate SAN); default the workflow itself")
	fs.StringVar(&j.environment, "environment", "", "deployment environment of the job")
	fs.StringVar(&j.event, "event", "", "GitHub event_name (push, pull_request…) or GitLab pipeline_source")
	fs.StringVar(&j.runner, "runner", "", "runner_environment: github-hosted/gitlab-hosted (default) or self-hosted")
	fs.StringVar(&j.sha, "sha", "", "commit sha (default a stable fake)")
}

func (j *jobFlags) github() devstack.GitHubToken {
	return devstack.GitHubToken{Repository: j.repo, Ref: j.ref, WorkflowPath: j.workflow, JobWorkflowRef: j.jobWorkflowRef,
		Environment: j.environment, EventName: j.event, RunnerEnvironment: j.runner, SHA: j.sha}
}

func (j *jobFlags) gitlab() devstack.GitLabToken {
	return devstack.GitLabToken{ProjectPath: j.repo, Ref: j.ref, CIConfigPath: j.workflow,
		Environment: j.environment, PipelineSource: j.event, RunnerEnvironment: j.runner, SHA: j.sha}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("fixity-devstack "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

func up(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("up", stderr)
	dir := fs.String("dir", "", "directory for configs, keys, logs and the state file (required)")
	envFile := fs.String("env-file", "", "write shell `export` lines (FIXITY_DEVSTACK_*, ACTIONS_ID_TOKEN_REQUEST_*, GITHUB_*) here once ready")
	var job jobFlags
	job.register(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "fixity-devstack up: --dir is required (e.g. --dir .devstack)")
		return exitUsage
	}
	if _, err := job.github().Claims(); err != nil {
		fmt.Fprintf(stderr, "fixity-devstack up: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Stale files from an earlier run would point scripts at dead ports.
	statePath := filepath.Join(*dir, devstack.StateFile)
	_ = os.Remove(statePath)
	if *envFile != "" {
		_ = os.Remove(*envFile)
	}
	begin := time.Now()
	s, err := devstack.Start(ctx, devstack.Options{
		Dir:       *dir,
		GitHubJob: job.github(),
		Logf:      func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) },
	})
	if err != nil {
		fmt.Fprintf(stderr, "fixity-devstack up: %v\n", err)
		return exitFailure
	}
	defer func() {
		_ = os.Remove(statePath)
		if *envFile != "" {
			_ = os.Remove(*envFile)
		}
		if err := s.Close(); err != nil {
			fmt.Fprintf(stderr, "fixity-devstack up: stop: %v\n", err)
		}
		fmt.Fprintln(stderr, "fixity-devstack: stopped")
	}()
	if *envFile != "" {
		if err := s.WriteEnvFile(*envFile); err != nil {
			fmt.Fprintf(stderr, "fixity-devstack up: %v\n", err)
			return exitFailure
		}
	}
	// The state file comes last: `wait` treats its presence as "ready".
	if _, err := s.WriteState(); err != nil {
		fmt.Fprintf(stderr, "fixity-devstack up: %v\n", err)
		return exitFailure
	}
	san, iss := s.GitHubIdentity()
	fmt.Fprintf(stdout, "fixity-devstack: ready in %s\n  issuer         %s\n  fulcio         %s\n  tsa            %s\n  rekor          %s\n  trusted root   %s\n  signing config %s\n  identity       %s\n",
		time.Since(begin).Round(time.Millisecond), iss, s.FulcioURL, s.TSAURL, s.RekorURL, s.TrustedRootPath, s.SigningConfigPath, san)
	if *envFile != "" {
		fmt.Fprintf(stdout, "  env file       %s (source it)\n", *envFile)
	}
	<-ctx.Done()
	return exitOK
}

func wait(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := newFlags("wait", stderr)
	dir := fs.String("dir", "", "the --dir given to `fixity-devstack up` (required)")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "fixity-devstack wait: --dir is required")
		return exitUsage
	}
	deadline := time.Now().Add(*timeout)
	for {
		st, err := devstack.LoadState(*dir)
		if err == nil && st.Alive(ctx) {
			return exitOK
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("issuer %s does not answer", st.IssuerURL)
			}
			fmt.Fprintf(stderr, "fixity-devstack wait: stack in %s not ready after %s: %v (see %s/logs/)\n", *dir, *timeout, err, *dir)
			return exitFailure
		}
		select {
		case <-ctx.Done():
			return exitFailure
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func token(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("token", stderr)
	dir := fs.String("dir", "", "the --dir given to `fixity-devstack up` (required)")
	kind := fs.String("kind", "github", "issuer: github or gitlab")
	aud := fs.String("aud", "sigstore", "audience; comma-separated for several")
	lifetime := fs.Duration("lifetime", 0, "token lifetime (default 5m)")
	expired := fs.Bool("expired", false, "mint a token that expired ten minutes ago")
	issuer := fs.String("issuer", "", "override the iss claim (a token for another issuer)")
	alg := fs.String("alg", "RS256", "signature algorithm: RS256 or ES256")
	untrusted := fs.Bool("untrusted-key", false, "sign with a key the issuer does not publish")
	noCIConfig := fs.Bool("no-ci-config-ref-uri", false, "GitLab: leave out ci_config_ref_uri, as in child pipelines")
	var job jobFlags
	job.register(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "fixity-devstack token: --dir is required")
		return exitUsage
	}
	opts := devstack.TokenOptions{Lifetime: *lifetime, Issuer: *issuer, Algorithm: *alg, UntrustedKey: *untrusted}
	if *aud != "" {
		opts.Audience = strings.Split(*aud, ",")
	}
	if *expired {
		e := devstack.Expired()
		opts.IssuedAt, opts.Lifetime = e.IssuedAt, e.Lifetime
	}
	st, err := devstack.LoadState(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "fixity-devstack token: %v\n", err)
		return exitFailure
	}
	var tok string
	switch *kind {
	case "github":
		g := job.github()
		g.TokenOptions = opts
		tok, err = st.MintGitHub(ctx, g)
	case "gitlab":
		g := job.gitlab()
		g.TokenOptions = opts
		g.NoCIConfigRefURI = *noCIConfig
		tok, err = st.MintGitLab(ctx, g)
	default:
		fmt.Fprintf(stderr, "fixity-devstack token: --kind %q: want github or gitlab\n", *kind)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "fixity-devstack token: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, tok)
	return exitOK
}
