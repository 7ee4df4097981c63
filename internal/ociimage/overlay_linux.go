//go:build linux

package ociimage

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"
)

// OCI whiteouts and their overlayfs counterparts. OCI marks a deleted path with an
// empty file ".wh.NAME" and a directory whose lower contents are hidden with
// ".wh..wh..opq"; overlayfs uses a 0/0 character device named NAME and the xattr
// trusted.overlay.opaque=y on the directory.
const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// OverlayLowers unpacks the base's layers, each into its own directory under dir, for
// use as overlayfs lower directories, and returns them top layer first (the order of
// overlayfs' lowerdir=). Scratch has none. Layout layers are checked against their
// digests while they are read. OCI whiteouts become overlayfs whiteouts, so the
// merged view is the base image's file system. Device nodes are not created (a
// build's commands need none from the image, and an untrusted base should not make
// them on the build host); ownership is not kept (every layer is owned by root).
// Needs root: overlayfs whiteouts are device nodes and trusted.* xattrs.
func (b *Base) OverlayLowers(ctx context.Context, dir string) ([]string, error) {
	var lowers []string
	extract := func(i int, r io.Reader) error {
		d := filepath.Join(dir, fmt.Sprintf("layer%03d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		tr, closeFn, err := openTarball(r)
		if err != nil {
			return err
		}
		defer closeFn() //nolint:errcheck // read side
		if err := extractForOverlay(ctx, tr, d); err != nil {
			return err
		}
		lowers = append([]string{d}, lowers...)
		return nil
	}
	switch b.Kind {
	case BaseScratch:
		return nil, nil
	case BaseTarball:
		f, err := os.Open(b.tarball)
		if err != nil {
			return nil, fmt.Errorf("base %q: %w", b.Ref, err)
		}
		defer f.Close()
		if err := extract(0, ctxReader{ctx, f}); err != nil {
			return nil, fmt.Errorf("base %q: %w", b.Ref, err)
		}
	case BaseLayout:
		for i, l := range b.Layers {
			if err := b.extractBlob(ctx, l.Digest, func(r io.Reader) error { return extract(i, r) }); err != nil {
				return nil, fmt.Errorf("base %q: layer %s: %w", b.Ref, l.Digest, err)
			}
		}
	default:
		return nil, fmt.Errorf("base: unknown kind %q", b.Kind)
	}
	return lowers, nil
}

// extractBlob hands a layout blob to fn and then checks it hashed to d (read to the
// end first, so the whole blob is covered).
func (b *Base) extractBlob(ctx context.Context, d digest.Digest, fn func(io.Reader) error) error {
	if err := d.Validate(); err != nil {
		return err
	}
	f, err := os.Open(blobPath(b.layoutDir, d))
	if err != nil {
		return err
	}
	defer f.Close()
	v := d.Verifier()
	r := io.TeeReader(ctxReader{ctx, f}, v)
	if err := fn(r); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if !v.Verified() {
		return errors.New("content does not match its digest (corrupt)")
	}
	return nil
}

// extractForOverlay writes the tar stream r under dir through an os.Root, so no entry
// (a "../" name, a symlink planted by an earlier entry) can write outside dir.
func extractForOverlay(ctx context.Context, r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar entry %d: %w", n, err)
		}
		name, err := cleanTarName(h.Name)
		if err != nil {
			return fmt.Errorf("tar entry %d %q: %w", n, h.Name, err)
		}
		if name == "" {
			continue
		}
		if err := extractEntry(root, tr, h, name); err != nil {
			return fmt.Errorf("tar entry %d %q: %w", n, h.Name, err)
		}
	}
}

func extractEntry(root *os.Root, tr io.Reader, h *tar.Header, name string) error {
	parent, base := path.Split(name)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		parent = "."
	}
	if parent != "." {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	mode := fs.FileMode(h.Mode & 0o777)
	switch {
	case base == opaqueWhiteout:
		return inDir(root, parent, func(dirPath string) error {
			return syscall.Setxattr(dirPath, opaqueXattr, []byte("y"), 0)
		})
	case strings.HasPrefix(base, whiteoutPrefix):
		hidden := strings.TrimPrefix(base, whiteoutPrefix)
		if hidden == "" || hidden == "." || hidden == ".." {
			return errors.New("malformed whiteout")
		}
		return inDir(root, parent, func(dirPath string) error {
			err := syscall.Mknod(dirPath+"/"+hidden, syscall.S_IFCHR, 0)
			if errors.Is(err, fs.ErrExist) {
				return nil // the same layer also has the path: its own entry wins
			}
			return err
		})
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := root.MkdirAll(name, 0o755); err != nil {
			return err
		}
		return root.Chmod(name, mode)
	case tar.TypeReg, '\x00':
		_ = root.Remove(name) // a later entry of one layer replaces an earlier one
		f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return root.Chmod(name, mode)
	case tar.TypeSymlink:
		_ = root.Remove(name)
		return root.Symlink(h.Linkname, name)
	case tar.TypeLink:
		target, err := cleanTarName(h.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("hard link target %q: %w", h.Linkname, err)
		}
		_ = root.Remove(name)
		return root.Link(target, name)
	default:
		return nil // devices and FIFOs: not created, see OverlayLowers
	}
}

// inDir runs fn with a path to dir (inside root) that cannot be redirected: the
// directory is opened through root and named by its descriptor.
func inDir(root *os.Root, dir string, fn func(dirPath string) error) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if fi, err := d.Stat(); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	return fn(fmt.Sprintf("/proc/self/fd/%d", d.Fd()))
}

// overlayWhiteout reports whether info is an overlayfs whiteout (a 0/0 char device).
func overlayWhiteout(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && info.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0
}

// overlayOpaque reports whether the directory at p is marked opaque by overlayfs.
func overlayOpaque(p string) bool {
	buf := make([]byte, 1)
	n, err := syscall.Getxattr(p, opaqueXattr, buf)
	return err == nil && n == 1 && buf[0] == 'y'
}
