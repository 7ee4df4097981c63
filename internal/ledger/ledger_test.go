package ledger_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/ledgertest"
)

// TestMain lets the test binary act as a ledger writer process (see writerMain), so
// concurrency and crash tests use real processes, real flocks and real SIGKILLs.
func TestMain(m *testing.M) {
	if os.Getenv("FIXITY_LEDGER_WRITER") != "" {
		os.Exit(writerMain())
	}
	os.Exit(m.Run())
}

// writerMain appends FIXITY_WRITER_M releases named FIXITY_WRITER_ID@0… to the ledger
// at FIXITY_LEDGER_WRITER, printing "ok N" after each acknowledged append.
func writerMain() int {
	l, err := ledger.Open(os.Getenv("FIXITY_LEDGER_WRITER"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	id := os.Getenv("FIXITY_WRITER_PREFIX") + os.Getenv("FIXITY_WRITER_ID")
	m, _ := strconv.Atoi(os.Getenv("FIXITY_WRITER_M"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < m; i++ {
		if _, err := ledger.RecordRelease(ctx, l, ledgertest.Rec(id, strconv.Itoa(i)), ledger.Actor{Issuer: "local", Subject: id}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("ok %d\n", i)
	}
	return 0
}

func fileBackend() ledgertest.Backend {
	return ledgertest.Backend{New: func(t *testing.T) (func() ledger.Ledger, ledgertest.Tamperer) {
		dir := filepath.Join(t.TempDir(), "ledger")
		return func() ledger.Ledger {
			l, err := ledger.Open("file://" + dir)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}, ledgertest.FileTamper{Dir: dir}
	}}
}

func ociBackend() ledgertest.Backend {
	return ledgertest.Backend{New: func(t *testing.T) (func() ledger.Ledger, ledgertest.Tamperer) {
		srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(srv.Close)
		repo := strings.TrimPrefix(srv.URL, "http://") + "/fixity/ledger"
		return func() ledger.Ledger {
			l, err := ledger.OpenOCI(repo, ledger.OCIOptions{Lease: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return l
		}, ledgertest.OCITamper{Repo: repo}
	}}
}

func TestFileLedgerSuite(t *testing.T) { ledgertest.Run(t, fileBackend()) }
func TestOCILedgerSuite(t *testing.T)  { ledgertest.Run(t, ociBackend()) }

// writers starts n writer processes appending m releases each to url.
func writers(t *testing.T, url string, n, m int, env ...string) []*exec.Cmd {
	t.Helper()
	var cmds []*exec.Cmd
	for w := 0; w < n; w++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), append([]string{"FIXITY_LEDGER_WRITER=" + url, fmt.Sprintf("FIXITY_WRITER_ID=w%d", w), fmt.Sprintf("FIXITY_WRITER_M=%d", m)}, env...)...)
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		cmds = append(cmds, cmd)
	}
	return cmds
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestFileLedgerProcesses(t *testing.T) {
	dir := t.TempDir()
	n, m := 6, 15
	for _, cmd := range writers(t, "file://"+dir, n, m) {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer: %v\n%s", err, cmd.Stdout)
		}
	}
	l, _ := ledger.Open("file://" + dir)
	st, err := l.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ledgertest.CheckWriters(t, st, n, m)
}

// TestFileLedgerCrashPoints kills a writer with SIGKILL at every step of an append:
// the ledger must stay readable with either the old or the new event, and the next
// writer must carry on.
func TestFileLedgerCrashPoints(t *testing.T) {
	for _, point := range []string{"before-write", "mid-write", "before-head", "before-rename", "after-rename"} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			url := "file://" + dir
			l, _ := ledger.Open(url)
			ctx := context.Background()
			if _, err := ledger.RecordRelease(ctx, l, ledgertest.Rec("base", "0"), ledger.DefaultActor()); err != nil {
				t.Fatal(err)
			}
			cmd := writers(t, url, 1, 1, "FIXITY_LEDGER_CRASH="+point)[0]
			err := cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("writer was not killed at %s: %v %s", point, err, cmd.Stdout)
			}
			st, err := l.State(ctx)
			if err != nil {
				t.Fatalf("ledger unreadable after SIGKILL at %s: %v", point, err)
			}
			want := uint64(1)
			if point == "after-rename" {
				want = 2 // committed before the crash
			}
			if st.Seq != want {
				t.Fatalf("after SIGKILL at %s: %d events, want %d", point, st.Seq, want)
			}
			if _, err := ledger.RecordRelease(ctx, l, ledgertest.Rec("next", "0"), ledger.DefaultActor()); err != nil {
				t.Fatalf("append after crash: %v", err)
			}
			st, err = l.State(ctx)
			if err != nil || st.Seq != want+1 {
				t.Fatalf("after recovery: seq %v err %v", st, err)
			}
			if olds, _ := filepath.Glob(filepath.Join(dir, "HEAD.tmp-*")); len(olds) > 0 {
				t.Fatalf("leftover temp files: %v", olds)
			}
		})
	}
}

// TestFileLedgerRandomKills SIGKILLs busy writers at random moments, reading the
// ledger between kills: every read sees a valid chain that holds every acknowledged event.
func TestFileLedgerRandomKills(t *testing.T) {
	dir := t.TempDir()
	url := "file://" + dir
	l, _ := ledger.Open(url)
	ctx := context.Background()
	acked := 0
	for round := 0; round < 8; round++ {
		cmds := writers(t, url, 3, 50, fmt.Sprintf("FIXITY_WRITER_PREFIX=r%d", round))
		// Kill at a random moment after the writers got to work (process start-up
		// time varies a lot, e.g. under -race).
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if strings.Contains(fmt.Sprint(cmds[0].Stdout), "ok ") {
				break
			}
		}
		time.Sleep(time.Duration(rand.IntN(250)) * time.Millisecond)
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGKILL)
		}
		for _, c := range cmds {
			c.Wait()
			acked += strings.Count(fmt.Sprint(c.Stdout), "ok ")
		}
		st, err := l.State(ctx)
		if err != nil {
			t.Fatalf("round %d: ledger unreadable after SIGKILL: %v", round, err)
		}
		// Each killed writer may have committed one event it could not acknowledge.
		if int(st.Seq) < acked || int(st.Seq) > acked+3*(round+1) {
			t.Fatalf("round %d: %d events, %d acknowledged", round, st.Seq, acked)
		}
		acked = int(st.Seq)
	}
	if acked < 10 {
		t.Fatalf("only %d events were written in all rounds: the writers did not get to work before the kills", acked)
	}
}

// TestOCIForkDetectedOnRead: two events committed for one seq (what racing writers
// without the announce protocol would make) are refused by every reader.
func TestOCIForkDetectedOnRead(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	a := ledger.Actor{Issuer: "local", Subject: "t"}
	for _, repo := range []string{"fork/x", "fork/y"} {
		l, err := ledger.OpenOCI(host+"/"+repo, ledger.OCIOptions{})
		if err != nil {
			t.Fatal(err)
		}
		base := ledgertest.Rec("web", "1")
		if _, err := l.Append(ctx, func(*ledger.State) (*ledger.Event, error) {
			return &ledger.Event{Type: ledger.EventRelease, Image: base.Image.Digest, Record: base, Actor: a, Time: at}, nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.RecordRelease(ctx, l, ledgertest.Rec("web", "2-"+repo[5:]), a); err != nil {
			t.Fatal(err)
		}
	}
	// Copy y's event 2 into x under its own (unique) tag.
	ytags, _ := remote.List(mustRepo(t, host+"/fork/y"))
	for _, tg := range ytags {
		if strings.HasPrefix(tg, "ev-000000000002-") {
			d, err := remote.Get(mustRepo(t, host+"/fork/y").Tag(tg))
			if err != nil {
				t.Fatal(err)
			}
			img, _ := d.Image()
			if err := remote.Write(mustRepo(t, host+"/fork/x").Tag(tg), img); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, _ := ledger.OpenOCI(host+"/fork/x", ledger.OCIOptions{})
	if _, err := l.State(ctx); err == nil || !strings.Contains(err.Error(), "fork: 2 events claim seq 2") {
		t.Fatalf("State on a forked ledger: %v", err)
	}
}

func mustRepo(t *testing.T, s string) name.Repository {
	r, err := name.NewRepository(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
