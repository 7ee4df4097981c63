//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/ledgertest"
)

// TestLedgerWriterProcess is not a test: it is the writer process the concurrency
// tests start by re-executing this binary.
func TestLedgerWriterProcess(t *testing.T) {
	if os.Getenv("FIXITY_LEDGER_WRITER") == "" {
		t.Skip("helper process for the ledger concurrency tests")
	}
	if err := writerProcess(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestLedgerSuiteRealRegistries runs the same behaviour suite the unit tests run on
// file:// and an in-process registry, against real registries on loopback: one
// without the referrers API (distribution v3) and one with it (olareg).
func TestLedgerSuiteRealRegistries(t *testing.T) {
	requireAcc(t)
	for _, kind := range []string{"distribution", "olareg"} {
		t.Run(kind, func(t *testing.T) {
			ledgertest.Run(t, ociBackend(startRegistry(t, kind)))
		})
	}
}

// TestLedgerParallelWriterProcesses: N writer processes append M events each; the
// ledger must then hold exactly N×M events in a valid chain, without duplicates.
func TestLedgerParallelWriterProcesses(t *testing.T) {
	requireAcc(t)
	const n, m = 4, 6
	urls := map[string]string{"file": "file://" + filepath.Join(t.TempDir(), "ledger")}
	for _, kind := range []string{"distribution", "olareg"} {
		urls[kind] = "oci://" + startRegistry(t, kind) + "/fixity/parallel?lease=10s"
	}
	for kind, url := range urls {
		t.Run(kind, func(t *testing.T) {
			start := time.Now()
			for _, c := range ledgerWriters(t, url, "", n, m) {
				if err := c.Wait(); err != nil {
					t.Fatalf("writer failed: %v\n%s", err, c.Stdout)
				}
			}
			l, err := ledger.Open(url)
			if err != nil {
				t.Fatal(err)
			}
			st, err := l.State(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			ledgertest.CheckWriters(t, st, n, m)
			t.Logf("%s: %d processes × %d appends in %s", kind, n, m, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestLedgerSIGKILLWriters kills busy writer processes at random moments; between
// rounds every read must see a valid chain holding every acknowledged event, and new
// writers must carry on (dead writers' announcements expire with the lease).
func TestLedgerSIGKILLWriters(t *testing.T) {
	requireAcc(t)
	urls := map[string]string{"file": "file://" + filepath.Join(t.TempDir(), "ledger")}
	for _, kind := range []string{"distribution", "olareg"} {
		urls[kind] = "oci://" + startRegistry(t, kind) + "/fixity/kill?lease=2s"
	}
	for kind, url := range urls {
		t.Run(kind, func(t *testing.T) {
			l, err := ledger.Open(url)
			if err != nil {
				t.Fatal(err)
			}
			acked := 0
			for round := 0; round < 4; round++ {
				cmds := ledgerWriters(t, url, fmt.Sprintf("r%d", round), 3, 40)
				// OCI rounds run longer: a killed writer's announcement blocks the
				// next seq until its 2s lease expires.
				base := 400
				if kind != "file" {
					base = 2500
				}
				time.Sleep(time.Duration(base+rand.IntN(1500)) * time.Millisecond)
				for _, c := range cmds {
					c.Process.Signal(syscall.SIGKILL)
				}
				for _, c := range cmds {
					c.Wait()
					acked += strings.Count(fmt.Sprint(c.Stdout), "ok ")
				}
				st, err := l.State(context.Background())
				if err != nil {
					t.Fatalf("round %d: ledger unreadable after SIGKILL: %v", round, err)
				}
				if int(st.Seq) < acked || int(st.Seq) > acked+3 {
					t.Fatalf("round %d: %d events but %d acknowledged (at most 3 unacknowledged allowed)", round, st.Seq, acked)
				}
				acked = int(st.Seq)
				t.Logf("round %d: %d events, chain valid", round, st.Seq)
			}
			// The ledger still takes writes after all the kills.
			if _, err := ledger.RecordRelease(context.Background(), l, ledgertest.Rec("after", "1"), ledger.DefaultActor()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLedgerCLITamperOCI: the fixity CLI against a real registry refuses a ledger
// whose event was deleted, on verify-chain and on every read verb.
func TestLedgerCLITamperOCI(t *testing.T) {
	fixity := fixityBin(t)
	addr := startRegistry(t, "distribution")
	repo := addr + "/fixity/cli"
	L := "oci://" + repo
	dir := t.TempDir()
	d1, d2 := ledgertest.Digest("cli1"), ledgertest.Digest("cli2")
	for _, args := range [][]string{
		{"release", "record", "--ledger", L, "--name", "web", "--version", "1.0.0", "--image", d1, "--allow-unsigned", "--artifact", "aws:us-east-1:ami-0f1x0000000000001", "--channel", "staging"},
		{"release", "record", "--ledger", L, "--name", "web", "--version", "1.1.0", "--image", d2, "--allow-unsigned", "--artifact", "aws:us-east-1:ami-0f1x0000000000002", "--channel", "staging"},
		{"release", "promote", "--ledger", L, "web@1.1.0", "--channel", "prod", "--requires", "staging"},
		{"release", "verify-chain", "--ledger", L},
	} {
		if r := runCmd(t, dir, nil, time.Minute, fixity, args...); r.Code != 0 {
			t.Fatalf("fixity %v: exit %d\n%s", args, r.Code, r.Output())
		}
	}
	ledgertest.OCITamper{Repo: repo}.Drop(t, 2)
	abs, _ := filepath.Abs(filepath.Join("..", "example", "release", "instances.json"))
	inv := "aws:" + abs
	for _, args := range [][]string{
		{"release", "verify-chain", "--ledger", L},
		{"release", "list", "--ledger", L},
		{"rollout", "plan", "--ledger", L, "--channel", "prod", "--inventory", inv},
	} {
		r := runCmd(t, dir, nil, time.Minute, fixity, args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, "event 2 is missing") {
			t.Fatalf("fixity %v on a ledger with a deleted event: exit %d\n%s", args, r.Code, r.Output())
		}
	}
}
