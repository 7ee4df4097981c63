// Package signed joins the ledger and Sigstore verification: it fills release records
// from verified bundles and re-verifies a channel's head before anyone consumes it.
// The ledger package itself stays free of Sigstore so it can be used and tested alone.
package signed

import (
	"context"
	"fmt"
	"strings"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// Apply fills a record from a verified bundle: the signer identity from the
// certificate, the bundle digest, and the fields of the signed ImageRelease predicate
// the caller left empty. A field given both ways must agree with what was signed.
func Apply(rec *ledger.Record, v *signing.Verified) error {
	rec.Signer = &ledger.Signer{Issuer: v.Signer.Issuer, SAN: v.Signer.SAN, Extensions: v.Signer.Extensions}
	if len(rec.Signer.Extensions) == 0 {
		rec.Signer.Extensions = nil
	}
	rec.BundleDigest = v.BundleDigest
	p := v.Predicate
	if p == nil {
		return nil
	}
	for _, f := range []struct {
		name   string
		dst    *string
		signed string
	}{
		{"policy_digest", &rec.PolicyDigest, p.PolicyDigest},
		{"base_digest", &rec.BaseDigest, p.BaseDigest},
		{"source_revision", &rec.SourceRevision, p.SourceRevision},
		{"ci_run_url", &rec.CIRunURL, p.CIRunURL},
		{"version", &rec.Version, p.Version},
	} {
		switch {
		case f.signed == "":
		case *f.dst == "":
			*f.dst = f.signed
		case *f.dst != f.signed:
			return fmt.Errorf("%s %q differs from the signed predicate's %q: the record must match the bundle", f.name, *f.dst, f.signed)
		}
	}
	for _, a := range p.ArtifactIDs {
		if a.ID == rec.Image.Digest {
			continue // the hash itself is not a provider copy
		}
		rec.Artifacts = AddArtifact(rec.Artifacts, ArtifactFromID(a.ID, a.Region))
	}
	return nil
}

// ArtifactFromID guesses the provider of an artifact id: AMI ids are aws, references
// with a digest are oci, the rest "other".
func ArtifactFromID(id, region string) ledger.Artifact {
	provider := "other"
	switch {
	case strings.HasPrefix(id, "ami-"):
		provider = "aws"
	case strings.Contains(id, "@sha256:"):
		provider = "oci"
	}
	return ledger.Artifact{Provider: provider, Region: region, ID: id}
}

// AddArtifact appends a unless an artifact with the same id and region is present.
func AddArtifact(list []ledger.Artifact, a ledger.Artifact) []ledger.Artifact {
	for _, x := range list {
		if x.ID == a.ID && x.Region == a.Region {
			return list
		}
	}
	return append(list, a)
}

// Current returns a channel's head after re-verifying its stored bundle against opts:
// it fails closed on an unknown, empty or revoked channel head, an unsigned record,
// a missing or altered bundle, a failed verification, or a signer that differs from
// the one the record names.
func Current(ctx context.Context, l ledger.Ledger, channel string, opts signing.VerifyOptions) (*ledger.Release, *signing.Verified, error) {
	st, err := l.State(ctx)
	if err != nil {
		return nil, nil, err
	}
	rel, err := st.Current(channel)
	if err != nil {
		return nil, nil, err
	}
	v, err := Verify(ctx, l, rel, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("channel %q head %s@%s: %w", channel, rel.Record.Name, rel.Record.Version, err)
	}
	return rel, v, nil
}

// Verify re-verifies one release's stored bundle.
func Verify(ctx context.Context, l ledger.Ledger, rel *ledger.Release, opts signing.VerifyOptions) (*signing.Verified, error) {
	r := rel.Record
	if !r.Signed() {
		return nil, fmt.Errorf("unsigned: recorded without a verified signature; record a signed build")
	}
	b, err := l.Bundle(ctx, r.BundleDigest)
	if err != nil {
		return nil, fmt.Errorf("unverified: %w", err)
	}
	v, err := verifyBytes(b, r.Image.Digest, opts)
	if err != nil {
		return nil, fmt.Errorf("unverified: %w", err)
	}
	if v.Signer.Issuer != r.Signer.Issuer || v.Signer.SAN != r.Signer.SAN {
		return nil, fmt.Errorf("unverified: bundle signer %s (%s) differs from the recorded signer %s", v.Signer.SAN, v.Signer.Issuer, r.Signer)
	}
	return v, nil
}

func verifyBytes(b []byte, digest string, opts signing.VerifyOptions) (*signing.Verified, error) {
	v, err := signing.NewVerifier(opts)
	if err != nil {
		return nil, err
	}
	return v.VerifyBundle(b, digest)
}
