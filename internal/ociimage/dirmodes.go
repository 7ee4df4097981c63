package ociimage

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// DirModes maps the directories of an image ("etc", "var/tmp", no leading or trailing
// slash) to their modes as the image's layers leave them.
//
// A build that writes /tmp/x into an image whose /tmp is 1777 must not put a 0755
// "tmp/" into its layer: a runtime applying the layer would change the base's /tmp.
// Directories a build creates on its way to a file therefore take the base's mode
// when the base has that directory.
type DirModes map[string]fs.FileMode

// apply records what one layer entry does to the directories.
func (m DirModes) apply(name string, h *tar.Header) {
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case base == opaqueWhiteout:
		m.dropUnder(dir)
	case strings.HasPrefix(base, whiteoutPrefix):
		m.drop(path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)))
	case h.Typeflag == tar.TypeDir:
		m[name] = tarFileMode(h.Mode)
	default:
		m.drop(name) // a file or link where a directory was
	}
}

func (m DirModes) drop(name string) {
	if _, ok := m[name]; ok {
		delete(m, name)
		m.dropUnder(name)
	}
}

func (m DirModes) dropUnder(dir string) {
	prefix := dir + "/"
	if dir == "" {
		prefix = ""
	}
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			delete(m, k)
		}
	}
}

// tarFileMode converts a tar header mode to an fs.FileMode with the permission,
// setuid, setgid and sticky bits.
func tarFileMode(mode int64) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// DirModes reads the base's layers (headers only) and returns its directories' modes.
// Layout layers are checked against their digests on the way.
func (b *Base) DirModes(ctx context.Context) (DirModes, error) {
	m := DirModes{}
	err := b.eachLayer(ctx, func(_ int, r io.Reader) error {
		return eachEntry(ctx, r, func(name string, h *tar.Header, _ io.Reader) error {
			m.apply(name, h)
			return nil
		})
	})
	return m, err
}

// eachEntry calls fn for every entry of the tar stream r with its cleaned name (the
// root entry skipped; names with ".." refused), and names the entry in errors.
func eachEntry(ctx context.Context, r io.Reader, fn func(name string, h *tar.Header, content io.Reader) error) error {
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
		if err := fn(name, h, tr); err != nil {
			return fmt.Errorf("tar entry %d %q: %w", n, h.Name, err)
		}
	}
}

// eachLayer hands fn every layer of the base, bottom first, as an uncompressed tar
// stream; a layout layer's digest is checked once fn is done with it.
func (b *Base) eachLayer(ctx context.Context, fn func(i int, tar io.Reader) error) error {
	open := func(i int, r io.Reader) error {
		tr, closeFn, err := openTarball(r)
		if err != nil {
			return err
		}
		defer closeFn() //nolint:errcheck // read side
		return fn(i, tr)
	}
	switch b.Kind {
	case BaseScratch:
		return nil
	case BaseTarball:
		f, err := os.Open(b.tarball)
		if err != nil {
			return fmt.Errorf("base %q: %w", b.Ref, err)
		}
		defer f.Close()
		if err := open(0, ctxReader{ctx, f}); err != nil {
			return fmt.Errorf("base %q: %w", b.Ref, err)
		}
		return nil
	case BaseLayout:
		for i, l := range b.Layers {
			f, err := os.Open(blobPath(b.layoutDir, l.Digest))
			if err != nil {
				return fmt.Errorf("base %q: layer %s: %w", b.Ref, l.Digest, err)
			}
			v := l.Digest.Verifier()
			r := io.TeeReader(ctxReader{ctx, f}, v)
			err = open(i, r)
			if err == nil {
				_, err = io.Copy(io.Discard, r) // the whole blob, past the tar end
			}
			f.Close()
			if err == nil && !v.Verified() {
				err = fmt.Errorf("content does not match its digest (corrupt)")
			}
			if err != nil {
				return fmt.Errorf("base %q: layer %s: %w", b.Ref, l.Digest, err)
			}
		}
		return nil
	}
	return fmt.Errorf("base: unknown kind %q", b.Kind)
}
