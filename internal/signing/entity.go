package signing

import (
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// onceEntity hands sigstore-go the same parsed parts of one bundle each time it asks.
//
// sigstore-go asks a bundle for its verification material (which parses the signing
// certificate) and its signature content (which decodes the DSSE envelope) several
// times during one Verify: once for the transparency log entry, once for the
// timestamps, once for the certificate chain and once for the signature. Each answer
// is a pure function of the bundle, which does not change during the call, so
// computing it once gives sigstore-go exactly what it would have computed again; every
// check still runs on it. An onceEntity lives for one verification only: nothing is
// kept between bundles.
type onceEntity struct {
	verify.SignedEntity

	vc     verify.VerificationContent
	vcErr  error
	vcDone bool

	sc     verify.SignatureContent
	scErr  error
	scDone bool
}

func newOnceEntity(e verify.SignedEntity) *onceEntity { return &onceEntity{SignedEntity: e} }

func (o *onceEntity) VerificationContent() (verify.VerificationContent, error) {
	if !o.vcDone {
		o.vc, o.vcErr = o.SignedEntity.VerificationContent()
		o.vcDone = true
	}
	return o.vc, o.vcErr
}

func (o *onceEntity) SignatureContent() (verify.SignatureContent, error) {
	if !o.scDone {
		o.sc, o.scErr = o.SignedEntity.SignatureContent()
		o.scDone = true
	}
	return o.sc, o.scErr
}
