package signing

import (
	"bytes"
	"encoding/base64"
	"errors"
	"unicode/utf8"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"golang.org/x/mod/semver"
	"google.golang.org/protobuf/encoding/protojson"
)

// parseBundle turns bundle JSON into a sigstore-go bundle that is accepted exactly
// when (*bundle.Bundle).UnmarshalJSON accepts it, with the same protobuf message, and
// returns its parsed transparency log entries, so that the verification does not
// parse them again.
//
// protojson is generic and slow (reflection, a token per value, a copy of every
// string): about a tenth of a verification went to it. fastBundleJSON reads the
// common shape of a bundle — the fields and the JSON spellings that protojson and
// the Sigstore clients write — straight into the protobuf structs. It accepts
// strictly less than protojson: an unknown or duplicate field, a snake_case name, a
// null, a \u escape, URL-safe or unpadded or empty base64, a signed, fractional or
// exponent number, a message signature instead of a DSSE envelope, anything else it
// was not written for makes it give up, and protojson decodes the bytes as before
// (with its own error messages). FuzzFastBundleJSON checks that whenever the fast
// path answers, protojson accepts the same bytes and builds an equal message.
//
// bundle.NewBundle's validation parses every log entry (a protojson decode of its
// body) and throws the result away; sigstore-go's log check then parses them again.
// So the validation runs on the bundle with the entries set aside, which checks
// everything that does not depend on them, and the entries are then parsed once by
// sigstore-go's own (*bundle.Bundle).TlogEntries, which also records whether they
// carry inclusion proofs and promises, and held to the rule the validation applies
// to them (sigstore-go v1.3.0 bundle.go: a v0.1 bundle needs inclusion promises,
// later ones inclusion proofs). Only which error is reported first for a bundle with
// several faults can differ; TestParseBundleAcceptsWhatSigstoreGoAccepts and
// FuzzParseBundle compare the verdicts with UnmarshalJSON.
func parseBundle(b []byte) (*bundle.Bundle, []*tlog.Entry, error) {
	pb, ok := fastBundleJSON(b)
	if !ok {
		pb = new(protobundle.Bundle)
		if err := protojson.Unmarshal(b, pb); err != nil {
			return nil, nil, err
		}
	}
	var entries []*protorekor.TransparencyLogEntry
	vm := pb.GetVerificationMaterial()
	if vm != nil {
		entries, vm.TlogEntries = vm.TlogEntries, nil
	}
	bun, err := bundle.NewBundle(pb)
	if vm != nil {
		vm.TlogEntries = entries
	}
	if err != nil {
		return nil, nil, err
	}
	parsed, err := bun.TlogEntries()
	if err != nil {
		return nil, nil, err
	}
	if len(parsed) > 0 {
		version, err := bun.Version()
		if err != nil {
			return nil, nil, err // not reached: NewBundle checked the version
		}
		if semver.Compare(version, "v0.1") == 0 {
			if !bun.HasInclusionPromise() {
				return nil, nil, errors.New("inclusion promises missing in bundle (required for bundle v0.1)")
			}
		} else if !bun.HasInclusionProof() {
			return nil, nil, errors.New("inclusion proof missing in bundle (required for bundle v0.2)")
		}
	}
	return bun, parsed, nil
}

// fastBundleJSON is the fast path of parseBundle; ok is false when it gave up.
func fastBundleJSON(b []byte) (pb *protobundle.Bundle, ok bool) {
	d := jsonReader{b: b}
	pb = new(protobundle.Bundle)
	if !d.bundle(pb) {
		return nil, false
	}
	d.space()
	if d.i != len(d.b) {
		return nil, false // protojson refuses trailing data
	}
	return pb, true
}

// jsonReader is a strict reader for the subset of JSON that bundles use.
type jsonReader struct {
	b []byte
	i int
}

func (d *jsonReader) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// byte consumes c (after white space).
func (d *jsonReader) byte(c byte) bool {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object reads {"key": value, ...}; field reads one value for its key and reports
// whether it knew the key. Every key may appear once: bit i of seen is key i.
func (d *jsonReader) object(field func(key []byte, seen *uint32) bool) bool {
	if !d.byte('{') {
		return false
	}
	if d.byte('}') {
		return true
	}
	var seen uint32
	for {
		k, ok := d.rawString()
		if !ok || !d.byte(':') || !field(k, &seen) {
			return false
		}
		if d.byte(',') {
			continue
		}
		return d.byte('}')
	}
}

// once marks field bit in seen and reports whether it was not set before.
func once(seen *uint32, bit uint) bool {
	if *seen&(1<<bit) != 0 {
		return false
	}
	*seen |= 1 << bit
	return true
}

// array reads [value, ...].
func (d *jsonReader) array(elem func() bool) bool {
	if !d.byte('[') {
		return false
	}
	if d.byte(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if d.byte(',') {
			continue
		}
		return d.byte(']')
	}
}

// rawString reads a string with no escapes and no control characters; it returns
// the bytes between the quotes without copying them.
func (d *jsonReader) rawString() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i:d.i]
			d.i++
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// str reads a string value: valid UTF-8, escapes other than \u allowed.
func (d *jsonReader) str() (string, bool) {
	if !d.byte('"') {
		return "", false
	}
	start := d.i
	var out []byte // only when there are escapes
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			var s string
			if out == nil {
				s = string(d.b[start:d.i])
			} else {
				s = string(out)
			}
			d.i++
			return s, utf8.ValidString(s)
		case c < 0x20:
			return "", false
		case c == '\\':
			if out == nil {
				out = append(make([]byte, 0, d.i-start+64), d.b[start:d.i]...)
			}
			if d.i+1 >= len(d.b) {
				return "", false
			}
			var r byte
			switch d.b[d.i+1] {
			case '"':
				r = '"'
			case '\\':
				r = '\\'
			case '/':
				r = '/'
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			default:
				return "", false // \u and anything invalid: protojson decides
			}
			out = append(out, r)
			d.i += 2
			continue
		}
		if out != nil {
			out = append(out, c)
		}
		d.i++
	}
	return "", false
}

// bytes reads a bytes value: non-empty standard base64 with padding, the one form
// for which protojson calls base64.StdEncoding.DecodeString itself.
func (d *jsonReader) bytes() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	// The value ends at the next quote. An escaped quote would leave a backslash
	// in s, and any other escape or control character too: none of them is base64,
	// so decoding fails and protojson decides — except CR and LF, which the
	// decoder skips but JSON forbids raw, so they are refused here.
	end := bytes.IndexByte(d.b[d.i:], '"')
	if end < 0 {
		return nil, false
	}
	s := d.b[d.i : d.i+end : d.i+end]
	d.i += end + 1
	if len(s) == 0 || len(s)%4 != 0 || bytes.IndexByte(s, '\n') >= 0 || bytes.IndexByte(s, '\r') >= 0 {
		return nil, false
	}
	if bytes.IndexByte(s, '-') >= 0 || bytes.IndexByte(s, '_') >= 0 {
		return nil, false // protojson would switch to URL-safe base64
	}
	// What base64.StdEncoding.DecodeString does, without copying s to a string first.
	out := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(out, s)
	return out[:n], err == nil
}

// int64 reads a non-negative integer written as a JSON number or a string of
// digits, with no sign, leading zero, fraction or exponent, at most 18 digits.
func (d *jsonReader) int64() (int64, bool) {
	d.space()
	quoted := d.i < len(d.b) && d.b[d.i] == '"'
	if quoted {
		d.i++
	}
	start := d.i
	var n int64
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		n = n*10 + int64(d.b[d.i]-'0')
		d.i++
	}
	digits := d.i - start
	if digits == 0 || digits > 18 || (digits > 1 && d.b[start] == '0') {
		return 0, false
	}
	if quoted {
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return 0, false
		}
		d.i++
	} else if d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r', ',', '}', ']':
		default:
			return 0, false // 1.5, 1e3, 12abc
		}
	}
	return n, true
}

func (d *jsonReader) bundle(pb *protobundle.Bundle) bool {
	return d.object(func(k []byte, seen *uint32) bool {
		var ok bool
		switch string(k) {
		case "mediaType":
			if !once(seen, 0) {
				return false
			}
			pb.MediaType, ok = d.str()
		case "verificationMaterial":
			if !once(seen, 1) {
				return false
			}
			pb.VerificationMaterial = new(protobundle.VerificationMaterial)
			ok = d.verificationMaterial(pb.VerificationMaterial)
		case "dsseEnvelope":
			if !once(seen, 2) {
				return false
			}
			env := new(protodsse.Envelope)
			pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: env}
			ok = d.envelope(env)
		}
		return ok
	})
}

func (d *jsonReader) verificationMaterial(vm *protobundle.VerificationMaterial) bool {
	return d.object(func(k []byte, seen *uint32) bool {
		var ok bool
		switch string(k) {
		case "certificate", "x509CertificateChain", "publicKey":
			if !once(seen, 0) { // one oneof member only, as protojson insists
				return false
			}
			switch string(k) {
			case "certificate":
				c := new(protocommon.X509Certificate)
				vm.Content = &protobundle.VerificationMaterial_Certificate{Certificate: c}
				ok = d.certificate(c)
			case "x509CertificateChain":
				ch := new(protocommon.X509CertificateChain)
				vm.Content = &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: ch}
				ok = d.object(func(k []byte, seen *uint32) bool {
					if string(k) != "certificates" || !once(seen, 0) {
						return false
					}
					return d.array(func() bool {
						c := new(protocommon.X509Certificate)
						ch.Certificates = append(ch.Certificates, c)
						return d.certificate(c)
					})
				})
			default:
				pk := new(protocommon.PublicKeyIdentifier)
				vm.Content = &protobundle.VerificationMaterial_PublicKey{PublicKey: pk}
				ok = d.object(func(k []byte, seen *uint32) bool {
					if string(k) != "hint" || !once(seen, 0) {
						return false
					}
					var ok bool
					pk.Hint, ok = d.str()
					return ok
				})
			}
		case "tlogEntries":
			if !once(seen, 1) {
				return false
			}
			ok = d.array(func() bool {
				e := new(protorekor.TransparencyLogEntry)
				vm.TlogEntries = append(vm.TlogEntries, e)
				return d.tlogEntry(e)
			})
		case "timestampVerificationData":
			if !once(seen, 2) {
				return false
			}
			tvd := new(protobundle.TimestampVerificationData)
			vm.TimestampVerificationData = tvd
			ok = d.object(func(k []byte, seen *uint32) bool {
				if string(k) != "rfc3161Timestamps" || !once(seen, 0) {
					return false
				}
				return d.array(func() bool {
					ts := new(protocommon.RFC3161SignedTimestamp)
					tvd.Rfc3161Timestamps = append(tvd.Rfc3161Timestamps, ts)
					return d.object(func(k []byte, seen *uint32) bool {
						if string(k) != "signedTimestamp" || !once(seen, 0) {
							return false
						}
						var ok bool
						ts.SignedTimestamp, ok = d.bytes()
						return ok
					})
				})
			})
		}
		return ok
	})
}

func (d *jsonReader) certificate(c *protocommon.X509Certificate) bool {
	return d.object(func(k []byte, seen *uint32) bool {
		if string(k) != "rawBytes" || !once(seen, 0) {
			return false
		}
		var ok bool
		c.RawBytes, ok = d.bytes()
		return ok
	})
}

func (d *jsonReader) tlogEntry(e *protorekor.TransparencyLogEntry) bool {
	return d.object(func(k []byte, seen *uint32) bool {
		var ok bool
		switch string(k) {
		case "logIndex":
			if !once(seen, 0) {
				return false
			}
			e.LogIndex, ok = d.int64()
		case "logId":
			if !once(seen, 1) {
				return false
			}
			id := new(protocommon.LogId)
			e.LogId = id
			ok = d.object(func(k []byte, seen *uint32) bool {
				if string(k) != "keyId" || !once(seen, 0) {
					return false
				}
				var ok bool
				id.KeyId, ok = d.bytes()
				return ok
			})
		case "kindVersion":
			if !once(seen, 2) {
				return false
			}
			kv := new(protorekor.KindVersion)
			e.KindVersion = kv
			ok = d.object(func(k []byte, seen *uint32) bool {
				var ok bool
				switch string(k) {
				case "kind":
					if !once(seen, 0) {
						return false
					}
					kv.Kind, ok = d.str()
				case "version":
					if !once(seen, 1) {
						return false
					}
					kv.Version, ok = d.str()
				}
				return ok
			})
		case "integratedTime":
			if !once(seen, 3) {
				return false
			}
			e.IntegratedTime, ok = d.int64()
		case "inclusionPromise":
			if !once(seen, 4) {
				return false
			}
			p := new(protorekor.InclusionPromise)
			e.InclusionPromise = p
			ok = d.object(func(k []byte, seen *uint32) bool {
				if string(k) != "signedEntryTimestamp" || !once(seen, 0) {
					return false
				}
				var ok bool
				p.SignedEntryTimestamp, ok = d.bytes()
				return ok
			})
		case "inclusionProof":
			if !once(seen, 5) {
				return false
			}
			p := new(protorekor.InclusionProof)
			e.InclusionProof = p
			ok = d.inclusionProof(p)
		case "canonicalizedBody":
			if !once(seen, 6) {
				return false
			}
			e.CanonicalizedBody, ok = d.bytes()
		}
		return ok
	})
}

func (d *jsonReader) inclusionProof(p *protorekor.InclusionProof) bool {
	return d.object(func(k []byte, seen *uint32) bool {
		var ok bool
		switch string(k) {
		case "logIndex":
			if !once(seen, 0) {
				return false
			}
			p.LogIndex, ok = d.int64()
		case "rootHash":
			if !once(seen, 1) {
				return false
			}
			p.RootHash, ok = d.bytes()
		case "treeSize":
			if !once(seen, 2) {
				return false
			}
			p.TreeSize, ok = d.int64()
		case "hashes":
			if !once(seen, 3) {
				return false
			}
			ok = d.array(func() bool {
				h, ok := d.bytes()
				p.Hashes = append(p.Hashes, h)
				return ok
			})
		case "checkpoint":
			if !once(seen, 4) {
				return false
			}
			cp := new(protorekor.Checkpoint)
			p.Checkpoint = cp
			ok = d.object(func(k []byte, seen *uint32) bool {
				if string(k) != "envelope" || !once(seen, 0) {
					return false
				}
				var ok bool
				cp.Envelope, ok = d.str()
				return ok
			})
		}
		return ok
	})
}

func (d *jsonReader) envelope(env *protodsse.Envelope) bool {
	return d.object(func(k []byte, seen *uint32) bool {
		var ok bool
		switch string(k) {
		case "payload":
			if !once(seen, 0) {
				return false
			}
			env.Payload, ok = d.bytes()
		case "payloadType":
			if !once(seen, 1) {
				return false
			}
			env.PayloadType, ok = d.str()
		case "signatures":
			if !once(seen, 2) {
				return false
			}
			ok = d.array(func() bool {
				s := new(protodsse.Signature)
				env.Signatures = append(env.Signatures, s)
				return d.object(func(k []byte, seen *uint32) bool {
					var ok bool
					switch string(k) {
					case "sig":
						if !once(seen, 0) {
							return false
						}
						s.Sig, ok = d.bytes()
					case "keyid":
						if !once(seen, 1) {
							return false
						}
						s.Keyid, ok = d.str()
					}
					return ok
				})
			})
		}
		return ok
	})
}
