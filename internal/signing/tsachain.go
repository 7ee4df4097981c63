package signing

import (
	"crypto/x509"
	"errors"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
)

// withVerifiedTSAChains returns tm with each timestamping authority's certificate
// chain verified once, up front, instead of once per bundle.
//
// sigstore-go checks a timestamp by verifying the TSA leaf's chain to its root for
// every bundle: two ECDSA verifications that give the same answer each time, about a
// third of all verification work. The chain's signatures, key usages and constraints
// do not depend on time; only the certificates' validity periods do. So the chain is
// verified here once, at a time inside the window where every certificate of it is
// valid, and each timestamp is then checked against the leaf alone (the signer must
// be exactly that leaf) plus that window. Anything this cannot prove — no leaf in the
// trusted root, a chain that does not verify, an empty window — keeps sigstore-go's
// own per-bundle check. It is never more permissive: a timestamp outside the window
// is refused even where another chain might have accepted it.
func withVerifiedTSAChains(tm root.TrustedMaterial) root.TrustedMaterial {
	in := tm.TimestampingAuthorities()
	out := make([]root.TimestampingAuthority, len(in))
	changed := false
	for i, tsa := range in {
		out[i] = tsa
		if s, ok := tsa.(*root.SigstoreTimestampingAuthority); ok {
			if v := newChainVerifiedTSA(s); v != nil {
				out[i], changed = v, true
			}
		}
	}
	if !changed {
		return tm
	}
	return &tsaOverride{TrustedMaterial: tm, tsas: out}
}

type tsaOverride struct {
	root.TrustedMaterial
	tsas []root.TimestampingAuthority
}

func (t *tsaOverride) TimestampingAuthorities() []root.TimestampingAuthority { return t.tsas }

// chainVerifiedTSA is a TSA whose chain to the trusted root was verified once.
type chainVerifiedTSA struct {
	leafAnchored      *root.SigstoreTimestampingAuthority
	notBefore, notAft time.Time
}

func newChainVerifiedTSA(s *root.SigstoreTimestampingAuthority) *chainVerifiedTSA {
	if s.Leaf == nil || s.Root == nil {
		return nil
	}
	chain := append([]*x509.Certificate{s.Leaf}, s.Intermediates...)
	chain = append(chain, s.Root)
	nb, na := chain[0].NotBefore, chain[0].NotAfter
	for _, c := range chain[1:] {
		if c == nil {
			return nil
		}
		if c.NotBefore.After(nb) {
			nb = c.NotBefore
		}
		if c.NotAfter.Before(na) {
			na = c.NotAfter
		}
	}
	if !nb.Before(na) {
		return nil
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(s.Root)
	for _, c := range s.Intermediates {
		inter.AddCert(c)
	}
	if _, err := s.Leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
		CurrentTime:   nb,
	}); err != nil {
		return nil
	}
	return &chainVerifiedTSA{
		// The verified leaf becomes the trust anchor: the timestamp-authority
		// library still checks the response signature, that its signer equals this
		// leaf, the leaf's key usage and its validity at the timestamp's time.
		leafAnchored: &root.SigstoreTimestampingAuthority{
			Root:                s.Leaf,
			Leaf:                s.Leaf,
			ValidityPeriodStart: s.ValidityPeriodStart,
			ValidityPeriodEnd:   s.ValidityPeriodEnd,
			URI:                 s.URI,
		},
		notBefore: nb,
		notAft:    na,
	}
}

func (c *chainVerifiedTSA) Verify(signedTimestamp, signature []byte) (*root.Timestamp, error) {
	ts, err := c.leafAnchored.Verify(signedTimestamp, signature)
	if err != nil {
		return nil, err
	}
	if ts.Time.Before(c.notBefore) || ts.Time.After(c.notAft) {
		return nil, errors.New("timestamp is outside the validity of the timestamping authority's certificate chain")
	}
	return ts, nil
}
