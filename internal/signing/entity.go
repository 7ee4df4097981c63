package signing

import (
	"github.com/sigstore/sigstore-go/pkg/tlog"
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
// check still runs on it. The same holds for the transparency log entries, which
// parseBundle has already parsed once to validate the bundle. An onceEntity lives for one verification only: nothing is
// kept between bundles.
type onceEntity struct {
	verify.SignedEntity

	vc     verify.VerificationContent
	vcErr  error
	vcDone bool

	sc     verify.SignatureContent
	scErr  error
	scDone bool

	tl     []*tlog.Entry
	tlErr  error
	tlDone bool
}

func newOnceEntity(e verify.SignedEntity) *onceEntity { return &onceEntity{SignedEntity: e} }

// withTlogEntries records log entries already parsed from this entity by its own
// TlogEntries (see parseBundle).
func (o *onceEntity) withTlogEntries(entries []*tlog.Entry) *onceEntity {
	o.tl, o.tlDone = entries, true
	return o
}

func (o *onceEntity) TlogEntries() ([]*tlog.Entry, error) {
	if !o.tlDone {
		o.tl, o.tlErr = o.SignedEntity.TlogEntries()
		o.tlDone = true
	}
	return o.tl, o.tlErr
}

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
