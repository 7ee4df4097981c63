package oci

import (
	"fmt"
	"os"
	"strings"

	registryimage "github.com/hashicorp/packer-plugin-sdk/packer/registry/image"

	"github.com/fixity-dev/packer-plugin-fixity/internal/artifactstate"
)

// BuilderID identifies artifacts of this builder.
const BuilderID = artifactstate.BuilderID

// Artifact is an image written into an OCI image layout. Its Id is the manifest
// digest: the image hash that fixity-sign signs and fixity-release records.
type Artifact struct {
	LayoutDir      string
	ManifestDigest string
	MediaType      string
	ManifestSize   int64
	Tags           []string
	ImageName      string
	Version        string
	BaseDigest     string
	BaseRef        string
	Compression    string
	PushedRef      string
	// CreatedLayout is true when this build created LayoutDir; only then does
	// Destroy remove it. An existing layout is shared with other images.
	CreatedLayout bool
	FileList      []string
	StateData     map[string]interface{}
}

// BuilderId returns the fixity-oci builder id.
func (a *Artifact) BuilderId() string { return BuilderID }

// Files lists the layout files this build wrote.
func (a *Artifact) Files() []string { return a.FileList }

// Id is the image manifest digest, "sha256:…".
func (a *Artifact) Id() string { return a.ManifestDigest }

func (a *Artifact) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "OCI image %s\n  layout: %s (tags: %s)", a.ManifestDigest, a.LayoutDir, strings.Join(a.Tags, ", "))
	if a.BaseDigest != "" {
		fmt.Fprintf(&b, "\n  base:   %s (%s)", a.BaseDigest, a.BaseRef)
	}
	if a.PushedRef != "" {
		fmt.Fprintf(&b, "\n  pushed: %s", a.PushedRef)
	}
	return b.String()
}

// State answers the keys of internal/artifactstate, generated_data and the HCP
// Packer registry metadata.
func (a *Artifact) State(name string) interface{} {
	switch name {
	case registryimage.ArtifactStateURI:
		img, err := registryimage.FromArtifact(a,
			registryimage.WithProvider("oci"),
			registryimage.WithRegion(a.region()),
			registryimage.WithSourceID(a.BaseDigest),
			registryimage.SetLabels(map[string]interface{}{
				"image_name":  a.ImageName,
				"version":     a.Version,
				"tags":        strings.Join(a.Tags, ","),
				"compression": a.Compression,
			}),
		)
		if err != nil {
			return nil
		}
		return img
	case artifactstate.OCILayoutDir:
		return a.LayoutDir
	case artifactstate.OCIManifestDigest:
		return a.ManifestDigest
	case artifactstate.OCIManifestMediaType:
		return a.MediaType
	case artifactstate.OCIManifestSize:
		return a.ManifestSize
	case artifactstate.OCITags:
		return a.Tags
	case artifactstate.OCIPushedReference:
		return a.PushedRef
	case artifactstate.BaseDigest:
		return a.BaseDigest
	}
	if v, ok := a.StateData[name]; ok {
		return v
	}
	return nil
}

// region is where the image lives: the registry repository when pushed, else the
// layout directory.
func (a *Artifact) region() string {
	if a.PushedRef != "" {
		return strings.SplitN(a.PushedRef, "@", 2)[0]
	}
	return a.LayoutDir
}

// Destroy removes the layout only if this build created it; an existing layout may
// hold other images and is left alone.
func (a *Artifact) Destroy() error {
	if !a.CreatedLayout {
		return nil
	}
	return os.RemoveAll(a.LayoutDir)
}
