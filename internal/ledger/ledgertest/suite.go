// Package ledgertest is the one behaviour suite every ledger backend must pass. The
// unit tests run it against file://DIR and an in-process registry; the e2e tests run
// the very same suite against real registries on loopback.
package ledgertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
)

// Tamperer edits a backend's storage behind the ledger's back, the way an attacker
// or a broken disk would.
type Tamperer interface {
	// Edit replaces event seq by its re-encoded, modified copy.
	Edit(t *testing.T, seq uint64, change func(*ledger.Event))
	// Drop removes event seq.
	Drop(t *testing.T, seq uint64)
	// Swap exchanges events a and b.
	Swap(t *testing.T, a, b uint64)
}

// Backend creates fresh, empty ledgers of one kind.
type Backend struct {
	// New returns an opener for a new empty ledger (each call of open is a new,
	// independent client of the same ledger) and a tamperer for its storage.
	New func(t *testing.T) (open func() ledger.Ledger, tamper Tamperer)
	// Writers and PerWriter size the in-process concurrency test.
	Writers, PerWriter int
}

// Digest makes a deterministic fake image digest for tests.
func Digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

// Rec is a minimal valid signed record for image name@version.
func Rec(name, version string) *ledger.Record {
	return &ledger.Record{
		Schema: ledger.RecordSchema, Name: name, Version: version,
		Image:        ledger.Image{Digest: Digest(name + "@" + version), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1234},
		Artifacts:    []ledger.Artifact{{Provider: "aws", Region: "us-east-1", ID: "ami-" + Digest(name + "@" + version)[7:24]}, {Provider: "oci", ID: "127.0.0.1/" + name + "@" + Digest(name+"@"+version)}},
		PolicyDigest: Digest("policy"), SourceRevision: "0123456789abcdef", CIRunURL: "https://ci.example/runs/1",
		Signer:       &ledger.Signer{Issuer: "https://issuer.example", SAN: "https://ci.example/release.yml@refs/heads/main"},
		BundleDigest: Digest("bundle" + version),
		Created:      time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	}
}

var actor = ledger.Actor{Issuer: "local", Subject: "test"}

func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func state(t *testing.T, l ledger.Ledger) *ledger.State {
	t.Helper()
	return must(l.State(context.Background()))(t)
}

// Run runs the suite.
func Run(t *testing.T, b Backend) {
	ctx := context.Background()

	t.Run("Empty", func(t *testing.T) {
		open, _ := b.New(t)
		st := state(t, open())
		if st.Seq != 0 || len(st.Releases) != 0 || st.Head != "" {
			t.Fatalf("empty ledger state: seq %d, %d releases", st.Seq, len(st.Releases))
		}
	})

	t.Run("ChannelsAndRevocation", func(t *testing.T) {
		open, _ := b.New(t)
		l := open()
		a, bb, c := Rec("web", "1.0.0"), Rec("web", "1.1.0"), Rec("web", "1.2.0")
		for _, r := range []*ledger.Record{a, bb, c} {
			must(ledger.RecordRelease(ctx, l, r, actor))(t)
		}
		// A second record for the same version or hash is refused.
		dup := Rec("web", "1.0.0")
		if _, err := ledger.RecordRelease(ctx, l, dup, actor); err == nil || !strings.Contains(err.Error(), "already recorded") {
			t.Fatalf("duplicate release: err = %v", err)
		}
		other := Rec("web", "9.9.9")
		other.Image.Digest = a.Image.Digest
		if _, err := ledger.RecordRelease(ctx, l, other, actor); err == nil {
			t.Fatal("same hash recorded twice")
		}
		must(ledger.Promote(ctx, l, a.Image.Digest, "staging", nil, "", actor))(t)
		must(ledger.Promote(ctx, l, a.Image.Digest, "prod", []string{"staging"}, "", actor))(t)
		// prod now requires staging for every later promotion, even without --requires.
		if _, err := ledger.Promote(ctx, l, bb.Image.Digest, "prod", nil, "", actor); err == nil || !strings.Contains(err.Error(), "requires staging") {
			t.Fatalf("promote to prod before staging: err = %v", err)
		}
		must(ledger.Promote(ctx, l, "web@1.1.0", "staging", nil, "", actor))(t)
		must(ledger.Promote(ctx, l, "web@1.1.0", "prod", nil, "", actor))(t)
		st := state(t, open()) // a second client sees the same replay
		if st.Channels["prod"].Head != bb.Image.Digest || st.Channels["staging"].Head != bb.Image.Digest {
			t.Fatalf("heads after promotion: %+v", st.Channels)
		}
		if got := st.Channels["prod"].Requires; len(got) != 1 || got[0] != "staging" {
			t.Fatalf("prod requires = %v", got)
		}
		// Records are hash-chained.
		if st.Releases[bb.Image.Digest].Record.Previous != st.Releases[a.Image.Digest].RecordDigest {
			t.Fatal("record previous digest does not chain to the record before")
		}
		// Rollback = promote an older release.
		must(ledger.Promote(ctx, l, a.Image.Digest, "prod", nil, "rollback", actor))(t)
		if cur := must(state(t, l).Current("prod"))(t); cur.Record.Version != "1.0.0" {
			t.Fatalf("after rollback prod = %s", cur.Record.Version)
		}
		must(ledger.Promote(ctx, l, bb.Image.Digest, "prod", nil, "", actor))(t)
		// Revoking a head needs an explicit choice.
		if _, err := ledger.Revoke(ctx, l, bb.Image.Digest, "CVE-2026-1", "", false, actor); err == nil || !strings.Contains(err.Error(), "--rollback") {
			t.Fatalf("revoke head without choice: err = %v", err)
		}
		if _, err := ledger.Revoke(ctx, l, bb.Image.Digest, "", a.Image.Digest, false, actor); err == nil {
			t.Fatal("revoke without reason accepted")
		}
		// The rollback target must itself satisfy the channel rules (c never saw staging).
		if _, err := ledger.Revoke(ctx, l, bb.Image.Digest, "CVE-2026-1", c.Image.Digest, false, actor); err == nil {
			t.Fatal("rollback to a release that never passed staging accepted")
		}
		must(ledger.Revoke(ctx, l, bb.Image.Digest, "CVE-2026-1", a.Image.Digest, false, actor))(t)
		st = state(t, l)
		if st.Channels["prod"].Head != a.Image.Digest || st.Channels["staging"].Head != a.Image.Digest {
			t.Fatalf("heads after revoke --rollback: prod %s staging %s", st.Channels["prod"].Head, st.Channels["staging"].Head)
		}
		if rv := st.Revoked[bb.Image.Digest]; rv == nil || rv.Reason != "CVE-2026-1" {
			t.Fatalf("revoked set: %+v", st.Revoked)
		}
		if _, err := ledger.Promote(ctx, l, bb.Image.Digest, "staging", nil, "", actor); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("promote revoked: err = %v", err)
		}
		// Revoke with --empty: consumers fail closed.
		must(ledger.Revoke(ctx, l, a.Image.Digest, "bad base", "", true, actor))(t)
		if _, err := state(t, l).Current("prod"); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Fatalf("Current on emptied channel: err = %v", err)
		}
		st = state(t, l)
		if st.Seq != uint64(len(st.Events)) || len(st.Channels["prod"].History) != 6 {
			t.Fatalf("history: seq %d, %d events, prod history %d", st.Seq, len(st.Events), len(st.Channels["prod"].History))
		}
	})

	t.Run("Bundles", func(t *testing.T) {
		open, _ := b.New(t)
		l := open()
		body := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`)
		d := must(l.PutBundle(ctx, body))(t)
		if d != ledger.DigestBytes(body) {
			t.Fatalf("bundle digest %s", d)
		}
		if got := must(open().Bundle(ctx, d))(t); string(got) != string(body) {
			t.Fatalf("bundle read back %q", got)
		}
		if _, err := l.Bundle(ctx, Digest("missing")); err == nil {
			t.Fatal("missing bundle read without error")
		}
	})

	t.Run("ConcurrentClients", func(t *testing.T) {
		open, _ := b.New(t)
		n, m := b.Writers, b.PerWriter
		if n == 0 {
			n, m = 4, 5
		}
		var wg sync.WaitGroup
		errs := make(chan error, n*m)
		for w := 0; w < n; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				l := open() // independent client, as another process would be
				for i := 0; i < m; i++ {
					if _, err := ledger.RecordRelease(ctx, l, Rec(fmt.Sprintf("w%d", w), fmt.Sprintf("%d", i)), actor); err != nil {
						errs <- err
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		CheckWriters(t, state(t, open()), n, m)
	})

	t.Run("Tampering", func(t *testing.T) {
		cases := []struct {
			name string
			do   func(t *testing.T, tm Tamperer)
		}{
			{"edit-middle", func(t *testing.T, tm Tamperer) {
				tm.Edit(t, 2, func(e *ledger.Event) { e.Record.Version = "6.6.6" })
			}},
			{"edit-last", func(t *testing.T, tm Tamperer) {
				tm.Edit(t, 4, func(e *ledger.Event) { e.Channel = "prod" })
			}},
			{"drop-middle", func(t *testing.T, tm Tamperer) { tm.Drop(t, 2) }},
			{"drop-first", func(t *testing.T, tm Tamperer) { tm.Drop(t, 1) }},
			{"reorder", func(t *testing.T, tm Tamperer) { tm.Swap(t, 2, 3) }},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				open, tm := b.New(t)
				l := open()
				a, bb := Rec("api", "1"), Rec("api", "2")
				must(ledger.RecordRelease(ctx, l, a, actor))(t)
				must(ledger.RecordRelease(ctx, l, bb, actor))(t)
				must(ledger.Promote(ctx, l, a.Image.Digest, "staging", nil, "", actor))(t)
				must(ledger.Promote(ctx, l, bb.Image.Digest, "staging", nil, "", actor))(t)
				tc.do(t, tm)
				l2 := open()
				if _, err := l2.State(ctx); err == nil || !ledger.IsChainError(err) {
					t.Fatalf("State after %s: err = %v, want a chain error", tc.name, err)
				}
				if _, err := ledger.Promote(ctx, l2, a.Image.Digest, "prod", nil, "", actor); err == nil || !ledger.IsChainError(err) {
					t.Fatalf("Append after %s: err = %v, want a chain error", tc.name, err)
				}
			})
		}
	})
}

// CheckWriters asserts that writers w0…w(n-1) each recorded versions 0…m-1 exactly
// once in a valid chain (State already verified the chain).
func CheckWriters(t *testing.T, st *ledger.State, n, m int) {
	t.Helper()
	if int(st.Seq) != n*m || len(st.Releases) != n*m {
		t.Fatalf("got %d events / %d releases, want exactly %d", st.Seq, len(st.Releases), n*m)
	}
	seen := map[string]bool{}
	for _, ev := range st.Events {
		k := ev.Record.Name + "@" + ev.Record.Version
		if seen[k] {
			t.Fatalf("duplicate event for %s", k)
		}
		seen[k] = true
	}
	for w := 0; w < n; w++ {
		for i := 0; i < m; i++ {
			if !seen[fmt.Sprintf("w%d@%d", w, i)] {
				t.Fatalf("lost update: w%d@%d missing", w, i)
			}
		}
	}
}
