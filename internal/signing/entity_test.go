package signing

import (
	"errors"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// countingEntity counts how often sigstore-go asks for each part.
type countingEntity struct {
	verify.SignedEntity
	vc, sc int
	err    error
}

func (c *countingEntity) VerificationContent() (verify.VerificationContent, error) {
	c.vc++
	if c.err != nil {
		return nil, c.err
	}
	return c.SignedEntity.VerificationContent()
}

func (c *countingEntity) SignatureContent() (verify.SignatureContent, error) {
	c.sc++
	if c.err != nil {
		return nil, c.err
	}
	return c.SignedEntity.SignatureContent()
}

func TestOnceEntityParsesOncePerVerification(t *testing.T) {
	s := newTestStack(t)
	path, _ := signOne(t, s, s.signOptions(mintToken(nil)), imageDigest)
	b, err := bundle.LoadJSONFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifyOptions{TrustedMaterial: s.TrustedRoot, Identities: []Identity{githubIdentity}, TlogThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	ce := &countingEntity{SignedEntity: b}
	got, err := v.verifyEntity(ce, []string{imageDigest[len("sha256:"):]})
	if err != nil {
		t.Fatal(err)
	}
	if ce.vc != 1 || ce.sc != 1 {
		t.Fatalf("parsed the certificate %d and the envelope %d times in one verification, want once each", ce.vc, ce.sc)
	}
	if got.Signer.Issuer != testIssuer || len(got.Timestamps) == 0 {
		t.Fatalf("verified = %+v", got)
	}
	// A second verification parses again: nothing is kept between bundles.
	if _, err := v.verifyEntity(ce, []string{imageDigest[len("sha256:"):]}); err != nil || ce.vc != 2 || ce.sc != 2 {
		t.Fatalf("second verification: %v, parsed %d/%d times", err, ce.vc, ce.sc)
	}
	// Errors are handed on, not replaced by an empty answer.
	boom := errors.New("boom")
	o := newOnceEntity(&countingEntity{SignedEntity: b, err: boom})
	for i := 0; i < 2; i++ {
		if _, err := o.VerificationContent(); !errors.Is(err, boom) {
			t.Fatalf("VerificationContent error = %v", err)
		}
		if _, err := o.SignatureContent(); !errors.Is(err, boom) {
			t.Fatalf("SignatureContent error = %v", err)
		}
	}
}
