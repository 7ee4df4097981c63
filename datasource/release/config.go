//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config,DatasourceOutput
//go:generate go tool packer-sdc struct-markdown

package release

import (
	"fmt"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/config"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// Config is the fixity-release data source's configuration.
type Config struct {
	// The ledger: `file://DIR` or `oci://HOST:PORT/REPO`.
	Ledger string `mapstructure:"ledger" required:"true"`
	// The channel whose current release is returned, e.g. `prod`.
	Channel string `mapstructure:"channel" required:"true"`
	// A trusted_root.json (private Sigstore instance, offline verification). Default:
	// the public-good root through TUF.
	TrustedRoot string `mapstructure:"trusted_root"`
	// The signer identity (certificate SAN) the release's bundle must carry, exactly.
	CertificateIdentity string `mapstructure:"certificate_identity"`
	// The signer identity as a regular expression.
	CertificateIdentityRegexp string `mapstructure:"certificate_identity_regexp"`
	// The OIDC issuer of the signer, exactly.
	CertificateOIDCIssuer string `mapstructure:"certificate_oidc_issuer"`
	// The OIDC issuer of the signer as a regular expression.
	CertificateOIDCIssuerRegexp string `mapstructure:"certificate_oidc_issuer_regexp"`
	// Certificate extensions to pin, by snake_case name.
	CertificateExtensions map[string]string `mapstructure:"certificate_extensions"`
}

// DatasourceOutput is what `data.fixity-release.NAME.<field>` reads.
type DatasourceOutput struct {
	// The image name.
	Name string `mapstructure:"name"`
	// The release version.
	Version string `mapstructure:"version"`
	// The image hash (`sha256:…`, the OCI manifest digest): use it as the base
	// digest of a child image so ancestry is recorded.
	ImageDigest string `mapstructure:"image_digest"`
	// The release record digest (its id in the ledger).
	RecordDigest string `mapstructure:"record_digest"`
	// The OCI reference `REGISTRY/REPO@sha256:…` when the image was pushed, else "".
	OCIReference string `mapstructure:"oci_reference"`
	// AMI ids by region.
	AMIs map[string]string `mapstructure:"amis"`
	// Every provider copy as `PROVIDER:REGION:ID`.
	ArtifactIDs []string `mapstructure:"artifact_ids"`
	// The policy bundle digest baked into the image.
	PolicyDigest string `mapstructure:"policy_digest"`
	// The verified signer identity (certificate SAN) and issuer.
	SignerIdentity string `mapstructure:"signer_identity"`
	SignerIssuer   string `mapstructure:"signer_issuer"`
}

// Prepare decodes and validates raws.
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
		add("ledger: set the ledger URL (file://DIR or oci://HOST:PORT/REPO)")
	} else if l, err := ledger.Open(c.Ledger); err != nil {
		add("ledger: %v", err)
	} else {
		l.Close()
	}
	if !ledger.ValidChannel(c.Channel) {
		add("channel %q: name the channel to read, e.g. channel = \"prod\"", c.Channel)
	}
	if _, err := c.verifyOptions(); err != nil {
		add("%v", err)
	}
	if errs != nil && len(errs.Errors) > 0 {
		return errs
	}
	return nil
}

func (c *Config) verifyOptions() (signing.VerifyOptions, error) {
	id := signing.Identity{Issuer: c.CertificateOIDCIssuer, IssuerRegexp: c.CertificateOIDCIssuerRegexp,
		SAN: c.CertificateIdentity, SANRegexp: c.CertificateIdentityRegexp, Extensions: c.CertificateExtensions}
	if !id.PinsIssuerAndSAN() {
		return signing.VerifyOptions{}, fmt.Errorf("certificate_oidc_issuer[_regexp] and certificate_identity[_regexp]: pin the signer every release on the channel must carry")
	}
	return signing.VerifyOptions{TrustedRootPath: c.TrustedRoot, Identities: []signing.Identity{id}}, nil
}
