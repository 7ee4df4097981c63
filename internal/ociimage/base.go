package ociimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Base kinds.
const (
	BaseScratch = "scratch"
	BaseLayout  = "layout"
	BaseTarball = "tarball"
)

// baseAccepted is appended to every base error: what the user may write instead.
const baseAccepted = `use "scratch", an OCI image layout "DIR", "DIR:TAG" or "DIR@sha256:HEX", or a rootfs tarball file (.tar, .tar.gz, .tar.zst)`

// Base is a resolved, verified parent image.
type Base struct {
	Kind   string        // "scratch" | "layout" | "tarball"
	Ref    string        // as the user wrote it
	Digest digest.Digest // manifest digest of a layout base; sha256 of the file for a tarball; "" for scratch
	Config ocispec.Image // parent config ({} for scratch and tarball)
	// Layers of a layout base, verified against their digests. Empty for scratch and for
	// a tarball, whose single layer is re-written by WriteImage (it needs Created and the
	// compression) and then appears in Result.
	Layers []ocispec.Descriptor

	layoutDir string // layout base: where the blobs are
	tarball   string // tarball base: the file
}

// baseRef is a parsed base reference.
type baseRef struct {
	kind   string
	path   string
	tag    string
	digest digest.Digest
}

var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// parseBaseRef splits base into its parts without touching the file system except
// through stat, which reports whether a path exists and is a directory.
func parseBaseRef(base string, stat func(string) (exists, isDir bool)) (baseRef, error) {
	if base == "" {
		return baseRef{}, fmt.Errorf("base: empty; %s", baseAccepted)
	}
	if base == "scratch" {
		return baseRef{kind: BaseScratch}, nil
	}
	if i := strings.LastIndex(base, "@"); i >= 0 {
		p, d := base[:i], base[i+1:]
		dg, err := digest.Parse(d)
		if err != nil || dg.Algorithm() != digest.SHA256 {
			return baseRef{}, fmt.Errorf("base %q: %q is not a sha256 digest (want sha256: and 64 hex digits); %s", base, d, baseAccepted)
		}
		if p == "" {
			return baseRef{}, fmt.Errorf("base %q: no layout directory before @; %s", base, baseAccepted)
		}
		return baseRef{kind: BaseLayout, path: p, digest: dg}, nil
	}
	if ok, dir := stat(base); ok {
		if dir {
			return baseRef{kind: BaseLayout, path: base}, nil
		}
		return baseRef{kind: BaseTarball, path: base}, nil
	}
	if i := strings.LastIndex(base, ":"); i > 0 && tagPattern.MatchString(base[i+1:]) {
		return baseRef{kind: BaseLayout, path: base[:i], tag: base[i+1:]}, nil
	}
	return baseRef{}, fmt.Errorf("base %q: no such file or directory; %s", base, baseAccepted)
}

func statPath(p string) (bool, bool) {
	fi, err := os.Stat(p)
	if err != nil {
		return false, false
	}
	return true, fi.IsDir()
}

// LoadBase resolves base: "scratch"; an OCI image layout directory as "DIR", "DIR:TAG" or
// "DIR@sha256:HEX"; or a rootfs tarball file (.tar, .tar.gz, .tar.zst; the codec is
// detected from the content). Every blob that will be reused is verified against its
// digest now; a tarball is read through once to check it is a valid tar.
func LoadBase(ctx context.Context, base string) (*Base, error) {
	ref, err := parseBaseRef(base, statPath)
	if err != nil {
		return nil, err
	}
	switch ref.kind {
	case BaseScratch:
		return &Base{Kind: BaseScratch, Ref: base}, nil
	case BaseTarball:
		d, err := checkTarball(ctx, ref.path)
		if err != nil {
			return nil, fmt.Errorf("base %q: %w", base, err)
		}
		return &Base{Kind: BaseTarball, Ref: base, Digest: d, tarball: ref.path}, nil
	}
	if ok, dir := statPath(ref.path); !ok || !dir {
		return nil, fmt.Errorf("base %q: layout directory %q does not exist; %s", base, ref.path, baseAccepted)
	}
	if !isLayout(ref.path) {
		return nil, fmt.Errorf("base %q: %s is not an OCI image layout (no oci-layout file); %s", base, ref.path, baseAccepted)
	}
	desc, err := resolveIn(ref.path, ref.tag, ref.digest)
	if err != nil {
		return nil, fmt.Errorf("base %q: %w", base, err)
	}
	b, err := loadLayoutImage(ctx, ref.path, desc)
	if err != nil {
		return nil, fmt.Errorf("base %q: %w", base, err)
	}
	b.Ref = base
	return b, nil
}

var manifestTypes = map[string]bool{
	ocispec.MediaTypeImageManifest:                         true,
	"application/vnd.docker.distribution.manifest.v2+json": true,
}

var layerTypes = map[string]bool{
	ocispec.MediaTypeImageLayer:                                    true,
	ocispec.MediaTypeImageLayerGzip:                                true,
	ocispec.MediaTypeImageLayerZstd:                                true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar":      true, // deprecated for writing, still valid to read
	"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": true,
	"application/vnd.docker.image.rootfs.diff.tar.gzip":            true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":    true,
}

// loadLayoutImage reads and verifies the manifest, config and every layer of an image.
func loadLayoutImage(ctx context.Context, dir string, desc ocispec.Descriptor) (*Base, error) {
	if desc.MediaType == ocispec.MediaTypeImageIndex || desc.MediaType == "application/vnd.docker.distribution.manifest.list.v2+json" {
		return nil, fmt.Errorf("%s is an image index (several platforms); pick one image with DIR@sha256:HEX of its manifest", desc.Digest)
	}
	mb, err := readBlob(dir, desc)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if !manifestTypes[m.MediaType] && !(m.MediaType == "" && desc.MediaType == ocispec.MediaTypeImageManifest) {
		return nil, fmt.Errorf("manifest %s: media type %q is not an image manifest", desc.Digest, m.MediaType)
	}
	cb, err := readBlob(dir, m.Config)
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", desc.Digest, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("config %s: %d diff_ids for %d layers", m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	for _, l := range m.Layers {
		if !layerTypes[l.MediaType] {
			return nil, fmt.Errorf("layer %s: media type %q is not an image layer", l.Digest, l.MediaType)
		}
		if err := verifyBlob(ctx, dir, l); err != nil {
			return nil, fmt.Errorf("layer %w", err)
		}
	}
	return &Base{Kind: BaseLayout, Digest: desc.Digest, Config: cfg, Layers: m.Layers, layoutDir: dir}, nil
}

// resolveIn finds a manifest in a layout by tag, by digest, or (neither) the only one.
func resolveIn(dir, tag string, dg digest.Digest) (ocispec.Descriptor, error) {
	idx, err := readIndex(dir)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	var tags []string
	var found []ocispec.Descriptor
	for _, m := range idx.Manifests {
		name := m.Annotations[ocispec.AnnotationRefName]
		if name != "" {
			tags = append(tags, name)
		}
		switch {
		case dg != "":
			if m.Digest == dg {
				found = append(found, m)
			}
		case tag != "":
			if name == tag {
				found = append(found, m)
			}
		case m.ArtifactType == "" || m.ArtifactType == ocispec.MediaTypeImageConfig:
			found = append(found, m)
		}
	}
	sort.Strings(tags)
	known := "it has no tags"
	if len(tags) > 0 {
		known = "tags: " + strings.Join(tags, ", ")
	}
	switch {
	case len(found) == 0 && dg != "":
		return ocispec.Descriptor{}, fmt.Errorf("no manifest %s in %s index.json (%s)", dg, dir, known)
	case len(found) == 0 && tag != "":
		return ocispec.Descriptor{}, fmt.Errorf("no tag %q in %s (%s)", tag, dir, known)
	case len(found) == 0:
		return ocispec.Descriptor{}, fmt.Errorf("%s holds no image", dir)
	}
	for _, f := range found[1:] {
		if f.Digest != found[0].Digest {
			if tag == "" && dg == "" {
				return ocispec.Descriptor{}, fmt.Errorf("%s holds several images; name one as DIR:TAG or DIR@sha256:HEX (%s)", dir, known)
			}
			return ocispec.Descriptor{}, fmt.Errorf("tag %q names several manifests in %s", tag, dir)
		}
	}
	d := found[0]
	d.Annotations = nil
	return d, nil
}

// Resolve returns the descriptor for "TAG" or "sha256:HEX" in the layout at layoutDir,
// after checking that the manifest blob is present and matches its digest.
func Resolve(layoutDir, ref string) (ocispec.Descriptor, error) {
	if !isLayout(layoutDir) {
		return ocispec.Descriptor{}, fmt.Errorf("layout %s: not an OCI image layout (no oci-layout file)", layoutDir)
	}
	var tag string
	var dg digest.Digest
	if strings.Contains(ref, ":") {
		d, err := digest.Parse(ref)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("ref %q: not a tag or a digest (sha256:HEX): %w", ref, err)
		}
		dg = d
	} else if tagPattern.MatchString(ref) {
		tag = ref
	} else {
		return ocispec.Descriptor{}, fmt.Errorf("ref %q: not a tag or a digest (sha256:HEX)", ref)
	}
	desc, err := resolveIn(layoutDir, tag, dg)
	if err != nil {
		return desc, err
	}
	if _, err := readBlob(layoutDir, desc); err != nil {
		return desc, err
	}
	return desc, nil
}

// --- rootfs tarballs -----------------------------------------------------------------

// openTarball returns a reader of the tar inside a possibly compressed file and a hash
// of the file's raw bytes, filled as the tar is read.
func openTarball(r io.Reader) (io.Reader, func() error, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		zr.Multistream(true)
		return zr, zr.Close, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, func() error { zr.Close(); return nil }, nil
	}
	return br, func() error { return nil }, nil
}

// checkTarball reads a rootfs tarball through and returns the sha256 of the file.
func checkTarball(ctx context.Context, file string) (digest.Digest, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file")
	}
	h := sha256.New()
	if err := rewriteTar(ctx, io.TeeReader(f, h), io.Discard, time.Unix(0, 0)); err != nil {
		return "", err
	}
	// drain whatever follows the tar end marker, so the digest covers the whole file
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// rewriteTar copies the tar stream in r (plain, gzip or zstd) to w with normalised
// headers; entry order is kept (the file's bytes are the input, so the order is
// fixed). Rules: names made relative ("./x", "/x" → "x") and refused if they escape
// with ".."; ModTime clamped to created (older times kept); no access/change times,
// no user/group names (numeric uid/gid kept: ownership in a rootfs is meaningful);
// permission, setuid, setgid and sticky bits kept; xattrs and other PAX records dropped;
// directories, files, symlinks, hard links, devices and FIFOs kept; anything else refused.
func rewriteTar(ctx context.Context, r io.Reader, w io.Writer, created time.Time) error {
	return rewriteTarLimit(ctx, r, w, created, 0)
}

// errTarballTooLarge stops reading a decompressed stream beyond a limit (fuzzing feeds
// decompression bombs; real tarballs are read without a limit).
var errTarballTooLarge = errors.New("decompressed tarball exceeds the limit")

type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errTarballTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func rewriteTarLimit(ctx context.Context, r io.Reader, w io.Writer, created time.Time, limit int64) error {
	tr0, closeFn, err := openTarball(r)
	if err != nil {
		return err
	}
	defer closeFn() //nolint:errcheck // read side
	if limit > 0 {
		tr0 = &limitedReader{r: tr0, left: limit}
	}
	clamp := created.Truncate(time.Second)
	tr := tar.NewReader(tr0)
	tw := tar.NewWriter(w)
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("tar entry %d: %w", n+1, err)
		}
		n++
		name, err := cleanTarName(h.Name)
		if err != nil {
			return fmt.Errorf("tar entry %d %q: %w", n, h.Name, err)
		}
		if name == "" {
			continue // the root directory itself
		}
		out := tar.Header{
			Name:     name,
			Mode:     h.Mode & 0o7777,
			Uid:      h.Uid,
			Gid:      h.Gid,
			ModTime:  h.ModTime.Truncate(time.Second),
			Format:   tar.FormatPAX,
			Typeflag: h.Typeflag,
		}
		if out.ModTime.After(clamp) || out.ModTime.IsZero() {
			out.ModTime = clamp
		}
		switch h.Typeflag {
		case tar.TypeReg, '\x00': // '\x00' is the pre-POSIX regular file flag (TypeRegA)
			out.Typeflag = tar.TypeReg
			out.Size = h.Size
		case tar.TypeDir:
			out.Name = name + "/"
		case tar.TypeSymlink:
			out.Linkname = h.Linkname
		case tar.TypeLink:
			ln, err := cleanTarName(h.Linkname)
			if err != nil || ln == "" {
				return fmt.Errorf("tar entry %d %q: hard link target %q escapes the root", n, h.Name, h.Linkname)
			}
			out.Linkname = ln
		case tar.TypeChar, tar.TypeBlock:
			out.Devmajor, out.Devminor = h.Devmajor, h.Devminor
		case tar.TypeFifo:
		default:
			return fmt.Errorf("tar entry %d %q: unsupported entry type %q; re-create the tarball with plain files, directories and links", n, h.Name, h.Typeflag)
		}
		if err := tw.WriteHeader(&out); err != nil {
			return fmt.Errorf("tar entry %d %q: %w", n, h.Name, err)
		}
		if out.Size > 0 {
			if _, err := io.CopyN(tw, tr, out.Size); err != nil {
				return fmt.Errorf("tar entry %d %q: %w", n, h.Name, err)
			}
		}
	}
	if n == 0 {
		return errors.New("not a tar archive, or an empty one")
	}
	return tw.Close()
}

// cleanTarName makes an entry name relative and refuses escapes.
func cleanTarName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", errors.New("name contains a NUL byte")
	}
	c := path.Clean("/" + name)
	if strings.Contains(name, "..") {
		for _, part := range strings.Split(name, "/") {
			if part == ".." {
				return "", errors.New(`name contains ".."`)
			}
		}
	}
	return strings.TrimPrefix(c, "/"), nil
}
