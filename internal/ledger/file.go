package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/atomicfile"
)

// File ledger layout (DIR):
//
//	events.log  canonical event JSON, one per line, appended in place
//	HEAD        {"seq":N,"digest":"sha256:…","size":BYTES} — the commit point
//	lock        flock(2) target that serialises writers
//
// An append writes the event after the committed bytes of events.log and fsyncs it,
// then writes HEAD.tmp-PID, fsyncs it, renames it over HEAD and fsyncs DIR. Readers
// take only the first HEAD.size bytes of events.log, so a writer that dies at any
// point leaves either the old ledger or the new one visible, never half an event;
// the next writer truncates the uncommitted tail away under the lock. Readers take no
// lock: committed bytes are never rewritten.
const (
	fileLog  = "events.log"
	fileHead = "HEAD"
	fileLock = "lock"
)

type fileHeadRec struct {
	Seq    uint64 `json:"seq"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// FileLedger is the file://DIR backend.
type FileLedger struct {
	dir string
}

// crashAt, set only by this package's tests (export_test.go), is called at each named
// step of Append, so crash safety is shown with real SIGKILLs of a writer process. It
// is nil in every other binary: no environment variable can make a real writer stop
// half-way.
var crashAt func(point string)

// OpenFile opens (without creating) the ledger in dir; the first Append creates it.
func OpenFile(dir string) (*FileLedger, error) {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("ledger %s: not a directory: point file:// at a directory", dir)
	}
	return &FileLedger{dir: dir}, nil
}

// URL implements Ledger.
func (f *FileLedger) URL() string { return "file://" + f.dir }

// Close implements Ledger.
func (f *FileLedger) Close() error { return nil }

// Dir is the ledger directory.
func (f *FileLedger) Dir() string { return f.dir }

func (f *FileLedger) readHead() (*fileHeadRec, error) {
	b, err := os.ReadFile(filepath.Join(f.dir, fileHead))
	if errors.Is(err, os.ErrNotExist) {
		return &fileHeadRec{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger %s: read HEAD: %w", f.dir, err)
	}
	var h fileHeadRec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, &ChainError{Seq: 0, Reason: fmt.Sprintf("%s: HEAD is not valid JSON: %v", filepath.Join(f.dir, fileHead), err)}
	}
	if h.Size < 0 || (h.Seq == 0) != (h.Digest == "") {
		return nil, &ChainError{Seq: h.Seq, Reason: fmt.Sprintf("%s: HEAD is inconsistent", filepath.Join(f.dir, fileHead))}
	}
	return &h, nil
}

// load reads the committed prefix of the log and replays it against HEAD.
func (f *FileLedger) load() (*State, *fileHeadRec, error) {
	h, err := f.readHead()
	if err != nil {
		return nil, nil, err
	}
	if h.Seq == 0 {
		return NewState(), h, nil
	}
	lf, err := os.Open(filepath.Join(f.dir, fileLog))
	if err != nil {
		return nil, nil, &ChainError{Seq: h.Seq, Reason: fmt.Sprintf("HEAD names %d events but %s cannot be read: %v", h.Seq, fileLog, err)}
	}
	defer lf.Close()
	buf := make([]byte, h.Size)
	if _, err := io.ReadFull(lf, buf); err != nil {
		return nil, nil, &ChainError{Seq: h.Seq, Reason: fmt.Sprintf("%s is shorter than the %d committed bytes HEAD names (truncated): %v", filepath.Join(f.dir, fileLog), h.Size, err)}
	}
	if len(buf) == 0 || buf[len(buf)-1] != '\n' {
		return nil, nil, &ChainError{Seq: h.Seq, Reason: fmt.Sprintf("%s: committed bytes do not end with a whole event", fileLog)}
	}
	lines := bytes.Split(buf[:len(buf)-1], []byte{'\n'})
	st, err := Replay(lines)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger %s: %w", f.dir, err)
	}
	if st.Seq != h.Seq || st.Head != h.Digest {
		return nil, nil, fmt.Errorf("ledger %s: %w", f.dir, &ChainError{Seq: st.Seq, Reason: fmt.Sprintf("HEAD says event %d is %s but the log ends at event %d with %s (the last event was edited or dropped)", h.Seq, h.Digest, st.Seq, st.Head)})
	}
	return st, h, nil
}

// State implements Ledger.
func (f *FileLedger) State(ctx context.Context) (*State, error) {
	st, _, err := f.load()
	return st, err
}

// Append implements Ledger.
func (f *FileLedger) Append(ctx context.Context, build func(*State) (*Event, error)) (*Event, error) {
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return nil, fmt.Errorf("ledger %s: create directory: %w", f.dir, err)
	}
	lk, err := os.OpenFile(filepath.Join(f.dir, fileLock), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: open lock: %w", f.dir, err)
	}
	defer lk.Close()
	if err := flockCtx(ctx, lk); err != nil {
		return nil, fmt.Errorf("ledger %s: lock: %w", f.dir, err)
	}
	defer syscall.Flock(int(lk.Fd()), syscall.LOCK_UN)

	// Leftovers of writers that died mid-append are ours to clean while we hold the lock.
	if olds, _ := filepath.Glob(filepath.Join(f.dir, fileHead+".tmp-*")); len(olds) > 0 {
		for _, o := range olds {
			os.Remove(o)
		}
	}
	st, h, err := f.load()
	if err != nil {
		return nil, err
	}
	ev, err := build(st)
	if err != nil {
		return nil, err
	}
	raw, err := st.Next(ev, time.Now())
	if err != nil {
		return nil, err
	}
	line := append(raw, '\n')

	lf, err := os.OpenFile(filepath.Join(f.dir, fileLog), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: open log: %w", f.dir, err)
	}
	defer lf.Close()
	if err := lf.Truncate(h.Size); err != nil { // drop an uncommitted tail
		return nil, fmt.Errorf("ledger %s: truncate uncommitted tail: %w", f.dir, err)
	}
	f.crash("before-write")
	half := len(line) / 2
	if _, err := lf.WriteAt(line[:half], h.Size); err != nil {
		return nil, fmt.Errorf("ledger %s: write event: %w", f.dir, err)
	}
	f.crash("mid-write")
	if _, err := lf.WriteAt(line[half:], h.Size+int64(half)); err != nil {
		return nil, fmt.Errorf("ledger %s: write event: %w", f.dir, err)
	}
	if err := lf.Sync(); err != nil {
		return nil, fmt.Errorf("ledger %s: fsync log: %w", f.dir, err)
	}
	f.crash("before-head")
	nh := fileHeadRec{Seq: ev.Seq, Digest: DigestBytes(raw), Size: h.Size + int64(len(line))}
	hb, _ := json.Marshal(nh)
	tmp := filepath.Join(f.dir, fileHead+".tmp-"+strconv.Itoa(os.Getpid()))
	if err := atomicfile.WriteSynced(tmp, append(hb, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("ledger %s: write HEAD: %w", f.dir, err)
	}
	f.crash("before-rename")
	if err := os.Rename(tmp, filepath.Join(f.dir, fileHead)); err != nil {
		return nil, fmt.Errorf("ledger %s: commit HEAD: %w", f.dir, err)
	}
	f.crash("after-rename")
	if err := atomicfile.SyncDir(f.dir); err != nil {
		return nil, fmt.Errorf("ledger %s: fsync directory: %w", f.dir, err)
	}
	return ev, nil
}

// PutBundle implements Ledger: DIR/bundles/sha256-<hex>, written temp + fsync + rename.
func (f *FileLedger) PutBundle(ctx context.Context, b []byte) (string, error) {
	d := DigestBytes(b)
	dir := filepath.Join(f.dir, "bundles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("ledger %s: %w", f.dir, err)
	}
	final := filepath.Join(dir, strings.Replace(d, ":", "-", 1))
	if _, err := os.Stat(final); err == nil {
		return d, nil
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("ledger %s: %w", f.dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return "", fmt.Errorf("ledger %s: write bundle: %w", f.dir, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("ledger %s: fsync bundle: %w", f.dir, err)
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("ledger %s: store bundle: %w", f.dir, err)
	}
	return d, atomicfile.SyncDir(dir)
}

// Bundle implements Ledger.
func (f *FileLedger) Bundle(ctx context.Context, digest string) ([]byte, error) {
	if !ValidDigest(digest) {
		return nil, fmt.Errorf("bundle digest %q: want sha256:<64 hex>", digest)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, "bundles", strings.Replace(digest, ":", "-", 1)))
	if err != nil {
		return nil, fmt.Errorf("ledger %s: bundle %s: %w", f.dir, digest, err)
	}
	if DigestBytes(b) != digest {
		return nil, &ChainError{Reason: fmt.Sprintf("stored bundle %s does not match its digest (edited)", digest)}
	}
	return b, nil
}

func (f *FileLedger) crash(point string) {
	if crashAt != nil {
		crashAt(point)
	}
}

// flockCtx takes an exclusive flock, giving up when ctx ends.
func flockCtx(ctx context.Context, f *os.File) error {
	delay := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("another writer holds the lock: %w", ctx.Err())
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}
