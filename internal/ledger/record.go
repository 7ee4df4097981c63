// Package ledger is Fixity's release ledger: an append-only, hash-chained log of
// release, promote and revoke events whose replay is the only source of truth for
// "which image hash should run on which channel, and which hashes must never run".
//
// The package knows nothing about Packer or Sigstore: callers verify signatures first
// and hand the verified signer identity in, so the ledger can be used (and tested)
// from the CLI, the Packer components and tests alike. Two backends implement one
// Ledger interface: file://DIR (one machine) and oci://HOST/REPO (a registry).
package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Media types of what the ledger stores.
const (
	RecordSchema = "application/vnd.fixity.release.v1+json"
	EventSchema  = "application/vnd.fixity.ledger.event.v1+json"
)

// Record is one immutable release: everything an operator or auditor needs to tie an
// image hash to where it came from and who signed it. Its id is the sha256 of its
// canonical JSON (Digest), and Previous chains it to the release recorded before it.
type Record struct {
	Schema  string `json:"schema"`
	Name    string `json:"name"`
	Version string `json:"version"`
	// Image is the content identity: the OCI manifest digest is THE image hash.
	Image Image `json:"image"`
	// Artifacts are the provider copies of the image (AMI per region, OCI reference, file).
	Artifacts      []Artifact `json:"artifacts,omitempty"`
	PolicyDigest   string     `json:"policy_digest,omitempty"`
	BaseDigest     string     `json:"base_digest,omitempty"`
	SourceRevision string     `json:"source_revision,omitempty"`
	CIRunURL       string     `json:"ci_run_url,omitempty"`
	// Signer is the identity from the signing certificate, filled in by whoever
	// verified the bundle; nil means the release was recorded unsigned.
	Signer       *Signer   `json:"signer,omitempty"`
	BundleDigest string    `json:"bundle_digest,omitempty"`
	Created      time.Time `json:"created"`
	// Previous is the digest of the release record appended before this one ("" for
	// the first), set by the ledger at append time.
	Previous string `json:"previous,omitempty"`
}

// Image identifies the released content.
type Image struct {
	// Digest is the OCI manifest digest (or the sha256 of a file artifact).
	Digest string `json:"digest"`
	// MediaType and Size make the image usable as an OCI subject descriptor.
	MediaType string `json:"media_type,omitempty"`
	Size      int64  `json:"size,omitempty"`
	// IndexDigest is the image index digest for multi-platform images; runtimes may
	// report either digest, so both resolve to this release.
	IndexDigest string `json:"index_digest,omitempty"`
}

// Artifact is one provider copy of the image: an AMI in a region, an OCI reference, a file.
type Artifact struct {
	Provider string `json:"provider"`
	Region   string `json:"region,omitempty"`
	Account  string `json:"account,omitempty"`
	ID       string `json:"id"`
}

// Signer is the identity bound into the signing certificate.
type Signer struct {
	Issuer     string            `json:"issuer"`
	SAN        string            `json:"san"`
	Extensions map[string]string `json:"extensions,omitempty"`
}

func (s *Signer) String() string {
	if s == nil {
		return "unsigned"
	}
	return s.SAN + " (issuer " + s.Issuer + ")"
}

// Signed reports whether the record carries a verified signer and bundle digest.
func (r *Record) Signed() bool {
	return r.Signer != nil && r.Signer.Issuer != "" && r.Signer.SAN != "" && r.BundleDigest != ""
}

// Digest is the record id: sha256 of its canonical JSON encoding.
func (r *Record) Digest() string {
	b, err := json.Marshal(r)
	if err != nil {
		// A Record holds only strings, ints, maps of strings and times: Marshal cannot fail.
		panic(err)
	}
	return DigestBytes(b)
}

// DigestBytes returns "sha256:<hex>" of b.
func DigestBytes(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ValidDigest reports whether d is a "sha256:<64 lowercase hex>" digest.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]{0,127}$`)

var channelRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidChannel reports whether c is a usable channel name (it also becomes an OCI tag).
func ValidChannel(c string) bool { return channelRE.MatchString(c) }

// Validate checks the fields a record cannot be recorded without; errors name the
// field and the fix.
func (r *Record) Validate() error {
	if r.Schema != RecordSchema {
		return fmt.Errorf("record: schema %q: want %q", r.Schema, RecordSchema)
	}
	if !nameRE.MatchString(r.Name) {
		return fmt.Errorf("record: name %q: use lowercase letters, digits, '.', '_', '-', '/' (1–128 chars)", r.Name)
	}
	if strings.TrimSpace(r.Version) == "" || len(r.Version) > 128 {
		return fmt.Errorf("record %s: version %q: set a non-empty version of at most 128 characters", r.Name, r.Version)
	}
	if !ValidDigest(r.Image.Digest) {
		return fmt.Errorf("record %s@%s: image.digest %q: want sha256:<64 hex>", r.Name, r.Version, r.Image.Digest)
	}
	if r.Image.IndexDigest != "" && !ValidDigest(r.Image.IndexDigest) {
		return fmt.Errorf("record %s@%s: image.index_digest %q: want sha256:<64 hex> or empty", r.Name, r.Version, r.Image.IndexDigest)
	}
	for _, f := range []struct{ name, v string }{{"policy_digest", r.PolicyDigest}, {"base_digest", r.BaseDigest}, {"bundle_digest", r.BundleDigest}} {
		if f.v != "" && !ValidDigest(f.v) {
			return fmt.Errorf("record %s@%s: %s %q: want sha256:<64 hex> or empty", r.Name, r.Version, f.name, f.v)
		}
	}
	for i, a := range r.Artifacts {
		if a.Provider == "" || a.ID == "" {
			return fmt.Errorf("record %s@%s: artifacts[%d]: provider and id are required", r.Name, r.Version, i)
		}
	}
	if r.Signer != nil && (r.Signer.Issuer == "" || r.Signer.SAN == "") {
		return fmt.Errorf("record %s@%s: signer: issuer and san are both required (or no signer at all)", r.Name, r.Version)
	}
	if r.Signer != nil && r.BundleDigest == "" {
		return fmt.Errorf("record %s@%s: bundle_digest: a signed record must name its bundle", r.Name, r.Version)
	}
	if r.Created.IsZero() {
		return fmt.Errorf("record %s@%s: created: set the creation time", r.Name, r.Version)
	}
	return nil
}

// artifactKey indexes provider copies; AMI ids are unique per region, so the region
// is part of the key when known.
func artifactKey(provider, region, id string) string {
	return provider + "|" + region + "|" + id
}
