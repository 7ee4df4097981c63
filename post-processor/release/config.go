//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config
//go:generate go tool packer-sdc struct-markdown

// Package release is the fixity-release post-processor: it verifies the fixity-sign
// bundle of the artifact, appends a release record to the ledger and optionally
// promotes it. The work is done by internal/ledger; this package maps Packer config
// and artifacts onto it.
package release

import (
	"fmt"

	"github.com/hashicorp/packer-plugin-sdk/common"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/config"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// Config is the configuration of the fixity-release post-processor.
type Config struct {
	common.PackerConfig `mapstructure:",squash"`

	// The ledger: `file://DIR` (one machine) or `oci://HOST:PORT/REPO` (a registry).
	Ledger string `mapstructure:"ledger" required:"true"`
	// The image name recorded (lowercase). Defaults to the signed predicate's image,
	// then the build name.
	ImageName string `mapstructure:"image_name"`
	// The release version; `name@version` is unique in a ledger. Defaults to the
	// version in the signed predicate.
	Version string `mapstructure:"version"`
	// Also promote the release to this channel (e.g. `staging`).
	Channel string `mapstructure:"channel"`
	// Channels the release must already be in before `channel` (e.g. `["staging"]`
	// for `prod`); once declared for a channel they hold for every later promotion.
	Requires []string `mapstructure:"requires"`
	// Record an artifact that carries no fixity-sign bundle. Rollout plans still say
	// "replace now" for machines running it, and data "fixity-release" refuses it.
	AllowUnsigned bool `mapstructure:"allow_unsigned"`

	// A trusted_root.json (private Sigstore instance, offline verification). Default:
	// the public-good root through TUF.
	TrustedRoot string `mapstructure:"trusted_root"`
	// The signer identity (certificate SAN) the bundle must carry, exactly.
	CertificateIdentity string `mapstructure:"certificate_identity"`
	// The signer identity as a regular expression (Go RE2, anchored by you).
	CertificateIdentityRegexp string `mapstructure:"certificate_identity_regexp"`
	// The OIDC issuer of the signer, exactly, e.g. `https://token.actions.githubusercontent.com`.
	CertificateOIDCIssuer string `mapstructure:"certificate_oidc_issuer"`
	// The OIDC issuer of the signer as a regular expression.
	CertificateOIDCIssuerRegexp string `mapstructure:"certificate_oidc_issuer_regexp"`
	// Certificate extensions to pin, by snake_case name, e.g.
	// `{ source_repository_ref = "refs/heads/main" }`.
	CertificateExtensions map[string]string `mapstructure:"certificate_extensions"`

	// The policy bundle digest baked into the image. Defaults to the signed predicate
	// (and must equal it when both are set).
	PolicyDigest string `mapstructure:"policy_digest"`
	// The parent image digest. Defaults to what fixity-oci recorded / the predicate.
	BaseDigest string `mapstructure:"base_digest"`
	// The source revision. Defaults to the signed predicate.
	SourceRevision string `mapstructure:"source_revision"`
	// The CI run URL. Defaults to the signed predicate.
	CIRunURL string `mapstructure:"ci_run_url"`
	// Who appends the events (recorded in the ledger). Defaults to the signer
	// identity, or `$USER@host` for unsigned releases.
	Actor string `mapstructure:"actor"`
}

// Prepare decodes and validates the configuration; it touches neither the ledger nor
// the network.
func (c *Config) Prepare(raws ...interface{}) error {
	*c = Config{}
	if err := config.Decode(c, &config.DecodeOpts{PluginType: "fixity-release"}, raws...); err != nil {
		return err
	}
	var errs *packersdk.MultiError
	add := func(format string, a ...interface{}) {
		errs = packersdk.MultiErrorAppend(errs, fmt.Errorf(format, a...))
	}
	if c.Ledger == "" {
		add("ledger: set the ledger URL, e.g. ledger = \"file://${path.root}/ledger\" or \"oci://127.0.0.1:5000/fixity/ledger\"")
	} else if l, err := ledger.Open(c.Ledger); err != nil {
		add("ledger: %v", err)
	} else {
		l.Close()
	}
	if c.Channel != "" && !ledger.ValidChannel(c.Channel) {
		add("channel %q: use lowercase letters, digits, '.', '_', '-'", c.Channel)
	}
	for i, r := range c.Requires {
		if !ledger.ValidChannel(r) || r == c.Channel {
			add("requires[%d] %q: name another valid channel", i, r)
		}
	}
	if len(c.Requires) > 0 && c.Channel == "" {
		add("requires: only meaningful with channel; set channel = \"prod\" (for example)")
	}
	if !c.AllowUnsigned {
		if _, err := c.verifyOptions(); err != nil {
			add("%v (or set allow_unsigned = true to record unsigned artifacts)", err)
		}
	}
	for _, f := range []struct{ name, v string }{{"policy_digest", c.PolicyDigest}, {"base_digest", c.BaseDigest}} {
		if f.v != "" && !ledger.ValidDigest(f.v) {
			add("%s %q: want sha256:<64 hex>", f.name, f.v)
		}
	}
	if errs != nil && len(errs.Errors) > 0 {
		return errs
	}
	return nil
}

// verifyOptions builds the signer pins; both an issuer and an identity are required,
// since an unpinned identity would accept anyone who can get a certificate.
func (c *Config) verifyOptions() (signing.VerifyOptions, error) {
	id := signing.Identity{Issuer: c.CertificateOIDCIssuer, IssuerRegexp: c.CertificateOIDCIssuerRegexp,
		SAN: c.CertificateIdentity, SANRegexp: c.CertificateIdentityRegexp, Extensions: c.CertificateExtensions}
	if !id.PinsIssuerAndSAN() {
		return signing.VerifyOptions{}, fmt.Errorf("certificate_oidc_issuer[_regexp] and certificate_identity[_regexp]: pin the signer the bundle must carry")
	}
	return signing.VerifyOptions{TrustedRootPath: c.TrustedRoot, Identities: []signing.Identity{id}}, nil
}
