//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config
//go:generate go tool packer-sdc struct-markdown

// Package sign is the fixity-sign post-processor: it signs the image hash keylessly with
// the CI's own OIDC identity (or a key) through Sigstore and writes a bundle v0.3. The
// work is done by internal/signing; this package maps Packer config and artifacts onto it.
package sign

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/hashicorp/packer-plugin-sdk/common"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/config"
	"github.com/hashicorp/packer-plugin-sdk/template/interpolate"

	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// Config is the configuration of the fixity-sign post-processor.
type Config struct {
	common.PackerConfig `mapstructure:",squash"`

	// The image name recorded in the signed predicate. Defaults to the build name.
	ImageName string `mapstructure:"image_name"`
	// The image version recorded in the signed predicate.
	Version string `mapstructure:"version"`
	// The digest (`sha256:…`) of the policy bundle baked into the image, e.g.
	// `data.fixity-policy.NAME.digest`. Also taken from the artifact when a previous
	// component recorded it.
	PolicyDigest string `mapstructure:"policy_digest"`
	// The digest of the base image. Defaults to the one fixity-oci recorded.
	BaseDigest string `mapstructure:"base_digest"`
	// The digest (`sha256:…`) of the template that built the image. When empty and
	// `template_files` is set, it is computed from those files.
	TemplateDigest string `mapstructure:"template_digest"`
	// Files whose content makes up the template (e.g. `["build.pkr.hcl"]`); hashed
	// in the given order into `template_digest`.
	TemplateFiles []string `mapstructure:"template_files"`
	// The source revision (git commit). Defaults to what the CI reports
	// (GITHUB_SHA, CI_COMMIT_SHA, BUILDKITE_COMMIT, CIRCLE_SHA1).
	SourceRevision string `mapstructure:"source_revision"`
	// The URL of the CI run. Defaults to what the CI reports (GitHub Actions run
	// attempt, GitLab CI_JOB_URL, BUILDKITE_BUILD_URL, CIRCLE_BUILD_URL).
	CIRunURL string `mapstructure:"ci_run_url"`
	// Where to write the bundle. Defaults to `IMAGE[-VERSION].sigstore.json` in the
	// directory packer runs in. Written atomically; nothing is written on failure.
	Output string `mapstructure:"output"`
	// Also sign a SLSA provenance v1 statement over the same subjects, written to
	// `output` with `.slsa.sigstore.json` instead of `.sigstore.json`.
	SLSAProvenance bool `mapstructure:"slsa_provenance"`

	// Where the OIDC identity token comes from: `auto` (default: explicit token, then
	// the CI this runs in), `token`, `file`, `env` (SIGSTORE_ID_TOKEN), `github`,
	// `gitlab`, `buildkite`, `circleci` or `google`. The token is fetched right before
	// signing and checked (audience, issuer, expiry) before Fulcio sees it.
	IdentityProvider string `mapstructure:"identity_provider"`
	// An explicit OIDC identity token. Prefer `identity_token_file` or the CI's
	// ambient token: a token in a variable must still be valid when signing starts.
	IdentityToken string `mapstructure:"identity_token"`
	// A file holding an OIDC identity token, read right before signing.
	IdentityTokenFile string `mapstructure:"identity_token_file"`
	// The token audience Fulcio expects. Defaults to `sigstore`.
	IdentityAudience string `mapstructure:"identity_audience"`
	// Pin the token issuer, e.g. `https://token.actions.githubusercontent.com`.
	OIDCIssuer string `mapstructure:"oidc_issuer"`

	// A trusted_root.json of a private Sigstore instance. With neither this nor
	// `signing_config` nor URLs, the public-good instance is used (through TUF).
	TrustedRoot string `mapstructure:"trusted_root"`
	// A signing_config.json that lists the private instance's Fulcio, Rekor and TSA.
	SigningConfig string `mapstructure:"signing_config"`
	// The Fulcio URL; overrides the signing config.
	FulcioURL string `mapstructure:"fulcio_url"`
	// The Rekor URL; overrides the signing config.
	RekorURL string `mapstructure:"rekor_url"`
	// The Rekor API major version for `rekor_url`: 1 or 2. Defaults to 2 when a TSA is
	// set, else 1. Rekor v2 needs a TSA.
	RekorVersion int `mapstructure:"rekor_version"`
	// The timestamp authority URL (e.g. `https://tsa.example/api/v1/timestamp`);
	// overrides the signing config.
	TSAURL string `mapstructure:"tsa_url"`
	// Do not write to a transparency log. Only allowed in key mode (air-gapped sites).
	SkipTransparencyLog bool `mapstructure:"skip_transparency_log"`

	// Key mode: a PEM private key or a cosign.key (encrypted) instead of a keyless
	// Fulcio certificate. Verifiers then need the public key.
	Key string `mapstructure:"key"`
	// The password of an encrypted `key`. Defaults to the COSIGN_PASSWORD environment variable.
	KeyPassword string `mapstructure:"key_password"`

	// Retries per service call on network errors, 5xx and 429, with exponential
	// backoff. Defaults to 3.
	Retries int `mapstructure:"retries"`
	// The deadline for the whole signing, e.g. `5m` (default). Fulcio certificates
	// live 10 minutes.
	Timeout string `mapstructure:"timeout"`
	// For OCI layouts from fixity-oci: attach the bundle to the image as an OCI 1.1
	// referrer (and push it when the image was pushed). Defaults to true.
	AttachReferrer *bool `mapstructure:"attach_referrer"`
	// Talk plain HTTP when pushing the referrer (a registry on loopback).
	InsecureRegistry bool `mapstructure:"insecure_registry"`

	timeout time.Duration
	ctx     interpolate.Context
}

var sha256Digest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Prepare decodes and validates the configuration. It touches no network: services
// and tokens are resolved when signing.
func (c *Config) Prepare(raws ...interface{}) error {
	*c = Config{}
	if err := config.Decode(c, &config.DecodeOpts{
		PluginType:         "fixity-sign",
		Interpolate:        true,
		InterpolateContext: &c.ctx,
	}, raws...); err != nil {
		return err
	}
	var errs *packersdk.MultiError
	add := func(format string, a ...interface{}) {
		errs = packersdk.MultiErrorAppend(errs, fmt.Errorf(format, a...))
	}
	if c.ImageName == "" {
		c.ImageName = c.PackerBuildName
	}
	for name, v := range map[string]string{"policy_digest": c.PolicyDigest, "base_digest": c.BaseDigest, "template_digest": c.TemplateDigest} {
		if v != "" && !sha256Digest.MatchString(v) {
			add("%s %q: want sha256:<64 lower-case hex digits>", name, v)
		}
	}
	for i, f := range c.TemplateFiles {
		if _, err := os.Stat(f); err != nil {
			add("template_files[%d] %q: %v: fix the path (relative to where packer runs)", i, f, err)
		}
	}
	if c.TemplateDigest != "" && len(c.TemplateFiles) > 0 {
		add("template_digest and template_files are mutually exclusive: keep one")
	}
	if c.IdentityToken != "" && c.IdentityTokenFile != "" {
		add("identity_token and identity_token_file are mutually exclusive: keep one")
	}
	if _, err := (signing.TokenOptions{Provider: c.IdentityProvider, Token: "x"}).DetectProvider(); err != nil && c.IdentityProvider != "" {
		add("identity_provider: %v", err)
	}
	if c.IdentityProvider == signing.ProviderToken && c.IdentityToken == "" {
		add("identity_provider = \"token\" needs identity_token")
	}
	if c.IdentityProvider == signing.ProviderFile && c.IdentityTokenFile == "" {
		add("identity_provider = \"file\" needs identity_token_file")
	}
	for name, f := range map[string]string{"trusted_root": c.TrustedRoot, "signing_config": c.SigningConfig, "key": c.Key} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			add("%s %q: %v: fix the path", name, f, err)
		}
	}
	for name, u := range map[string]string{"fulcio_url": c.FulcioURL, "rekor_url": c.RekorURL, "tsa_url": c.TSAURL} {
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			add("%s %q: want an http(s) URL", name, u)
		}
	}
	if (c.FulcioURL != "" || c.RekorURL != "" || c.TSAURL != "" || c.SigningConfig != "") && c.TrustedRoot == "" && c.Key == "" {
		add("trusted_root: required with signing_config or fulcio_url/rekor_url/tsa_url, so the bundle can be verified against that instance (make one with `cosign trusted-root create`)")
	}
	if c.RekorVersion != 0 && c.RekorVersion != 1 && c.RekorVersion != 2 {
		add("rekor_version %d: want 1 or 2", c.RekorVersion)
	}
	if c.RekorVersion == 2 && c.TSAURL == "" && c.SigningConfig == "" && c.Key == "" {
		add("rekor_version = 2 needs a timestamp authority (tsa_url): Rekor v2 gives no signing time")
	}
	if c.SkipTransparencyLog && c.Key == "" {
		add("skip_transparency_log is only allowed with `key`: keyless signatures must be logged")
	}
	if c.Key != "" && (c.IdentityToken != "" || c.IdentityTokenFile != "" || c.IdentityProvider != "") {
		add("key and identity_* are mutually exclusive: key mode signs without an OIDC identity")
	}
	if c.Retries < 0 {
		add("retries %d: must not be negative", c.Retries)
	}
	c.timeout = 5 * time.Minute
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			add("timeout %q: want a positive duration such as 5m", c.Timeout)
		} else {
			c.timeout = d
		}
	}
	if c.Output != "" {
		if st, err := os.Stat(c.Output); err == nil && st.IsDir() {
			add("output %q is a directory: give a file name such as image.sigstore.json", c.Output)
		}
	}
	if errs != nil && len(errs.Errors) > 0 {
		return errs
	}
	return nil
}

// errNoSubjects is returned when an artifact offers nothing to sign.
var errNoSubjects = errors.New("the artifact has no image digest, no files and no id: nothing to sign")
