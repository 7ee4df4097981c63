//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ociimage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestOCIImageInterop writes images with internal/ociimage (scratch, then on top of
// that layout as a base) for every compression and has the independent readers accept
// them: skopeo (Debian) inspects the layout, umoci (>= 0.5, reads zstd) unpacks it and
// the unpacked tree holds exactly the staged files with their modes.
func TestOCIImageInterop(t *testing.T) {
	skopeo := tool(t, "skopeo")
	umoci := tool(t, "umoci")
	ctx := context.Background()
	created := time.Unix(1700000000, 0)

	stage := t.TempDir()
	files := map[string]os.FileMode{
		"etc/app/config.toml": 0o644,
		"etc/app/secret":      0o600,
		"usr/local/bin/app":   0o755,
	}
	for name, mode := range files {
		p := filepath.Join(stage, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("content of "+name+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../local/bin/app", filepath.Join(stage, "usr/local/app-link")); err != nil {
		t.Fatal(err)
	}
	top := t.TempDir()
	if err := os.WriteFile(filepath.Join(top, "VERSION"), []byte("2\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []ociimage.Compression{ociimage.Gzip, ociimage.Zstd, ociimage.None} {
		t.Run(string(c), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "layout")
			spec := ociimage.ImageSpec{
				RootDir: stage, Compression: c, Created: created,
				Platform:    ocispec.Platform{OS: "linux", Architecture: "amd64"},
				Config:      ocispec.ImageConfig{Entrypoint: []string{"/usr/local/bin/app"}, Env: []string{"APP=1"}},
				Annotations: map[string]string{ocispec.AnnotationVersion: "1.0.0"},
				Tags:        []string{"v1"},
			}
			res, err := ociimage.WriteImage(ctx, out, spec)
			if err != nil {
				t.Fatal(err)
			}
			// a second image on top of the first, in the same layout
			base, err := ociimage.LoadBase(ctx, out+":v1")
			if err != nil {
				t.Fatal(err)
			}
			spec.Base, spec.RootDir, spec.Tags = base, top, []string{"v2"}
			res2, err := ociimage.WriteImage(ctx, out, spec)
			if err != nil {
				t.Fatal(err)
			}

			for tag, want := range map[string]string{"v1": res.Manifest.Digest.String(), "v2": res2.Manifest.Digest.String()} {
				r := runCmd(t, "", nil, 2*time.Minute, skopeo, "inspect", "oci:"+out+":"+tag)
				if r.Code != 0 {
					t.Fatalf("skopeo inspect %s: %s", tag, r.Output())
				}
				var info struct {
					Digest       string
					Architecture string
					Os           string
					Layers       []string
					Env          []string
				}
				if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil {
					t.Fatalf("skopeo output: %v\n%s", err, r.Stdout)
				}
				if info.Digest != want || info.Os != "linux" || info.Architecture != "amd64" {
					t.Fatalf("skopeo sees %s %s/%s, want %s", info.Digest, info.Os, info.Architecture, want)
				}
			}

			bundle := filepath.Join(t.TempDir(), "bundle")
			r := runCmd(t, "", nil, 2*time.Minute, umoci, "unpack", "--rootless", "--image", out+":v2", bundle)
			if r.Code != 0 {
				t.Fatalf("umoci unpack: %s", r.Output())
			}
			rootfs := filepath.Join(bundle, "rootfs")
			got := map[string]string{}
			err = filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
				if err != nil || p == rootfs {
					return err
				}
				rel, _ := filepath.Rel(rootfs, p)
				info, err := d.Info()
				if err != nil {
					return err
				}
				got[rel] = info.Mode().String()
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"etc": "drwxr-xr-x", "etc/app": "drwxr-xr-x", "usr": "drwxr-xr-x", "usr/local": "drwxr-xr-x", "usr/local/bin": "drwxr-xr-x",
				"etc/app/config.toml": "-rw-r--r--", "etc/app/secret": "-rw-------", "usr/local/bin/app": "-rwxr-xr-x",
				"usr/local/app-link": "Lrwxrwxrwx", "VERSION": "-rw-r--r--",
			}
			if !sameMap(got, want) {
				t.Fatalf("unpacked tree\n got %v\nwant %v", sorted(got), sorted(want))
			}
			if target, _ := os.Readlink(filepath.Join(rootfs, "usr/local/app-link")); target != "../local/bin/app" {
				t.Fatalf("symlink target %q", target)
			}
			if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/app/secret")); string(b) != "content of etc/app/secret\n" {
				t.Fatalf("content %q", b)
			}
			cfg, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
			if !strings.Contains(string(cfg), "/usr/local/bin/app") {
				t.Fatalf("runtime config lacks the entrypoint: %s", cfg)
			}
		})
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func sorted(m map[string]string) []string {
	var s []string
	for k, v := range m {
		s = append(s, v+" "+k)
	}
	sort.Strings(s)
	return s
}
