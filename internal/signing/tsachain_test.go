package signing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
)

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func mkCert(t *testing.T, name string, parent *testCert, ca bool, eku []x509.ExtKeyUsage, nb, na time.Time) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             nb,
		NotAfter:              na,
		IsCA:                  ca,
		BasicConstraintsValid: true,
		ExtKeyUsage:           eku,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{c, key}
}

func TestChainVerifiedTSAOnlyForChainsThatVerify(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ts := []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}
	rootCA := mkCert(t, "root", nil, true, nil, now.Add(-48*time.Hour), now.Add(48*time.Hour))
	inter := mkCert(t, "inter", rootCA, true, nil, now.Add(-24*time.Hour), now.Add(24*time.Hour))
	leaf := mkCert(t, "leaf", inter, false, ts, now.Add(-36*time.Hour), now.Add(12*time.Hour))
	other := mkCert(t, "other root", nil, true, nil, now.Add(-48*time.Hour), now.Add(48*time.Hour))
	strangerLeaf := mkCert(t, "leaf", other, false, ts, now.Add(-time.Hour), now.Add(time.Hour))
	serverLeaf := mkCert(t, "leaf", inter, false, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, now.Add(-time.Hour), now.Add(time.Hour))
	late := mkCert(t, "inter", rootCA, true, nil, now.Add(30*time.Hour), now.Add(40*time.Hour))

	good := newChainVerifiedTSA(&root.SigstoreTimestampingAuthority{Root: rootCA.cert, Intermediates: []*x509.Certificate{inter.cert}, Leaf: leaf.cert})
	if good == nil {
		t.Fatal("a chain that verifies must be cached")
	}
	// The window is where every certificate is valid: the intermediate's start, the leaf's end.
	if !good.notBefore.Equal(inter.cert.NotBefore) || !good.notAft.Equal(leaf.cert.NotAfter) {
		t.Fatalf("window [%s, %s]", good.notBefore, good.notAft)
	}
	if good.leafAnchored.Root != leaf.cert || good.leafAnchored.Leaf != leaf.cert {
		t.Fatal("per-bundle checks must be anchored at the verified leaf")
	}
	for name, tsa := range map[string]*root.SigstoreTimestampingAuthority{
		"leaf from another root": {Root: rootCA.cert, Intermediates: []*x509.Certificate{inter.cert}, Leaf: strangerLeaf.cert},
		"leaf for another usage": {Root: rootCA.cert, Intermediates: []*x509.Certificate{inter.cert}, Leaf: serverLeaf.cert},
		"no common validity":     {Root: rootCA.cert, Intermediates: []*x509.Certificate{late.cert}, Leaf: leaf.cert},
		"no leaf in the root":    {Root: rootCA.cert, Intermediates: []*x509.Certificate{inter.cert}},
	} {
		if newChainVerifiedTSA(tsa) != nil {
			t.Errorf("%s: cached, want sigstore-go's own per-bundle check", name)
		}
	}
}
