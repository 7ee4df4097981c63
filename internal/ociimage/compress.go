package ociimage

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// CompressionAnnotation is the manifest annotation that records the codec, library
// version and every setting that decides the compressed bytes. The layer digest (and so
// the image hash) is a function of these, not only of the files: rebuilding with other
// settings gives the same diff_ids but another manifest digest.
const CompressionAnnotation = "dev.fixity.layer.compression"

// Pinned codec settings. Changing any of them changes every layer digest, so they are
// constants, recorded in CompressionAnnotation, and never derived from the machine.
const (
	// zstd: level 3 ("default"), 8 MiB window, frame checksum on, independent 8 MiB
	// frames (zstdFrameSize) compressed two at a time with EncodeAll, whose output does
	// not depend on how many run at once.
	zstdLevel       = 3 // zstd's own numbering; klauspost maps it to SpeedDefault
	zstdWindow      = 8 << 20
	zstdConcurrency = 2
	// gzip: pgzip compresses fixed 1 MiB blocks independently (with the previous 32 KiB as
	// dictionary), so the output depends on the block size but not on how many blocks run
	// at once; umoci uses the same block size for the same reason.
	gzipLevel     = 6
	gzipBlockSize = 1 << 20
	gzipBlocks    = 4

	// The libraries that produce the bytes, as required in go.mod (a test keeps these
	// equal to go.mod, so a version bump cannot silently change the recorded settings).
	compressModule = "github.com/klauspost/compress@v1.18.6"
	pgzipModule    = "github.com/klauspost/pgzip@v1.2.6"
)

// CompressionSettings is the value of CompressionAnnotation for c, for example
// "zstd;lib=github.com/klauspost/compress@v1.18.6;level=3;window=8388608;frame=8388608;crc=1".
func CompressionSettings(c Compression) string {
	switch c {
	case Zstd:
		return fmt.Sprintf("zstd;lib=%s;level=%d;window=%d;frame=%d;crc=1",
			compressModule, zstdLevel, zstdWindow, zstdFrameSize)
	case Gzip:
		return fmt.Sprintf("gzip;lib=%s+%s;level=%d;block=%d;mtime=0;os=255",
			pgzipModule, compressModule, gzipLevel, gzipBlockSize)
	default:
		return "none"
	}
}

// MediaType returns the OCI layer media type for c.
func (c Compression) MediaType() string {
	switch c {
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	case Gzip:
		return ocispec.MediaTypeImageLayerGzip
	default:
		return ocispec.MediaTypeImageLayer
	}
}

// layerSink is the single-pass output side of a layer: tar bytes written to it are
// hashed (diffID) and compressed; the compressed bytes are hashed (digest), counted and
// written to the destination. Nothing is read twice.
type layerSink struct {
	in     io.Writer // where tar bytes go
	diff   hash.Hash
	comp   hash.Hash // nil for none (digest == diffID)
	count  countingWriter
	closer io.Closer // the compressor, nil for none
	c      Compression
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newLayerSink(w io.Writer, c Compression) (*layerSink, error) {
	s := &layerSink{diff: sha256.New(), c: c}
	s.count.w = w
	switch c {
	case None:
		s.in = io.MultiWriter(s.diff, &s.count)
		return s, nil
	case Zstd:
		s.comp = sha256.New()
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(zstdLevel)),
			zstd.WithWindowSize(zstdWindow),
			zstd.WithEncoderConcurrency(zstdConcurrency),
			zstd.WithEncoderCRC(true),
			zstd.WithZeroFrames(false),
			zstd.WithLowerEncoderMem(false),
		)
		if err != nil {
			return nil, fmt.Errorf("zstd encoder: %w", err)
		}
		frames := newZstdFrames(io.MultiWriter(s.comp, &s.count), enc)
		s.in, s.closer = io.MultiWriter(s.diff, frames), frames
		return s, nil
	case Gzip:
		s.comp = sha256.New()
		gz, err := pgzip.NewWriterLevel(io.MultiWriter(s.comp, &s.count), gzipLevel)
		if err != nil {
			return nil, fmt.Errorf("gzip encoder: %w", err)
		}
		if err := gz.SetConcurrency(gzipBlockSize, gzipBlocks); err != nil {
			return nil, fmt.Errorf("gzip encoder: %w", err)
		}
		// Header fields pinned: no name, no comment, MTIME 0 (the zero time.Time would
		// encode as a wrapped negative number), OS 255 "unknown".
		gz.ModTime = time.Unix(0, 0)
		gz.OS = 255
		s.in, s.closer = io.MultiWriter(s.diff, gz), gz
		return s, nil
	}
	return nil, fmt.Errorf("compression %q: unknown; use one of \"gzip\", \"zstd\", \"none\"", c)
}

// finish flushes the compressor and reports the digests.
func (s *layerSink) finish() (LayerResult, error) {
	if s.closer != nil {
		if err := s.closer.Close(); err != nil {
			return LayerResult{}, fmt.Errorf("%s: %w", s.c, err)
		}
	}
	r := LayerResult{DiffID: digest.NewDigest(digest.SHA256, s.diff), Size: s.count.n, MediaType: s.c.MediaType()}
	if s.comp != nil {
		r.Digest = digest.NewDigest(digest.SHA256, s.comp)
	} else {
		r.Digest = r.DiffID
	}
	return r, nil
}

// abort releases compressor goroutines after a failure.
func (s *layerSink) abort() {
	if s.closer != nil {
		_ = s.closer.Close()
	}
}
