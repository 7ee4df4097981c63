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
	pathpkg "path"
	"path/filepath"
	"sync"
	"time"
)

// Read-ahead tuning. These change speed only, never bytes.
const (
	smallFileMax  = 1 << 20 // files up to this size are read whole by the read-ahead workers …
	arenaSize     = 8 << 20 // … into reused arenas of this size …
	arenaCount    = 8       // … at most this many in flight: 64 MiB ahead of the tar writer
	batchEntries  = 256     // entries handed between goroutines at once
	readWorkers   = 4       // small-file readers; reads are syscall-bound, so more than cores
	largeChunk    = 1 << 20 // large files are streamed in chunks of this size …
	largeChunks   = 4       // … with this many chunks read ahead
	tarBufferSize = 256 << 10
)

// entry is one item of the staged tree, in tar order.
type entry struct {
	name string // slash-separated, relative to the root; directories end in "/"
	path string // host path, used only to read the content
	hdr  tar.Header

	// Regular files are stated and read by a reader, not by the walk: the walk knows
	// them from the directory listing alone, so it stays one cheap serial stage and the
	// per-file system calls (open, fstat, read, close) run in parallel.
	file     bool
	large    bool   // bigger than smallFileMax: streamed by the writer
	deferred bool   // did not fit the batch's arena: read by the writer
	data     []byte // small file content, in the batch's arena
	id       fileID // inode, when the file has more than one link
	multi    bool
}

// batch is a run of consecutive entries, handed from the walk to a reader and then to
// the tar writer as one unit. Per-file hand-offs cost more than the reads themselves on
// trees of many small files; so did reading into freshly allocated buffers, whose pages
// the kernel has to fault in on every read. Small files are therefore read into an
// arena that goes back to a free list once written.
type batch struct {
	entries []entry
	arena   []byte        // the small files' bytes; nil when the batch has no regular file
	done    chan struct{} // closed once the reader is through; nil without regular files
	err     error         // the first read error, set before done is closed
	walkErr error         // set on the last batch when the walk failed
}

// arenaPool hands out at most arenaCount arenas, allocating them only when needed, so a
// small tree does not pay for the whole read-ahead window.
type arenaPool struct {
	free      chan []byte
	allocated int
}

func newArenaPool() *arenaPool { return &arenaPool{free: make(chan []byte, arenaCount)} }

// get is called by the walk goroutine only.
func (p *arenaPool) get(ctx context.Context) ([]byte, error) {
	select {
	case a := <-p.free:
		return a, nil
	default:
	}
	if p.allocated < arenaCount {
		p.allocated++
		return make([]byte, arenaSize), nil
	}
	select {
	case a := <-p.free:
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put never blocks: every arena came from get, so the channel has room for it.
func (p *arenaPool) put(a []byte) { p.free <- a }

// readBatch stats every regular file of b and reads the small ones into b's arena, in
// order. A file that no longer fits is left for the writer (deferred), so memory stays
// bounded by the arenas whatever the file sizes.
func readBatch(ctx context.Context, b *batch) {
	defer close(b.done)
	var off int
	for i := range b.entries {
		e := &b.entries[i]
		if !e.file {
			continue
		}
		if err := ctx.Err(); err != nil {
			b.err = err
			return
		}
		room := b.arena[off:]
		if len(room) > smallFileMax+1 {
			room = room[:smallFileMax+1]
		}
		n, err := statAndRead(e, room)
		if err != nil {
			b.err = fmt.Errorf("layer %s: %w", e.name, err)
			return
		}
		off += n
	}
}

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
	if err := writeTree(ctx, root, sink.in, opts.Created, opts.OverlayUpper); err != nil {
		sink.abort()
		return LayerResult{}, err
	}
	return sink.finish()
}

// writeTree writes the tar stream of root into out. Three stages overlap: the walk
// (one goroutine: directory listings in tar order, cut into batches), the readers
// (readWorkers goroutines, one batch each at a time: fstat and read every regular
// file) and the tar writer (this goroutine, batches in walk order).
func writeTree(ctx context.Context, root string, out io.Writer, created time.Time, overlay bool) error {
	if err := checkRoot(root); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()

	// Back-pressure: a batch with regular files holds an arena until the writer is done
	// with it, so at most arenaCount such batches are in flight and the read-ahead stays
	// within arenaCount*arenaSize bytes. Batches are cut in walk order and the writer
	// returns arenas in that order, so the walk never waits on an arena that only a
	// later batch could free.
	pool := newArenaPool()
	jobs := make(chan *batch, arenaCount)
	ordered := make(chan *batch, 4*arenaCount)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ordered)
		defer close(jobs)
		b := &batch{entries: make([]entry, 0, batchEntries)}
		send := func() error {
			if len(b.entries) == 0 {
				return nil
			}
			if b.arena != nil {
				b.done = make(chan struct{})
				select {
				case jobs <- b:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			select {
			case ordered <- b:
			case <-ctx.Done():
				return ctx.Err()
			}
			b = &batch{entries: make([]entry, 0, batchEntries)}
			return nil
		}
		err := walkTree(root, created, overlay, func(e entry) error {
			if e.file && b.arena == nil {
				a, err := pool.get(ctx)
				if err != nil {
					return err
				}
				b.arena = a
			}
			b.entries = append(b.entries, e)
			if len(b.entries) == batchEntries {
				return send()
			}
			return nil
		})
		if err == nil {
			err = send()
		}
		if err != nil && ctx.Err() == nil {
			select {
			case ordered <- &batch{walkErr: err}:
			case <-ctx.Done():
			}
		}
	}()
	for range readWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				readBatch(ctx, b)
			}
		}()
	}

	bw := bufio.NewWriterSize(out, tarBufferSize)
	tw := tar.NewWriter(bw)
	links := map[fileID]string{}
	var scratch []byte // for deferred files
	for {
		var b *batch
		var ok bool
		select {
		case b, ok = <-ordered:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			break
		}
		if b.walkErr != nil {
			return fmt.Errorf("layer root: %w", b.walkErr)
		}
		if b.done != nil {
			select {
			case <-b.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if b.err != nil {
				return b.err
			}
		}
		for i := range b.entries {
			e := &b.entries[i]
			if e.deferred {
				if scratch == nil {
					scratch = make([]byte, smallFileMax+1)
				}
				if _, err := statAndRead(e, scratch); err != nil {
					return fmt.Errorf("layer %s: %w", e.name, err)
				}
			}
			if e.file && e.multi {
				// Hard links are decided here, in tar order: the first name is stored and
				// later names link to it.
				if first, seen := links[e.id]; seen {
					e.hdr.Typeflag, e.hdr.Linkname, e.hdr.Size = tar.TypeLink, first, 0
					e.file = false
				} else {
					links[e.id] = e.name
				}
			}
			if err := tw.WriteHeader(&e.hdr); err != nil {
				return fmt.Errorf("layer %s: %w", e.name, err)
			}
			switch {
			case !e.file:
			case e.large:
				if err := streamLarge(ctx, e.path, e.hdr.Size, tw); err != nil {
					return fmt.Errorf("layer %s: %w", e.name, err)
				}
			default:
				if _, err := tw.Write(e.data); err != nil {
					return fmt.Errorf("layer %s: %w", e.name, err)
				}
			}
			e.data = nil
		}
		if b.arena != nil {
			pool.put(b.arena)
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

// walkTree calls emit for every entry under root, in tar order. Directories and
// symlinks come with their headers complete; regular files (known from the directory
// listing) are left for statAndRead, which fills in size, mode and inode.
func walkTree(root string, created time.Time, overlay bool, emit func(entry) error) error {
	mtime := created.Truncate(time.Second)
	root = filepath.Clean(root)
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
		e := entry{name: name, path: path}
		e.hdr = tar.Header{Name: name, ModTime: mtime, Format: tar.FormatPAX}
		switch t := d.Type(); {
		case t.IsRegular():
			e.hdr.Typeflag = tar.TypeReg
			e.file = true
		case t.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			if !info.IsDir() {
				return errChanged
			}
			e.hdr.Typeflag = tar.TypeDir
			e.hdr.Name = name + "/"
			e.hdr.Mode = tarMode(info.Mode())
			if overlay && overlayOpaque(path) {
				if err := emit(e); err != nil {
					return err
				}
				return emit(marker(name+"/"+opaqueWhiteout, mtime))
			}
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			e.hdr.Typeflag = tar.TypeSymlink
			e.hdr.Linkname = target
			e.hdr.Mode = 0o777
		default:
			if overlay && t&fs.ModeCharDevice != 0 {
				if info, err := d.Info(); err == nil && overlayWhiteout(info) {
					dir, base := pathpkg.Split(name)
					return emit(marker(dir+whiteoutPrefix+base, mtime))
				}
			}
			return unsupportedType(t)
		}
		return emit(e)
	})
}

// marker is an empty regular file entry: an OCI whiteout.
func marker(name string, mtime time.Time) entry {
	return entry{name: name, hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX}}
}

func unsupportedType(t fs.FileMode) error {
	return fmt.Errorf("unsupported file type %s; remove it from the staged tree (devices, FIFOs and sockets cannot be put in an image layer here)", t.Type())
}

// fileInfoHeader completes a regular file's header from what fstat reported, and
// decides how the writer takes its content.
func (e *entry) fileInfoHeader(mode fs.FileMode, size int64) error {
	if !mode.IsRegular() {
		if mode.Type() == fs.ModeSymlink || mode.IsDir() {
			return errChanged
		}
		return unsupportedType(mode)
	}
	e.hdr.Mode = tarMode(mode)
	e.hdr.Size = size
	e.large = size > smallFileMax
	return nil
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
