package sign

import (
	"reflect"
	"strings"
	"testing"

	"github.com/fixity-dev/packer-plugin-fixity/internal/artifactstate"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// closedArtifact behaves like an input artifact whose RPC connection Packer closed
// after the post-processor returned: every call yields the zero value.
type closedArtifact struct {
	*fakeArtifact
	closed bool
}

func (c *closedArtifact) Id() string {
	if c.closed {
		return ""
	}
	return c.fakeArtifact.Id()
}

func (c *closedArtifact) String() string {
	if c.closed {
		return ""
	}
	return c.fakeArtifact.String()
}

func (c *closedArtifact) State(k string) interface{} {
	if c.closed {
		return nil
	}
	return c.fakeArtifact.State(k)
}

func TestWrapperKeepsInputAfterItsConnectionCloses(t *testing.T) {
	in := &closedArtifact{fakeArtifact: newFake("sha256:aa", "f").
		with(artifactstate.OCIManifestMediaType, "application/vnd.oci.image.manifest.v1+json").
		with(artifactstate.OCIManifestSize, float64(512)).
		with(artifactstate.GeneratedData, map[interface{}]interface{}{"ImageDigest": "sha256:aa"})}
	a := newArtifact(in, "b.sigstore.json", []string{"b.sigstore.json"}, []string{"sha256:aa"}, signing.Signer{})
	in.closed = true

	if a.Id() != "sha256:aa" || !strings.HasPrefix(a.String(), "fake sha256:aa") {
		t.Fatalf("id %q string %q", a.Id(), a.String())
	}
	if a.State(artifactstate.OCIManifestMediaType) != "application/vnd.oci.image.manifest.v1+json" || a.State(artifactstate.OCIManifestSize) != float64(512) {
		t.Fatalf("OCI state lost: %v %v", a.State(artifactstate.OCIManifestMediaType), a.State(artifactstate.OCIManifestSize))
	}
	if gd := a.State(artifactstate.GeneratedData); !reflect.DeepEqual(gd, map[string]interface{}{"ImageDigest": "sha256:aa"}) {
		t.Fatalf("generated_data = %#v", gd)
	}
	if a.State(artifactstate.SignBundlePath) != "b.sigstore.json" {
		t.Fatal("bundle path missing")
	}
}
