package signing

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseBundle: any bytes either parse into a statement or fail with a bundle error;
// never a panic. Seeded with a real bundle from the in-process stack.
func FuzzParseBundle(f *testing.F) {
	for _, b := range seedBundles(f) {
		f.Add(b)
	}
	f.Add(fuzzStackBundle(f, newTestStack(f)))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		subjects, _, err := BundleStatement(b)
		if err == nil {
			for _, s := range subjects {
				if _, err := ParseDigest(s.Digest); err != nil {
					t.Fatalf("parsed subject with bad digest %q", s.Digest)
				}
			}
		} else if FailedCheck(err) != CheckBundle {
			t.Fatalf("parse error without the bundle check: %v", err)
		}
	})
}

// FuzzVerifyBundle: mutated bundles never verify unless they decode to the very bundle
// that was signed, and never panic.
func FuzzVerifyBundle(f *testing.F) {
	s := newTestStack(f)
	good := fuzzStackBundle(f, s)
	f.Add(good)
	f.Add(good[:len(good)/2])
	v, err := NewVerifier(VerifyOptions{TrustedMaterial: s.TrustedRoot, Identities: []Identity{githubIdentity}, TlogThreshold: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := v.VerifyBundle(b, imageDigest)
		if err != nil {
			if FailedCheck(err) == "" {
				t.Fatalf("error without a check: %v", err)
			}
			return
		}
		if res.MatchedDigest != imageDigest {
			t.Fatalf("verified for %s", res.MatchedDigest)
		}
	})
}

// seedBundles reads extra seed bundles from testdata/ when present.
func seedBundles(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	matches, _ := filepath.Glob(filepath.Join("testdata", "*.sigstore.json"))
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// fuzzStackBundle signs one real bundle with the in-process stack (a seed).
func fuzzStackBundle(tb testing.TB, s *testStack) []byte {
	svc, err := NewService(s.signOptions(mintToken(nil)))
	if err != nil {
		tb.Fatal(err)
	}
	res, err := svc.Sign(context.Background(), testStatement(tb, imageDigest))
	if err != nil {
		tb.Fatal(err)
	}
	return res.Bundle
}
