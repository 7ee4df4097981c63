package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// PEM block types of cosign-format encrypted private keys (`cosign generate-key-pair`).
const (
	pemEncryptedSigstore = "ENCRYPTED SIGSTORE PRIVATE KEY"
	pemEncryptedCosign   = "ENCRYPTED COSIGN PRIVATE KEY"
)

// KeyPair is a long-lived ECDSA P-256 signing key for `key` mode (air-gapped sites): the
// bundle then carries a key hint instead of a Fulcio certificate and verifiers need
// the public key. It implements sigstore-go's sign.Keypair.
type KeyPair struct {
	priv *ecdsa.PrivateKey
	hint []byte
}

// LoadPrivateKey reads a PEM private key: PKCS#8 or SEC1 ("EC PRIVATE KEY"), or a
// cosign-format encrypted key decrypted with password. Only ECDSA P-256 is accepted,
// which is what cosign generates and what every Sigstore verifier supports.
func LoadPrivateKey(path string, password []byte) (*KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	kp, err := ParsePrivateKey(b, password)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return kp, nil
}

// ParsePrivateKey is LoadPrivateKey on bytes.
func ParsePrivateKey(b []byte, password []byte) (*KeyPair, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block: want a PEM private key or a cosign.key")
	}
	var key crypto.PrivateKey
	var err error
	switch blk.Type {
	case pemEncryptedSigstore, pemEncryptedCosign:
		if len(password) == 0 {
			return nil, errors.New("the key is encrypted: set its password (COSIGN_PASSWORD or key_password)")
		}
		der, derr := encrypted.Decrypt(blk.Bytes, password)
		if derr != nil {
			return nil, fmt.Errorf("decrypting cosign key: wrong password or damaged key: %w", derr)
		}
		key, err = x509.ParsePKCS8PrivateKey(der)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key this signer reads (PRIVATE KEY, EC PRIVATE KEY, %s)", blk.Type, pemEncryptedSigstore)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("only ECDSA P-256 keys are supported (cosign generate-key-pair makes one; openssl: genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)")
	}
	return NewKeyPair(ec)
}

// NewKeyPair wraps an ECDSA P-256 key; the hint is the hex sha256 of the public key DER.
func NewKeyPair(priv *ecdsa.PrivateKey) (*KeyPair, error) {
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &KeyPair{priv: priv, hint: []byte(hex.EncodeToString(sum[:]))}, nil
}

// LoadPublicKey reads a PEM public key (cosign.pub).
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return pub, nil
}

// GetHashAlgorithm implements sign.Keypair.
func (k *KeyPair) GetHashAlgorithm() protocommon.HashAlgorithm {
	return protocommon.HashAlgorithm_SHA2_256
}

// GetSigningAlgorithm implements sign.Keypair.
func (k *KeyPair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}

// GetHint implements sign.Keypair.
func (k *KeyPair) GetHint() []byte { return k.hint }

// GetKeyAlgorithm implements sign.Keypair.
func (k *KeyPair) GetKeyAlgorithm() string { return "ECDSA" }

// GetPublicKey implements sign.Keypair.
func (k *KeyPair) GetPublicKey() crypto.PublicKey { return k.priv.Public() }

// GetPublicKeyPem implements sign.Keypair.
func (k *KeyPair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.priv.Public())
	return string(b), err
}

// SignData implements sign.Keypair: ECDSA over sha256(data).
func (k *KeyPair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	sum := sha256.Sum256(data)
	sig, err := k.priv.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, nil, err
	}
	return sig, sum[:], nil
}
