package sign

import (
	"fmt"
	"strings"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/fixity-dev/packer-plugin-fixity/internal/artifactstate"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// Artifact wraps the signed artifact: Id, Files and State are the input's, plus the
// bundle path and signed subjects, so fixity-release (or any later post-processor)
// sees both the image and its signature.
type Artifact struct {
	Inner       packersdk.Artifact
	BundlePath  string
	BundlePaths []string
	Subjects    []string
	Signer      signing.Signer
}

// BuilderId forwards the input's builder id, so later components treat the image as
// what it is.
func (a *Artifact) BuilderId() string { return a.Inner.BuilderId() }

// Files forwards the input's files.
func (a *Artifact) Files() []string { return a.Inner.Files() }

// Id forwards the input's id (the image hash for fixity-oci).
func (a *Artifact) Id() string { return a.Inner.Id() }

func (a *Artifact) String() string {
	return fmt.Sprintf("%s\nsigned: %s (subjects %s)", a.Inner.String(), strings.Join(a.BundlePaths, ", "), strings.Join(a.Subjects, ", "))
}

// State adds the fixity.sign.* keys to the input's state.
func (a *Artifact) State(name string) interface{} {
	switch name {
	case artifactstate.SignBundlePath:
		return a.BundlePath
	case artifactstate.SignSubjects:
		return append([]string(nil), a.Subjects...)
	}
	return a.Inner.State(name)
}

// Destroy removes nothing: the image belongs to the builder's artifact, and the
// bundle is the record that it was signed.
func (a *Artifact) Destroy() error { return nil }
