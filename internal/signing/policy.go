package signing

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// VerifyPolicy is the file form of a verification policy (`fixity verify --policy`):
// who may sign (any one of Identities), what they must have signed (PredicateType) and
// against which trusted root. Relative paths resolve against the policy file.
//
//	{
//	  "trusted_root": "trusted_root.json",
//	  "predicate_type": "https://fixity.dev/image-release/v1",
//	  "identities": [{
//	    "issuer": "https://token.actions.githubusercontent.com",
//	    "san_regexp": "^https://github\\.com/acme/images/\\.github/workflows/release\\.yml@refs/tags/v",
//	    "extensions": {"source_repository_uri": "https://github.com/acme/images", "runner_environment": "github-hosted"}
//	  }]
//	}
type VerifyPolicy struct {
	TrustedRoot   string     `json:"trusted_root,omitempty"`
	PublicKey     string     `json:"public_key,omitempty"`
	PredicateType string     `json:"predicate_type,omitempty"`
	Identities    []Identity `json:"identities"`
}

// LoadVerifyPolicy reads and validates a policy file.
func LoadVerifyPolicy(path string) (VerifyPolicy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return VerifyPolicy{}, fmt.Errorf("policy %s: %w", path, err)
	}
	p, err := ParseVerifyPolicy(b)
	if err != nil {
		return VerifyPolicy{}, fmt.Errorf("policy %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for _, f := range []*string{&p.TrustedRoot, &p.PublicKey} {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(dir, *f)
		}
	}
	return p, nil
}

// ParseVerifyPolicy decodes a policy strictly: unknown fields are errors (a misspelt
// pin must not silently widen the policy), and each identity must pin an issuer and a
// signer.
func ParseVerifyPolicy(b []byte) (VerifyPolicy, error) {
	var p VerifyPolicy
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
			return VerifyPolicy{}, fmt.Errorf("line %d: %v: fix the JSON", line, err)
		}
		return VerifyPolicy{}, fmt.Errorf("%v (fields: trusted_root, public_key, predicate_type, identities[].issuer|issuer_regexp|san|san_regexp|extensions)", err)
	}
	if dec.More() {
		return VerifyPolicy{}, errors.New("trailing data after the policy object")
	}
	if len(p.Identities) == 0 && p.PublicKey == "" {
		return VerifyPolicy{}, errors.New("identities: empty: pin at least one signer (issuer + san or san_regexp), or give public_key")
	}
	for i, id := range p.Identities {
		if _, err := id.compile(); err != nil {
			return VerifyPolicy{}, fmt.Errorf("identities[%d]: %w", i, err)
		}
	}
	return p, nil
}

// ArtifactDigests returns the digests an artifact can be signed under: the sha256 of a
// file, or for an OCI image layout directory the manifest digests its index.json lists
// (referrers — entries with an artifactType — excluded).
func ArtifactDigests(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", path, err)
	}
	if !st.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("artifact %s: %w", path, err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return nil, fmt.Errorf("artifact %s: %w", path, err)
		}
		return []string{"sha256:" + hex.EncodeToString(h.Sum(nil))}, nil
	}
	if _, err := os.Stat(filepath.Join(path, "oci-layout")); err != nil {
		return nil, fmt.Errorf("artifact %s: a directory but not an OCI image layout (no oci-layout file)", path)
	}
	b, err := os.ReadFile(filepath.Join(path, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", path, err)
	}
	var idx struct {
		Manifests []struct {
			MediaType    string `json:"mediaType"`
			Digest       string `json:"digest"`
			ArtifactType string `json:"artifactType"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("artifact %s: index.json: %w", path, err)
	}
	var out []string
	for _, m := range idx.Manifests {
		if m.ArtifactType != "" || !strings.HasPrefix(m.Digest, "sha256:") {
			continue
		}
		out = append(out, m.Digest)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("artifact %s: index.json lists no image manifest", path)
	}
	return out, nil
}
