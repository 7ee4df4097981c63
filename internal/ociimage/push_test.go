package ociimage

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPushToLoopbackRegistry pushes to go-containerregistry's in-process registry (a
// real HTTP registry on 127.0.0.1) and reads the image back by digest.
func TestPushToLoopbackRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true)))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	root := t.TempDir()
	makeTree(t, root, 0)
	out := filepath.Join(t.TempDir(), "out")
	res := buildImage(t, out, specFor(root, Zstd))
	ctx := context.Background()

	got, err := Push(ctx, out, res.Manifest, host+"/fixity/app:v1", true)
	must(t, err)
	if want := host + "/fixity/app@" + res.Manifest.Digest.String(); got != want {
		t.Fatalf("Push returned %q, want %q", got, want)
	}
	ref, err := name.NewDigest(got, name.Insecure)
	must(t, err)
	img, err := remote.Image(ref, remote.WithContext(ctx))
	must(t, err)
	raw, err := img.RawManifest()
	must(t, err)
	local, _ := os.ReadFile(blobPath(out, res.Manifest.Digest))
	if string(raw) != string(local) {
		t.Fatal("the registry serves other manifest bytes")
	}
	layers, err := img.Layers()
	must(t, err)
	if len(layers) != 1 {
		t.Fatalf("%d layers", len(layers))
	}
	if d, _ := layers[0].Digest(); d.String() != res.Layer.Digest.String() {
		t.Fatalf("layer digest %s", d)
	}

	// referrer
	const at = "application/vnd.dev.sigstore.bundle.v0.3+json"
	rd, err := AttachReferrer(out, res.Manifest, at, at, []byte(`{"x":1}`), nil)
	must(t, err)
	must(t, PushReferrer(ctx, out, rd, host+"/fixity/app", true))
	idx, err := remote.Referrers(ref, remote.WithContext(ctx))
	must(t, err)
	im, err := idx.IndexManifest()
	must(t, err)
	if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != rd.Digest.String() {
		t.Fatalf("registry referrers: %+v", im.Manifests)
	}

	// bad references name the field
	if _, err := Push(ctx, out, res.Manifest, "not a ref", true); err == nil || !strings.Contains(err.Error(), "push") {
		t.Fatalf("bad ref: %v", err)
	}
	if _, err := Push(ctx, out, res.Manifest, "127.0.0.1:1/x:y", true); err == nil {
		t.Fatal("push to a closed port must fail")
	}
}
