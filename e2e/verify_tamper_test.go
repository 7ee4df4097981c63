//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// TestVerifyE2ETamper signs real bundles (Fulcio certificate, RFC 3161 timestamp,
// Rekor v2 entry with inclusion proof and signed checkpoint) on the local stack and
// then breaks one part at a time, in the bundle or in the trusted root: every check
// sigstore-go makes must still reject its part, whatever the verifier does once per
// trusted root or once per bundle to go faster.
func TestVerifyE2ETamper(t *testing.T) {
	s := signStack(t)
	svc := githubActionsSigner(t, s)
	dir := t.TempDir()
	// Two bundles: the second one's inclusion proof has at least one hash.
	var good []byte
	digest := ""
	for i := 0; i < 2; i++ {
		digest = fmt.Sprintf("sha256:%064x", 0xabc0+i)
		st, err := signing.NewStatement([]signing.Subject{{Name: "tamper", Digest: digest}}, signing.PredicateImageRelease, signing.ImageRelease{Image: "tamper", Version: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("b%d.sigstore.json", i))
		if _, err := svc.SignToFile(context.Background(), st, p); err != nil {
			t.Fatal(err)
		}
		if good, err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	san, issuer := s.GitHubIdentity()
	ids := []signing.Identity{{Issuer: issuer, SAN: san, Extensions: map[string]string{"github_workflow_repository": "acme/images"}}}
	rootJSON, err := os.ReadFile(s.TrustedRootPath)
	if err != nil {
		t.Fatal(err)
	}
	verifier := func(t *testing.T, root []byte, tlog int) *signing.Verifier {
		t.Helper()
		p := filepath.Join(t.TempDir(), "trusted_root.json")
		if err := os.WriteFile(p, root, 0o644); err != nil {
			t.Fatal(err)
		}
		v, err := signing.NewVerifier(signing.VerifyOptions{TrustedRootPath: p, Identities: ids, TlogThreshold: tlog})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := verifier(t, rootJSON, 0)
	if _, err := v.VerifyBundle(good, digest); err != nil {
		t.Fatalf("untouched bundle: %v", err)
	}
	var probe map[string]any
	_ = json.Unmarshal(good, &probe)
	if hs, _ := dig(probe, "verificationMaterial", "tlogEntries", 0, "inclusionProof", "hashes").([]any); len(hs) == 0 {
		t.Fatalf("the second entry's inclusion proof has no hashes: %s", good)
	}

	bundleCases := []struct {
		name  string
		tlog  int // 0: required (default); -1: not required, to reach the checks behind it
		edit  func(t *testing.T, b map[string]any)
		check string
	}{
		{"checkpoint signature", 0, func(t *testing.T, b map[string]any) {
			cp := b["verificationMaterial"].(map[string]any)["tlogEntries"].([]any)[0].(map[string]any)["inclusionProof"].(map[string]any)["checkpoint"].(map[string]any)
			cp["envelope"] = flipCheckpointSignature(t, cp["envelope"].(string))
		}, signing.CheckTlog},
		{"checkpoint root hash", 0, func(t *testing.T, b map[string]any) {
			cp := b["verificationMaterial"].(map[string]any)["tlogEntries"].([]any)[0].(map[string]any)["inclusionProof"].(map[string]any)["checkpoint"].(map[string]any)
			lines := strings.Split(cp["envelope"].(string), "\n")
			lines[2] = flipB64(t, lines[2], 3)
			cp["envelope"] = strings.Join(lines, "\n")
		}, signing.CheckTlog},
		{"inclusion proof hash", 0, func(t *testing.T, b map[string]any) {
			ip := b["verificationMaterial"].(map[string]any)["tlogEntries"].([]any)[0].(map[string]any)["inclusionProof"].(map[string]any)
			hs := ip["hashes"].([]any)
			hs[0] = flipB64(t, hs[0].(string), 5)
		}, signing.CheckTlog},
		{"inclusion proof index", 0, func(t *testing.T, b map[string]any) {
			e := b["verificationMaterial"].(map[string]any)["tlogEntries"].([]any)[0].(map[string]any)
			ip := e["inclusionProof"].(map[string]any)
			ip["logIndex"], e["logIndex"] = "0", "0"
		}, signing.CheckTlog},
		{"timestamp signature", 0, func(t *testing.T, b map[string]any) {
			ts := b["verificationMaterial"].(map[string]any)["timestampVerificationData"].(map[string]any)["rfc3161Timestamps"].([]any)[0].(map[string]any)
			der := mustB64(t, ts["signedTimestamp"].(string))
			der[len(der)-3] ^= 0x10 // inside the ECDSA signature, the last field of the response
			ts["signedTimestamp"] = base64.StdEncoding.EncodeToString(der)
		}, signing.CheckTimestamp},
		{"timestamp of another signature", 0, func(t *testing.T, b map[string]any) {
			// A genuine timestamp, over the first bundle's signature.
			var other map[string]any
			first, _ := os.ReadFile(filepath.Join(dir, "b0.sigstore.json"))
			_ = json.Unmarshal(first, &other)
			b["verificationMaterial"].(map[string]any)["timestampVerificationData"] = other["verificationMaterial"].(map[string]any)["timestampVerificationData"]
		}, signing.CheckTimestamp},
		{"DSSE signature behind the log", 0, func(t *testing.T, b map[string]any) {
			sig := b["dsseEnvelope"].(map[string]any)["signatures"].([]any)[0].(map[string]any)
			raw := mustB64(t, sig["sig"].(string))
			raw[len(raw)-2] ^= 0x01
			sig["sig"] = base64.StdEncoding.EncodeToString(raw)
		}, signing.CheckTlog}, // the Rekor v2 entry commits to the signature
		{"DSSE signature alone", -1, func(t *testing.T, b map[string]any) {
			delete(b["verificationMaterial"].(map[string]any), "tlogEntries")
			sig := b["dsseEnvelope"].(map[string]any)["signatures"].([]any)[0].(map[string]any)
			raw := mustB64(t, sig["sig"].(string))
			raw[len(raw)-2] ^= 0x01
			sig["sig"] = base64.StdEncoding.EncodeToString(raw)
		}, signing.CheckTimestamp}, // the timestamp covers the signature bytes and is checked first
		{"DSSE payload", -1, func(t *testing.T, b map[string]any) {
			delete(b["verificationMaterial"].(map[string]any), "tlogEntries")
			env := b["dsseEnvelope"].(map[string]any)
			p := mustB64(t, env["payload"].(string))
			q := []byte(strings.Replace(string(p), `"version":"1"`, `"version":"9"`, 1))
			if string(q) == string(p) {
				t.Fatalf("no version in the statement %s", p)
			}
			p = q
			env["payload"] = base64.StdEncoding.EncodeToString(p)
		}, signing.CheckSignature},
	}
	for _, c := range bundleCases {
		t.Run("bundle/"+c.name, func(t *testing.T) {
			var b map[string]any
			if err := json.Unmarshal(good, &b); err != nil {
				t.Fatal(err)
			}
			c.edit(t, b)
			bad, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			vv := v
			if c.tlog != 0 {
				vv = verifier(t, rootJSON, c.tlog)
				// Without the tampering the same bundle verifies with this verifier.
				var clean map[string]any
				_ = json.Unmarshal(good, &clean)
				delete(clean["verificationMaterial"].(map[string]any), "tlogEntries")
				cb, _ := json.Marshal(clean)
				if _, err := vv.VerifyBundle(cb, digest); err != nil {
					t.Fatalf("control without the log entry: %v", err)
				}
			}
			_, err = vv.VerifyBundle(bad, digest)
			if err == nil {
				t.Fatal("tampered bundle verified")
			}
			if got := signing.FailedCheck(err); got != c.check {
				t.Fatalf("failed check %q, want %q: %v", got, c.check, err)
			}
			t.Logf("rejected: %v", err)
		})
	}

	// The same untouched bundle against trusted roots where one authority is a stranger.
	rootCases := []struct {
		name  string
		edit  func(t *testing.T, r map[string]any)
		check string
	}{
		{"Fulcio CA", func(t *testing.T, r map[string]any) {
			ca := r["certificateAuthorities"].([]any)[0].(map[string]any)
			ca["certChain"] = map[string]any{"certificates": []any{map[string]any{"rawBytes": strangerCA(t, "sigstore", false)}}}
		}, signing.CheckCertificate},
		{"TSA chain", func(t *testing.T, r map[string]any) {
			ta := r["timestampAuthorities"].([]any)[0].(map[string]any)
			ta["certChain"] = map[string]any{"certificates": []any{
				map[string]any{"rawBytes": strangerCA(t, "Test TSA", true)},
				map[string]any{"rawBytes": strangerCA(t, "Test TSA Root", false)},
			}}
		}, signing.CheckTimestamp},
		{"TSA root under the genuine leaf", func(t *testing.T, r map[string]any) {
			// The leaf and intermediate are the real ones; only the root is a stranger,
			// so the chain the verifier checks once per trusted root does not verify.
			ta := r["timestampAuthorities"].([]any)[0].(map[string]any)
			certs := ta["certChain"].(map[string]any)["certificates"].([]any)
			certs[len(certs)-1] = map[string]any{"rawBytes": strangerCA(t, "Test TSA Root", false)}
		}, signing.CheckTimestamp},
		{"Rekor key", func(t *testing.T, r map[string]any) {
			tl := r["tlogs"].([]any)[0].(map[string]any)
			pub, _, _ := ed25519.GenerateKey(rand.Reader)
			der, _ := x509.MarshalPKIXPublicKey(pub)
			tl["publicKey"].(map[string]any)["rawBytes"] = base64.StdEncoding.EncodeToString(der)
		}, signing.CheckTlog},
	}
	for _, c := range rootCases {
		t.Run("root/"+c.name, func(t *testing.T) {
			var r map[string]any
			if err := json.Unmarshal(rootJSON, &r); err != nil {
				t.Fatal(err)
			}
			c.edit(t, r)
			rb, _ := json.Marshal(r)
			_, err := verifier(t, rb, 0).VerifyBundle(good, digest)
			if err == nil {
				t.Fatal("verified against a trusted root with a stranger in it")
			}
			if got := signing.FailedCheck(err); got != c.check {
				t.Fatalf("failed check %q, want %q: %v", got, c.check, err)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

// dig walks decoded JSON by keys and indexes; nil when a step is missing.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return b
}

// flipB64 changes one decoded byte of a base64 string.
func flipB64(t *testing.T, s string, i int) string {
	t.Helper()
	b := mustB64(t, s)
	b[i%len(b)] ^= 0x40
	return base64.StdEncoding.EncodeToString(b)
}

// flipCheckpointSignature changes one byte of the signature (after the 4-byte key
// hash) on the checkpoint's "— name base64" signature line.
func flipCheckpointSignature(t *testing.T, envelope string) string {
	t.Helper()
	lines := strings.Split(envelope, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "— ") {
			continue
		}
		f := strings.Fields(l)
		sig := mustB64(t, f[len(f)-1])
		sig[len(sig)-1] ^= 0x01
		f[len(f)-1] = base64.StdEncoding.EncodeToString(sig)
		lines[i] = strings.Join(f, " ")
		return strings.Join(lines, "\n")
	}
	t.Fatalf("no signature line in checkpoint %q", envelope)
	return ""
}

// strangerCA is a self-signed CA certificate (base64 DER) nobody signed anything with;
// timestamping sets the timestamping extended key usage on it.
func strangerCA(t *testing.T, cn string, timestamping bool) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"local"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  !timestamping,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	if timestamping {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}
