package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/authz"
)

func init() {
	register(command{
		name:    "authz",
		summary: "verify a token against a baked policy bundle (check, serve)",
		run: func(args []string, stdout, stderr io.Writer) int {
			return subcommands("authz", map[string]func([]string, io.Writer, io.Writer) int{
				"check": authzCheck,
				"serve": authzServe,
			}, args, stdout, stderr)
		},
	})
}

// defaultBundle is where the fixity-oidc provisioner installs the bundle.
const defaultBundle = "/etc/fixity"

// authzCheck: exit 0 allow, 1 deny (every bad token included), 2 unusable invocation
// or unreadable bundle.
func authzCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fixity authz check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bundle := fs.String("bundle", defaultBundle, "policy bundle `DIR` (policy.json, jwks/, manifest.json)")
	token := fs.String("token", "", "the bearer `TOKEN` (visible to other users in ps: prefer --token-file)")
	tokenFile := fs.String("token-file", "", "read the token from `FILE` (- for stdin)")
	perm := fs.String("permission", "", "the `PERMISSION` asked for, e.g. service:deploy (required)")
	res := fs.String("resource", "", "the `RESOURCE` it applies to, e.g. svc/payments/api")
	out := fs.String("o", "text", "output `FORMAT`: text or json")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fixity authz check --bundle DIR (--token T | --token-file F) --permission P [--resource R] [-o json]")
		fmt.Fprintln(stderr, "exit codes: 0 allowed, 1 denied (including any bad token), 2 unusable invocation or bundle")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fixity authz check: unexpected argument %q: pass the token with --token or --token-file\n", fs.Arg(0))
		return exitUsage
	}
	if *out != "text" && *out != "json" {
		fmt.Fprintf(stderr, "fixity authz check: -o %q: want text or json\n", *out)
		return exitUsage
	}
	if *perm == "" {
		fmt.Fprintln(stderr, "fixity authz check: --permission is required (e.g. --permission service:deploy)")
		return exitUsage
	}
	if (*token == "") == (*tokenFile == "") {
		fmt.Fprintln(stderr, "fixity authz check: give exactly one of --token and --token-file")
		return exitUsage
	}
	raw := *token
	if *tokenFile != "" {
		var err error
		if raw, err = readToken(*tokenFile); err != nil {
			fmt.Fprintf(stderr, "fixity authz check: --token-file %s: %v\n", *tokenFile, err)
			return exitUsage
		}
	}
	a, err := authz.Open(*bundle, authz.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "fixity authz check: --bundle %s: %v\n", *bundle, err)
		return exitUsage
	}
	d := a.Check(context.Background(), authz.Request{Token: raw, Permission: *perm, Resource: *res})
	if *out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(d)
	} else {
		printDecision(stdout, d)
	}
	if d.Allow {
		return exitOK
	}
	return exitNegative
}

// readToken reads a token file (or stdin for "-"), bounded: anything over 1 MiB is
// not a token; between the authz limit and that, Check denies it as token_too_large.
func readToken(name string) (string, error) {
	var r io.Reader
	if name == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return "", err
	}
	if len(b) > 1<<20 {
		return "", errors.New("over 1 MiB: not a token")
	}
	return strings.TrimSpace(string(b)), nil
}

func printDecision(w io.Writer, d authz.Decision) {
	if d.Allow {
		fmt.Fprintf(w, "allow: identity %s, profile %s (binding %s, sub %s)\n", d.Identity, d.Profile, d.Binding, d.Subject)
	} else {
		fmt.Fprintf(w, "deny: %s: %s\n", d.Reason, d.Detail)
	}
	if d.PolicyDigest != "" {
		fmt.Fprintf(w, "policy %s\n", d.PolicyDigest)
	}
}

// authzServe runs the reverse-proxy endpoint until SIGTERM or SIGINT, then drains.
func authzServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fixity authz serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bundle := fs.String("bundle", defaultBundle, "policy bundle `DIR`")
	listen := fs.String("listen", "127.0.0.1:8181", "`ADDR` to listen on (host:port)")
	perm := fs.String("permission", "", "default `PERMISSION` when a request has no X-Fixity-Permission header")
	audit := fs.String("audit-log", "-", "write one JSON decision per line to `FILE` (- for stderr, empty for none)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fixity authz serve --bundle DIR --listen ADDR [--permission P] [--audit-log FILE]")
		fmt.Fprintln(stderr, "endpoints: /check (nginx auth_request), /envoy/… (Envoy ext_authz http_service, path_prefix \"/envoy\"), /healthz")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fixity authz serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	a, err := authz.Open(*bundle, authz.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "fixity authz serve: --bundle %s: %v\n", *bundle, err)
		return exitUsage
	}
	var auditW io.Writer
	switch *audit {
	case "":
	case "-":
		auditW = stderr
	default:
		f, err := os.OpenFile(*audit, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "fixity authz serve: --audit-log %s: %v\n", *audit, err)
			return exitUsage
		}
		defer f.Close()
		auditW = f
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "fixity authz serve: --listen %s: %v\n", *listen, err)
		return exitUsage
	}
	srv := &http.Server{
		Handler:           authz.Handler(a, authz.HandlerOptions{DefaultPermission: *perm, Audit: auditW}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "fixity authz: serving policy %s on http://%s\n", a.PolicyDigest(), ln.Addr())
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "fixity authz serve: %v\n", err)
		return exitUsage
	case <-ctx.Done():
	}
	fmt.Fprintln(stderr, "fixity authz: shutting down, draining requests")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Fprintf(stderr, "fixity authz serve: shutdown: %v\n", err)
		return exitNegative
	}
	return exitOK
}
