package ociimage

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Push uploads the image (manifest, config and layer blobs, byte for byte as they are
// in the layout, so the digest cannot change) to ref "HOST[:PORT]/REPO:TAG" and then
// asks the registry for the manifest digest under that tag; a digest other than
// manifest.Digest is an error. insecure uses plain HTTP (for loopback registries).
// Credentials come from the Docker config (~/.docker/config.json and helpers).
// It returns the pushed image as "HOST[:PORT]/REPO@sha256:…".
func Push(ctx context.Context, layoutDir string, manifest ocispec.Descriptor, ref string, insecure bool) (string, error) {
	r, err := name.NewTag(ref, nameOpts(insecure)...)
	if err != nil {
		return "", fmt.Errorf("push %q: not HOST[:PORT]/REPO:TAG: %w", ref, err)
	}
	img, err := layoutImage(layoutDir, manifest)
	if err != nil {
		return "", fmt.Errorf("push %q: %w", ref, err)
	}
	opts := remoteOpts(ctx)
	if err := remote.Write(r, img, opts...); err != nil {
		return "", fmt.Errorf("push %q: %w", ref, err)
	}
	got, err := remote.Head(r, opts...)
	if err != nil {
		return "", fmt.Errorf("push %q: checking the pushed digest: %w", ref, err)
	}
	if got.Digest.String() != manifest.Digest.String() {
		return "", fmt.Errorf("push %q: the registry reports manifest %s, the layout has %s; the registry rewrote the image or another push raced this one", ref, got.Digest, manifest.Digest)
	}
	return r.Context().Name() + "@" + manifest.Digest.String(), nil
}

// PushReferrer pushes an artifact manifest from the layout (written by AttachReferrer)
// and its blobs to repo "HOST[:PORT]/REPO", by digest. Registries without the referrers
// API get the OCI 1.1 fallback tag index "sha256-HEX" updated by the client.
func PushReferrer(ctx context.Context, layoutDir string, referrer ocispec.Descriptor, repo string, insecure bool) error {
	r, err := name.NewRepository(repo, nameOpts(insecure)...)
	if err != nil {
		return fmt.Errorf("push referrer to %q: not HOST[:PORT]/REPO: %w", repo, err)
	}
	img, err := layoutImage(layoutDir, referrer)
	if err != nil {
		return fmt.Errorf("push referrer %s: %w", referrer.Digest, err)
	}
	d := r.Digest(referrer.Digest.String())
	opts := remoteOpts(ctx)
	if err := remote.Write(d, img, opts...); err != nil {
		return fmt.Errorf("push referrer %s to %q: %w", referrer.Digest, repo, err)
	}
	return nil
}

func nameOpts(insecure bool) []name.Option {
	o := []name.Option{name.StrictValidation}
	if insecure {
		o = append(o, name.Insecure)
	}
	return o
}

func remoteOpts(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
}

// layoutImage opens one manifest of the layout as a go-containerregistry image after
// verifying the manifest blob.
func layoutImage(layoutDir string, desc ocispec.Descriptor) (v1.Image, error) {
	if !isLayout(layoutDir) {
		return nil, fmt.Errorf("layout %s: not an OCI image layout (no oci-layout file)", layoutDir)
	}
	if _, err := readBlob(layoutDir, desc); err != nil {
		return nil, err
	}
	p, err := layout.FromPath(layoutDir)
	if err != nil {
		return nil, err
	}
	h, err := v1.NewHash(desc.Digest.String())
	if err != nil {
		return nil, err
	}
	return p.Image(h)
}
