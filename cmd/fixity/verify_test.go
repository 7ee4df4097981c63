package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// keyBundles signs n statements in key mode (no network) and returns the directory,
// the public key path and the digests.
func keyBundles(t *testing.T, n int) (dir, pub string, digests []string) {
	t.Helper()
	dir = t.TempDir()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	kp, err := signing.NewKeyPair(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemPub, _ := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	pub = filepath.Join(dir, "key.pub")
	_ = os.WriteFile(pub, pemPub, 0o644)
	svc, err := signing.NewService(signing.SignOptions{Key: kp, NoTlog: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		d := fmt.Sprintf("sha256:%064x", i+1)
		st, _ := signing.NewStatement([]signing.Subject{{Name: "img", Digest: d}}, signing.PredicateImageRelease, signing.ImageRelease{Image: "img", Version: fmt.Sprint(i)})
		if _, err := svc.SignToFile(context.Background(), st, filepath.Join(dir, fmt.Sprintf("b%02d%s", i, signing.BundleSuffix))); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	return dir, pub, digests
}

func runFixity(args ...string) (int, string, string) {
	var so, se bytes.Buffer
	code := run(args, &so, &se)
	return code, so.String(), se.String()
}

func TestVerifyExitCodes(t *testing.T) {
	dir, pub, ds := keyBundles(t, 3)
	b0 := filepath.Join(dir, "b00"+signing.BundleSuffix)
	common := []string{"verify", "--key", pub, "--insecure-ignore-tlog"}

	code, out, errOut := runFixity(append(common, "--bundle", b0, "--digest", ds[0])...)
	if code != exitOK || !strings.Contains(out, "Verified OK") {
		t.Fatalf("good: %d %q %q", code, out, errOut)
	}
	code, out, _ = runFixity(append(common, "--bundle", b0, "--digest", ds[1])...)
	if code != exitNegative || !strings.Contains(out, "digest check failed") {
		t.Fatalf("wrong digest: %d %q", code, out)
	}
	code, out, _ = runFixity(append(common, "--bundle", b0, "--digest", ds[0], "--type", "slsaprovenance1")...)
	if code != exitNegative || !strings.Contains(out, "predicate-type") {
		t.Fatalf("wrong type: %d %q", code, out)
	}
	// Unusable: truncated bundle, missing file, no digest, no identity.
	trunc := filepath.Join(dir, "trunc.json")
	raw, _ := os.ReadFile(b0)
	_ = os.WriteFile(trunc, raw[:len(raw)/3], 0o644)
	for name, args := range map[string][]string{
		"truncated":   append(common, "--bundle", trunc, "--digest", ds[0]),
		"missing":     append(common, "--bundle", filepath.Join(dir, "nope.json"), "--digest", ds[0]),
		"no digest":   append(common, "--bundle", b0),
		"no identity": {"verify", "--bundle", b0, "--digest", ds[0], "--trusted-root", pub},
		"bad digest":  append(common, "--bundle", b0, "--digest", "sha256:xyz"),
	} {
		if code, out, errOut := runFixity(args...); code != exitUsage {
			t.Errorf("%s: exit %d, want 2\n%s%s", name, code, out, errOut)
		}
	}
	// A flipped byte in the signature is a negative answer, not unusable input.
	var bun map[string]any
	_ = json.Unmarshal(raw, &bun)
	env := bun["dsseEnvelope"].(map[string]any)
	sigs := env["signatures"].([]any)
	sig := sigs[0].(map[string]any)
	s := []byte(sig["sig"].(string))
	if s[10] == 'A' { // another valid base64 character: a bad signature, not a broken file
		s[10] = 'B'
	} else {
		s[10] = 'A'
	}
	sig["sig"] = string(s)
	flipped, _ := json.Marshal(bun)
	fp := filepath.Join(dir, "flipped.json")
	_ = os.WriteFile(fp, flipped, 0o644)
	if code, out, _ := runFixity(append(common, "--bundle", fp, "--digest", ds[0])...); code != exitNegative || !strings.Contains(out, "signature") {
		t.Fatalf("flipped signature: %d %q", code, out)
	}
}

func TestVerifyBatchAndJSON(t *testing.T) {
	dir, pub, ds := keyBundles(t, 4)
	var lines []string
	for i, d := range ds {
		lines = append(lines, fmt.Sprintf("%s  b%02d%s", d, i, signing.BundleSuffix))
	}
	lines = append(lines, ds[0]+"  b01"+signing.BundleSuffix) // wrong pairing
	batch := filepath.Join(dir, "SHA256SUMS")
	_ = os.WriteFile(batch, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	code, out, errOut := runFixity("verify", "--batch", batch, "--key", pub, "--insecure-ignore-tlog", "-o", "json", "--workers", "2")
	if code != exitNegative {
		t.Fatalf("exit %d, want 1 (one bad pairing)\n%s", code, errOut)
	}
	var res []verifyOutcome
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	ok := 0
	for _, r := range res {
		if r.Verified {
			ok++
		}
	}
	if len(res) != 5 || ok != 4 || res[4].FailedCheck != signing.CheckDigest {
		t.Fatalf("results = %+v", res)
	}
	if !strings.Contains(errOut, "5/5 bundles checked, 1 not verified") {
		t.Fatalf("progress: %q", errOut)
	}
	// --bundles DIR with one digest: only the matching bundle verifies.
	code, out, _ = runFixity("verify", "--bundles", dir, "--digest", ds[2], "--key", pub, "--insecure-ignore-tlog")
	if code != exitNegative || strings.Count(out, "Verified OK") != 1 {
		t.Fatalf("bundles dir: %d\n%s", code, out)
	}
}

func TestVerifyPolicyFileErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "policy.json")
	_ = os.WriteFile(p, []byte(`{"identities":[{"issuer":"https://x","san":"y","extensionz":{}}]}`), 0o644)
	code, _, errOut := runFixity("verify", "--bundle", p, "--digest", fmt.Sprintf("sha256:%064x", 1), "--policy", p)
	if code != exitUsage || !strings.Contains(errOut, "extensionz") {
		t.Fatalf("unknown field: %d %q", code, errOut)
	}
	_ = os.WriteFile(p, []byte(`{"identities":[{"issuer":"https://x","extensions":{"source_repository":"a"}}]}`), 0o644)
	if code, _, errOut := runFixity("verify", "--bundle", p, "--digest", fmt.Sprintf("sha256:%064x", 1), "--policy", p); code != exitUsage || !strings.Contains(errOut, "unknown certificate extension") {
		t.Fatalf("unknown extension: %d %q", code, errOut)
	}
}

func TestVerifyLedgerChannel(t *testing.T) {
	_, pub, _ := keyBundles(t, 1)
	dir := t.TempDir()
	code, out, errOut := runFixity("verify", "--ledger", "file://"+dir, "--channel", "prod", "--key", pub, "--insecure-ignore-tlog")
	if code != exitNegative || !strings.Contains(out, "NOT VERIFIED") || !strings.Contains(out, "prod") {
		t.Fatalf("empty ledger: %d %q %q", code, out, errOut)
	}
	if code, _, _ := runFixity("verify", "--ledger", "file://"+dir, "--key", pub); code != exitUsage {
		t.Fatalf("--ledger without --channel: %d", code)
	}
}
