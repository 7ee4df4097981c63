package release

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/ledgertest"
)

// The signed path (a real bundle from the local Sigstore stack) is covered end to end
// in e2e/release_test.go; here: every way a head must be refused.
func TestRefusesUnverifiableHeads(t *testing.T) {
	ctx := context.Background()
	L := "file://" + filepath.Join(t.TempDir(), "l")
	l, _ := ledger.Open(L)
	a := ledger.DefaultActor()
	signed := ledgertest.Rec("web", "1") // names a bundle the ledger does not hold
	unsigned := ledgertest.Rec("web", "2")
	unsigned.Signer, unsigned.BundleDigest = nil, ""
	for _, r := range []*ledger.Record{signed, unsigned} {
		if _, err := ledger.RecordRelease(ctx, l, r, a); err != nil {
			t.Fatal(err)
		}
	}
	cfg := func(channel string) *Config {
		var c Config
		if err := c.Prepare(map[string]interface{}{"ledger": L, "channel": channel, "certificate_identity": "x", "certificate_oidc_issuer": "y"}); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	ledger.Promote(ctx, l, "web@1", "a", nil, "", a)
	ledger.Promote(ctx, l, "web@2", "b", nil, "", a)
	ledger.Promote(ctx, l, "web@2", "c", nil, "", a)
	ledger.Revoke(ctx, l, "web@2", "bad", "", true, a)
	for ch, want := range map[string]string{"a": "unverified", "c": "is empty", "none": "no promotions"} {
		if _, err := Read(ctx, cfg(ch)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("channel %s: err = %v, want %q", ch, err, want)
		}
	}
	ledger.RecordRelease(ctx, l, func() *ledger.Record { r := ledgertest.Rec("web", "3"); r.Signer, r.BundleDigest = nil, ""; return r }(), a)
	ledger.Promote(ctx, l, "web@3", "d", nil, "", a)
	if _, err := Read(ctx, cfg("d")); err == nil || !strings.Contains(err.Error(), "unsigned") {
		t.Errorf("unsigned head: %v", err)
	}
	var c Config
	if err := c.Prepare(map[string]interface{}{"ledger": L, "channel": "a"}); err == nil || !strings.Contains(err.Error(), "pin the signer") {
		t.Errorf("no pins: %v", err)
	}
}
