// Package signing signs image hashes keylessly with a CI's own OIDC identity through
// Sigstore (sigstore-go), and verifies the resulting bundles offline against an identity
// policy. Signing and verifying are kept apart the way sigstore-go keeps them: they meet
// only in data — the in-toto Statement, the bundle v0.3 file and the trusted root.
//
// What is signed is always a DSSE envelope carrying an in-toto Statement v1 whose
// subjects are image hashes (see Subject* helpers) and whose predicate is an
// ImageRelease (https://fixity.dev/image-release/v1), optionally a second statement with
// SLSA provenance v1. Such bundles verify with the cosign CLI too:
//
//	cosign verify-blob-attestation --bundle B --digest HEX --digestAlg sha256 \
//	    --type https://fixity.dev/image-release/v1 --certificate-identity … --certificate-oidc-issuer …
package signing

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Predicate and statement types.
const (
	// PredicateImageRelease is the predicate type of an ImageRelease statement.
	PredicateImageRelease = "https://fixity.dev/image-release/v1"
	// PredicateSLSAProvenance is SLSA provenance v1.
	PredicateSLSAProvenance = "https://slsa.dev/provenance/v1"
	// StatementType is the in-toto Statement v1 type.
	StatementType = "https://in-toto.io/Statement/v1"
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// BundleMediaType is the Sigstore bundle v0.3 media type, also used as the OCI
	// artifactType and layer media type of referrers (what cosign v3 writes and reads).
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// BundleSuffix is the conventional file suffix of a bundle.
	BundleSuffix = ".sigstore.json"
	// DescriptorType names the canonical descriptor used for images that have no bytes
	// here (cloud image ids); see DescriptorSubject.
	DescriptorType = "https://fixity.dev/image-descriptor/v1"
)

// Subject is one signed image hash: a name for humans and a digest "sha256:HEX".
type Subject struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
}

// Hex returns the hex part of the sha256 digest.
func (s Subject) Hex() string { return strings.TrimPrefix(s.Digest, "sha256:") }

// ArtifactRef is one artifact id the image was published under, e.g. an AMI id in a
// region, or an OCI reference.
type ArtifactRef struct {
	BuilderID string `json:"builder_id,omitempty"`
	ID        string `json:"id"`
	Region    string `json:"region,omitempty"`
}

// ImageRelease is the predicate of https://fixity.dev/image-release/v1: what a release
// engineer needs to know about a signed image besides its hash. Every field is
// optional except Image; empty fields are omitted from the JSON.
type ImageRelease struct {
	Image          string        `json:"image"`
	Version        string        `json:"version,omitempty"`
	ArtifactIDs    []ArtifactRef `json:"artifact_ids,omitempty"`
	PolicyDigest   string        `json:"policy_digest,omitempty"`
	BaseDigest     string        `json:"base_digest,omitempty"`
	TemplateDigest string        `json:"template_digest,omitempty"`
	SourceRevision string        `json:"source_revision,omitempty"`
	CIRunURL       string        `json:"ci_run_url,omitempty"`
	BuildName      string        `json:"build_name,omitempty"`
	BuilderType    string        `json:"builder_type,omitempty"`
}

// statementJSON is the wire form of an in-toto Statement v1.
type statementJSON struct {
	Type          string          `json:"_type"`
	Subject       []subjectJSON   `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

type subjectJSON struct {
	Name   string            `json:"name,omitempty"`
	Digest map[string]string `json:"digest"`
}

// NewStatement returns the canonical JSON of an in-toto Statement v1 over subjects.
// predicate is marshalled with encoding/json (struct field order, no HTML escaping).
func NewStatement(subjects []Subject, predicateType string, predicate any) ([]byte, error) {
	if len(subjects) == 0 {
		return nil, fmt.Errorf("statement: no subjects: give at least one image digest")
	}
	if predicateType == "" {
		return nil, fmt.Errorf("statement: empty predicate type")
	}
	st := statementJSON{Type: StatementType, PredicateType: predicateType}
	for i, s := range subjects {
		hexd, err := ParseDigest(s.Digest)
		if err != nil {
			return nil, fmt.Errorf("statement: subject %d (%q): %w", i, s.Name, err)
		}
		st.Subject = append(st.Subject, subjectJSON{Name: s.Name, Digest: map[string]string{"sha256": hexd}})
	}
	p, err := canonicalJSON(predicate)
	if err != nil {
		return nil, fmt.Errorf("statement: predicate: %w", err)
	}
	st.Predicate = p
	return canonicalJSON(st)
}

// ParseStatement decodes an in-toto Statement v1 and returns its subjects (sha256
// only), predicate type and raw predicate.
func ParseStatement(b []byte) (subjects []Subject, predicateType string, predicate json.RawMessage, err error) {
	var st statementJSON
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, "", nil, fmt.Errorf("statement: %w", err)
	}
	if st.Type != StatementType && st.Type != "https://in-toto.io/Statement/v0.1" {
		return nil, "", nil, fmt.Errorf("statement: _type %q is not an in-toto statement", st.Type)
	}
	for _, s := range st.Subject {
		if h, ok := s.Digest["sha256"]; ok {
			subjects = append(subjects, Subject{Name: s.Name, Digest: "sha256:" + strings.ToLower(h)})
		}
	}
	return subjects, st.PredicateType, st.Predicate, nil
}

// ParseDigest accepts "sha256:HEX" or a bare 64-char hex string and returns the
// lower-case hex.
func ParseDigest(d string) (string, error) {
	h := strings.TrimPrefix(strings.TrimSpace(d), "sha256:")
	if strings.Contains(h, ":") {
		return "", fmt.Errorf("digest %q: only sha256 is supported (want sha256:<64 hex>)", d)
	}
	if len(h) != 64 {
		return "", fmt.Errorf("digest %q: want sha256:<64 hex digits>, got %d hex digits", d, len(h))
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", fmt.Errorf("digest %q: not hex: want sha256:<64 hex digits>", d)
	}
	return strings.ToLower(h), nil
}

// FileSubject hashes one file (a qemu/virtualbox disk, an ova…) into a subject named by
// its base name, which is what `cosign verify-blob-attestation FILE` and
// `gh attestation verify FILE` compare.
func FileSubject(path string) (Subject, error) {
	f, err := os.Open(path)
	if err != nil {
		return Subject{}, fmt.Errorf("subject %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Subject{}, fmt.Errorf("subject %s: %w", path, err)
	}
	return Subject{Name: filepath.Base(path), Digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}, nil
}

// Descriptor is the canonical description of an image that exists only as an id at a
// provider (an AMI, a GCE image, an Azure image version). Its digest is the subject.
//
// The digest is sha256 over the canonical JSON of
//
//	{"_type":"https://fixity.dev/image-descriptor/v1","builder_id":B,"id":ID,"images":[{"id":…,"region":…}…]}
//
// with keys in that (sorted) order, no insignificant whitespace, no HTML escaping, and
// "images" sorted by region then id; "images" is omitted when the artifact id is not a
// comma-separated list of REGION:ID pairs (Packer's amazon builders write
// "us-east-1:ami-1,eu-west-1:ami-2"). Anyone can recompute it with `fixity verify
// --builder-id B --artifact-id ID`, or by hand with jq -cj and sha256sum.
type Descriptor struct {
	Type      string            `json:"_type"`
	BuilderID string            `json:"builder_id"`
	ID        string            `json:"id"`
	Images    []DescriptorImage `json:"images,omitempty"`
}

// DescriptorImage is one REGION:ID pair of a Descriptor.
type DescriptorImage struct {
	ID     string `json:"id"`
	Region string `json:"region"`
}

// NewDescriptor builds the canonical descriptor of a provider image id.
func NewDescriptor(builderID, id string) Descriptor {
	d := Descriptor{Type: DescriptorType, BuilderID: builderID, ID: id}
	var imgs []DescriptorImage
	for _, part := range strings.Split(id, ",") {
		region, img, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || region == "" || img == "" {
			imgs = nil
			break
		}
		imgs = append(imgs, DescriptorImage{ID: img, Region: region})
	}
	sort.Slice(imgs, func(i, j int) bool {
		if imgs[i].Region != imgs[j].Region {
			return imgs[i].Region < imgs[j].Region
		}
		return imgs[i].ID < imgs[j].ID
	})
	d.Images = imgs
	return d
}

// Digest returns "sha256:HEX" of the canonical JSON.
func (d Descriptor) Digest() string {
	b, _ := canonicalJSON(d)
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CanonicalJSON returns the exact bytes the digest is computed over.
func (d Descriptor) CanonicalJSON() []byte {
	b, _ := canonicalJSON(d)
	return b
}

// DescriptorSubject is the subject of a provider image id: named "BUILDER_ID:ID".
func DescriptorSubject(builderID, id string) Subject {
	d := NewDescriptor(builderID, id)
	return Subject{Name: builderID + ":" + id, Digest: d.Digest()}
}

// canonicalJSON marshals without HTML escaping and without a trailing newline.
func canonicalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// CIRun reads the source revision and the run URL the CI exposes in its environment
// (GitHub Actions, GitLab CI, Buildkite, CircleCI); empty strings when not in CI.
func CIRun(getenv func(string) string) (revision, runURL string) {
	if getenv == nil {
		getenv = os.Getenv
	}
	switch {
	case getenv("GITHUB_ACTIONS") == "true" || getenv("GITHUB_RUN_ID") != "":
		server := getenv("GITHUB_SERVER_URL")
		if server == "" {
			server = "https://github.com"
		}
		runURL = server + "/" + getenv("GITHUB_REPOSITORY") + "/actions/runs/" + getenv("GITHUB_RUN_ID")
		if a := getenv("GITHUB_RUN_ATTEMPT"); a != "" {
			runURL += "/attempts/" + a
		}
		return getenv("GITHUB_SHA"), runURL
	case getenv("GITLAB_CI") == "true":
		return getenv("CI_COMMIT_SHA"), getenv("CI_JOB_URL")
	case getenv("BUILDKITE") == "true":
		return getenv("BUILDKITE_COMMIT"), getenv("BUILDKITE_BUILD_URL")
	case getenv("CIRCLECI") == "true":
		return getenv("CIRCLE_SHA1"), getenv("CIRCLE_BUILD_URL")
	}
	return "", ""
}

// SLSAProvenance builds a minimal SLSA provenance v1 predicate for an image release:
// the build type is a Packer build, the external parameters are the release fields,
// the base image is a resolved dependency and the CI run is the invocation.
func SLSAProvenance(rel ImageRelease, builderID string) map[string]any {
	ext := map[string]any{"image": rel.Image}
	for k, v := range map[string]string{"version": rel.Version, "template_digest": rel.TemplateDigest, "policy_digest": rel.PolicyDigest, "source_revision": rel.SourceRevision} {
		if v != "" {
			ext[k] = v
		}
	}
	bd := map[string]any{
		"buildType":          "https://fixity.dev/packer-build/v1",
		"externalParameters": ext,
	}
	if h, err := ParseDigest(rel.BaseDigest); err == nil {
		bd["resolvedDependencies"] = []map[string]any{{"name": "base", "digest": map[string]string{"sha256": h}}}
	}
	if builderID == "" {
		builderID = "https://fixity.dev/fixity-sign"
	}
	rd := map[string]any{"builder": map[string]any{"id": builderID}}
	if rel.CIRunURL != "" {
		rd["metadata"] = map[string]any{"invocationId": rel.CIRunURL}
	}
	return map[string]any{"buildDefinition": bd, "runDetails": rd}
}
