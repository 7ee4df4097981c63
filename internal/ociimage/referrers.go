package ociimage

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fixity-dev/packer-plugin-fixity/internal/atomicfile"
)

// CosignKindAnnotation and CosignImageKind mark the index.json entry that
// `cosign verify --local-image` and `cosign verify-attestation --local-image` treat as
// the image of the layout (cosign v3 pkg/cosign/verify.go getLocalBundleDescriptors);
// it then scans the layout's blobs for manifests whose subject is that image.
const (
	CosignKindAnnotation = "kind"
	CosignImageKind      = "dev.cosignproject.cosign/image"
)

// emptyConfig is the OCI 1.1 empty descriptor used as the config of artifacts.
var emptyConfig = ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: digest.FromString(emptyJSONBlob), Size: int64(len(emptyJSONBlob))}

// AttachReferrer stores content as an OCI 1.1 artifact manifest whose subject is
// subject (artifactType set, the empty config, one layer blob of mediaType, the given
// annotations), adds it to index.json atomically without a ref.name (tags do not move)
// and returns its descriptor. The subject's index entries are marked with
// kind=dev.cosignproject.cosign/image (and the mark removed from other entries), so
// `cosign verify-attestation --local-image DIR` checks the bundles against this image.
func AttachReferrer(layoutDir string, subject ocispec.Descriptor, artifactType, mediaType string, content []byte, annotations map[string]string) (ocispec.Descriptor, error) {
	if !isLayout(layoutDir) {
		return ocispec.Descriptor{}, fmt.Errorf("layout %s: not an OCI image layout (no oci-layout file)", layoutDir)
	}
	if artifactType == "" || mediaType == "" {
		return ocispec.Descriptor{}, fmt.Errorf("referrer: artifactType and mediaType are required")
	}
	unlock, err := lockLayout(context.Background(), layoutDir)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer unlock()
	if _, err := readBlob(layoutDir, subject); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("referrer subject: %w", err)
	}
	idx, err := readIndex(layoutDir)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if _, _, err := putBlob(layoutDir, emptyConfig.MediaType, []byte(emptyJSONBlob)); err != nil {
		return ocispec.Descriptor{}, err
	}
	layer, _, err := putBlob(layoutDir, mediaType, content)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	subj := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	man := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       emptyConfig,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &subj,
		Annotations:  maps.Clone(annotations),
	}
	mb, err := json.Marshal(man)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc, _, err := putBlob(layoutDir, ocispec.MediaTypeImageManifest, mb)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc.ArtifactType = artifactType
	desc.Annotations = maps.Clone(annotations)

	present := false
	for i, m := range idx.Manifests {
		switch {
		case m.Digest == desc.Digest:
			present = true
		case m.Digest == subject.Digest:
			a := maps.Clone(m.Annotations)
			if a == nil {
				a = map[string]string{}
			}
			a[CosignKindAnnotation] = CosignImageKind
			idx.Manifests[i].Annotations = a
		case m.Annotations[CosignKindAnnotation] == CosignImageKind:
			a := maps.Clone(m.Annotations)
			delete(a, CosignKindAnnotation)
			if len(a) == 0 {
				a = nil
			}
			idx.Manifests[i].Annotations = a
		}
	}
	if !present {
		idx.Manifests = append(idx.Manifests, desc)
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := atomicfile.WriteFile(filepath.Join(layoutDir, indexFile), ib, 0o644); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layout %s: %w", layoutDir, err)
	}
	return desc, nil
}

// Referrers lists the artifact manifests in the layout's index.json whose subject is
// subject, in index order. Each manifest blob is read and verified; its descriptor
// carries artifactType and annotations.
func Referrers(layoutDir string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	if !isLayout(layoutDir) {
		return nil, fmt.Errorf("layout %s: not an OCI image layout (no oci-layout file)", layoutDir)
	}
	idx, err := readIndex(layoutDir)
	if err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	for _, d := range idx.Manifests {
		if d.MediaType != ocispec.MediaTypeImageManifest {
			continue
		}
		b, err := readBlob(layoutDir, d)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		if m.Subject == nil || m.Subject.Digest != subject {
			continue
		}
		r := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: m.ArtifactType, Annotations: m.Annotations}
		if r.ArtifactType == "" {
			r.ArtifactType = m.Config.MediaType
		}
		out = append(out, r)
	}
	return out, nil
}
