package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// testStack is an in-process stand-in for Fulcio and a TSA on httptest loopback
// servers, with a trusted root for both. Its Fulcio issues certificates with the
// GitHub-shaped CI extensions Fulcio puts in real ones, so identity pins on extensions
// are exercised; it trusts the token claims without checking the JWT signature (the
// preflight under test runs before Fulcio anyway; e2e uses the real Fulcio).
type testStack struct {
	Fulcio, TSA     *httptest.Server
	TrustedRoot     *root.TrustedRoot
	TrustedRootPath string
	Issuer          string
	fulcioCalls     atomic.Int32
	tsaCalls        atomic.Int32
}

const testIssuer = "https://token.actions.githubusercontent.com"

func newTestStack(t testing.TB) *testStack {
	t.Helper()
	caRoot, caKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	tsaRoot, tsaRootKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	tsaInter, tsaInterKey, err := ca.GenerateTSAIntermediate(tsaRoot, tsaRootKey)
	if err != nil {
		t.Fatal(err)
	}
	tsaKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tsaLeaf, err := ca.GenerateTSALeafCert(time.Now().Add(-time.Minute), tsaKey, tsaInter, tsaInterKey)
	if err != nil {
		t.Fatal(err)
	}
	s := &testStack{Issuer: testIssuer}
	s.Fulcio = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v2/configuration":
			_ = json.NewEncoder(w).Encode(map[string]any{"issuers": []map[string]string{
				{"issuerUrl": testIssuer, "audience": "sigstore"},
				{"wildcardIssuerUrl": "https://oidc.circleci.com/org/*", "audience": "sigstore"},
			}})
		case "/api/v2/signingCert":
			s.fulcioCalls.Add(1)
			s.issue(w, r, caRoot, caKey)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Fulcio.Close)
	s.TSA = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.tsaCalls.Add(1)
		body, _ := io.ReadAll(r.Body)
		req, err := timestamp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		ts := timestamp.Timestamp{HashAlgorithm: req.HashAlgorithm, HashedMessage: req.HashedMessage, Time: time.Now(),
			Nonce: req.Nonce, Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2}, ExtraExtensions: req.Extensions}
		resp, err := ts.CreateResponseWithOpts(tsaLeaf, tsaKey, crypto.SHA256)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/timestamp-reply")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(s.TSA.Close)
	start := time.Now().Add(-24 * time.Hour)
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{&root.FulcioCertificateAuthority{Root: caRoot, ValidityPeriodStart: start, URI: s.Fulcio.URL}},
		nil,
		[]root.TimestampingAuthority{&root.SigstoreTimestampingAuthority{Root: tsaRoot, Intermediates: []*x509.Certificate{tsaInter}, Leaf: tsaLeaf, ValidityPeriodStart: start, URI: s.TSA.URL}},
		map[string]*root.TransparencyLog{})
	if err != nil {
		t.Fatal(err)
	}
	s.TrustedRoot = tr
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	s.TrustedRootPath = filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(s.TrustedRootPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// issue answers a Fulcio v2 signingCert request with a certificate carrying the token's
// GitHub claims as Fulcio extensions.
func (s *testStack) issue(w http.ResponseWriter, r *http.Request, caRoot *x509.Certificate, caKey *ecdsa.PrivateKey) {
	var req struct {
		PublicKeyRequest struct {
			PublicKey struct {
				Content string `json:"content"`
			} `json:"publicKey"`
		} `json:"publicKeyRequest"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	c, err := ParseUnverifiedClaims(token)
	if err != nil || c.Issuer != testIssuer || time.Now().After(time.Unix(c.ExpiresAt, 0)) {
		http.Error(w, `{"code":3,"message":"There was an error processing the identity token"}`, 400)
		return
	}
	raw := map[string]any{}
	parts := splitJWT(token)
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(pb, &raw)
	str := func(k string) string { v, _ := raw[k].(string); return v }
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(req.PublicKeyRequest.PublicKey.Content))
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	der := func(v string) []byte { b, _ := asn1.MarshalWithParams(v, "utf8"); return b }
	san, _ := url.Parse("https://github.com/" + str("job_workflow_ref"))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(10 * time.Minute),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		URIs:         []*url.URL{san},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}, Value: []byte(c.Issuer)},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 5}, Value: []byte(str("repository"))},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}, Value: der(c.Issuer)},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 11}, Value: der(str("runner_environment"))},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 12}, Value: der("https://github.com/" + str("repository"))},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 14}, Value: der(str("ref"))},
		},
	}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, caRoot, pub, caKey)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	pemLeaf := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}))
	pemRoot := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caRoot.Raw}))
	_ = json.NewEncoder(w).Encode(map[string]any{"signedCertificateEmbeddedSct": map[string]any{"chain": map[string]any{"certificates": []string{pemLeaf, pemRoot}}}})
}

func splitJWT(tok string) []string {
	out := []string{"", "", ""}
	i := 0
	for _, r := range tok {
		if r == '.' {
			i++
			if i > 2 {
				break
			}
			continue
		}
		out[i] += string(r)
	}
	return out
}

// mintToken makes an unsigned GitHub-shaped JWT; claims override the defaults.
func mintToken(claims map[string]any) string {
	c := map[string]any{
		"iss": testIssuer, "aud": "sigstore", "sub": "repo:acme/images:ref:refs/heads/main",
		"iat": time.Now().Unix(), "nbf": time.Now().Add(-time.Minute).Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(),
		"repository": "acme/images", "ref": "refs/heads/main", "runner_environment": "github-hosted",
		"job_workflow_ref": "acme/images/.github/workflows/bake.yml@refs/heads/main",
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT"})
	p, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + ".c2ln"
}

func (s *testStack) signOptions(token string) SignOptions {
	return SignOptions{
		TrustedRoot: s.TrustedRoot, FulcioURL: s.Fulcio.URL, TSAURL: s.TSA.URL,
		Token:   TokenOptions{Provider: ProviderToken, Token: token},
		Retries: 1, Timeout: 5 * time.Second, Deadline: 20 * time.Second,
	}
}

// githubIdentity is the identity a security team pins for testStack bundles.
var githubIdentity = Identity{
	Issuer: testIssuer,
	SAN:    "https://github.com/acme/images/.github/workflows/bake.yml@refs/heads/main",
	Extensions: map[string]string{
		"source_repository_uri":      "https://github.com/acme/images",
		"github_workflow_repository": "acme/images",
	},
}
