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
//
// It also returns the base's directory modes (see DirModes), which the unpacking
// needs anyway, so a build with commands reads the base's layers once.
func (b *Base) OverlayLowers(ctx context.Context, dir string) ([]string, DirModes, error) {
	var lowers []string
	modes := DirModes{} // of the layers below the one being unpacked
	err := b.eachLayer(ctx, func(i int, r io.Reader) error {
		d := filepath.Join(dir, fmt.Sprintf("layer%03d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		if err := extractForOverlay(ctx, r, d, modes); err != nil {
			return err
		}
		lowers = append([]string{d}, lowers...)
		return nil
	})
	return lowers, modes, err
}

// extractForOverlay writes the tar stream r under dir through an os.Root, so no entry
// (a "../" name, a symlink planted by an earlier entry) can write outside dir.
// Directories a layer implies without an entry of their own get the mode the layers
// below gave them (modes; updated with this layer's entries), else 0755: overlayfs
// shows the topmost layer's directory mode.
func extractForOverlay(ctx context.Context, r io.Reader, dir string, modes DirModes) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return eachEntry(ctx, r, func(name string, h *tar.Header, content io.Reader) error {
		if err := extractEntry(root, content, h, name, modes); err != nil {
			return err
		}
		modes.apply(name, h)
		return nil
	})
}

func extractEntry(root *os.Root, tr io.Reader, h *tar.Header, name string, modes DirModes) error {
	parent, base := path.Split(name)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		parent = "."
	}
	if err := mkdirParents(root, parent, modes); err != nil {
		return err
	}
	mode := tarFileMode(h.Mode)
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
		if err := root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
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

// mkdirParents creates the missing directories of dir (relative to root), each with
// the mode modes has for it, else 0755.
func mkdirParents(root *os.Root, dir string, modes DirModes) error {
	if dir == "." || dir == "" {
		return nil
	}
	cur := ""
	for _, part := range strings.Split(dir, "/") {
		cur = path.Join(cur, part)
		if err := root.Mkdir(cur, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return err
		}
		mode, ok := modes[cur]
		if !ok {
			mode = 0o755
		}
		if err := root.Chmod(cur, mode); err != nil {
			return err
		}
	}
	return nil
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
