// Package artifactstate names the Artifact.State keys that Fixity components hand to
// each other along a Packer post-processor chain, and normalises values that crossed
// Packer's plugin RPC (where maps arrive as map[interface{}]interface{}).
package artifactstate

import (
	"fmt"
	"sort"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BuilderID is the fixity-oci builder's Artifact.BuilderId().
const BuilderID = "fixity-dev.oci"

// State keys. Every Fixity component reads and writes these names and no others.
const (
	// OCILayoutDir is the OCI image layout directory that holds the image (string).
	OCILayoutDir = "fixity.oci.layout_dir"
	// OCIManifestDigest is the image manifest digest "sha256:…" (string).
	OCIManifestDigest = "fixity.oci.manifest_digest"
	// OCIManifestMediaType is the manifest's media type (string).
	OCIManifestMediaType = "fixity.oci.manifest_media_type"
	// OCIManifestSize is the manifest size in bytes (int64, or float64 after RPC).
	OCIManifestSize = "fixity.oci.manifest_size"
	// OCITags lists the tags the layout's index.json gives the image ([]string).
	OCITags = "fixity.oci.tags"
	// OCIPushedReference is "REGISTRY/REPO@sha256:…" when the image was pushed (string).
	OCIPushedReference = "fixity.oci.pushed_reference"
	// BaseDigest is the digest of the parent image ("" for scratch) (string).
	BaseDigest = "fixity.base_digest"

	// SignBundlePath is the *.sigstore.json bundle written by fixity-sign (string).
	SignBundlePath = "fixity.sign.bundle_path"
	// SignSubjects are the signed subject digests "sha256:…" ([]string).
	SignSubjects = "fixity.sign.subjects"
	// PolicyDigest is the policy bundle digest baked into the image (string).
	PolicyDigest = "fixity.policy_digest"

	// GeneratedData is Packer's conventional key for build variables (map[string]interface{}).
	GeneratedData = "generated_data"
)

// Normalize turns values decoded from Packer's RPC (map[interface{}]interface{},
// []interface{} nested anywhere) into JSON-friendly map[string]interface{} values.
func Normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			m[fmt.Sprint(k)] = Normalize(val)
		}
		return m
	case map[string]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			m[k] = Normalize(val)
		}
		return m
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, val := range t {
			out[i] = Normalize(val)
		}
		return out
	default:
		return v
	}
}

// String reads a string state value; ok is false when it is absent or not a string.
func String(v interface{}) (string, bool) {
	s, ok := v.(string)
	return s, ok && s != ""
}

// Strings reads a string list that may have crossed RPC as []interface{}.
func Strings(v interface{}) []string {
	switch t := v.(type) {
	case []string:
		return append([]string(nil), t...)
	case []interface{}:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// StringMap reads a map of strings (e.g. generated_data) in any RPC shape, sorted keys
// available through Keys.
func StringMap(v interface{}) map[string]string {
	out := map[string]string{}
	if m, ok := Normalize(v).(map[string]interface{}); ok {
		for k, val := range m {
			if val != nil {
				out[k] = fmt.Sprint(val)
			}
		}
	}
	return out
}

// Keys returns the sorted keys of m.
func Keys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Int64 reads a number that may have crossed RPC as float64, int, int64 or uint64;
// anything else reads as 0.
func Int64(v interface{}) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case int:
		return int64(n)
	case float64:
		return int64(n)
	case uint64:
		return int64(n)
	}
	return 0
}

// Stater is the part of a Packer artifact that carries state.
type Stater interface{ State(name string) interface{} }

// OCIManifest returns the image manifest descriptor a fixity-oci artifact (or a
// wrapper forwarding its state) carries; ok is false for any other artifact. The
// media type is empty when the state did not record one.
func OCIManifest(a Stater) (desc ocispec.Descriptor, ok bool) {
	d, ok := String(a.State(OCIManifestDigest))
	if !ok {
		return ocispec.Descriptor{}, false
	}
	mt, _ := String(a.State(OCIManifestMediaType))
	return ocispec.Descriptor{MediaType: mt, Digest: digest.Digest(d), Size: Int64(a.State(OCIManifestSize))}, true
}
