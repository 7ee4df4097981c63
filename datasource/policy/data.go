// Package policy is the fixity-policy data source: at template evaluation it loads
// Fixity policy files, lints them, runs their tests with the runtime evaluator and
// renders the canonical bundle, so a broken or untested policy stops `packer build`
// before any builder starts, and the template gets the policy digest to stamp on the
// image.
package policy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/packer-plugin-sdk/hcl2helper"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/zclconf/go-cty/cty"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
	"github.com/fixity-dev/packer-plugin-fixity/version"
)

// Datasource is the fixity-policy data source.
type Datasource struct {
	config Config
}

var _ packersdk.Datasource = (*Datasource)(nil)

// ConfigSpec implements packersdk.HCL2Speccer.
func (d *Datasource) ConfigSpec() hcldec.ObjectSpec { return d.config.FlatMapstructure().HCL2Spec() }

// Configure implements packersdk.Datasource.
func (d *Datasource) Configure(raws ...interface{}) error { return d.config.Prepare(raws...) }

// OutputSpec implements packersdk.Datasource.
func (d *Datasource) OutputSpec() hcldec.ObjectSpec {
	return (&DatasourceOutput{}).FlatMapstructure().HCL2Spec()
}

// Execute implements packersdk.Datasource.
func (d *Datasource) Execute() (cty.Value, error) {
	out, err := Build(BuildOptions{
		Files:           d.config.files,
		FailOn:          d.config.FailOn,
		SourceDateEpoch: d.config.epoch,
		OutputDir:       d.config.OutputDir,
	})
	if err != nil {
		return cty.NullVal(cty.EmptyObject), err
	}
	return hcl2helper.HCL2ValueFromConfig(out, d.OutputSpec()), nil
}

// BuildOptions are the inputs of Build.
type BuildOptions struct {
	Files           []string
	FailOn          string // "error" or "warning"
	SourceDateEpoch int64
	// OutputDir is where the bundle goes; empty means <temp>/fixity-policy/<digest hex>.
	OutputDir string
	// Say, if set, receives progress lines (lint warnings that did not fail).
	Say func(string)
}

// Build is what the data source (and fixity-oidc's policy_files) does: load, lint,
// test, render. Every finding or failure that stops it is in the returned error, with
// rule, file:line and fix, or the failing test's name and why.
func Build(o BuildOptions) (*DatasourceOutput, error) {
	if o.FailOn == "" {
		o.FailOn = policy.SeverityError
	}
	p, err := policy.LoadFiles(o.Files...)
	if err != nil {
		return nil, fmt.Errorf("fixity-policy: %w", err)
	}
	findings := policy.Lint(p, policy.LintOptions{FailOn: o.FailOn})
	if policy.Failed(findings, o.FailOn) {
		var b strings.Builder
		n := 0
		for _, f := range findings {
			if f.Severity == policy.SeverityError || o.FailOn == policy.SeverityWarning {
				n++
				fmt.Fprintf(&b, "\n  %s", f)
			}
		}
		return nil, fmt.Errorf("fixity-policy: lint found %d finding(s) at fail_on = %q:%s", n, o.FailOn, b.String())
	}
	if o.Say != nil {
		for _, f := range findings {
			o.Say("fixity-policy: " + f.String())
		}
	}
	e, err := policy.NewEvaluator(p)
	if err != nil {
		return nil, fmt.Errorf("fixity-policy: %w", err)
	}
	rep := policy.RunTests(p, e)
	if !rep.OK() {
		var b bytes.Buffer
		rep.WriteText(&b, false)
		return nil, fmt.Errorf("fixity-policy: %d of %d policy tests and mutants failed:\n%s", rep.Failed, rep.Tests+rep.Mutants, strings.TrimRight(b.String(), "\n"))
	}
	if rep.Tests == 0 {
		return nil, fmt.Errorf("fixity-policy: %s: the policy has no test blocks: add at least one allow and one deny test per binding", strings.Join(o.Files, ", "))
	}
	ropts := policy.RenderOptions{SourceDateEpoch: o.SourceDateEpoch, ToolVersion: version.String()}
	dir := o.OutputDir
	if dir == "" {
		digest, err := policy.Digest(p, ropts)
		if err != nil {
			return nil, fmt.Errorf("fixity-policy: %w", err)
		}
		dir = filepath.Join(os.TempDir(), "fixity-policy", strings.TrimPrefix(digest, "sha256:"))
	}
	digest, err := policy.Render(p, dir, ropts)
	if err != nil {
		return nil, fmt.Errorf("fixity-policy: render %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &DatasourceOutput{
		Digest:        digest,
		BundleDir:     abs,
		Findings:      len(findings),
		Tests:         rep.Tests + rep.Mutants,
		PolicyVersion: p.Version,
	}, nil
}
