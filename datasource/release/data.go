// Package release is the fixity-release data source: a channel's current release,
// returned only after its stored bundle verifies against the pinned signer identity.
// Revoked, emptied, unsigned or unverifiable heads fail the build (fail closed).
package release

import (
	"context"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/packer-plugin-sdk/hcl2helper"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/zclconf/go-cty/cty"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/signed"
)

// Datasource is the fixity-release data source.
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
	out, err := Read(context.Background(), &d.config)
	if err != nil {
		return cty.NullVal(cty.EmptyObject), err
	}
	return hcl2helper.HCL2ValueFromConfig(out, d.OutputSpec()), nil
}

// Read resolves the channel head, verified.
func Read(ctx context.Context, c *Config) (*DatasourceOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	opts, err := c.verifyOptions()
	if err != nil {
		return nil, err
	}
	l, err := ledger.Open(c.Ledger)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	rel, v, err := signed.Current(ctx, l, c.Channel, opts)
	if err != nil {
		return nil, err
	}
	r := rel.Record
	out := &DatasourceOutput{Name: r.Name, Version: r.Version, ImageDigest: r.Image.Digest, RecordDigest: rel.RecordDigest,
		AMIs: map[string]string{}, ArtifactIDs: []string{}, PolicyDigest: r.PolicyDigest,
		SignerIdentity: v.Signer.SAN, SignerIssuer: v.Signer.Issuer}
	for _, a := range r.Artifacts {
		out.ArtifactIDs = append(out.ArtifactIDs, a.Provider+":"+a.Region+":"+a.ID)
		switch a.Provider {
		case "aws":
			out.AMIs[a.Region] = a.ID
		case "oci":
			if out.OCIReference == "" {
				out.OCIReference = a.ID
			}
		}
	}
	return out, nil
}
