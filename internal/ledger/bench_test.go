package ledger_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/ledgertest"
)

// synthLog builds n valid events in memory: 1,000 releases, then promotions that
// alternate heads on four channels (the shape of a busy ledger).
func synthLog(b *testing.B, n int) [][]byte {
	st := ledger.NewState()
	a := ledger.Actor{Issuer: "local", Subject: "bench"}
	raws := make([][]byte, 0, n)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var imgs []string
	for i := 0; i < n; i++ {
		var ev *ledger.Event
		if i < 1000 {
			r := ledgertest.Rec("web", fmt.Sprint(i))
			imgs = append(imgs, r.Image.Digest)
			ev = &ledger.Event{Type: ledger.EventRelease, Image: r.Image.Digest, Record: r, Actor: a}
		} else {
			ch := []string{"dev", "qa", "staging", "canary"}[i%4]
			ev = &ledger.Event{Type: ledger.EventPromote, Image: imgs[(i/4)%1000], Channel: ch, Actor: a}
		}
		raw, err := st.Next(ev, now)
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, raw)
		st = mustApply(b, st, raws)
	}
	return raws
}

// mustApply advances st by the last raw event (via the exported replay contract).
func mustApply(b *testing.B, st *ledger.State, raws [][]byte) *ledger.State {
	if err := st.ApplyRaw(raws[len(raws)-1]); err != nil {
		b.Fatal(err)
	}
	return st
}

var benchN = 100000

// BenchmarkReplay100k decodes, chain-checks and replays a 100,000-event ledger.
func BenchmarkReplay100k(b *testing.B) {
	raws := synthLog(b, benchN)
	var size int
	for _, r := range raws {
		size += len(r) + 1
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		st, err := ledger.Replay(raws)
		if err != nil || st.Seq != uint64(benchN) {
			b.Fatal(err)
		}
	}
	// The machine is shared: CPU time spent is the stable figure, wall time is not.
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFileAppend measures one durable append (flock, fsync log, fsync HEAD,
// rename, fsync dir) to a file ledger that grows during the run.
func BenchmarkFileAppend(b *testing.B) {
	l, err := ledger.Open("file://" + filepath.Join(b.TempDir(), "l"))
	if err != nil {
		b.Fatal(err)
	}
	appendReleases(b, l)
}

// appendReleases records b.N releases, one append each, timed.
func appendReleases(b *testing.B, l ledger.Ledger) {
	ctx := context.Background()
	a := ledger.DefaultActor()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ledger.RecordRelease(ctx, l, ledgertest.Rec("web", fmt.Sprint(i)), a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOCIAppend measures one append (announce, list, commit, caches) to an
// in-process registry over loopback HTTP; e2e/ledger_test.go logs the same against
// distribution and olareg.
func BenchmarkOCIAppend(b *testing.B) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	l, err := ledger.OpenOCI(strings.TrimPrefix(srv.URL, "http://")+"/bench", ledger.OCIOptions{})
	if err != nil {
		b.Fatal(err)
	}
	appendReleases(b, l)
}
