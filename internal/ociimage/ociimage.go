// Package ociimage writes OCI image layouts (image-spec v1.1) reproducibly and without a
// daemon: the same staged tree, base, settings and SOURCE_DATE_EPOCH give the same
// manifest digest on any machine, in any directory, with any core count.
package ociimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression selects the layer codec.
type Compression string

// Supported codecs.
const (
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
	None Compression = "none"
)

// ParseCompression validates a user-supplied compression name.
func ParseCompression(s string) (Compression, error) {
	switch Compression(s) {
	case Gzip, Zstd, None:
		return Compression(s), nil
	}
	return "", fmt.Errorf("compression %q: unknown; use one of \"gzip\", \"zstd\", \"none\"", s)
}

// Base is a resolved, verified parent image.
type Base struct {
	Kind   string        // "scratch" | "layout" | "tarball"
	Ref    string        // as the user wrote it
	Digest digest.Digest // manifest digest of a layout base; sha256 of the file for a tarball; "" for scratch
	Config ocispec.Image // parent config ({} for scratch)
	Layers []ocispec.Descriptor
}

// LoadBase resolves base.
func LoadBase(ctx context.Context, base string) (*Base, error) {
	return nil, errors.New("base: not implemented yet")
}

// ImageSpec describes one image build.
type ImageSpec struct {
	Base        *Base
	RootDir     string
	Compression Compression
	Created     time.Time
	Platform    ocispec.Platform
	Config      ocispec.ImageConfig
	Annotations map[string]string
	Tags        []string
}

// Result describes what WriteImage wrote.
type Result struct {
	Manifest ocispec.Descriptor
	Config   ocispec.Descriptor
	Layer    ocispec.Descriptor
	DiffID   digest.Digest
	Files    []string
	Created  bool
}

// WriteImage writes the image into the OCI image layout at outputDir, atomically.
func WriteImage(ctx context.Context, outputDir string, spec ImageSpec) (*Result, error) {
	return nil, errors.New("output_dir: not implemented yet")
}

// LayerOptions configures WriteLayer.
type LayerOptions struct {
	Compression Compression
	Created     time.Time
}

// LayerResult describes one written layer.
type LayerResult struct {
	Digest, DiffID digest.Digest
	Size           int64
	MediaType      string
}

// WriteLayer streams root as one reproducible layer into w.
func WriteLayer(ctx context.Context, root string, w io.Writer, opts LayerOptions) (LayerResult, error) {
	return LayerResult{}, errors.New("layer: not implemented yet")
}

// Push uploads the image to a registry.
func Push(ctx context.Context, layoutDir string, manifest ocispec.Descriptor, ref string, insecure bool) (string, error) {
	return "", errors.New("push: not implemented yet")
}

// AttachReferrer stores content as an OCI 1.1 artifact whose subject is subject.
func AttachReferrer(layoutDir string, subject ocispec.Descriptor, artifactType, mediaType string, content []byte, annotations map[string]string) (ocispec.Descriptor, error) {
	return ocispec.Descriptor{}, errors.New("referrer: not implemented yet")
}

// Referrers lists the artifacts in the layout whose subject is subject.
func Referrers(layoutDir string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	return nil, errors.New("referrer: not implemented yet")
}

// PushReferrer pushes an artifact from the layout to a registry repo.
func PushReferrer(ctx context.Context, layoutDir string, referrer ocispec.Descriptor, repo string, insecure bool) error {
	return errors.New("push: not implemented yet")
}

// Resolve returns the descriptor for "TAG" or "sha256:…" in a layout.
func Resolve(layoutDir, ref string) (ocispec.Descriptor, error) {
	return ocispec.Descriptor{}, errors.New("resolve: not implemented yet")
}
