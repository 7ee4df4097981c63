package ledger_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/ledgertest"
)

// seedLog writes a small real ledger and returns its events, one per line.
func seedLog(f *testing.F) [][]byte {
	dir := filepath.Join(f.TempDir(), "l")
	l, _ := ledger.Open("file://" + dir)
	ctx := context.Background()
	a := ledger.DefaultActor()
	r1, r2 := ledgertest.Rec("web", "1"), ledgertest.Rec("web", "2")
	r2.Signer, r2.BundleDigest = nil, ""
	for _, step := range []func() (*ledger.Event, error){
		func() (*ledger.Event, error) { return ledger.RecordRelease(ctx, l, r1, a) },
		func() (*ledger.Event, error) { return ledger.RecordRelease(ctx, l, r2, a) },
		func() (*ledger.Event, error) { return ledger.Promote(ctx, l, "web@1", "staging", nil, "", a) },
		func() (*ledger.Event, error) {
			return ledger.Promote(ctx, l, "web@1", "prod", []string{"staging"}, "", a)
		},
		func() (*ledger.Event, error) { return ledger.Revoke(ctx, l, "web@1", "bad", "", true, a) },
	} {
		if _, err := step(); err != nil {
			f.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "events.log"))
	if err != nil {
		f.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func FuzzDecodeEvent(f *testing.F) {
	for _, l := range seedLog(f) {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ledger.DecodeEvent(b)
		if err != nil {
			return
		}
		// Accepted bytes are canonical: re-encoding gives the same digest.
		again, err := ev.Encode()
		if err != nil || !bytes.Equal(again, bytes.TrimRight(b, "\n")) {
			t.Fatalf("accepted non-canonical event %q", b)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	for _, l := range seedLog(f) {
		if ev, err := ledger.DecodeEvent(l); err == nil && ev.Record != nil {
			b, _ := ev.Record.Encode()
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ledger.DecodeRecord(b)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decoded record does not validate: %v", err)
		}
	})
}

// FuzzReplay feeds whole logs: Replay must never panic and must refuse any log whose
// events do not chain.
func FuzzReplay(f *testing.F) {
	f.Add(bytes.Join(seedLog(f), []byte("\n")))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines := bytes.Split(b, []byte("\n"))
		st, err := ledger.Replay(lines)
		if err != nil {
			if !ledger.IsChainError(err) {
				t.Fatalf("replay error is not a chain error: %v", err)
			}
			return
		}
		for i, d := range st.EventDigests {
			if d != ledger.DigestBytes(lines[i]) {
				t.Fatal("state digests differ from the input")
			}
		}
	})
}
