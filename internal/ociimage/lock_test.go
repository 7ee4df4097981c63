//go:build unix

package ociimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestConcurrentWritersKeepEveryTag runs writers into one existing layout at once
// (images and referrers); without the layout lock their read-modify-write of
// index.json loses entries.
func TestConcurrentWritersKeepEveryTag(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r0 := t.TempDir()
	must(t, os.WriteFile(filepath.Join(r0, "f"), []byte("base"), 0o644))
	s0 := specFor(r0, None)
	s0.Tags = []string{"t0"}
	base := buildImage(t, out, s0)

	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for i := 1; i <= writers; i++ {
		root := t.TempDir()
		must(t, os.WriteFile(filepath.Join(root, "f"), []byte(fmt.Sprint("content ", i)), 0o644))
		wg.Add(2)
		go func() {
			defer wg.Done()
			s := specFor(root, None)
			s.Tags = []string{fmt.Sprint("t", i)}
			_, err := WriteImage(context.Background(), out, s)
			errs <- err
		}()
		go func() {
			defer wg.Done()
			const at = "application/vnd.example.test"
			_, err := AttachReferrer(out, base.Manifest, at, at, []byte(fmt.Sprint("ref ", i)), nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	tags := tagsOf(t, out)
	if len(tags) != writers+1 {
		t.Fatalf("tags after %d concurrent writers: %v", writers, tags)
	}
	refs, err := Referrers(out, base.Manifest.Digest)
	must(t, err)
	if len(refs) != writers {
		t.Fatalf("%d referrers, want %d", len(refs), writers)
	}
	var idx ocispec.Index
	readJSON(t, filepath.Join(out, "index.json"), &idx)
	for _, m := range idx.Manifests {
		if _, err := os.Stat(blobPath(out, m.Digest)); err != nil {
			t.Fatalf("index.json names a missing blob: %v", err)
		}
	}
}

// TestParallelWritersIntoANewOutputDir: writers that all find output_dir missing build
// their layouts beside it; the first rename wins and the others merge into it.
func TestParallelWritersIntoANewOutputDir(t *testing.T) {
	for _, preexisting := range []bool{false, true} {
		t.Run(fmt.Sprint("empty-dir-", preexisting), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if preexisting {
				must(t, os.Mkdir(out, 0o755))
			}
			const writers = 6
			var wg sync.WaitGroup
			results := make(chan *Result, writers)
			errs := make(chan error, writers)
			for i := range writers {
				root := t.TempDir()
				must(t, os.WriteFile(filepath.Join(root, "f"), []byte(fmt.Sprint("content ", i)), 0o644))
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := specFor(root, Gzip)
					s.Tags = []string{fmt.Sprint("p", i)}
					res, err := WriteImage(context.Background(), out, s)
					errs <- err
					results <- res
				}()
			}
			wg.Wait()
			close(errs)
			close(results)
			for err := range errs {
				must(t, err)
			}
			created := 0
			for r := range results {
				if r.Created {
					created++
				}
			}
			if want := map[bool]int{false: 1, true: 0}[preexisting]; created != want {
				t.Errorf("%d writers report Created, want %d", created, want)
			}
			if tags := tagsOf(t, out); len(tags) != writers {
				t.Fatalf("tags: %v", tags)
			}
			var idx ocispec.Index
			readJSON(t, filepath.Join(out, "index.json"), &idx)
			for _, m := range idx.Manifests {
				var man ocispec.Manifest
				readJSON(t, blobPath(out, m.Digest), &man)
				for _, d := range append([]ocispec.Descriptor{man.Config}, man.Layers...) {
					if err := verifyBlob(context.Background(), out, d); err != nil {
						t.Fatal(err)
					}
				}
			}
			leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".out.tmp-*"))
			if len(leftovers) != 0 {
				t.Fatalf("temp dirs left beside output_dir: %v", leftovers)
			}
		})
	}
}

func TestLayoutLockWaitsAndHonoursTheContext(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockLayout(context.Background(), dir)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := lockLayout(ctx, dir); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v", err)
	}
	unlock()
	again, err := lockLayout(context.Background(), dir)
	must(t, err)
	again()
}
