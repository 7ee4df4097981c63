package signing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/proto"
)

var imageDigest = "sha256:" + strings.Repeat("ab", 32)

func testStatement(t testing.TB, digest string) []byte {
	t.Helper()
	st, err := NewStatement([]Subject{{Name: "registry.test/acme/web:1.2.3", Digest: digest}}, PredicateImageRelease, ImageRelease{
		Image: "acme/web", Version: "1.2.3", PolicyDigest: "sha256:" + strings.Repeat("01", 32),
		ArtifactIDs:    []ArtifactRef{{BuilderID: "fixity-dev.oci", ID: digest}},
		SourceRevision: "0123456789abcdef", CIRunURL: "https://github.com/acme/images/actions/runs/1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func signOne(t *testing.T, s *testStack, opts SignOptions, digest string) (string, *SignResult) {
	t.Helper()
	svc, err := NewService(opts)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "image"+BundleSuffix)
	res, err := svc.SignToFile(context.Background(), testStatement(t, digest), out)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return out, res
}

func TestSignThenVerify(t *testing.T) {
	s := newTestStack(t)
	path, res := signOne(t, s, s.signOptions(mintToken(nil)), imageDigest)
	if res.Provider != ProviderToken || res.Verified == nil {
		t.Fatalf("result = %+v", res)
	}
	got, err := VerifyBundleFile(path, imageDigest, VerifyOptions{TrustedRootPath: s.TrustedRootPath, Identities: []Identity{githubIdentity}, TlogThreshold: -1})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got.Signer.Issuer != testIssuer || got.Signer.SAN != githubIdentity.SAN {
		t.Errorf("signer = %+v", got.Signer)
	}
	if got.Signer.Extensions["source_repository_uri"] != "https://github.com/acme/images" || got.Signer.Extensions["runner_environment"] != "github-hosted" {
		t.Errorf("extensions = %v", got.Signer.Extensions)
	}
	if got.PredicateType != PredicateImageRelease || got.Predicate == nil || got.Predicate.Image != "acme/web" || got.Predicate.Version != "1.2.3" {
		t.Errorf("predicate = %q %+v", got.PredicateType, got.Predicate)
	}
	b, _ := os.ReadFile(path)
	sum := sha256.Sum256(b)
	if got.BundleDigest != "sha256:"+hex.EncodeToString(sum[:]) || got.MatchedDigest != imageDigest {
		t.Errorf("digests = %s %s", got.BundleDigest, got.MatchedDigest)
	}
	if len(got.Timestamps) == 0 {
		t.Error("no verified timestamp")
	}
	if !bytes.Contains(b, []byte(`"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"`)) && !bytes.Contains(b, []byte(`"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"`)) {
		t.Errorf("not a v0.3 bundle: %.200s", b)
	}
}

func TestVerifyRejects(t *testing.T) {
	s := newTestStack(t)
	path, _ := signOne(t, s, s.signOptions(mintToken(nil)), imageDigest)
	with := func(f func(*Identity)) []Identity {
		id := githubIdentity
		id.Extensions = map[string]string{}
		for k, v := range githubIdentity.Extensions {
			id.Extensions[k] = v
		}
		f(&id)
		return []Identity{id}
	}
	cases := []struct {
		name   string
		ids    []Identity
		digest string
		ptype  string
		check  string
		msg    string
	}{
		{"wrong repository", with(func(i *Identity) { i.Extensions["github_workflow_repository"] = "evil/images" }), imageDigest, "", CheckIdentity, "evil/images"},
		{"wrong repository uri", with(func(i *Identity) {
			delete(i.Extensions, "source_repository_uri")
			i.Extensions["sourceRepositoryURI"] = "https://github.com/evil/images"
		}), imageDigest, "", CheckIdentity, "evil"},
		{"wrong issuer", with(func(i *Identity) { i.Issuer = "https://gitlab.com" }), imageDigest, "", CheckIdentity, "gitlab"},
		{"wrong san regexp", with(func(i *Identity) { i.SAN = ""; i.SANRegexp = `^https://github\.com/acme/other/` }), imageDigest, "", CheckIdentity, ""},
		{"wrong digest", []Identity{githubIdentity}, "sha256:" + strings.Repeat("cd", 32), "", CheckDigest, "another image"},
		{"wrong predicate type", []Identity{githubIdentity}, imageDigest, PredicateSLSAProvenance, CheckPredicateType, "slsa"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := VerifyBundleFile(path, c.digest, VerifyOptions{TrustedRootPath: s.TrustedRootPath, Identities: c.ids, PredicateType: c.ptype, TlogThreshold: -1})
			if err == nil {
				t.Fatal("verified, want rejection")
			}
			if FailedCheck(err) != c.check || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v (check %q), want check %q containing %q", err, FailedCheck(err), c.check, c.msg)
			}
			if IsUnusable(err) {
				t.Fatal("a rejection must not read as unusable input")
			}
		})
	}
	// Any one of several identities may match.
	if _, err := VerifyBundleFile(path, imageDigest, VerifyOptions{TrustedRootPath: s.TrustedRootPath, Identities: append(with(func(i *Identity) { i.Issuer = "https://gitlab.com" }), githubIdentity), TlogThreshold: -1}); err != nil {
		t.Fatalf("second identity should match: %v", err)
	}
	// A tlog is required by default: this bundle has none.
	if _, err := VerifyBundleFile(path, imageDigest, VerifyOptions{TrustedRootPath: s.TrustedRootPath, Identities: []Identity{githubIdentity}}); FailedCheck(err) != CheckTlog {
		t.Fatalf("default tlog requirement: err = %v", err)
	}
}

func TestVerifyTamperedBundles(t *testing.T) {
	s := newTestStack(t)
	path, _ := signOne(t, s, s.signOptions(mintToken(nil)), imageDigest)
	good, _ := os.ReadFile(path)
	v, err := NewVerifier(VerifyOptions{TrustedMaterial: s.TrustedRoot, Identities: []Identity{githubIdentity}, TlogThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyBundle(good, imageDigest); err != nil {
		t.Fatal(err)
	}
	// Truncated: unusable.
	if _, err := v.VerifyBundle(good[:len(good)/2], imageDigest); FailedCheck(err) != CheckBundle || !IsUnusable(err) {
		t.Fatalf("truncated: %v", err)
	}
	// One flipped byte must never verify. The RFC 3161 timestamp is skipped: CMS
	// SignedData has fields outside the signature (the digestAlgorithms set) that
	// verifiers ignore by design, so flipping them changes nothing that is trusted.
	tsStart := bytes.Index(good, []byte(`"signedTimestamp"`))
	tsEnd := tsStart + bytes.IndexByte(good[tsStart+20:], '"') + 21
	rejected := 0
	for i := 0; i < len(good); i += 5 {
		if tsStart >= 0 && i >= tsStart && i < tsEnd {
			continue
		}
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x01
		if _, err := v.VerifyBundle(bad, imageDigest); err == nil {
			// A flipped low bit in the last base64 character can decode to the same bytes.
			if !sameBundle(t, good, bad) {
				t.Fatalf("flipped byte %d verified: %q -> %q", i, good[max(0, i-40):min(len(good), i+40)], bad[max(0, i-40):min(len(good), i+40)])
			}
		} else {
			rejected++
		}
	}
	if rejected == 0 {
		t.Fatal("no flipped byte was rejected")
	}
	// Tamper with the signed statement's digest inside the DSSE payload.
	subjectHex := strings.Repeat("ab", 32)
	tampered := bytes.Replace(good, []byte(b64.EncodeToString(testStatement(t, imageDigest))),
		[]byte(b64.EncodeToString(bytes.ReplaceAll(testStatement(t, imageDigest), []byte(subjectHex), []byte(strings.Repeat("ef", 32))))), 1)
	if bytes.Equal(tampered, good) {
		t.Fatal("payload not found in bundle")
	}
	if _, err := v.VerifyBundle(tampered, "sha256:"+strings.Repeat("ef", 32)); FailedCheck(err) != CheckSignature {
		t.Fatalf("tampered digest: err = %v", err)
	}
}

// sameBundle reports whether two byte strings decode to the same bundle (a flipped
// low bit in the last base64 character can be harmless).
func sameBundle(t *testing.T, a, b []byte) bool {
	var ba, bb bundle.Bundle
	if ba.UnmarshalJSON(a) != nil || bb.UnmarshalJSON(b) != nil {
		return false
	}
	return proto.Equal(ba.Bundle, bb.Bundle)
}

func TestPreflightStopsBadTokensBeforeFulcio(t *testing.T) {
	s := newTestStack(t)
	cases := []struct {
		name  string
		token string
		want  string
	}{
		{"expired", mintToken(map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}), "expired"},
		{"wrong audience", mintToken(map[string]any{"aud": "not-sigstore"}), `Fulcio expects "sigstore"`},
		{"other issuer", mintToken(map[string]any{"iss": "https://gitlab.com"}), "not accepted by this Fulcio"},
		{"not yet valid", mintToken(map[string]any{"nbf": time.Now().Add(time.Hour).Unix()}), "clock"},
		{"no exp", mintToken(map[string]any{"exp": nil}), "no exp"},
		{"not a jwt", "ghs_notajwt", "not a JWT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc, err := NewService(s.signOptions(c.token))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "x"+BundleSuffix)
			_, err = svc.SignToFile(context.Background(), testStatement(t, imageDigest), out)
			var te *TokenError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want TokenError containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), c.token) {
				t.Fatal("error printed the token")
			}
			if _, serr := os.Stat(out); !os.IsNotExist(serr) {
				t.Fatal("bundle written on failure")
			}
		})
	}
	if n := s.fulcioCalls.Load(); n != 0 {
		t.Fatalf("fulcio saw %d bad tokens", n)
	}
	// A pinned issuer is checked too.
	opts := s.signOptions(mintToken(nil))
	opts.OIDCIssuer = "https://gitlab.com"
	svc, _ := NewService(opts)
	if _, err := svc.Sign(context.Background(), testStatement(t, imageDigest)); err == nil || !strings.Contains(err.Error(), "pins") {
		t.Fatalf("pinned issuer: %v", err)
	}
}

func TestServicesDown(t *testing.T) {
	s := newTestStack(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "x"+BundleSuffix)
	// TSA down.
	opts := s.signOptions(mintToken(nil))
	s.TSA.Close()
	svc, _ := NewService(opts)
	if _, err := svc.SignToFile(context.Background(), testStatement(t, imageDigest), out); err == nil || !strings.Contains(err.Error(), "timestamp authority") {
		t.Fatalf("tsa down: %v", err)
	}
	// Fulcio down.
	s.Fulcio.Close()
	if _, err := svc.SignToFile(context.Background(), testStatement(t, imageDigest), out); err == nil || !strings.Contains(err.Error(), "fulcio") || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("fulcio down: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left behind: %v", ents)
	}
}

func TestServiceConfigErrors(t *testing.T) {
	s := newTestStack(t)
	cases := []struct {
		opts SignOptions
		want string
	}{
		{SignOptions{FulcioURL: s.Fulcio.URL, TSAURL: s.TSA.URL}, "trusted_root: required"},
		{SignOptions{TrustedRoot: s.TrustedRoot, TSAURL: s.TSA.URL}, "fulcio_url"},
		{SignOptions{TrustedRoot: s.TrustedRoot, FulcioURL: s.Fulcio.URL}, "signing time"},
		{SignOptions{TrustedRoot: s.TrustedRoot, FulcioURL: s.Fulcio.URL, RekorURL: "http://127.0.0.1:1", RekorVersion: 2}, "rekor v2 gives no signing time"},
		{SignOptions{TrustedRootPath: filepath.Join(t.TempDir(), "missing.json"), FulcioURL: s.Fulcio.URL, TSAURL: s.TSA.URL}, "missing.json"},
	}
	for _, c := range cases {
		if _, err := NewService(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewService(%+v) = %v, want %q", c.opts, err, c.want)
		}
	}
}

func TestKeyModeWithCosignKey(t *testing.T) {
	s := newTestStack(t)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	enc, err := encrypted.Encrypt(der, []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "cosign.key")
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: pemEncryptedSigstore, Bytes: enc}), 0o600)
	pubPEM, _ := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	pubPath := filepath.Join(dir, "cosign.pub")
	_ = os.WriteFile(pubPath, pubPEM, 0o644)

	if _, err := LoadPrivateKey(keyPath, []byte("wrong")); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := LoadPrivateKey(keyPath, nil); err == nil || !strings.Contains(err.Error(), "COSIGN_PASSWORD") {
		t.Fatalf("no password: %v", err)
	}
	kp, err := LoadPrivateKey(keyPath, []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	// Air-gapped: no TSA, no tlog.
	path, _ := signOne(t, s, SignOptions{Key: kp, NoTlog: true}, imageDigest)
	got, err := VerifyBundleFile(path, imageDigest, VerifyOptions{PublicKeyPath: pubPath, TlogThreshold: -1, TimestampThreshold: -1})
	if err != nil {
		t.Fatalf("verify key bundle: %v", err)
	}
	if got.Signer.KeyHint == "" || got.Signer.SAN != "" {
		t.Fatalf("signer = %+v", got.Signer)
	}
	// Another key must not verify it.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := VerifyBundleFile(path, imageDigest, VerifyOptions{PublicKey: other.Public(), TlogThreshold: -1, TimestampThreshold: -1}); err == nil {
		t.Fatal("verified with the wrong key")
	}
	// With a TSA the signing time is proven too.
	path2, _ := signOne(t, s, SignOptions{Key: kp, TSAURL: s.TSA.URL, TrustedRoot: s.TrustedRoot, NoTlog: true}, imageDigest)
	got2, err := VerifyBundleFile(path2, imageDigest, VerifyOptions{TrustedMaterial: s.TrustedRoot, PublicKeyPath: pubPath, TlogThreshold: -1})
	if err != nil || len(got2.Timestamps) == 0 {
		t.Fatalf("key+tsa: %v %+v", err, got2)
	}
	// Plain PEM keys load; RSA / other curves are refused with advice.
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if _, err := ParsePrivateKey(ecPEM, nil); err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	d384, _ := x509.MarshalPKCS8PrivateKey(p384)
	if _, err := ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: d384}), nil); err == nil || !strings.Contains(err.Error(), "P-256") {
		t.Fatalf("p384: %v", err)
	}
}
