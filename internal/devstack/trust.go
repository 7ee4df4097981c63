//go:build unix

package devstack

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"github.com/sigstore/rekor-tiles/v2/pkg/note"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/fixity-dev/packer-plugin-fixity/internal/atomicfile"
)

// parseChain reads PEM certificates, leaf (or first) to root.
func parseChain(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("devstack: %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("devstack: %s: no PEM certificate", path)
	}
	return out, nil
}

// writeClientFiles writes trusted_root.json (Fulcio CA, TSA chain, Rekor v2 key and log
// ID under the checkpoint origin 127.0.0.1, no CT logs) and signing_config.json (v0.2:
// Fulcio API 1, Rekor API 2, TSA API 1, OIDC = the GitHub issuer). Both are re-read with
// sigstore-go before Start returns, so a stack never hands out files clients reject.
func (s *Stack) writeClientFiles(_ context.Context) error {
	// Validity starts a minute back so a client clock a little behind ours still fits.
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)

	fulcio, err := parseChain(s.FulcioChainPath)
	if err != nil {
		return err
	}
	ca := &root.FulcioCertificateAuthority{
		Root:                fulcio[len(fulcio)-1],
		Intermediates:       fulcio[:len(fulcio)-1],
		ValidityPeriodStart: start,
		URI:                 s.FulcioURL,
	}
	tsa, err := parseChain(s.TSAChainPath)
	if err != nil {
		return err
	}
	if len(tsa) < 2 {
		return fmt.Errorf("devstack: %s: want leaf … root, got %d certificate(s)", s.TSAChainPath, len(tsa))
	}
	ta := &root.SigstoreTimestampingAuthority{
		Leaf:                tsa[0],
		Intermediates:       tsa[1 : len(tsa)-1],
		Root:                tsa[len(tsa)-1],
		ValidityPeriodStart: start,
		URI:                 s.TSAURL,
	}
	u, err := url.Parse(s.RekorURL)
	if err != nil {
		return err
	}
	_, logID, err := note.KeyHash(u.Hostname(), s.rekorPub)
	if err != nil {
		return fmt.Errorf("devstack: rekor log id: %w", err)
	}
	tl := &root.TransparencyLog{
		BaseURL:             s.RekorURL,
		ID:                  logID,
		ValidityPeriodStart: start,
		HashFunc:            crypto.SHA256,
		PublicKey:           s.rekorPub,
		SignatureHashFunc:   crypto.SHA256,
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{ca}, nil,
		[]root.TimestampingAuthority{ta},
		map[string]*root.TransparencyLog{hex.EncodeToString(logID): tl})
	if err != nil {
		return fmt.Errorf("devstack: trusted root: %w", err)
	}
	trJSON, err := tr.MarshalJSON()
	if err != nil {
		return fmt.Errorf("devstack: trusted root: %w", err)
	}
	if _, err := root.NewTrustedRootFromJSON(trJSON); err != nil {
		return fmt.Errorf("devstack: generated trusted root does not load: %w", err)
	}
	s.TrustedRootPath = filepath.Join(s.Dir, "trusted_root.json")
	if err := atomicfile.WriteFile(s.TrustedRootPath, trJSON, 0o644); err != nil {
		return err
	}

	svc := func(u string, v uint32) []root.Service {
		return []root.Service{{URL: u, MajorAPIVersion: v, ValidityPeriodStart: start, Operator: "fixity-devstack"}}
	}
	anyOne := root.ServiceConfiguration{Selector: prototrustroot.ServiceSelector_ANY}
	sc, err := root.NewSigningConfig(root.SigningConfigMediaType02,
		svc(s.FulcioURL, 1), svc(s.IssuerURL, 1),
		svc(s.RekorURL, 2), anyOne,
		svc(s.TSAURL, 1), anyOne)
	if err != nil {
		return fmt.Errorf("devstack: signing config: %w", err)
	}
	scJSON, err := sc.MarshalJSON()
	if err != nil {
		return fmt.Errorf("devstack: signing config: %w", err)
	}
	if _, err := root.NewSigningConfigFromJSON(scJSON); err != nil {
		return fmt.Errorf("devstack: generated signing config does not load: %w", err)
	}
	s.SigningConfigPath = filepath.Join(s.Dir, "signing_config.json")
	return atomicfile.WriteFile(s.SigningConfigPath, scJSON, 0o644)
}
