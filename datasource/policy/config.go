//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config,DatasourceOutput
//go:generate go tool packer-sdc struct-markdown

package policy

import (
	"fmt"
	"os"
	"strconv"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/config"
)

// Config is the fixity-policy data source's configuration.
type Config struct {
	// Policy files (`*.fixity.hcl`) that together make one policy. Relative paths
	// resolve against the directory packer runs in; paths inside a policy file (e.g.
	// `jwks { file = … }`) resolve against that file's folder.
	Files []string `mapstructure:"files"`
	// One policy file; shorthand for `files = [file]`.
	File string `mapstructure:"file"`
	// Where the canonical bundle is written. Default
	// `<temp dir>/fixity-policy/<digest hex>`, which is content-addressed, so repeated
	// evaluations of the same policy share it.
	OutputDir string `mapstructure:"output_dir"`
	// Which lint findings fail the build: `error` (default) or `warning` (warnings
	// too). Failing policy tests always fail the build.
	FailOn string `mapstructure:"fail_on"`
	// The bundle manifest's `created` time in seconds since the epoch, so the bundle
	// and its digest are reproducible. Default: the `SOURCE_DATE_EPOCH` environment
	// variable, else 0.
	SourceDateEpoch string `mapstructure:"source_date_epoch"`

	epoch int64
	files []string
}

// DatasourceOutput is what `data.fixity-policy.NAME.<field>` reads.
type DatasourceOutput struct {
	// The policy digest `sha256:…`: stamp it on images (tags, labels) and pass it to
	// `fixity-oidc`'s `digest` and to `fixity-sign`.
	Digest string `mapstructure:"digest"`
	// The rendered bundle directory: pass it to `fixity-oidc`'s `source`.
	BundleDir string `mapstructure:"bundle_dir"`
	// The number of lint findings (all severities) that did not fail the build.
	Findings int `mapstructure:"findings"`
	// The number of policy tests (generated mutants included) that ran and passed.
	Tests int `mapstructure:"tests"`
	// The policy author's `policy_version`.
	PolicyVersion int `mapstructure:"policy_version"`
}

// Prepare decodes and validates raws.
func (c *Config) Prepare(raws ...interface{}) error {
	if err := config.Decode(c, &config.DecodeOpts{PluginType: "fixity-policy"}, raws...); err != nil {
		return err
	}
	c.files = nil
	var errs *packersdk.MultiError
	add := func(format string, a ...interface{}) {
		errs = packersdk.MultiErrorAppend(errs, fmt.Errorf(format, a...))
	}
	switch {
	case c.File != "" && len(c.Files) > 0:
		add("file and files are mutually exclusive: list every policy file in files")
	case c.File != "":
		c.files = []string{c.File}
	case len(c.Files) == 0:
		add("files: list the policy files, e.g. files = [\"policy/authz.fixity.hcl\"]")
	default:
		c.files = append([]string(nil), c.Files...)
	}
	for i, f := range c.files {
		if _, err := os.Stat(f); err != nil {
			add("files[%d] %q: %v: fix the path (relative paths resolve against the directory packer runs in)", i, f, err)
		}
	}
	switch c.FailOn {
	case "":
		c.FailOn = "error"
	case "error", "warning":
	default:
		add("fail_on %q: want \"error\" or \"warning\"", c.FailOn)
	}
	epoch := c.SourceDateEpoch
	field := "source_date_epoch"
	if epoch == "" {
		epoch, field = os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	}
	c.epoch = 0
	if epoch != "" {
		n, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil || n < 0 {
			add("%s %q: want whole seconds since 1970 (e.g. $(git log -1 --format=%%ct))", field, epoch)
		}
		c.epoch = n
	}
	if errs != nil && len(errs.Errors) > 0 {
		return errs
	}
	return nil
}
