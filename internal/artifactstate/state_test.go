package artifactstate

import (
	"reflect"
	"testing"
)

func TestNormalizeRPCShapes(t *testing.T) {
	in := map[interface{}]interface{}{
		"a": map[interface{}]interface{}{"b": []interface{}{map[interface{}]interface{}{1: "x"}}},
	}
	want := map[string]interface{}{
		"a": map[string]interface{}{"b": []interface{}{map[string]interface{}{"1": "x"}}},
	}
	if got := Normalize(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("Normalize = %#v, want %#v", got, want)
	}
}

func TestStringsAndMaps(t *testing.T) {
	if got := Strings([]interface{}{"a", 3, "b"}); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("Strings = %v", got)
	}
	m := StringMap(map[interface{}]interface{}{"ImageDigest": "sha256:ab", "N": 2})
	if m["ImageDigest"] != "sha256:ab" || m["N"] != "2" || !reflect.DeepEqual(Keys(m), []string{"ImageDigest", "N"}) {
		t.Fatalf("StringMap = %v", m)
	}
	if _, ok := String(""); ok {
		t.Fatal("empty string must read as absent")
	}
}

type stateMap map[string]interface{}

func (m stateMap) State(k string) interface{} { return m[k] }

func TestOCIManifestAcrossRPCShapes(t *testing.T) {
	for _, size := range []interface{}{int64(512), float64(512), 512, uint64(512)} {
		d, ok := OCIManifest(stateMap{OCIManifestDigest: "sha256:ab", OCIManifestMediaType: "application/vnd.oci.image.manifest.v1+json", OCIManifestSize: size})
		if !ok || d.Digest != "sha256:ab" || d.Size != 512 || d.MediaType != "application/vnd.oci.image.manifest.v1+json" {
			t.Fatalf("size %T: %+v %v", size, d, ok)
		}
	}
	if _, ok := OCIManifest(stateMap{}); ok {
		t.Fatal("an artifact without a manifest digest is not an OCI image")
	}
	if Int64("12") != 0 {
		t.Fatal("a string is not a number")
	}
}
