package sign

import (
	"fmt"
	"strings"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	registryimage "github.com/hashicorp/packer-plugin-sdk/packer/registry/image"

	"github.com/fixity-dev/packer-plugin-fixity/internal/artifactstate"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// forwardedState are the input artifact's state keys the wrapper carries on.
var forwardedState = []string{
	artifactstate.OCILayoutDir,
	artifactstate.OCIManifestDigest,
	artifactstate.OCIManifestMediaType,
	artifactstate.OCIManifestSize,
	artifactstate.OCITags,
	artifactstate.OCIPushedReference,
	artifactstate.BaseDigest,
	artifactstate.PolicyDigest,
	artifactstate.GeneratedData,
	registryimage.ArtifactStateURI,
}

// Artifact wraps the signed artifact: Id, Files and State are the input's, plus the
// bundle path and signed subjects, so fixity-release (or any later post-processor)
// sees both the image and its signature.
//
// The input is copied, not referenced: when a post-processor returns a new artifact,
// Packer's plugin RPC closes the input artifact's connection, and a wrapper that
// read it lazily would hand empty values to the next post-processor.
type Artifact struct {
	builderID   string
	id          string
	files       []string
	str         string
	state       map[string]interface{}
	BundlePath  string
	BundlePaths []string
	Subjects    []string
	Signer      signing.Signer
}

// newArtifact snapshots inner while its connection is still open.
func newArtifact(inner packersdk.Artifact, bundle string, bundles, subjects []string, signer signing.Signer) *Artifact {
	a := &Artifact{
		builderID:   inner.BuilderId(),
		id:          inner.Id(),
		files:       append([]string(nil), inner.Files()...),
		str:         inner.String(),
		state:       map[string]interface{}{},
		BundlePath:  bundle,
		BundlePaths: bundles,
		Subjects:    subjects,
		Signer:      signer,
	}
	for _, k := range forwardedState {
		if v := inner.State(k); v != nil {
			a.state[k] = artifactstate.Normalize(v)
		}
	}
	return a
}

// BuilderId forwards the input's builder id, so later components treat the image as
// what it is.
func (a *Artifact) BuilderId() string { return a.builderID }

// Files forwards the input's files.
func (a *Artifact) Files() []string { return a.files }

// Id forwards the input's id (the image hash for fixity-oci).
func (a *Artifact) Id() string { return a.id }

func (a *Artifact) String() string {
	return fmt.Sprintf("%s\nsigned: %s (subjects %s)", a.str, strings.Join(a.BundlePaths, ", "), strings.Join(a.Subjects, ", "))
}

// State adds the fixity.sign.* keys to the input's state.
func (a *Artifact) State(name string) interface{} {
	switch name {
	case artifactstate.SignBundlePath:
		return a.BundlePath
	case artifactstate.SignSubjects:
		return append([]string(nil), a.Subjects...)
	}
	return a.state[name]
}

// Destroy removes nothing: the image belongs to the builder's artifact, and the
// bundle is the record that it was signed.
func (a *Artifact) Destroy() error { return nil }
