package ociimage

import (
	"archive/tar"
	"io/fs"
	"maps"
	"testing"
)

func TestDirModesFollowLayers(t *testing.T) {
	m := DirModes{}
	for _, e := range []struct {
		name string
		typ  byte
		mode int64
	}{
		{"tmp", tar.TypeDir, 0o1777},
		{"opt", tar.TypeDir, 0o755},
		{"opt/a", tar.TypeDir, 0o750},
		{"opt/a/b", tar.TypeDir, 0o700},
		{"srv", tar.TypeDir, 0o2775},
		{"var", tar.TypeDir, 0o755},
		{"var/lib", tar.TypeDir, 0o755},
		{"opt/.wh.a", tar.TypeReg, 0},        // removes opt/a and below
		{"var/.wh..wh..opq", tar.TypeReg, 0}, // hides var's lower contents
		{"srv", tar.TypeSymlink, 0},          // a link replaces the directory
		{"etc/passwd", tar.TypeReg, 0o644},   // files are not directories
	} {
		m.apply(e.name, &tar.Header{Typeflag: e.typ, Mode: e.mode})
	}
	want := DirModes{"tmp": 0o777 | fs.ModeSticky, "opt": 0o755, "var": 0o755}
	if !maps.Equal(m, want) {
		t.Fatalf("got %v, want %v", m, want)
	}
}
