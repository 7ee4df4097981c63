//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config
//go:generate go tool packer-sdc struct-markdown

package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/packer-plugin-sdk/common"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/config"
	"github.com/hashicorp/packer-plugin-sdk/template/interpolate"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ociimage"
)

// Config is the configuration of the fixity-oci builder.
type Config struct {
	common.PackerConfig `mapstructure:",squash"`

	// The parent image: `"scratch"` (an empty image), an OCI image layout directory
	// written as `DIR`, `DIR:TAG` or `DIR@sha256:HEX`, or a root filesystem tarball
	// (`.tar`, `.tar.gz`, `.tar.zst`). Every reused blob is checked against its digest.
	Base string `mapstructure:"base" required:"true"`
	// The OCI image layout directory to write. A missing directory is created
	// atomically when the build succeeds; an existing OCI layout gets the new image
	// added (its tags move to the new image). Any other existing directory is refused.
	OutputDir string `mapstructure:"output_dir" required:"true"`
	// The image name, recorded as the `org.opencontainers.image.title` annotation and
	// used by fixity-sign and fixity-release. Defaults to the build name.
	ImageName string `mapstructure:"image_name"`
	// The image version (`org.opencontainers.image.version`). Also the default tag.
	Version string `mapstructure:"version"`
	// The source revision, e.g. a git commit (`org.opencontainers.image.revision`).
	Revision string `mapstructure:"revision"`
	// The source repository URL (`org.opencontainers.image.source`).
	SourceURL string `mapstructure:"source_url"`
	// Tags for the image in the layout's index.json. Defaults to `[version]`, or
	// `["latest"]` when no version is set.
	Tags []string `mapstructure:"tags"`
	// Extra manifest annotations. Keys in the `org.opencontainers.image.` namespace
	// that this builder sets itself cannot be overridden here.
	Annotations map[string]string `mapstructure:"annotations"`
	// The image config entrypoint (exec form).
	Entrypoint []string `mapstructure:"entrypoint"`
	// The image config default arguments (exec form).
	Cmd []string `mapstructure:"cmd"`
	// Environment variables of the image config; merged over the base image's.
	Env map[string]string `mapstructure:"env"`
	// The user (`name`, `uid` or `uid:gid`) processes in the image run as.
	User string `mapstructure:"user"`
	// The working directory of processes in the image.
	WorkingDir string `mapstructure:"working_dir"`
	// Image config labels; merged over the base image's.
	Labels map[string]string `mapstructure:"labels"`
	// The platform as `os/architecture[/variant]`. Defaults to the base image's
	// platform, else `linux/amd64` (never the build host's: the image must not
	// depend on where it was built).
	Platform string `mapstructure:"platform"`
	// Layer compression: `gzip` (default, read by every OCI client), `zstd` (fastest;
	// needs skopeo, containerd or umoci >= 0.5) or `none`.
	Compression string `mapstructure:"compression"`
	// The time, in seconds since the Unix epoch, written into every timestamp of the
	// image. Defaults to the `SOURCE_DATE_EPOCH` environment variable, else 0.
	SourceDateEpoch string `mapstructure:"source_date_epoch"`
	// Push the image to `REGISTRY/REPO:TAG` after writing the layout; the build fails
	// unless the digest the registry reports equals the image digest.
	Push string `mapstructure:"push"`
	// Talk plain HTTP to the `push` registry (for a registry on loopback).
	InsecureRegistry bool `mapstructure:"insecure_registry"`
	// Let provisioners run commands (`shell`, inline scripts) in a chroot of the
	// image: the staging root over the base image's files (overlayfs, Linux), so
	// what a command changes or deletes is what the new layer holds. Needs root and a
	// `/bin/sh` in the base or the staged tree. Off by default: files are added with
	// the `file` and `fixity-oidc` provisioners.
	AllowCommands bool `mapstructure:"allow_commands"`

	ctx       interpolate.Context
	epoch     int64
	platform  ocispec.Platform
	compress  ociimage.Compression
	resolvedT []string
}

var (
	platformRE = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$`)
	tagRE      = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// Prepare decodes and validates the configuration. It has no side effects and can
// run more than once.
func (c *Config) Prepare(raws ...interface{}) ([]string, error) {
	if err := config.Decode(c, &config.DecodeOpts{
		PluginType:         BuilderID,
		Interpolate:        true,
		InterpolateContext: &c.ctx,
	}, raws...); err != nil {
		return nil, err
	}
	var errs *packersdk.MultiError
	add := func(format string, a ...interface{}) {
		errs = packersdk.MultiErrorAppend(errs, fmt.Errorf(format, a...))
	}

	if c.Base == "" {
		add(`base is required: use "scratch", an OCI layout directory (DIR, DIR:TAG, DIR@sha256:HEX) or a rootfs tarball`)
	}
	if c.OutputDir == "" {
		add("output_dir is required: the OCI image layout directory to write")
	} else if err := checkOutputDir(c.OutputDir); err != nil {
		add("%s", err)
	}
	if c.ImageName == "" {
		c.ImageName = c.PackerBuildName
	}
	comp := c.Compression
	if comp == "" {
		comp = string(ociimage.Gzip)
	}
	if cc, err := ociimage.ParseCompression(comp); err != nil {
		add("%s", err)
	} else {
		c.compress = cc
	}
	epoch := c.SourceDateEpoch
	if epoch == "" {
		epoch = os.Getenv("SOURCE_DATE_EPOCH")
	}
	if epoch != "" {
		n, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil || n < 0 {
			add("source_date_epoch: %q is not a non-negative number of seconds since 1970-01-01 UTC (check the field or the SOURCE_DATE_EPOCH variable)", epoch)
		}
		c.epoch = n
	}
	if c.Platform != "" {
		if !platformRE.MatchString(c.Platform) {
			add("platform: %q is not os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8", c.Platform)
		} else {
			p := strings.Split(c.Platform, "/")
			c.platform = ocispec.Platform{OS: p[0], Architecture: p[1]}
			if len(p) == 3 {
				c.platform.Variant = p[2]
			}
		}
	}
	c.resolvedT = c.Tags
	if len(c.resolvedT) == 0 {
		if c.Version != "" {
			c.resolvedT = []string{c.Version}
		} else {
			c.resolvedT = []string{"latest"}
		}
	}
	for _, t := range c.resolvedT {
		if !tagRE.MatchString(t) {
			add("tags: %q is not a valid tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')", t)
		}
	}
	for k := range c.Annotations {
		if reservedAnnotation(k) {
			add("annotations: %q is set by the builder; use image_name, version, revision or source_url instead", k)
		}
	}
	if c.Push != "" && !strings.Contains(c.Push, "/") {
		add("push: %q is not REGISTRY/REPO[:TAG], e.g. 127.0.0.1:5000/team/app:1.0", c.Push)
	}
	if errs != nil && len(errs.Errors) > 0 {
		return nil, errs
	}
	return []string{"ImageDigest", "BaseDigest"}, nil
}

// checkOutputDir refuses, before any work is done, an output_dir that exists and is
// not an OCI image layout, so a typo cannot make the build write into a random tree.
func checkOutputDir(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("output_dir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output_dir: %s exists and is not a directory; choose a new path or remove it", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err == nil {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("output_dir: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("output_dir: %s exists and is not an OCI image layout (no oci-layout file); choose a new path, or remove it if it is yours", dir)
	}
	return nil
}

func reservedAnnotation(k string) bool {
	switch k {
	case annVersion, annRevision, annCreated, annSource, annTitle, annRefName, annBaseDigest, annBaseName:
		return true
	}
	return false
}
