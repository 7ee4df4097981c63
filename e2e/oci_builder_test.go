//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// ociTemplate is a fixity-oci build with the stock file provisioner and the stock
// manifest post-processor (which records the artifact id = image digest).
func ociTemplate(source, provisioners string) string {
	return requiredPlugins + `
source "fixity-oci" "img" {
` + source + `
}

build {
  sources = ["source.fixity-oci.img"]
` + provisioners + `
  post-processor "manifest" {
    output = "manifest.json"
  }
}
`
}

// builtDigest reads the image digest from the packer manifest post-processor output.
func builtDigest(t *testing.T, dir string) string {
	t.Helper()
	var m struct {
		Builds []struct {
			ArtifactID string `json:"artifact_id"`
		} `json:"builds"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.Builds) == 0 {
		t.Fatalf("manifest.json: %v %s", err, b)
	}
	d := m.Builds[len(m.Builds)-1].ArtifactID
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(d) {
		t.Fatalf("artifact id %q is not a sha256 digest", d)
	}
	return d
}

// writeFiles lays out provisioner input files with given modes and an mtime.
func writeFiles(t *testing.T, dir string, files map[string]fs.FileMode, mtime time.Time) {
	t.Helper()
	for name, mode := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("content of "+name+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

const provisionFiles = `
  provisioner "file" {
    source      = "in/hello.txt"
    destination = "/srv/hello.txt"
  }
  provisioner "file" {
    source      = "in/tool.sh"
    destination = "/usr/local/bin/tool.sh"
  }
`

var inputFiles = map[string]fs.FileMode{"in/hello.txt": 0o644, "in/tool.sh": 0o755}

// unpackedTree lists regular files of an unpacked rootfs with their modes.
func unpackedTree(t *testing.T, rootfs string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(rootfs, p)
			out["/"+filepath.ToSlash(rel)] = info.Mode().Perm()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func umociUnpack(t *testing.T, layout, tag string) string {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "bundle")
	r := runCmd(t, "", nil, 2*time.Minute, tool(t, "umoci"), "unpack", "--rootless", "--image", layout+":"+tag, bundle)
	if r.Code != 0 {
		t.Fatalf("umoci unpack %s:%s: %s", layout, tag, r.Output())
	}
	return filepath.Join(bundle, "rootfs")
}

func TestAccOCIScratchWithFileProvisionerIsReadByRealClients(t *testing.T) {
	for _, comp := range []string{"gzip", "zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, inputFiles, time.Now())
			tpl := ociTemplate(fmt.Sprintf(`
  base              = "scratch"
  output_dir        = "out"
  image_name        = "e2e"
  version           = "1.0.0"
  compression       = %q
  source_date_epoch = "1700000000"
  entrypoint        = ["/usr/local/bin/tool.sh"]
`, comp), provisionFiles)
			r := packerBuild(t, dir, tpl)
			if r.Code != 0 {
				t.Fatalf("packer build failed: %s", r.Output())
			}
			digest := builtDigest(t, dir)
			layout := filepath.Join(dir, "out")

			ins := runCmd(t, "", nil, time.Minute, tool(t, "skopeo"), "inspect", "--raw", "oci:"+layout+":1.0.0")
			if ins.Code != 0 {
				t.Fatalf("skopeo inspect: %s", ins.Output())
			}
			var manifest struct {
				Annotations map[string]string `json:"annotations"`
				Layers      []struct {
					MediaType string `json:"mediaType"`
				} `json:"layers"`
			}
			if err := json.Unmarshal([]byte(ins.Stdout), &manifest); err != nil {
				t.Fatalf("skopeo manifest: %v", err)
			}
			if manifest.Annotations["org.opencontainers.image.version"] != "1.0.0" ||
				manifest.Annotations["org.opencontainers.image.created"] != "2023-11-14T22:13:20Z" {
				t.Fatalf("annotations: %v", manifest.Annotations)
			}
			if len(manifest.Layers) != 1 {
				t.Fatalf("layers: %+v", manifest.Layers)
			}
			cfg := runCmd(t, "", nil, time.Minute, tool(t, "skopeo"), "inspect", "--config", "oci:"+layout+":1.0.0")
			if cfg.Code != 0 || !strings.Contains(cfg.Stdout, "tool.sh") {
				t.Fatalf("skopeo config: %s", cfg.Output())
			}
			// The digest skopeo computes from the bytes is the artifact id packer reported.
			dg := runCmd(t, "", nil, time.Minute, tool(t, "skopeo"), "inspect", "--format", "{{.Digest}}", "oci:"+layout+":1.0.0")
			if strings.TrimSpace(dg.Stdout) != digest {
				t.Fatalf("skopeo digest %q, packer artifact %q", dg.Stdout, digest)
			}

			got := unpackedTree(t, umociUnpack(t, layout, "1.0.0"))
			want := map[string]fs.FileMode{"/srv/hello.txt": 0o644, "/usr/local/bin/tool.sh": 0o755}
			if fmt.Sprint(modeList(got)) != fmt.Sprint(modeList(want)) {
				t.Fatalf("unpacked files %v, want exactly %v", got, want)
			}
		})
	}
}

func modeList(m map[string]fs.FileMode) []string {
	var s []string
	for k, v := range m {
		s = append(s, fmt.Sprintf("%s:%o", k, v))
	}
	sort.Strings(s)
	return s
}

func TestAccOCIReproducibleAcrossDirsTimesAndCores(t *testing.T) {
	tpl := ociTemplate(`
  base              = "scratch"
  output_dir        = "out"
  version           = "1.0.0"
  image_name        = "repro"
  compression       = "zstd"
  source_date_epoch = "1700000000"
`, provisionFiles)
	var digests []string
	// The second "machine" has one core, another time zone and a strict umask.
	for i, env := range [][]string{{"GOMAXPROCS=2"}, {"GOMAXPROCS=1", "TZ=Asia/Tokyo", "FIXITY_E2E_UMASK=027"}} {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("checkout-%d", i), "deeper")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// Different file times on each "day"; the image must not care.
		writeFiles(t, dir, inputFiles, time.Now().Add(time.Duration(-i*49)*time.Hour))
		if err := os.WriteFile(filepath.Join(dir, "build.pkr.hcl"), []byte(tpl), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runCmd(t, dir, append(env, "PACKER_NO_COLOR=1", "CHECKPOINT_DISABLE=1"), 10*time.Minute,
			"sh", "-c", `umask "${FIXITY_E2E_UMASK:-022}" && exec "$0" build -color=false .`, tool(t, "packer"))
		if r.Code != 0 {
			t.Fatalf("build %d: %s", i, r.Output())
		}
		digests = append(digests, builtDigest(t, dir))
	}
	if digests[0] != digests[1] {
		t.Fatalf("same template, different digests: %v", digests)
	}
}

func TestAccOCIBuildOnBaseLayout(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, inputFiles, time.Now())
	baseTpl := ociTemplate(`
  base              = "scratch"
  output_dir        = "base"
  version           = "base"
  source_date_epoch = "1700000000"
  env               = { FROM_BASE = "1" }
`, `
  provisioner "file" {
    source      = "in/hello.txt"
    destination = "/srv/hello.txt"
  }
`)
	if r := packerBuild(t, dir, baseTpl); r.Code != 0 {
		t.Fatalf("base build: %s", r.Output())
	}
	baseDigest := builtDigest(t, dir)
	os.Remove(filepath.Join(dir, "manifest.json"))

	childTpl := ociTemplate(`
  base              = "base:base"
  output_dir        = "child"
  version           = "child"
  source_date_epoch = "1700000000"
  env               = { FROM_CHILD = "1" }
`, `
  provisioner "file" {
    source      = "in/tool.sh"
    destination = "/usr/local/bin/tool.sh"
  }
`)
	r := packerBuild(t, dir, childTpl)
	if r.Code != 0 {
		t.Fatalf("child build: %s", r.Output())
	}
	if !strings.Contains(r.Output(), baseDigest) {
		t.Fatalf("build output does not report the verified base digest %s", baseDigest)
	}
	ins := runCmd(t, "", nil, time.Minute, tool(t, "skopeo"), "inspect", "oci:"+filepath.Join(dir, "child")+":child")
	var info struct {
		Layers []string          `json:"Layers"`
		Env    []string          `json:"Env"`
		Labels map[string]string `json:"Labels"`
	}
	if err := json.Unmarshal([]byte(ins.Stdout), &info); err != nil {
		t.Fatalf("skopeo inspect: %v %s", err, ins.Output())
	}
	if len(info.Layers) != 2 || strings.Join(info.Env, ",") != "FROM_BASE=1,FROM_CHILD=1" {
		t.Fatalf("child image: layers %v env %v", info.Layers, info.Env)
	}
	raw := runCmd(t, "", nil, time.Minute, tool(t, "skopeo"), "inspect", "--raw", "oci:"+filepath.Join(dir, "child")+":child")
	if !strings.Contains(raw.Stdout, `"org.opencontainers.image.base.digest":"`+baseDigest+`"`) {
		t.Fatalf("child manifest does not record its base: %s", raw.Stdout)
	}
	got := unpackedTree(t, umociUnpack(t, filepath.Join(dir, "child"), "child"))
	if len(got) != 2 || got["/srv/hello.txt"] != 0o644 || got["/usr/local/bin/tool.sh"] != 0o755 {
		t.Fatalf("unpacked child: %v", got)
	}
}

func TestAccOCIFailingProvisionerLeavesNoLayout(t *testing.T) {
	dir := t.TempDir()
	tpl := ociTemplate(`
  base       = "scratch"
  output_dir = "out"
`, `
  provisioner "file" {
    source      = "in/does-not-exist"
    destination = "/x"
  }
`)
	r := packerBuild(t, dir, tpl)
	if r.Code == 0 {
		t.Fatal("build with a failing provisioner succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		t.Fatalf("output_dir exists after a failed build: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "out") || strings.Contains(e.Name(), "tmp") {
			t.Fatalf("half-written output left behind: %s", e.Name())
		}
	}
}

func TestAccOCIBadInputNamesTheField(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, inputFiles, time.Now())
	// A good base layout to corrupt.
	if r := packerBuild(t, dir, ociTemplate(`
  base       = "scratch"
  output_dir = "good"
  version    = "v1"
`, provisionFiles)); r.Code != 0 {
		t.Fatalf("base build: %s", r.Output())
	}
	corrupt := filepath.Join(dir, "corrupt")
	if r := runCmd(t, "", nil, time.Minute, "cp", "-r", filepath.Join(dir, "good"), corrupt); r.Code != 0 {
		t.Fatal(r.Output())
	}
	var layer string
	blobs, _ := filepath.Glob(filepath.Join(corrupt, "blobs", "sha256", "*"))
	for _, b := range blobs {
		if st, _ := os.Stat(b); st.Size() > 200 && !strings.Contains(mustRead(t, b), "schemaVersion") {
			layer = b
		}
	}
	if layer == "" {
		t.Fatal("no layer blob found to corrupt")
	}
	data := []byte(mustRead(t, layer))
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(layer, data, 0o644); err != nil {
		t.Fatal(err)
	}
	notLayout := filepath.Join(dir, "notlayout")
	os.MkdirAll(notLayout, 0o755)
	os.WriteFile(filepath.Join(notLayout, "keep.txt"), []byte("mine"), 0o644)

	outside := t.TempDir()
	cases := []struct {
		name, source, provisioners string
		want                       []string
	}{
		{"missing base", `base = "no-such-dir"` + "\n output_dir = \"o1\"", "", []string{"base", "no-such-dir"}},
		{"corrupt base blob", `base = "corrupt:v1"` + "\n output_dir = \"o2\"", "", []string{"base", filepath.Base(layer)}},
		{"output not a layout", `base = "scratch"` + "\n output_dir = \"notlayout\"", "", []string{"output_dir", "not an OCI image layout"}},
		{"unknown compression", `base = "scratch"` + "\n output_dir = \"o3\"\n compression = \"brotli\"", "", []string{"compression", "brotli"}},
		{"dotdot escape", `base = "scratch"` + "\n output_dir = \"o4\"", `
  provisioner "file" {
    source      = "in/hello.txt"
    destination = "/../../` + filepath.Base(outside) + `/evil"
  }`, []string{"..", "image root"}},
		{"absolute symlink escape", `base = "scratch"` + "\n output_dir = \"o5\"", `
  provisioner "file" {
    source      = "linkdir/"
    destination = "/"
  }
  provisioner "file" {
    source      = "in/hello.txt"
    destination = "/escape/evil"
  }`, []string{"/escape/evil", "outside the image root"}},
	}
	if err := os.MkdirAll(filepath.Join(dir, "linkdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "linkdir", "escape")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(filepath.Join(dir, "manifest.json"))
			r := packerBuild(t, dir, ociTemplate(tc.source, tc.provisioners))
			if r.Code == 0 {
				t.Fatal("build succeeded, want a clear error")
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Output(), w) {
					t.Errorf("output does not mention %q", w)
				}
			}
		})
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("a provisioner wrote outside the staging root: %v", entries)
	}
	if mustRead(t, filepath.Join(notLayout, "keep.txt")) != "mine" {
		t.Fatal("a non-layout output_dir was touched")
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A layer bigger than one zstd frame (8 MiB) is several concatenated frames: umoci
// (and every zstd reader) must unpack it byte for byte.
func TestAccOCIMultiFrameZstdLayerUnpacks(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 20<<20+4321)
	for i := range big {
		big[i] = byte((i * 7919) >> 9)
	}
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in", "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	r := packerBuild(t, dir, ociTemplate(`
  base        = "scratch"
  output_dir  = "out"
  version     = "big"
  compression = "zstd"
`, `
  provisioner "file" {
    source      = "in/big.bin"
    destination = "/data/big.bin"
  }
`))
	if r.Code != 0 {
		t.Fatalf("build: %s", r.Output())
	}
	got, err := os.ReadFile(filepath.Join(umociUnpack(t, filepath.Join(dir, "out"), "big"), "data", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(big) || string(got) != string(big) {
		t.Fatalf("unpacked %d bytes, want the %d bytes staged", len(got), len(big))
	}
}

// TestAccOCIParallelSourcesShareOneNewLayout: one template, two fixity-oci sources (one
// per platform) writing to the same new output_dir, run in parallel by packer. Both
// images must end up in the layout under their own tags.
func TestAccOCIParallelSourcesShareOneNewLayout(t *testing.T) {
	requireAcc(t)
	dir := t.TempDir()
	writeFiles(t, dir, inputFiles, time.Now())
	tpl := requiredPlugins + `
source "fixity-oci" "amd64" {
  base              = "scratch"
  output_dir        = "out"
  platform          = "linux/amd64"
  tags              = ["amd64"]
  source_date_epoch = "1700000000"
}

source "fixity-oci" "arm64" {
  base              = "scratch"
  output_dir        = "out"
  platform          = "linux/arm64"
  tags              = ["arm64"]
  source_date_epoch = "1700000000"
}

build {
  sources = ["source.fixity-oci.amd64", "source.fixity-oci.arm64"]
` + provisionFiles + `
}
`
	if r := packerBuild(t, dir, tpl); r.Code != 0 {
		t.Fatalf("packer build: %s", r.Output())
	}
	for _, arch := range []string{"amd64", "arm64"} {
		ins := runCmd(t, "", nil, time.Minute, tool(t, "skopeo"), "inspect", "--override-arch", arch, "oci:"+filepath.Join(dir, "out")+":"+arch)
		var info struct {
			Architecture string `json:"Architecture"`
		}
		if err := json.Unmarshal([]byte(ins.Stdout), &info); err != nil || info.Architecture != arch {
			t.Fatalf("skopeo inspect %s: %v %s", arch, err, ins.Output())
		}
		got := unpackedTree(t, umociUnpack(t, filepath.Join(dir, "out"), arch))
		if len(got) != 2 || got["/usr/local/bin/tool.sh"] != 0o755 {
			t.Fatalf("unpacked %s: %v", arch, got)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".out.tmp-*")); len(leftovers) != 0 {
		t.Fatalf("temp dirs left beside output_dir: %v", leftovers)
	}
}
