package ociimage

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fixity-dev/packer-plugin-fixity/internal/atomicfile"
)

const (
	layoutFile    = ocispec.ImageLayoutFile // "oci-layout"
	indexFile     = ocispec.ImageIndexFile  // "index.json"
	maxJSONBlob   = 8 << 20                 // manifests, configs, index.json: refuse anything larger
	emptyJSONBlob = "{}"
)

// isLayout reports whether dir holds an oci-layout file.
func isLayout(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, layoutFile))
	return err == nil && fi.Mode().IsRegular()
}

func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

// readIndex reads and checks index.json of a layout.
func readIndex(dir string) (ocispec.Index, error) {
	var idx ocispec.Index
	b, err := readLimited(filepath.Join(dir, indexFile), maxJSONBlob)
	if err != nil {
		return idx, err
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("%s: %w", filepath.Join(dir, indexFile), err)
	}
	if idx.SchemaVersion != 2 {
		return idx, fmt.Errorf("%s: schemaVersion %d, want 2", filepath.Join(dir, indexFile), idx.SchemaVersion)
	}
	return idx, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// readBlob reads a small JSON blob and checks it against its descriptor.
func readBlob(dir string, desc ocispec.Descriptor) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("digest %q: %w", desc.Digest, err)
	}
	if desc.Size > maxJSONBlob {
		return nil, fmt.Errorf("blob %s: size %d is larger than %d bytes", desc.Digest, desc.Size, maxJSONBlob)
	}
	b, err := readLimited(blobPath(dir, desc.Digest), maxJSONBlob)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if int64(len(b)) != desc.Size {
		return nil, fmt.Errorf("blob %s: size %d, descriptor says %d (corrupt or truncated)", desc.Digest, len(b), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, fmt.Errorf("blob %s: content hashes to %s (corrupt)", desc.Digest, got)
	}
	return b, nil
}

// verifyBlob streams a blob file through its digest.
func verifyBlob(ctx context.Context, dir string, desc ocispec.Descriptor) error {
	return copyVerified(ctx, blobPath(dir, desc.Digest), desc, io.Discard)
}

func copyVerified(ctx context.Context, path string, desc ocispec.Descriptor, w io.Writer) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", desc.Digest, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	defer f.Close()
	v := desc.Digest.Verifier()
	n, err := io.CopyBuffer(io.MultiWriter(v, w), ctxReader{ctx, f}, make([]byte, 1<<20))
	if err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if n != desc.Size {
		return fmt.Errorf("blob %s: size %d, descriptor says %d (corrupt or truncated)", desc.Digest, n, desc.Size)
	}
	if !v.Verified() {
		return fmt.Errorf("blob %s: content does not match its digest (corrupt)", desc.Digest)
	}
	return nil
}

// ctxReader stops long copies when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// blobWriter is a temp file in blobs/sha256 that becomes a blob on commit.
type blobWriter struct {
	dir string
	f   *os.File
}

func newBlobWriter(dir string) (*blobWriter, error) {
	bd := filepath.Join(dir, ocispec.ImageBlobsDir, "sha256")
	if err := os.MkdirAll(bd, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(bd, ".tmp-blob-*")
	if err != nil {
		return nil, err
	}
	return &blobWriter{dir: dir, f: f}, nil
}

func (b *blobWriter) Write(p []byte) (int, error) { return b.f.Write(p) }

// commit fsyncs the temp file and renames it to its digest.
func (b *blobWriter) commit(d digest.Digest) (string, error) {
	defer b.discard()
	if err := b.f.Chmod(0o644); err != nil {
		return "", err
	}
	if err := b.f.Sync(); err != nil {
		return "", err
	}
	if err := b.f.Close(); err != nil {
		return "", err
	}
	dst := blobPath(b.dir, d)
	if err := os.Rename(b.f.Name(), dst); err != nil {
		return "", err
	}
	return dst, atomicfile.SyncDir(filepath.Dir(dst))
}

// discard removes the temp file (a no-op after commit).
func (b *blobWriter) discard() {
	b.f.Close()
	os.Remove(b.f.Name())
}

// putBlob stores data content-addressed and returns its descriptor and path.
func putBlob(dir, mediaType string, data []byte) (ocispec.Descriptor, string, error) {
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	p := blobPath(dir, desc.Digest)
	if existing, err := readBlob(dir, desc); err == nil && len(existing) == len(data) {
		return desc, p, nil
	}
	bw, err := newBlobWriter(dir)
	if err != nil {
		return desc, "", err
	}
	if _, err := bw.Write(data); err != nil {
		bw.discard()
		return desc, "", err
	}
	p, err = bw.commit(desc.Digest)
	return desc, p, err
}

// copyBlob copies a blob from one layout to another, verifying it on the way; a blob
// already present in dst (same digest and size) is kept.
func copyBlob(ctx context.Context, srcDir, dstDir string, desc ocispec.Descriptor) (string, error) {
	dst := blobPath(dstDir, desc.Digest)
	if fi, err := os.Stat(dst); err == nil && fi.Size() == desc.Size {
		return dst, nil
	}
	bw, err := newBlobWriter(dstDir)
	if err != nil {
		return "", err
	}
	if err := copyVerified(ctx, blobPath(srcDir, desc.Digest), desc, bw); err != nil {
		bw.discard()
		return "", err
	}
	return bw.commit(desc.Digest)
}

// marshal encodes image-spec structs; encoding/json is deterministic for them (struct
// field order, sorted map keys), which is what makes the digests reproducible.
func marshal(v any) ([]byte, error) { return json.Marshal(v) }

func newIndex() ocispec.Index {
	return ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
}

func layoutMarker() []byte {
	b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	return b
}
