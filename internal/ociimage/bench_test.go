//go:build unix

package ociimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Benchmarks for layer creation. Each run generates two trees once, in a temp dir that
// TestMain removes (nothing is committed):
//
//	binary-heavy: ~40 files of 4–48 MiB, ELF-like content (random, low-entropy and
//	              repeated regions; zstd ratio ≈ 2.5–3);
//	source-heavy: copies of $GOROOT/src (text files up to 256 KiB; avg ≈ 12 KiB).
//
// FIXITY_BENCH_MB sets each tree's size in MiB (default 1024; use 64 for a quick run):
//
//	FIXITY_BENCH_MB=1024 go test -run '^$' -bench . -benchtime 1x -count 3 ./internal/ociimage/
//
// MB/s is of the uncompressed tar (the diffID bytes), so every row is comparable.

var (
	benchOnce  sync.Once
	benchDir   string
	benchTrees map[string]benchTree
	benchErr   error
)

type benchTree struct {
	root    string
	tarSize int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

func benchSize() int64 {
	mb, err := strconv.Atoi(os.Getenv("FIXITY_BENCH_MB"))
	if err != nil || mb <= 0 {
		mb = 1024
	}
	return int64(mb) << 20
}

func trees(b *testing.B) map[string]benchTree {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "fixity-ociimage-bench-")
		if benchErr != nil {
			return
		}
		size := benchSize()
		benchTrees = map[string]benchTree{}
		for name, gen := range map[string]func(string, int64) error{"binary": genBinaryTree, "source": genSourceTree} {
			root := filepath.Join(benchDir, name)
			if benchErr = gen(root, size); benchErr != nil {
				return
			}
			lr, err := WriteLayer(context.Background(), root, io.Discard, LayerOptions{Compression: None, Created: epoch})
			if err != nil {
				benchErr = err
				return
			}
			benchTrees[name] = benchTree{root: root, tarSize: lr.Size}
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchTrees
}

// binaryLike fills p with content that compresses like executables: a mix of random
// bytes, low-entropy bytes and copies of earlier regions.
func binaryLike(rng *rand.Rand, p []byte) {
	const chunk = 4096
	for off := 0; off < len(p); off += chunk {
		end := min(off+chunk, len(p))
		c := p[off:end]
		switch k := rng.IntN(10); {
		case k < 3: // random (compiled code, compressed data)
			for i := 0; i < len(c); i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8 && i+j < len(c); j++ {
					c[i+j] = byte(v >> (8 * j))
				}
			}
		case k < 6: // low entropy (tables, relocations, padding: mostly zero bytes)
			for i := 0; i < len(c); i += 16 {
				v := rng.Uint64()
				for j := 0; j < 16 && i+j < len(c); j++ {
					if n := byte(v>>(4*j)) & 0x0f; n < 4 {
						c[i+j] = n
					} else {
						c[i+j] = 0
					}
				}
			}
		default: // a copy of a recent chunk with a few changes (repeated code)
			if off >= chunk*8 {
				back := min(off/chunk-1, 256) // within the last MiB
				src := off - (1+rng.IntN(back))*chunk
				copy(c, p[src:src+len(c)])
				for range 8 {
					c[rng.IntN(len(c))] = byte(rng.Uint32())
				}
			}
		}
	}
}

func genBinaryTree(root string, total int64) error {
	rng := rand.New(rand.NewPCG(7, 7))
	var written int64
	for i := 0; written < total; i++ {
		size := min(int64(4<<20+rng.IntN(44<<20)), total-written)
		buf := make([]byte, size)
		binaryLike(rng, buf)
		p := filepath.Join(root, fmt.Sprintf("lib%d", i%4), fmt.Sprintf("bin-%03d.so", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, buf, 0o755); err != nil {
			return err
		}
		written += size
	}
	return nil
}

var words = strings.Fields(`func return if else for range var const type struct interface map chan go defer
select case switch default package import err nil true false string int byte error context ctx
fmt Errorf Sprintf len append make new copy close the a of to in is that value result config
handler request response server client token policy image layer digest manifest index build`)

// genSourceTree copies the Go distribution's own source tree (text files up to 256 KiB,
// sorted) as often as needed — real source code, which compresses and matches like the
// trees users stage; synthetic text from a small vocabulary makes zstd far slower than
// real code does. Without GOROOT sources it falls back to generated text.
func genSourceTree(root string, total int64) error {
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return genTextTree(root, total)
	}
	src := filepath.Join(strings.TrimSpace(string(goroot)), "src")
	var files []string
	_ = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Size() > 0 && info.Size() <= 256<<10 {
			files = append(files, p)
		}
		return nil
	})
	if len(files) < 1000 {
		return genTextTree(root, total)
	}
	var written int64
	for round := 0; written < total; round++ {
		for _, f := range files {
			if written >= total {
				break
			}
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, f)
			p := filepath.Join(root, fmt.Sprintf("copy%02d", round), rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return err
			}
			written += int64(len(b))
		}
	}
	return nil
}

func genTextTree(root string, total int64) error {
	rng := rand.New(rand.NewPCG(9, 9))
	var written int64
	var sb strings.Builder
	for i := 0; written < total; i++ {
		size := int64(1024 + rng.IntN(39*1024))
		sb.Reset()
		for int64(sb.Len()) < size {
			indent := rng.IntN(4)
			sb.WriteString(strings.Repeat("\t", indent))
			for n := 3 + rng.IntN(9); n > 0; n-- {
				w := words[rng.IntN(len(words))]
				if rng.IntN(5) == 0 {
					w = fmt.Sprintf("%s%d", w, rng.IntN(1000))
				}
				sb.WriteString(w)
				sb.WriteByte(' ')
			}
			sb.WriteString("\n")
		}
		p := filepath.Join(root, fmt.Sprintf("pkg%03d", i/100), fmt.Sprintf("file%05d.go", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
			return err
		}
		written += int64(sb.Len())
	}
	return nil
}

// sha256Impl names the crypto/sha256 code path Go picks on this CPU. On amd64 Go uses
// SHA-NI when AVX, SHA, SSE4.1 and SSSE3 are present, else AVX2 (with BMI2), else
// generic code; GODEBUG cpu.sha=off / cpu.avx2=off disable them. The flags are read
// from /proc/cpuinfo (Linux); elsewhere the answer is "unknown".
func sha256Impl() string {
	if runtime.GOARCH != "amd64" {
		return runtime.GOARCH
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "amd64 (unknown: no /proc/cpuinfo)"
	}
	var flags map[string]bool
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			flags = map[string]bool{}
			for _, f := range strings.Fields(v) {
				flags[f] = true
			}
			break
		}
	}
	godebug := os.Getenv("GODEBUG")
	switch {
	case flags["avx"] && flags["sha_ni"] && flags["sse4_1"] && flags["ssse3"] && !strings.Contains(godebug, "cpu.sha=off"):
		return "amd64 SHA-NI"
	case flags["avx2"] && flags["bmi2"] && !strings.Contains(godebug, "cpu.avx2=off"):
		return "amd64 AVX2"
	}
	return "amd64 generic"
}

// cpuTime is the CPU time (user+system, all threads) this process has used so far.
// Reported per GiB beside MB/s: on a shared machine wall-clock MB/s falls with other
// load, CPU seconds per GiB much less, and CPU/2 is the wall time on an idle 2-core box.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds the core-s/GiB metric for bytes processed per iteration.
func reportCPU(b *testing.B, start time.Duration, bytes int64) {
	used := cpuTime() - start
	b.ReportMetric(used.Seconds()/float64(b.N)/(float64(bytes)/(1<<30)), "core-s/GiB")
}

type discardCounter struct{ n int64 }

var errWindowFull = errors.New("window full")

// limitWriter keeps the first n bytes and then stops the writer.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	if err == nil && l.n == 0 {
		err = errWindowFull
	}
	return n, err
}

func (d *discardCounter) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }

// warm reads the whole tree once, untimed, right before a measurement. Every row
// measures a page-cached tree: on the benchmark machine a DAMON scheme pages out memory
// that has not been touched for about a minute, page cache included, and the other rows
// (the tar | gzip baseline takes a minute per tree) leave plenty of time for that.
func warm(b *testing.B, tr benchTree) {
	b.Helper()
	if _, err := WriteLayer(context.Background(), tr.root, io.Discard, LayerOptions{Compression: None, Created: epoch}); err != nil {
		b.Fatal(err)
	}
}

// tarWindow returns the first 64 MiB of the tree's tar: the in-memory rows process it
// repeatedly, as many bytes as the whole tar, instead of holding the whole tar in RAM.
// 64 MiB is far larger than any cache, so nothing is measured hot that would not be.
func tarWindow(b *testing.B, tr benchTree) []byte {
	b.Helper()
	var window bytes.Buffer
	lw := &limitWriter{w: &window, n: 64 << 20}
	if _, err := WriteLayer(context.Background(), tr.root, lw, LayerOptions{Compression: None, Created: epoch}); err != nil && !errors.Is(err, errWindowFull) {
		b.Fatal(err)
	}
	return window.Bytes()
}

func BenchmarkLayer(b *testing.B) {
	ts := trees(b)
	b.Logf("GOMAXPROCS=%d NumCPU=%d sha256=%s", runtime.GOMAXPROCS(0), runtime.NumCPU(), sha256Impl())
	for _, name := range []string{"binary", "source"} {
		tr := ts[name]
		for _, c := range []Compression{Zstd, Gzip, None} {
			b.Run(name+"/"+string(c), func(b *testing.B) {
				warm(b, tr)
				b.SetBytes(tr.tarSize)
				var out discardCounter
				start := cpuTime()
				for b.Loop() {
					out.n = 0
					if _, err := WriteLayer(context.Background(), tr.root, &out, LayerOptions{Compression: c, Created: epoch}); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, start, tr.tarSize)
				b.ReportMetric(float64(tr.tarSize)/float64(out.n), "ratio")
			})
		}
		// to a real file in a layout's blob directory (fsync included), as WriteImage does
		b.Run(name+"/zstd-to-file", func(b *testing.B) {
			b.SetBytes(tr.tarSize)
			dir := b.TempDir()
			warm(b, tr)
			start := cpuTime()
			for b.Loop() {
				bw, err := newBlobWriter(dir)
				if err != nil {
					b.Fatal(err)
				}
				lr, err := WriteLayer(context.Background(), tr.root, bw, LayerOptions{Compression: Zstd, Created: epoch})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := bw.commit(lr.Digest); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start, tr.tarSize)
		})
		b.Run(name+"/baseline-sha256", func(b *testing.B) {
			// The floor: sha256 over as many bytes as the tar, from memory.
			data := tarWindow(b, tr)
			b.SetBytes(tr.tarSize)
			b.ResetTimer()
			start := cpuTime()
			for b.Loop() {
				h := sha256.New()
				for done := int64(0); done < tr.tarSize; {
					for off := 0; off < len(data) && done < tr.tarSize; off += 1 << 20 {
						chunk := data[off:min(off+1<<20, len(data))]
						h.Write(chunk)
						done += int64(len(chunk))
					}
				}
				h.Sum(nil)
			}
			reportCPU(b, start, tr.tarSize)
		})
		// The parts of the work, each alone on one goroutine, in core-s/GiB of tar: their
		// sum (plus the sha256 floor) divided by two cores is the physical bound that
		// docs/benchmarks.md compares the rows above with.
		b.Run(name+"/part-walk", func(b *testing.B) {
			warm(b, tr)
			b.SetBytes(tr.tarSize)
			start := cpuTime()
			for b.Loop() {
				if err := walkTree(tr.root, epoch, false, func(entry) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start, tr.tarSize)
		})
		b.Run(name+"/part-read", func(b *testing.B) {
			// open, fstat, read and close every regular file, as the readers (small files)
			// and the writer (large files) do
			var files []entry
			must(b, walkTree(tr.root, epoch, false, func(e entry) error {
				if e.file {
					files = append(files, e)
				}
				return nil
			}))
			room := make([]byte, smallFileMax+1)
			warm(b, tr)
			b.SetBytes(tr.tarSize)
			start := cpuTime()
			for b.Loop() {
				for i := range files {
					e := files[i]
					if _, err := statAndRead(&e, room); err != nil {
						b.Fatal(err)
					}
					if e.large { // streamed by the writer in the pipeline; read it here too
						f, err := os.Open(e.path)
						must(b, err)
						_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, room[:largeChunk])
						f.Close()
						must(b, err)
					}
				}
			}
			reportCPU(b, start, tr.tarSize)
		})
		b.Run(name+"/part-zstd-codec", func(b *testing.B) {
			// the pinned encoder on the real tar bytes, one frame at a time
			data := tarWindow(b, tr)
			enc, err := zstd.NewWriter(nil,
				zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(zstdLevel)),
				zstd.WithWindowSize(zstdWindow),
				zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderCRC(true),
				zstd.WithLowerEncoderMem(false),
			)
			must(b, err)
			dst := make([]byte, 0, zstdFrameSize)
			b.SetBytes(tr.tarSize)
			start := cpuTime()
			for b.Loop() {
				for done := int64(0); done < tr.tarSize; {
					for off := 0; off < len(data) && done < tr.tarSize; off += zstdFrameSize {
						frame := data[off:min(off+zstdFrameSize, len(data))]
						dst = enc.EncodeAll(frame, dst[:0])
						done += int64(len(frame))
					}
				}
			}
			reportCPU(b, start, tr.tarSize)
		})
		b.Run(name+"/baseline-tar-gzip6", func(b *testing.B) {
			if _, err := exec.LookPath("tar"); err != nil {
				b.Skip("tar not installed")
			}
			if _, err := exec.LookPath("gzip"); err != nil {
				b.Skip("gzip not installed")
			}
			warm(b, tr)
			b.SetBytes(tr.tarSize)
			var cpu time.Duration
			for b.Loop() {
				cmd := exec.Command("sh", "-c", `tar -C "$1" -cf - . | gzip -6 > /dev/null`, "sh", tr.root)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("tar | gzip: %v %s", err, out)
				}
				cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime() // sh waits for both
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(tr.tarSize)/(1<<30)), "core-s/GiB")
		})
	}
}
