package ociimage

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestZstdFramesDeterministicAndReadable pushes several frames' worth of data through
// the layer sink on one and on two cores: the bytes must be identical, and a standard
// zstd decoder must return the input.
func TestZstdFramesDeterministicAndReadable(t *testing.T) {
	in := make([]byte, 2*zstdFrameSize+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range in {
		if i%3 == 0 {
			in[i] = byte(r.IntN(256)) // a third random, the rest compressible
		} else {
			in[i] = byte(i / 4096)
		}
	}
	compress := func(procs int) []byte {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		var out bytes.Buffer
		s, err := newLayerSink(&out, Zstd)
		if err != nil {
			t.Fatal(err)
		}
		// Odd-sized writes, as the tar writer makes them.
		for p := in; len(p) > 0; {
			n := min(len(p), 777_777)
			if _, err := s.in.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		res, err := s.finish()
		if err != nil {
			t.Fatal(err)
		}
		if res.Size != int64(out.Len()) || res.DiffID.Encoded() != sha256hex(in) {
			t.Fatalf("result %+v does not describe the bytes", res)
		}
		return out.Bytes()
	}
	one, two := compress(1), compress(2)
	if !bytes.Equal(one, two) {
		t.Fatal("zstd output differs between 1 and 2 cores")
	}
	dec, err := zstd.NewReader(bytes.NewReader(two))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got, err := io.ReadAll(dec)
	if err != nil || !bytes.Equal(got, in) {
		t.Fatalf("decoded %d bytes (err %v), want the %d input bytes", len(got), err, len(in))
	}
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	const hx = "0123456789abcdef"
	out := make([]byte, 64)
	for i, c := range h {
		out[2*i], out[2*i+1] = hx[c>>4], hx[c&15]
	}
	return string(out)
}
