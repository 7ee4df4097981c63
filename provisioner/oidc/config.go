//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config
//go:generate go tool packer-sdc struct-markdown

package oidc

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/packer-plugin-sdk/common"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/config"
	"github.com/hashicorp/packer-plugin-sdk/template/interpolate"
	"github.com/hashicorp/packer-plugin-sdk/uuid"
)

// Defaults. The destination is what `fixity authz --bundle` and services read.
const (
	DefaultDestination    = "/etc/fixity"
	DefaultVerifierPath   = "/usr/local/bin/fixity"
	DefaultExecuteCommand = "chmod +x {{.Path}}; {{.Vars}} {{.Path}}"
	DefaultVerifierArch   = "amd64"
)

// Config is the fixity-oidc provisioner's configuration.
type Config struct {
	common.PackerConfig `mapstructure:",squash"`

	// A rendered policy bundle directory (policy.json, jwks/, manifest.json), normally
	// `data.fixity-policy.NAME.bundle_dir`. Exactly one of `source` and `policy_files`
	// must be set.
	Source string `mapstructure:"source"`
	// Policy files (`*.fixity.hcl`) to lint, test and render here instead of taking a
	// rendered `source`. Lint errors or failing tests fail the build.
	PolicyFiles []string `mapstructure:"policy_files"`
	// With `policy_files`: the timestamp recorded in the manifest (seconds since the
	// epoch). Default: the `SOURCE_DATE_EPOCH` environment variable, else 0.
	SourceDateEpoch string `mapstructure:"source_date_epoch"`
	// The policy digest (`sha256:…`) the bundle must have, normally
	// `data.fixity-policy.NAME.digest`. The build fails when the bundle differs, so an
	// image can never carry a policy other than the one stamped on it.
	Digest string `mapstructure:"digest"`
	// Absolute path in the image where the bundle is installed. Files get mode 0444 and
	// directories 0555. An existing directory there is replaced. Default `/etc/fixity`.
	Destination string `mapstructure:"destination"`
	// Remote directory the bundle (and the install script) is uploaded to before
	// `execute_command` moves it into `destination`. It must not exist yet (it is
	// created with mode 0700, so nobody else can swap the script sudo runs), its parent
	// must be writable by the connecting user, and it is removed afterwards. Default
	// `/tmp/fixity-oidc-<uuid>`.
	StagingDirectory string `mapstructure:"staging_directory"`
	// The command that runs the install script (which copies the staged bundle to
	// `destination` and sets the modes). Template variables: `{{.Path}}` the script,
	// `{{.Vars}}` its environment assignments, `{{.Command}}` the two together
	// (`{{.Vars}} sh {{.Path}}`), `{{.StagingDirectory}}` and `{{.Destination}}`.
	// Default `chmod +x {{.Path}}; {{.Vars}} {{.Path}}`; when the user cannot write the
	// destination use sudo, e.g.
	// `echo 'password' | sudo -S sh -c '{{ .Vars }} {{ .Path }}'` or
	// `sudo -n sh -c '{{ .Command }}'`.
	ExecuteCommand string `mapstructure:"execute_command"`
	// Upload the files straight to `destination` with their final modes and run no
	// command at all. Use it with communicators that cannot run commands, such as the
	// `fixity-oci` builder's (the default there), and with WinRM. Default: on for
	// `fixity-oci` builds, off otherwise.
	DirectUpload *bool `mapstructure:"direct_upload"`
	// Also install the static Linux `fixity` binary (the runtime verifier, `fixity authz`)
	// at `verifier_path` with mode 0555.
	InstallVerifier bool `mapstructure:"install_verifier"`
	// Local path of the `fixity` binary to install. It must be a static Linux ELF for
	// `verifier_arch`. Default: built from `verifier_source`.
	VerifierBinary string `mapstructure:"verifier_binary"`
	// A local checkout of this module to build the verifier from
	// (`CGO_ENABLED=0 GOOS=linux GOARCH=<verifier_arch> go build ./cmd/fixity`); needs Go.
	VerifierSource string `mapstructure:"verifier_source"`
	// The image's CPU architecture: `amd64` or `arm64`. Default `amd64`.
	VerifierArch string `mapstructure:"verifier_arch"`
	// Absolute path of the verifier in the image. Default `/usr/local/bin/fixity`.
	VerifierPath string `mapstructure:"verifier_path"`

	ctx   interpolate.Context
	epoch int64
}

// safePath is what may appear in remote paths: they are pasted into shell commands
// (inside single quotes with sudo templates), so quoting characters are refused.
var safePath = regexp.MustCompile(`^/[A-Za-z0-9._/@+=,:-]*$`)

// Prepare decodes and validates raws. It is idempotent: Packer calls it twice.
func (c *Config) Prepare(raws ...interface{}) error {
	err := config.Decode(c, &config.DecodeOpts{
		PluginType:         "fixity-oidc",
		Interpolate:        true,
		InterpolateContext: &c.ctx,
		InterpolateFilter:  &interpolate.RenderFilter{Exclude: []string{"execute_command"}},
	}, raws...)
	if err != nil {
		return err
	}
	var errs *packersdk.MultiError
	add := func(format string, a ...interface{}) {
		errs = packersdk.MultiErrorAppend(errs, fmt.Errorf(format, a...))
	}

	switch {
	case c.Source == "" && len(c.PolicyFiles) == 0:
		add("source: set `source` to a rendered bundle directory (data.fixity-policy.NAME.bundle_dir) or `policy_files` to policy files")
	case c.Source != "" && len(c.PolicyFiles) > 0:
		add("source and policy_files are mutually exclusive: keep one")
	case c.Source != "":
		if st, err := os.Stat(c.Source); err != nil || !st.IsDir() {
			add("source %q: not a directory: point it at a rendered bundle (data.fixity-policy.NAME.bundle_dir or `fixity policy render -o DIR`)", c.Source)
		} else if _, err := os.Stat(filepath.Join(c.Source, "manifest.json")); err != nil {
			add("source %q: no manifest.json: this is not a rendered policy bundle; render it with `fixity policy render FILE -o DIR`", c.Source)
		}
	default:
		for i, f := range c.PolicyFiles {
			if _, err := os.Stat(f); err != nil {
				add("policy_files[%d] %q: %v: fix the path (relative paths resolve against the directory packer runs in)", i, f, err)
			}
		}
	}
	if c.SourceDateEpoch != "" && len(c.PolicyFiles) == 0 {
		add("source_date_epoch only applies with policy_files: set it on the fixity-policy data source instead")
	}
	c.epoch = 0
	if len(c.PolicyFiles) > 0 {
		epoch, field := c.SourceDateEpoch, "source_date_epoch"
		if epoch == "" {
			epoch, field = os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
		}
		if epoch != "" {
			n, err := strconv.ParseInt(epoch, 10, 64)
			if err != nil || n < 0 {
				add("%s %q: want whole seconds since 1970", field, epoch)
			}
			c.epoch = n
		}
	}
	if c.Digest != "" && !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(c.Digest) {
		add("digest %q: want sha256:<64 hex digits> (data.fixity-policy.NAME.digest)", c.Digest)
	}

	if c.Destination == "" {
		c.Destination = DefaultDestination
	}
	if err := checkRemotePath("destination", c.Destination); err != nil {
		errs = packersdk.MultiErrorAppend(errs, err)
	} else if path.Clean(c.Destination) == "/" {
		add("destination %q: refusing to replace /: pick a directory such as /etc/fixity", c.Destination)
	}
	c.Destination = path.Clean(c.Destination)
	if c.StagingDirectory == "" {
		c.StagingDirectory = "/tmp/fixity-oidc-" + uuid.TimeOrderedUUID()
	}
	if err := checkRemotePath("staging_directory", c.StagingDirectory); err != nil {
		errs = packersdk.MultiErrorAppend(errs, err)
	}
	c.StagingDirectory = path.Clean(c.StagingDirectory)
	if c.ExecuteCommand == "" {
		c.ExecuteCommand = DefaultExecuteCommand
	}
	if _, err := interpolate.Render(c.ExecuteCommand, &interpolate.Context{Data: &executeData{}}); err != nil {
		add("execute_command: %v: fix the template (variables: .Path .Vars .Command .StagingDirectory .Destination)", err)
	}

	if c.VerifierArch == "" {
		c.VerifierArch = DefaultVerifierArch
	}
	if _, ok := elfMachines[c.VerifierArch]; !ok {
		add("verifier_arch %q: want amd64 or arm64", c.VerifierArch)
	}
	if c.VerifierPath == "" {
		c.VerifierPath = DefaultVerifierPath
	}
	if err := checkRemotePath("verifier_path", c.VerifierPath); err != nil {
		errs = packersdk.MultiErrorAppend(errs, err)
	}
	if c.InstallVerifier {
		switch {
		case c.VerifierBinary != "" && c.VerifierSource != "":
			add("verifier_binary and verifier_source are mutually exclusive: keep one")
		case c.VerifierBinary != "":
			if _, err := os.Stat(c.VerifierBinary); err != nil {
				add("verifier_binary %q: %v: build it with `CGO_ENABLED=0 GOOS=linux GOARCH=%s go build ./cmd/fixity`", c.VerifierBinary, err, c.VerifierArch)
			}
		case c.VerifierSource != "":
			if _, err := os.Stat(filepath.Join(c.VerifierSource, "cmd", "fixity")); err != nil {
				add("verifier_source %q: no cmd/fixity there: point it at a checkout of packer-plugin-fixity", c.VerifierSource)
			}
		default:
			add("install_verifier: set verifier_binary (a static linux fixity binary) or verifier_source (a checkout to build it from)")
		}
	} else if c.VerifierBinary != "" || c.VerifierSource != "" {
		add("verifier_binary/verifier_source are set but install_verifier is false: set install_verifier = true or remove them")
	}
	if errs != nil && len(errs.Errors) > 0 {
		return errs
	}
	return nil
}

func checkRemotePath(field, p string) error {
	if !safePath.MatchString(p) {
		return fmt.Errorf("%s %q: want an absolute path of letters, digits and . _ / @ + = , : - (no spaces or quotes: it is used in shell commands)", field, p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return errors.New(field + " " + p + ": must not contain ..: write the path out")
		}
	}
	return nil
}
