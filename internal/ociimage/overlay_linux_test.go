//go:build linux

package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("overlayfs whiteouts need root (device nodes, trusted.* xattrs)")
	}
}

func tarOf(t *testing.T, hdrs ...tar.Header) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		body := []byte(h.Linkname) // regular files here carry their Linkname as content
		if h.Typeflag == tar.TypeReg {
			h.Size, h.Linkname = int64(len(body)), ""
		}
		must(t, tw.WriteHeader(&h))
		if h.Typeflag == tar.TypeReg {
			_, err := tw.Write(body)
			must(t, err)
		}
	}
	must(t, tw.Close())
	return bytes.NewReader(buf.Bytes())
}

func TestExtractForOverlayWhiteoutsAndEscapes(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	must(t, extractForOverlay(context.Background(), tarOf(t,
		tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "etc/.wh.passwd", Typeflag: tar.TypeReg, Mode: 0o644},
		tar.Header{Name: "opt/data/.wh..wh..opq", Typeflag: tar.TypeReg, Mode: 0o644},
		tar.Header{Name: "bin/tool", Typeflag: tar.TypeReg, Mode: 0o755, Linkname: "#!"},
		tar.Header{Name: "bin/alias", Typeflag: tar.TypeLink, Linkname: "bin/tool"},
		tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "/bin/tool"},
	), dir, DirModes{}))
	fi, err := os.Lstat(filepath.Join(dir, "etc/passwd"))
	if err != nil || !overlayWhiteout(fi) {
		t.Fatalf("etc/.wh.passwd must become a 0/0 character device: %v %v", fi, err)
	}
	if !overlayOpaque(filepath.Join(dir, "opt/data")) {
		t.Fatal("opt/data must be marked opaque")
	}
	if fi, err := os.Stat(filepath.Join(dir, "bin/alias")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("hard link: %v %v", fi, err)
	}

	// A symlink planted by an earlier entry must not carry a later whiteout, file or
	// link outside the layer directory.
	outside := t.TempDir()
	for _, evil := range [][]tar.Header{
		{{Name: "a", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "a/.wh.victim", Typeflag: tar.TypeReg}},
		{{Name: "a", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "a/.wh..wh..opq", Typeflag: tar.TypeReg}},
		{{Name: "a", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "a/file", Typeflag: tar.TypeReg, Linkname: "x"}},
		{{Name: "../escape", Typeflag: tar.TypeReg, Linkname: "x"}},
		{{Name: "link", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}},
	} {
		err := extractForOverlay(context.Background(), tarOf(t, evil...), t.TempDir(), DirModes{})
		if err == nil {
			t.Errorf("%s: extracted", evil[len(evil)-1].Name)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("%s: wrote outside the layer: %v", evil[len(evil)-1].Name, ents)
		}
		if overlayOpaque(outside) {
			t.Fatal("marked a directory outside the layer opaque")
		}
	}
}

func TestWriteLayerTurnsOverlayWhiteoutsIntoOCIWhiteouts(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc/new"), []byte("n"), 0o644))
	must(t, syscall.Mknod(filepath.Join(root, "etc/old"), syscall.S_IFCHR, 0))
	must(t, os.MkdirAll(filepath.Join(root, "opt/data"), 0o755))
	must(t, syscall.Setxattr(filepath.Join(root, "opt/data"), opaqueXattr, []byte("y"), 0))
	names := func(overlay bool) (string, error) {
		var buf bytes.Buffer
		_, err := WriteLayer(context.Background(), root, &buf, LayerOptions{Compression: None, Created: epoch, OverlayUpper: overlay})
		if err != nil {
			return "", err
		}
		var out []string
		tr := tar.NewReader(&buf)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return strings.Join(out, " "), nil
			}
			must(t, err)
			out = append(out, h.Name)
		}
	}
	got, err := names(true)
	must(t, err)
	if want := "etc/ etc/new etc/.wh.old opt/ opt/data/ opt/data/.wh..wh..opq"; got != want {
		t.Fatalf("overlay upper: %s, want %s", got, want)
	}
	// not an overlay upper: a device file is refused as before
	if _, err := names(false); err == nil || !strings.Contains(err.Error(), "unsupported file type") {
		t.Fatalf("a plain tree with a device file: %v", err)
	}
	// a device that is not a whiteout is refused even in an upper directory
	must(t, syscall.Mknod(filepath.Join(root, "etc/tty"), syscall.S_IFCHR, 5<<8)) // 5:0, /dev/tty
	if _, err := names(true); err == nil || !strings.Contains(err.Error(), "unsupported file type") {
		t.Fatalf("a real device in an overlay upper: %v", err)
	}
}

// TestImpliedDirectoriesKeepTheModesBelow: a layer with /tmp/x but no tmp/ entry must
// not turn the base's 1777 /tmp into 0755 in the merged view.
func TestImpliedDirectoriesKeepTheModesBelow(t *testing.T) {
	requireRoot(t)
	modes := DirModes{}
	must(t, extractForOverlay(context.Background(), tarOf(t,
		tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		tar.Header{Name: "root/", Typeflag: tar.TypeDir, Mode: 0o700},
	), t.TempDir(), modes))
	upper := t.TempDir()
	must(t, extractForOverlay(context.Background(), tarOf(t,
		tar.Header{Name: "tmp/x", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "x"},
		tar.Header{Name: "root/.ssh/k", Typeflag: tar.TypeReg, Mode: 0o600, Linkname: "k"},
	), upper, modes))
	for p, want := range map[string]os.FileMode{"tmp": 0o777 | os.ModeSticky | os.ModeDir, "root": 0o700 | os.ModeDir, "root/.ssh": 0o755 | os.ModeDir} {
		fi, err := os.Stat(filepath.Join(upper, p))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: %v %v, want %v", p, fi.Mode(), err, want)
		}
	}
}
