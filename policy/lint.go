package policy

import (
	"fmt"
	"sort"
	"time"
)

// Severities of lint findings.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Finding is one lint result: a stable rule id, where, what, and the one-line fix.
type Finding struct {
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Message  string `json:"message"`
	Fix      string `json:"fix"`
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s %s: %s (fix: %s)", f.File, f.Line, f.Severity, f.Rule, f.Message, f.Fix)
}

// LintOptions tune Lint.
type LintOptions struct {
	// FailOn is "error" (default) or "warning": the least severity that fails (see Failed).
	FailOn string
	// Now is the build time for key snapshot checks; zero means time.Now().
	Now time.Time
}

// Rule describes one lint rule; the docs page is docs/policy/lint/<ID>.md.
type Rule struct {
	ID       string
	Severity string // default severity; some rules also emit the other one
	Title    string
	check    func(*lintCtx)
}

// Rules returns every lint rule in id order.
func Rules() []Rule {
	out := append([]Rule(nil), rules...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Failed reports whether findings fail at the given threshold ("error" or "warning").
func Failed(findings []Finding, failOn string) bool {
	for _, f := range findings {
		if f.Severity == SeverityError || (failOn == SeverityWarning && f.Severity == SeverityWarning) {
			return true
		}
	}
	return false
}

// ValidFailOn reports whether s is an accepted fail_on value.
func ValidFailOn(s string) bool { return s == SeverityError || s == SeverityWarning }

type lintCtx struct {
	p        *Policy
	opts     LintOptions
	e        *Evaluator
	findings []Finding
	rule     string
}

func (c *lintCtx) add(sev string, pos Pos, fix, format string, args ...any) {
	c.findings = append(c.findings, Finding{Rule: c.rule, Severity: sev, File: pos.File, Line: pos.Line,
		Message: fmt.Sprintf(format, args...), Fix: fix})
}

// Lint checks p against every rule and returns the findings sorted by file, line, rule.
// It never modifies p. Findings carry the position recorded by LoadFiles (for a
// bundle-loaded policy, the base file name).
func Lint(p *Policy, opts LintOptions) []Finding {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	c := &lintCtx{p: p, opts: opts}
	if e, err := NewEvaluator(p); err == nil {
		c.e = e
	}
	for _, r := range Rules() {
		c.rule = r.ID
		r.check(c)
	}
	sort.SliceStable(c.findings, func(i, j int) bool {
		a, b := c.findings[i], c.findings[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Rule < b.Rule
	})
	return c.findings
}
