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
