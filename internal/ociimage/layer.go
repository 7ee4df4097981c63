package ociimage

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// Read-ahead tuning. These change speed only, never bytes.
const (
	smallFileMax  = 1 << 20  // files up to this size are read whole by the read-ahead workers
	readAheadMax  = 64 << 20 // bytes of small files held in memory ahead of the tar writer
	readWorkers   = 4        // small-file readers; reads are syscall-bound, so more than cores
	largeChunk    = 1 << 20  // large files are streamed in chunks of this size …
	largeChunks   = 4        // … with this many chunks read ahead
	tarBufferSize = 256 << 10
)

// entry is one item of the staged tree, in tar order.
type entry struct {
	name string // slash-separated, relative to the root; directories end in "/"
	path string // host path, used only to read the content
	hdr  tar.Header
	kind entryKind

	// small regular files: filled by a read-ahead worker, then done is closed
	data []byte
	err  error
	done chan struct{}

	walkErr error // set on the last item when the walk failed
}

type entryKind int

const (
	kindOther entryKind = iota // header only (directory, symlink, hard link, empty file)
	kindSmall
	kindLarge
)

// WriteLayer streams the tree under root into w as one reproducible OCI layer and
// returns its digests. The tar is written in one pass; the diffID (sha256 of the tar)
// and the digest (sha256 of the compressed bytes) are computed on the way through.
//
// Every tar header field is set here, never copied from the host:
//   - entries in lexical order per directory (fs.WalkDir order); the root itself is not
//     an entry; directories are named "dir/";
//   - Format PAX (plain USTAR headers unless a name or size needs a PAX record);
//   - ModTime = opts.Created truncated to seconds (for every entry, whatever the staged
//     mtime: staging copies get "now"); no access/change times, no xattrs;
//   - Uid = Gid = 0, Uname = Gname = "": the staging tree belongs to whoever ran the
//     build, which says nothing about the image, so everything is owned by root;
//   - Mode = the permission bits as staged (rwx for user/group/other plus setuid,
//     setgid, sticky), so exec bits and 0600 secrets survive; symlinks are 0777;
//   - symlinks keep their target verbatim; a file with several links in the tree is
//     stored once and the later names become hard links to the first name in tar order;
//   - devices, FIFOs and sockets are refused (a staged tree never needs them).
//
// Whiteouts are ordinary files named ".wh.NAME" in the staged tree, as the OCI layer
// format defines them.
func WriteLayer(ctx context.Context, root string, w io.Writer, opts LayerOptions) (LayerResult, error) {
	sink, err := newLayerSink(w, opts.Compression)
	if err != nil {
		return LayerResult{}, err
	}
	if err := writeTree(ctx, root, sink.in, opts.Created); err != nil {
		sink.abort()
		return LayerResult{}, err
	}
	return sink.finish()
}

// writeTree writes the tar stream of root into out. Three stages overlap: the walk
// (one goroutine, lstat per entry, in tar order), the read-ahead of small files (a
// dispatcher plus readWorkers goroutines) and the tar writer (this goroutine).
func writeTree(ctx context.Context, root string, out io.Writer, created time.Time) error {
	if err := checkRoot(root); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()

	walked := make(chan *entry, 1024)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(walked)
		err := walkTree(root, created, func(e *entry) error {
			select {
			case walked <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err != nil {
			select {
			case walked <- &entry{walkErr: err}:
			case <-ctx.Done():
			}
		}
	}()

	// Read ahead: the dispatcher hands small files to the workers strictly in tar order,
	// reserving their bytes first, and forwards every entry to the writer; the writer
	// releases the bytes once written. Because reservations are made in order, the
	// writer never waits on a file whose bytes cannot be reserved.
	budget := semaphore.NewWeighted(readAheadMax)
	jobs := make(chan *entry, readWorkers)
	ordered := make(chan *entry, 4096)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(jobs)
		defer close(ordered)
		for e := range walked {
			if e.kind == kindSmall {
				if err := budget.Acquire(ctx, e.hdr.Size); err != nil {
					return
				}
				select {
				case jobs <- e:
				case <-ctx.Done():
					return
				}
			}
			select {
			case ordered <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range readWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range jobs {
				e.data, e.err = readSmall(e.path, e.hdr.Size)
				close(e.done)
			}
		}()
	}

	bw := bufio.NewWriterSize(out, tarBufferSize)
	tw := tar.NewWriter(bw)
	for {
		var e *entry
		var ok bool
		select {
		case e, ok = <-ordered:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			break
		}
		if e.walkErr != nil {
			return fmt.Errorf("layer root: %w", e.walkErr)
		}
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return fmt.Errorf("layer %s: %w", e.name, err)
		}
		switch e.kind {
		case kindSmall:
			select {
			case <-e.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if e.err != nil {
				return fmt.Errorf("layer %s: %w", e.name, e.err)
			}
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("layer %s: %w", e.name, err)
			}
			e.data = nil
			budget.Release(e.hdr.Size)
		case kindLarge:
			if err := streamLarge(ctx, e.path, e.hdr.Size, tw); err != nil {
				return fmt.Errorf("layer %s: %w", e.name, err)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	return bw.Flush()
}

// errChanged reports a staged file that changed size between the walk and the read;
// the header already promised the old size, so the layer would be corrupt.
var errChanged = errors.New("file changed while the layer was written; do not modify the staged tree during a build")

// streamLarge copies a large file into w while a goroutine reads the next chunks.
func streamLarge(ctx context.Context, path string, size int64, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type chunk struct {
		b   []byte
		err error
	}
	free := make(chan []byte, largeChunks)
	for range largeChunks {
		free <- make([]byte, largeChunk)
	}
	full := make(chan chunk, largeChunks)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(full)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-stop:
				return
			}
			n, err := io.ReadFull(f, b)
			if n > 0 {
				full <- chunk{b: b[:n]}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return
			}
			if err != nil {
				full <- chunk{err: err}
				return
			}
		}
	}()
	defer func() {
		close(stop)
		for range full { // drain so the reader can exit
		}
		wg.Wait()
	}()
	var written int64
	for c := range full {
		if c.err != nil {
			return c.err
		}
		if written+int64(len(c.b)) > size {
			return errChanged
		}
		if _, err := w.Write(c.b); err != nil {
			return err
		}
		written += int64(len(c.b))
		free <- c.b[:cap(c.b)]
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if written != size {
		return errChanged
	}
	return nil
}

func checkRoot(root string) error {
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("layer root: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("layer root %s: not a directory", root)
	}
	return nil
}

// walkTree calls emit for every entry under root, in tar order, with every header
// field decided.
func walkTree(root string, created time.Time, emit func(*entry) error) error {
	mtime := created.Truncate(time.Second)
	links := map[fileID]string{}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := &entry{name: name, path: path}
		e.hdr = tar.Header{
			Name:    name,
			Mode:    tarMode(info.Mode()),
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			e.hdr.Typeflag = tar.TypeDir
			e.hdr.Name = name + "/"
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			e.hdr.Typeflag = tar.TypeSymlink
			e.hdr.Linkname = target
			e.hdr.Mode = 0o777
		case mode.IsRegular():
			if id, ok := hardLinkID(info); ok {
				if first, seen := links[id]; seen {
					e.hdr.Typeflag = tar.TypeLink
					e.hdr.Linkname = first
					break
				}
				links[id] = name
			}
			e.hdr.Typeflag = tar.TypeReg
			e.hdr.Size = info.Size()
			switch {
			case e.hdr.Size == 0:
			case e.hdr.Size <= smallFileMax:
				e.kind = kindSmall
				e.done = make(chan struct{})
			default:
				e.kind = kindLarge
			}
		default:
			return fmt.Errorf("unsupported file type %s; remove it from the staged tree (devices, FIFOs and sockets cannot be put in an image layer here)", mode.Type())
		}
		return emit(e)
	})
}

// tarMode keeps the permission, setuid, setgid and sticky bits.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
