package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// fullBundle has every field the fast path reads, shaped like a keyless Rekor v2 bundle
// (the checkpoint has newlines and a non-ASCII em dash, as real ones do).
func fullBundle() *protobundle.Bundle {
	return &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: []byte("certificate DER \x00\xff")}},
			TlogEntries: []*protorekor.TransparencyLogEntry{{
				LogIndex:         7,
				LogId:            &protocommon.LogId{KeyId: []byte{1, 2, 3, 4}},
				KindVersion:      &protorekor.KindVersion{Kind: "hashedrekord", Version: "0.0.2"},
				IntegratedTime:   1767000000,
				InclusionPromise: &protorekor.InclusionPromise{SignedEntryTimestamp: []byte("set")},
				InclusionProof: &protorekor.InclusionProof{
					LogIndex: 7, RootHash: bytes.Repeat([]byte{9}, 32), TreeSize: 12,
					Hashes:     [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)},
					Checkpoint: &protorekor.Checkpoint{Envelope: "log.example\n12\nCQkJ\n\n\u2014 log.example AAAA+/==\n"},
				},
				CanonicalizedBody: []byte(`{"apiVersion":"0.0.2"}`),
			}},
			TimestampVerificationData: &protobundle.TimestampVerificationData{Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: []byte("tsr\x01")}}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: []byte(`{"_type":"https://in-toto.io/Statement/v1"}`), PayloadType: "application/vnd.in-toto+json",
			Signatures: []*protodsse.Signature{{Sig: []byte("sig"), Keyid: "key \"one\"/\t"}},
		}},
	}
}

// checkFastPath fails when the fast path answers differently from protojson; it
// reports whether the fast path answered.
func checkFastPath(t testing.TB, b []byte) bool {
	t.Helper()
	fast, ok := fastBundleJSON(b)
	if !ok {
		return false
	}
	var slow protobundle.Bundle
	if err := protojson.Unmarshal(b, &slow); err != nil {
		t.Fatalf("fast path accepted what protojson refuses (%v): %q", err, b)
	}
	if !proto.Equal(fast, &slow) {
		t.Fatalf("fast path and protojson disagree on %q:\nfast %v\nslow %v", b, fast, &slow)
	}
	return true
}

func TestFastBundleJSONMatchesProtojson(t *testing.T) {
	s := newTestStack(t)
	path, _ := signOne(t, s, s.signOptions(mintToken(nil)), imageDigest)
	signed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	full, err := protojson.Marshal(fullBundle())
	if err != nil {
		t.Fatal(err)
	}
	multi, _ := protojson.MarshalOptions{Multiline: true, Indent: "\t"}.Marshal(fullBundle())
	chain := fullBundle()
	chain.VerificationMaterial.Content = &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: &protocommon.X509CertificateChain{
		Certificates: []*protocommon.X509Certificate{{RawBytes: []byte("leaf")}, {RawBytes: []byte("ca")}}}}
	chainJSON, _ := protojson.Marshal(chain)
	key := fullBundle()
	key.VerificationMaterial.Content = &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "abc"}}
	keyJSON, _ := protojson.Marshal(key)
	// What the common writers produce takes the fast path, with the same result.
	for name, b := range map[string][]byte{"signed": signed, "full": full, "multiline": multi, "chain": chainJSON, "key": keyJSON, "empty object": []byte(" {} ")} {
		if !checkFastPath(t, b) {
			t.Errorf("%s: fast path gave up on %s", name, b)
		}
	}
	// Everything outside the subset is left to protojson, whatever protojson says.
	var m map[string]any
	_ = json.Unmarshal(full, &m)
	for name, b := range map[string]string{
		"snake_case name":    strings.Replace(string(full), `"mediaType"`, `"media_type"`, 1),
		"unknown field":      strings.Replace(string(full), `"mediaType"`, `"mediaTypo"`, 1),
		"duplicate field":    `{"mediaType":"a","mediaType":"b"}`,
		"two oneof members":  `{"verificationMaterial":{"certificate":{"rawBytes":"AAAA"},"publicKey":{"hint":"x"}}}`,
		"null":               `{"verificationMaterial":null}`,
		"unicode escape":     `{"mediaType":"\u0061"}`,
		"url-safe base64":    `{"dsseEnvelope":{"payload":"-_-_"}}`,
		"unpadded base64":    `{"dsseEnvelope":{"payload":"AAA"}}`,
		"empty base64":       `{"dsseEnvelope":{"payload":""}}`,
		"escaped base64":     `{"dsseEnvelope":{"payload":"AA\/A"}}`,
		"escaped quote":      `{"dsseEnvelope":{"payload":"AA\"A"}}`,
		"raw newline base64": "{\"dsseEnvelope\":{\"payload\":\"AAAA\n\n\n\nAAAA\"}}",
		"raw return base64":  "{\"dsseEnvelope\":{\"payload\":\"AAAA\r\r\r\rAAAA\"}}",
		"negative index":     `{"verificationMaterial":{"tlogEntries":[{"logIndex":"-1"}]}}`,
		"fraction":           `{"verificationMaterial":{"tlogEntries":[{"logIndex":1.0}]}}`,
		"exponent":           `{"verificationMaterial":{"tlogEntries":[{"logIndex":1e2}]}}`,
		"leading zero":       `{"verificationMaterial":{"tlogEntries":[{"logIndex":"01"}]}}`,
		"huge index":         `{"verificationMaterial":{"tlogEntries":[{"logIndex":"9999999999999999999"}]}}`,
		"message signature":  `{"messageSignature":{"signature":"AAAA"}}`,
		"trailing data":      `{} {}`,
		"trailing comma":     `{"mediaType":"a",}`,
		"invalid utf-8":      "{\"mediaType\":\"\xff\"}",
		"control character":  "{\"mediaType\":\"a\tb\"}",
		"not an object":      `[]`,
		"truncated":          string(full[:len(full)/2]),
	} {
		if checkFastPath(t, []byte(b)) {
			t.Errorf("%s: fast path answered for %s", name, b)
		}
	}
	for _, b := range [][]byte{signed, full, chainJSON, keyJSON, []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`), []byte(`{"media_type":"application/vnd.dev.sigstore.bundle.v0.3+json"}`)} {
		sameVerdict(t, b)
	}
}

// sameVerdict fails unless parseBundle accepts b exactly when sigstore-go's
// UnmarshalJSON does, with the same message, inclusion flags and log entries.
func sameVerdict(t testing.TB, b []byte) {
	t.Helper()
	got, entries, gotErr := parseBundle(b)
	var want bundle.Bundle
	wantErr := want.UnmarshalJSON(b)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("parseBundle error %v, UnmarshalJSON error %v, for %q", gotErr, wantErr, b)
	}
	if gotErr != nil {
		return
	}
	if !proto.Equal(got.Bundle, want.Bundle) {
		t.Fatalf("parseBundle and UnmarshalJSON built different messages from %q", b)
	}
	if got.HasInclusionProof() != want.HasInclusionProof() || got.HasInclusionPromise() != want.HasInclusionPromise() {
		t.Fatalf("inclusion flags differ for %q", b)
	}
	wantEntries, err := want.TlogEntries()
	if err != nil || len(entries) != len(wantEntries) {
		t.Fatalf("log entries: %d, want %d (%v)", len(entries), len(wantEntries), err)
	}
	for i := range entries {
		if !proto.Equal(entries[i].TransparencyLogEntry(), wantEntries[i].TransparencyLogEntry()) || entries[i].LogIndex() != wantEntries[i].LogIndex() {
			t.Fatalf("log entry %d differs", i)
		}
	}
}

// TestParseBundleAcceptsWhatSigstoreGoAccepts: the log entry rules parseBundle applies
// itself (a v0.1 bundle needs inclusion promises, later ones inclusion proofs, every
// entry must parse) give sigstore-go's verdict on every combination.
func TestParseBundleAcceptsWhatSigstoreGoAccepts(t *testing.T) {
	rejected := 0
	for _, mt := range []string{
		"application/vnd.dev.sigstore.bundle+json;version=0.1",
		"application/vnd.dev.sigstore.bundle+json;version=0.2",
		"application/vnd.dev.sigstore.bundle.v0.3+json",
		"application/vnd.dev.sigstore.bundle.v0.4+json",
		"application/vnd.dev.sigstore.bundle.v0.3.1+json",
		"text/plain",
	} {
		for _, proof := range []bool{false, true} {
			for _, promise := range []bool{false, true} {
				for _, body := range []string{`{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{"hashedRekordV002":{}}}`, `not json`} {
					for _, chain := range []bool{false, true} {
						pb := fullBundle()
						pb.MediaType = mt
						if chain {
							pb.VerificationMaterial.Content = &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: &protocommon.X509CertificateChain{
								Certificates: []*protocommon.X509Certificate{{RawBytes: []byte("leaf")}}}}
						}
						e := pb.VerificationMaterial.TlogEntries[0]
						e.CanonicalizedBody = []byte(body)
						e.KindVersion = &protorekor.KindVersion{Kind: "hashedrekord", Version: "0.0.2"}
						if !proof {
							e.InclusionProof = nil
						}
						if !promise {
							e.InclusionPromise = nil
						}
						b, err := protojson.Marshal(pb)
						if err != nil {
							t.Fatal(err)
						}
						sameVerdict(t, b)
						if _, _, err := parseBundle(b); err != nil {
							rejected++
						}
						// And with no log entries at all.
						pb.VerificationMaterial.TlogEntries = nil
						b, _ = protojson.Marshal(pb)
						sameVerdict(t, b)
					}
				}
			}
		}
	}
	if rejected == 0 {
		t.Fatal("nothing was rejected: the cases do not reach the rules")
	}
}

// FuzzFastBundleJSON: whenever the fast path answers, protojson accepts the same bytes
// and builds an equal message.
func FuzzFastBundleJSON(f *testing.F) {
	// A real bundle (Fulcio certificate, RFC 3161 timestamp, DSSE) from the test stack.
	s := newTestStack(f)
	svc, err := NewService(s.signOptions(mintToken(nil)))
	if err != nil {
		f.Fatal(err)
	}
	out := filepath.Join(f.TempDir(), "seed"+BundleSuffix)
	if _, err := svc.SignToFile(context.Background(), testStatement(f, imageDigest), out); err != nil {
		f.Fatal(err)
	}
	signed, err := os.ReadFile(out)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	full, _ := protojson.Marshal(fullBundle())
	f.Add(full)
	multi, _ := protojson.MarshalOptions{Multiline: true}.Marshal(fullBundle())
	f.Add(multi)
	f.Add([]byte(`{"mediaType":"a\n\"b\"","dsseEnvelope":{"payload":"AAAA","signatures":[{"sig":"AA==","keyid":""}]}}`))
	f.Add([]byte(`{"verificationMaterial":{"tlogEntries":[{"logIndex":12,"inclusionProof":{"treeSize":"3","hashes":["AAAA"]}}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFastPath(t, b)
		sameVerdict(t, b)
	})
}
