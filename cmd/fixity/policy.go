package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
	"github.com/fixity-dev/packer-plugin-fixity/version"
)

func init() {
	register(command{
		name:    "policy",
		summary: "lint, test, render and explain *.fixity.hcl identity policies",
		run: func(args []string, stdout, stderr io.Writer) int {
			return subcommands("policy", map[string]func([]string, io.Writer, io.Writer) int{
				"lint":    policyLint,
				"test":    policyTest,
				"render":  policyRender,
				"explain": policyExplain,
			}, args, stdout, stderr)
		},
	})
}

// policyParse parses flags that may come before or after the positional arguments
// (`fixity policy lint a.hcl -o json`), returning the positionals.
func policyParse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func policyFlags(name string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("fixity policy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fixity policy %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// policyLoad loads the files and prints load errors (file:line:col) to stderr.
func policyLoad(verb string, files []string, stderr io.Writer) (*policy.Policy, bool) {
	if len(files) == 0 {
		fmt.Fprintf(stderr, "fixity policy %s: no policy files given; pass one or more *.fixity.hcl files\n", verb)
		return nil, false
	}
	p, err := policy.LoadFiles(files...)
	if err != nil {
		var le *policy.LoadError
		if errors.As(err, &le) {
			for _, l := range le.Lines() {
				fmt.Fprintln(stderr, l)
			}
		} else {
			fmt.Fprintln(stderr, err)
		}
		fmt.Fprintf(stderr, "fixity policy %s: the policy could not be loaded; fix the errors above\n", verb)
		return nil, false
	}
	return p, true
}

func policyWriteJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func validOutput(o string, stderr io.Writer) bool {
	if o != "text" && o != "json" {
		fmt.Fprintf(stderr, "-o %q: use text or json\n", o)
		return false
	}
	return true
}

func policyLint(args []string, stdout, stderr io.Writer) int {
	fs := policyFlags("lint", stderr, "[-o text|json] [--fail-on error|warning] FILE…")
	out := fs.String("o", "text", "output format: text or json")
	failOn := fs.String("fail-on", "error", "least severity that makes the exit code 1: error or warning")
	files, err := policyParse(fs, args)
	if err != nil {
		return exitUsage
	}
	if !validOutput(*out, stderr) {
		return exitUsage
	}
	if !policy.ValidFailOn(*failOn) {
		fmt.Fprintf(stderr, "--fail-on %q: use error or warning\n", *failOn)
		return exitUsage
	}
	p, ok := policyLoad("lint", files, stderr)
	if !ok {
		return exitUsage
	}
	findings := policy.Lint(p, policy.LintOptions{FailOn: *failOn})
	if *out == "json" {
		if findings == nil {
			findings = []policy.Finding{}
		}
		policyWriteJSON(stdout, map[string]any{"findings": findings})
	} else {
		errs, warns := 0, 0
		for _, f := range findings {
			fmt.Fprintf(stdout, "%s:%d: %s %s: %s\n    fix: %s\n", f.File, f.Line, f.Severity, f.Rule, f.Message, f.Fix)
			if f.Severity == policy.SeverityError {
				errs++
			} else {
				warns++
			}
		}
		fmt.Fprintf(stdout, "%d error(s), %d warning(s) in %s\n", errs, warns, strings.Join(files, ", "))
	}
	if policy.Failed(findings, *failOn) {
		return exitNegative
	}
	return exitOK
}

func policyTest(args []string, stdout, stderr io.Writer) int {
	fs := policyFlags("test", stderr, "[-v] [-o text|json] FILE…")
	out := fs.String("o", "text", "output format: text or json")
	verbose := fs.Bool("v", false, "print every test and mutant, not only failures")
	files, err := policyParse(fs, args)
	if err != nil {
		return exitUsage
	}
	if !validOutput(*out, stderr) {
		return exitUsage
	}
	p, ok := policyLoad("test", files, stderr)
	if !ok {
		return exitUsage
	}
	e, err := policy.NewEvaluator(p)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if len(p.Tests) == 0 {
		fmt.Fprintf(stderr, "fixity policy test: %s declare no test blocks; add test \"name\" { claims = {…} request {…} expect = \"allow\" }\n", strings.Join(files, ", "))
		return exitNegative
	}
	rep := policy.RunTests(p, e)
	if *out == "json" {
		policyWriteJSON(stdout, rep)
	} else {
		rep.WriteText(stdout, *verbose)
	}
	if !rep.OK() {
		return exitNegative
	}
	return exitOK
}

func policyRender(args []string, stdout, stderr io.Writer) int {
	fs := policyFlags("render", stderr, "FILE… -o DIR [--source-date-epoch N] [--fail-on error|warning] [--json]")
	dir := fs.String("o", "", "output folder for the bundle (policy.json, jwks/, manifest.json)")
	sde := fs.String("source-date-epoch", "", "created time in the manifest, seconds since 1970 (default: $SOURCE_DATE_EPOCH, else 0)")
	failOn := fs.String("fail-on", "error", "refuse to render on lint findings of this severity or worse: error or warning")
	asJSON := fs.Bool("json", false, "print {\"digest\",\"dir\"} as JSON")
	files, err := policyParse(fs, args)
	if err != nil {
		return exitUsage
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "fixity policy render: -o DIR is required (the bundle folder to write)")
		return exitUsage
	}
	if !policy.ValidFailOn(*failOn) {
		fmt.Fprintf(stderr, "--fail-on %q: use error or warning\n", *failOn)
		return exitUsage
	}
	epochStr := *sde
	if epochStr == "" {
		epochStr = os.Getenv("SOURCE_DATE_EPOCH")
	}
	var epoch int64
	if epochStr != "" {
		if epoch, err = strconv.ParseInt(epochStr, 10, 64); err != nil || epoch < 0 {
			fmt.Fprintf(stderr, "fixity policy render: source date epoch %q is not a non-negative integer of seconds\n", epochStr)
			return exitUsage
		}
	}
	p, ok := policyLoad("render", files, stderr)
	if !ok {
		return exitUsage
	}
	findings := policy.Lint(p, policy.LintOptions{FailOn: *failOn})
	if policy.Failed(findings, *failOn) {
		for _, f := range findings {
			fmt.Fprintf(stderr, "%s:%d: %s %s: %s\n    fix: %s\n", f.File, f.Line, f.Severity, f.Rule, f.Message, f.Fix)
		}
		fmt.Fprintln(stderr, "fixity policy render: lint findings (and failing tests, rule L12) block the bundle; fix them first")
		return exitNegative
	}
	digest, err := policy.Render(p, *dir, policy.RenderOptions{SourceDateEpoch: epoch, ToolVersion: version.String()})
	if err != nil {
		fmt.Fprintf(stderr, "fixity policy render: %v\n", err)
		return exitUsage
	}
	if *asJSON {
		policyWriteJSON(stdout, map[string]string{"digest": digest, "dir": *dir})
	} else {
		fmt.Fprintf(stdout, "%s  %s\n", digest, *dir)
	}
	return exitOK
}

func policyExplain(args []string, stdout, stderr io.Writer) int {
	fs := policyFlags("explain", stderr, "FILE… --claims F.json [--permission P] [--resource R] [--profile NAME] [--now RFC3339] [-o text|json]")
	claimsFile := fs.String("claims", "", "JSON file with the token's claims (a decoded JWT payload)")
	perm := fs.String("permission", "", "permission to ask for")
	res := fs.String("resource", "", "resource to ask for")
	prof := fs.String("profile", "", "profile to ask for (default: any profile granting --permission)")
	nowStr := fs.String("now", "", "evaluation time (RFC 3339); default: iat + 30s, or 2026-01-01 when the claims have no iat")
	out := fs.String("o", "text", "output format: text or json")
	files, err := policyParse(fs, args)
	if err != nil {
		return exitUsage
	}
	if !validOutput(*out, stderr) {
		return exitUsage
	}
	if *claimsFile == "" {
		fmt.Fprintln(stderr, "fixity policy explain: --claims F.json is required")
		return exitUsage
	}
	if *perm == "" && *prof == "" {
		fmt.Fprintln(stderr, "fixity policy explain: ask for something: --permission P [--resource R] or --profile NAME")
		return exitUsage
	}
	var now time.Time
	if *nowStr != "" {
		if now, err = time.Parse(time.RFC3339, *nowStr); err != nil {
			fmt.Fprintf(stderr, "--now %q: write an RFC 3339 time such as 2026-01-02T15:04:05Z\n", *nowStr)
			return exitUsage
		}
	}
	raw, err := os.ReadFile(*claimsFile)
	if err != nil {
		fmt.Fprintf(stderr, "fixity policy explain: %v\n", err)
		return exitUsage
	}
	if len(raw) > 64<<10 {
		fmt.Fprintf(stderr, "fixity policy explain: %s is over 64 KiB; tokens are at most 16 KiB\n", *claimsFile)
		return exitUsage
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil || claims == nil {
		fmt.Fprintf(stderr, "fixity policy explain: %s: want a JSON object of claims: %v\n", *claimsFile, err)
		return exitUsage
	}
	p, ok := policyLoad("explain", files, stderr)
	if !ok {
		return exitUsage
	}
	e, err := policy.NewEvaluator(p)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	claims, now = policy.CompleteFixture(p, claims, now)
	d, trace := e.Explain(policy.Request{Claims: claims, Permission: *perm, Resource: *res, Profile: *prof, Now: now})
	if *out == "json" {
		policyWriteJSON(stdout, map[string]any{"decision": d, "trace": trace})
	} else {
		for _, t := range trace {
			mark := "ok  "
			if !t.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(stdout, "%s %-28s %s\n", mark, t.Step, t.Detail)
		}
		if d.Allow {
			fmt.Fprintf(stdout, "ALLOW identity=%s binding=%s profile=%s\n", d.Identity, d.Binding, d.Profile)
		} else {
			fmt.Fprintf(stdout, "DENY %s: %s\n", d.Reason, d.Detail)
		}
	}
	if !d.Allow {
		return exitNegative
	}
	return exitOK
}
