//go:build unix

package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// pipelineTree stages a tree that crosses every boundary of the read-ahead pipeline:
// more entries than a batch, more small-file bytes than one arena (deferred reads) and
// than all arenas together (back-pressure), files at and around smallFileMax, and a hard
// link whose first name in tar order is not the name created first.
func pipelineTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	write := func(name string, size int, mode os.FileMode) {
		p := filepath.Join(root, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		must(t, os.WriteFile(p, b, mode))
		must(t, os.Chmod(p, mode))
	}
	for i := range 3*batchEntries + 7 {
		write(fmt.Sprintf("many/f%04d", i), rng.IntN(3000), 0o644)
	}
	sizes := []int{smallFileMax, smallFileMax - 1, smallFileMax + 1, 900 << 10}
	var big int
	for i := 0; big <= arenaCount*arenaSize+4<<20; i++ {
		s := sizes[i%len(sizes)]
		write(fmt.Sprintf("big/g%03d", i), s, 0o755)
		big += s
	}
	must(t, os.Link(filepath.Join(root, "many/f0005"), filepath.Join(root, "a-hard")))
	must(t, os.Symlink("many/f0001", filepath.Join(root, "link")))
	must(t, os.MkdirAll(filepath.Join(root, "zz/empty"), 0o700))
	return root
}

// TestLayerPipelineMatchesTheTree reads the layer back and checks every entry against
// the tree as the file system reports it, in the order a plain sorted walk gives.
func TestLayerPipelineMatchesTheTree(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~75 MiB")
	}
	root := pipelineTree(t)
	type want struct {
		name string
		typ  byte
		mode int64
		path string // content to compare, for regular files
		link string
	}
	var wants []want
	seen := map[[2]uint64]string{}
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			wants = append(wants, want{name: name + "/", typ: tar.TypeDir, mode: int64(fi.Mode().Perm())})
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			wants = append(wants, want{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target})
		default:
			ino := inodeOf(fi)
			if first, ok := seen[ino]; ok {
				wants = append(wants, want{name: name, typ: tar.TypeLink, mode: int64(fi.Mode().Perm()), link: first})
				return nil
			}
			if linkCount(fi) > 1 {
				seen[ino] = name
			}
			wants = append(wants, want{name: name, typ: tar.TypeReg, mode: int64(fi.Mode().Perm()), path: p})
		}
		return nil
	}))

	layer := func() (sum [32]byte) {
		pr, pw := io.Pipe()
		go func() {
			_, err := WriteLayer(context.Background(), root, pw, LayerOptions{Compression: None, Created: epoch})
			pw.CloseWithError(err)
		}()
		h := sha256.New()
		tr := tar.NewReader(io.TeeReader(pr, h))
		for i := 0; ; i++ {
			hdr, err := tr.Next()
			if err == io.EOF {
				if i != len(wants) {
					t.Fatalf("layer has %d entries, the tree %d", i, len(wants))
				}
				break
			}
			must(t, err)
			if i >= len(wants) {
				t.Fatalf("extra entry %q", hdr.Name)
			}
			w := wants[i]
			if hdr.Name != w.name || hdr.Typeflag != w.typ || hdr.Mode != w.mode || hdr.Linkname != w.link {
				t.Fatalf("entry %d: got %q %c %o -> %q, want %q %c %o -> %q", i, hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Linkname, w.name, w.typ, w.mode, w.link)
			}
			if w.path != "" {
				got, err := io.ReadAll(tr)
				must(t, err)
				data, err := os.ReadFile(w.path)
				must(t, err)
				if !bytes.Equal(got, data) {
					t.Fatalf("%s: content differs (%d bytes in the layer, %d on disk)", w.name, len(got), len(data))
				}
			}
		}
		_, _ = io.Copy(h, pr)
		copy(sum[:], h.Sum(nil))
		return sum
	}
	first := layer()
	prev := runtime.GOMAXPROCS(1)
	second := layer()
	runtime.GOMAXPROCS(prev)
	if first != second {
		t.Fatal("the layer differs between GOMAXPROCS=1 and the default")
	}
}

// TestRegularFileSwappedAfterListing covers what the readers see when a name the
// listing reported as a regular file is something else by the time it is opened.
func TestRegularFileSwappedAfterListing(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "target"), []byte("x"), 0o644))
	must(t, os.Symlink("target", filepath.Join(dir, "symlink")))
	must(t, os.Mkdir(filepath.Join(dir, "dir"), 0o755))
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Skip("mkfifo:", err)
	}
	room := make([]byte, 64)
	for name, check := range map[string]func(error) bool{
		"symlink": func(err error) bool { return errors.Is(err, errChanged) },
		"dir":     func(err error) bool { return errors.Is(err, errChanged) },
		"fifo":    func(err error) bool { return err != nil && strings.Contains(err.Error(), "unsupported file type") },
	} {
		e := &entry{name: name, path: filepath.Join(dir, name), file: true}
		done := make(chan error, 1)
		go func() { _, err := statAndRead(e, room); done <- err }()
		select {
		case err := <-done:
			if !check(err) {
				t.Errorf("%s: got %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the open blocked", name) // a FIFO without O_NONBLOCK waits for a writer
		}
	}
	e := &entry{name: "target", path: filepath.Join(dir, "target"), file: true}
	n, err := statAndRead(e, room)
	if err != nil || n != 1 || string(e.data) != "x" || e.hdr.Size != 1 || e.hdr.Mode != 0o644 {
		t.Fatalf("regular file: n=%d err=%v data=%q hdr=%d/%o", n, err, e.data, e.hdr.Size, e.hdr.Mode)
	}
	e = &entry{name: "target", path: filepath.Join(dir, "target"), file: true}
	if n, err := statAndRead(e, room[:1]); err != nil || n != 0 || !e.deferred {
		t.Fatalf("no room: want a deferred read, got n=%d err=%v deferred=%v", n, err, e.deferred)
	}
}
