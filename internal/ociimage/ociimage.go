// Package ociimage writes OCI image layouts (image-spec v1.1) reproducibly and without a
// daemon: the same staged tree, base, settings and SOURCE_DATE_EPOCH give the same
// manifest digest on any machine, in any directory, with any core count.
//
// The layer is produced in one pass (walk → tar → sha256 diffID + compressor → sha256
// digest → temp blob → rename); config, manifest and index.json are image-spec structs
// encoded with encoding/json. Layouts are changed atomically: a new layout appears by
// one rename, an existing one changes by replacing index.json after its blobs exist.
package ociimage

import (
	"fmt"
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

// ImageSpec describes one image build.
type ImageSpec struct {
	Base        *Base       // nil means scratch
	RootDir     string      // staged filesystem tree; becomes ONE new layer on top of the base layers
	Compression Compression // codec of the new layer (and of a re-written tarball base)
	// Created is SOURCE_DATE_EPOCH: every timestamp (tar headers, config.created,
	// history). It is truncated to whole seconds and written in UTC.
	Created  time.Time
	Platform ocispec.Platform // OS and Architecture are required (umoci refuses empty ones)
	// Config is merged over Base.Config.Config by WriteImage (see mergeConfig): set
	// fields replace, Env and Labels merge by key, ExposedPorts and Volumes add up.
	Config      ocispec.ImageConfig
	Annotations map[string]string // manifest annotations (the caller sets org.opencontainers.image.*)
	Tags        []string          // index.json org.opencontainers.image.ref.name entries
	// RootIsOverlayUpper: RootDir was the upper directory of an overlay over the base
	// (commands ran in it), so deletions in it are overlayfs whiteouts; see
	// LayerOptions.OverlayUpper.
	RootIsOverlayUpper bool
}

// Result describes what WriteImage wrote.
type Result struct {
	Manifest ocispec.Descriptor // Digest is the image id
	Config   ocispec.Descriptor
	Layer    ocispec.Descriptor // the new layer
	DiffID   digest.Digest      // of the new layer
	// BaseLayer is the re-written layer of a tarball base (zero otherwise).
	BaseLayer ocispec.Descriptor
	Files     []string // files of the layout this build wrote or touched (for Artifact.Files)
	Created   bool     // true if WriteImage created outputDir (so Destroy may remove it)
}

// LayerOptions configures WriteLayer.
type LayerOptions struct {
	Compression Compression
	Created     time.Time
	// OverlayUpper: the tree is an overlayfs upper directory. Its whiteouts (0/0
	// character devices) become OCI ".wh.NAME" entries and its opaque directories get a
	// ".wh..wh..opq" entry; other device files are still refused.
	OverlayUpper bool
}

// LayerResult describes one written layer.
type LayerResult struct {
	Digest, DiffID digest.Digest
	Size           int64
	MediaType      string
}
