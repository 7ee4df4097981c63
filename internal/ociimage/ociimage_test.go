package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var (
	epoch    = time.Unix(1700000000, 0)
	platform = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	allComps = []Compression{Gzip, Zstd, None}
)

// longName exceeds the 100-byte USTAR name field, forcing a PAX path record.
var longName = "deep/" + strings.Repeat("d", 60) + "/" + strings.Repeat("f", 60) + ".txt"

// makeTree stages the same logical tree into dir; variant changes everything a
// reproducible build must ignore: file mtimes, the order files are created in, owners
// (when running as root) and the directory the tree lives in.
func makeTree(t testing.TB, dir string, variant int) {
	t.Helper()
	type file struct {
		name string
		mode os.FileMode
		data []byte
	}
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 3<<20+17) // > smallFileMax: the streamed path
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	files := []file{
		{"etc/app.conf", 0o644, []byte("listen = 8080\n")},
		{"etc/secret", 0o600, []byte("s3cr3t\n")},
		{"usr/bin/tool", 0o755, []byte("#!/bin/sh\necho hi\n")},
		{"usr/share/big.bin", 0o644, big},
		{"empty", 0o644, nil},
		{"a.b", 0o644, []byte("dot\n")},
		{"a/b", 0o644, []byte("slash\n")},
		{longName, 0o640, []byte("long\n")},
		{"setuid", 0o755 | os.ModeSetuid, []byte("x")},
	}
	if variant%2 == 1 {
		slices.Reverse(files)
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 && variant > 0 { // before chmod: chown clears setuid
			_ = os.Lchown(p, 1000+variant, 2000+variant)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.MkdirAll(filepath.Join(dir, "var/empty"), 0o700))
	must(t, os.Chmod(filepath.Join(dir, "var/empty"), 0o700))
	must(t, os.Symlink("../usr/bin/tool", filepath.Join(dir, "etc/tool-link")))
	must(t, os.Symlink("/does/not/exist", filepath.Join(dir, "dangling")))
	must(t, os.Link(filepath.Join(dir, "usr/bin/tool"), filepath.Join(dir, "usr/bin/tool-hard")))
	mt := time.Unix(int64(1000000+variant*99991), 0)
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		_ = os.Chtimes(p, mt, mt)
		if fi, err := os.Lstat(p); err == nil && !fi.Mode().IsRegular() && os.Geteuid() == 0 && variant > 0 {
			_ = os.Lchown(p, 1000+variant, 2000+variant)
		}
		return nil
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func buildImage(t testing.TB, out string, spec ImageSpec) *Result {
	t.Helper()
	res, err := WriteImage(context.Background(), out, spec)
	if err != nil {
		t.Fatalf("WriteImage: %v", err)
	}
	return res
}

func specFor(root string, c Compression) ImageSpec {
	return ImageSpec{
		RootDir: root, Compression: c, Created: epoch, Platform: platform,
		Config:      ocispec.ImageConfig{Entrypoint: []string{"/usr/bin/tool"}, Env: []string{"A=1"}},
		Annotations: map[string]string{ocispec.AnnotationVersion: "1.0.0"},
		Tags:        []string{"v1"},
	}
}

func TestReproducibleAcrossDirsTimesOwnersAndCores(t *testing.T) {
	for _, c := range allComps {
		t.Run(string(c), func(t *testing.T) {
			var digests []digest.Digest
			for variant := range 3 {
				root := filepath.Join(t.TempDir(), "stage-"+string(rune('a'+variant)))
				must(t, os.MkdirAll(root, 0o755))
				makeTree(t, root, variant)
				if variant == 2 {
					prev := runtime.GOMAXPROCS(1)
					t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
				}
				res := buildImage(t, filepath.Join(t.TempDir(), "out"), specFor(root, c))
				if variant == 2 {
					runtime.GOMAXPROCS(2)
				}
				digests = append(digests, res.Manifest.Digest)
			}
			if digests[0] != digests[1] || digests[0] != digests[2] {
				t.Fatalf("manifest digests differ between builds of the same tree: %v", digests)
			}
		})
	}
}

func TestCompressedLayersDecodeToTheDiffID(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, 0)
	var diffIDs []digest.Digest
	for _, c := range allComps {
		var buf bytes.Buffer
		lr, err := WriteLayer(context.Background(), root, &buf, LayerOptions{Compression: c, Created: epoch})
		must(t, err)
		if lr.Size != int64(buf.Len()) || digest.FromBytes(buf.Bytes()) != lr.Digest {
			t.Fatalf("%s: reported size/digest %d %s, wrote %d %s", c, lr.Size, lr.Digest, buf.Len(), digest.FromBytes(buf.Bytes()))
		}
		raw := decompress(t, c, buf.Bytes())
		if digest.FromBytes(raw) != lr.DiffID {
			t.Fatalf("%s: diffID %s, decompressed tar hashes to %s", c, lr.DiffID, digest.FromBytes(raw))
		}
		if lr.MediaType != c.MediaType() {
			t.Fatalf("%s: media type %s", c, lr.MediaType)
		}
		diffIDs = append(diffIDs, lr.DiffID)
	}
	if diffIDs[0] != diffIDs[1] || diffIDs[1] != diffIDs[2] {
		t.Fatalf("the tar differs between codecs: %v", diffIDs)
	}
}

func decompress(t testing.TB, c Compression, b []byte) []byte {
	t.Helper()
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		must(t, err)
		out, err := io.ReadAll(zr)
		must(t, err)
		if zr.ModTime.Unix() != 0 || zr.Name != "" || zr.OS != 255 {
			t.Fatalf("gzip header leaks: mtime %v name %q os %d", zr.ModTime, zr.Name, zr.OS)
		}
		return out
	case Zstd:
		zr, err := zstd.NewReader(bytes.NewReader(b))
		must(t, err)
		defer zr.Close()
		out, err := io.ReadAll(zr)
		must(t, err)
		return out
	}
	return b
}

func TestTarHeadersAreFixedAndLeakNothing(t *testing.T) {
	root := filepath.Join(t.TempDir(), "unique-build-path-xyzzy")
	must(t, os.MkdirAll(root, 0o755))
	makeTree(t, root, 1)
	var buf bytes.Buffer
	_, err := WriteLayer(context.Background(), root, &buf, LayerOptions{Compression: None, Created: epoch.Add(750 * time.Millisecond)})
	must(t, err)
	if bytes.Contains(buf.Bytes(), []byte("unique-build-path-xyzzy")) || bytes.Contains(buf.Bytes(), []byte(os.TempDir())) {
		t.Fatal("the layer contains the build path")
	}
	if u, err := user.Current(); err == nil && u.Username != "" && u.Username != "root" && bytes.Contains(buf.Bytes(), []byte(u.Username)) {
		t.Fatalf("the layer contains the user name %q", u.Username)
	}
	tr := tar.NewReader(&buf)
	got := map[string]*tar.Header{}
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d %q:%q, want 0:0 and no names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(epoch) || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: times m=%v a=%v c=%v, want mtime %v only", h.Name, h.ModTime, h.AccessTime, h.ChangeTime, epoch)
		}
		for k := range h.PAXRecords {
			if k != "path" && k != "linkpath" {
				t.Errorf("%s: unexpected PAX record %q", h.Name, k)
			}
		}
		got[h.Name] = h
		names = append(names, h.Name)
	}
	want := []string{"a/", "a/b", "a.b", "dangling", "deep/", "deep/" + strings.Repeat("d", 60) + "/", longName, "empty", "etc/", "etc/app.conf", "etc/secret", "etc/tool-link", "setuid", "usr/", "usr/bin/", "usr/bin/tool", "usr/bin/tool-hard", "usr/share/", "usr/share/big.bin", "var/", "var/empty/"}
	if !slices.Equal(names, want) {
		t.Fatalf("entries\n got %q\nwant %q", names, want)
	}
	modes := map[string]int64{"etc/secret": 0o600, "usr/bin/tool": 0o755, "etc/app.conf": 0o644, "var/empty/": 0o700, "setuid": 0o4755, longName: 0o640, "etc/tool-link": 0o777}
	for n, m := range modes {
		if got[n].Mode != m {
			t.Errorf("%s: mode %o, want %o", n, got[n].Mode, m)
		}
	}
	if h := got["etc/tool-link"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "../usr/bin/tool" {
		t.Errorf("symlink: %c %q", h.Typeflag, h.Linkname)
	}
	if h := got["dangling"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "/does/not/exist" {
		t.Errorf("absolute symlink target not kept verbatim: %q", h.Linkname)
	}
	if h := got["usr/bin/tool-hard"]; h.Typeflag != tar.TypeLink || h.Linkname != "usr/bin/tool" {
		t.Errorf("hard link: %c %q", h.Typeflag, h.Linkname)
	}
	if h := got["usr/share/big.bin"]; h.Size != 3<<20+17 {
		t.Errorf("big file size %d", h.Size)
	}
}

func TestWriteLayerRefusesSpecialFiles(t *testing.T) {
	root := t.TempDir()
	sock := filepath.Join(root, "fifo")
	if err := mkfifo(sock); err != nil {
		t.Skip("mkfifo:", err)
	}
	_, err := WriteLayer(context.Background(), root, io.Discard, LayerOptions{Compression: None, Created: epoch})
	if err == nil || !strings.Contains(err.Error(), "unsupported file type") {
		t.Fatalf("want unsupported file type error, got %v", err)
	}
}

func TestRecordedCompressorVersionsMatchGoMod(t *testing.T) {
	b, err := os.ReadFile("../../go.mod")
	must(t, err)
	for _, mod := range []string{compressModule, pgzipModule} {
		path, version, _ := strings.Cut(mod, "@")
		if !bytes.Contains(b, []byte(path+" "+version+"\n")) {
			t.Errorf("go.mod does not require %s %s: update the constant in compress.go (it is recorded in %s)", path, version, CompressionAnnotation)
		}
	}
}

func TestParseCompression(t *testing.T) {
	for _, ok := range []string{"gzip", "zstd", "none"} {
		if c, err := ParseCompression(ok); err != nil || string(c) != ok {
			t.Fatalf("%s: %v", ok, err)
		}
	}
	_, err := ParseCompression("xz")
	if err == nil || !strings.Contains(err.Error(), "compression") || !strings.Contains(err.Error(), `"zstd"`) {
		t.Fatalf("error must name the field and the allowed values: %v", err)
	}
	root := t.TempDir()
	spec := specFor(root, "lz4")
	if _, err := WriteImage(context.Background(), filepath.Join(t.TempDir(), "o"), spec); err == nil || !strings.Contains(err.Error(), "compression") {
		t.Fatalf("WriteImage with unknown compression: %v", err)
	}
}

func readJSON(t testing.TB, p string, v any) {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	must(t, json.Unmarshal(b, v))
}

func TestLayoutContentsAndConfig(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, 0)
	out := filepath.Join(t.TempDir(), "nested", "out")
	res := buildImage(t, out, specFor(root, Zstd))
	if !res.Created {
		t.Fatal("Created must be true for a new output_dir")
	}
	var idx ocispec.Index
	readJSON(t, filepath.Join(out, "index.json"), &idx)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != res.Manifest.Digest || idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "v1" {
		t.Fatalf("index: %+v", idx)
	}
	var m ocispec.Manifest
	readJSON(t, blobPath(out, res.Manifest.Digest), &m)
	if m.Annotations[CompressionAnnotation] != CompressionSettings(Zstd) || !strings.Contains(m.Annotations[CompressionAnnotation], "level=3") {
		t.Fatalf("compression annotation: %q", m.Annotations[CompressionAnnotation])
	}
	if m.Annotations[ocispec.AnnotationVersion] != "1.0.0" || len(m.Layers) != 1 || m.Layers[0].MediaType != ocispec.MediaTypeImageLayerZstd {
		t.Fatalf("manifest: %+v", m)
	}
	var cfg ocispec.Image
	readJSON(t, blobPath(out, res.Config.Digest), &cfg)
	if cfg.Created == nil || !cfg.Created.Equal(epoch) || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Fatalf("config: %+v", cfg)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != res.DiffID || len(cfg.History) != 1 || !cfg.History[0].Created.Equal(epoch) {
		t.Fatalf("config rootfs/history: %+v %+v", cfg.RootFS, cfg.History)
	}
	for _, f := range res.Files {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("Files lists %s: %v", f, err)
		}
	}
	if len(res.Files) != 5 { // oci-layout, index.json, manifest, config, layer
		t.Fatalf("Files: %v", res.Files)
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	if len(ents) != 1 {
		t.Fatalf("temp directories left beside output_dir: %v", ents)
	}
	d, err := Resolve(out, "v1")
	if err != nil || d.Digest != res.Manifest.Digest {
		t.Fatalf("Resolve tag: %v %v", d, err)
	}
	if d, err := Resolve(out, res.Manifest.Digest.String()); err != nil || d.Digest != res.Manifest.Digest {
		t.Fatalf("Resolve digest: %v %v", d, err)
	}
	if _, err := Resolve(out, "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "v1") {
		t.Fatalf("Resolve unknown tag must name it and list the tags: %v", err)
	}
}

func TestExistingLayoutTagMovesAndOtherTagsStay(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r1 := t.TempDir()
	must(t, os.WriteFile(filepath.Join(r1, "f"), []byte("one"), 0o644))
	s := specFor(r1, Gzip)
	s.Tags = []string{"v1", "latest"}
	first := buildImage(t, out, s)
	r2 := t.TempDir()
	must(t, os.WriteFile(filepath.Join(r2, "f"), []byte("two"), 0o644))
	s = specFor(r2, Gzip)
	s.Tags = []string{"v2", "latest"}
	second := buildImage(t, out, s)
	if second.Created {
		t.Fatal("Created must be false when adding to an existing layout")
	}
	tags := map[string]digest.Digest{}
	var idx ocispec.Index
	readJSON(t, filepath.Join(out, "index.json"), &idx)
	for _, m := range idx.Manifests {
		tags[m.Annotations[ocispec.AnnotationRefName]] = m.Digest
	}
	want := map[string]digest.Digest{"v1": first.Manifest.Digest, "v2": second.Manifest.Digest, "latest": second.Manifest.Digest}
	if len(tags) != 3 || tags["v1"] != want["v1"] || tags["v2"] != want["v2"] || tags["latest"] != want["latest"] || len(idx.Manifests) != 3 {
		t.Fatalf("tags %v, want %v", tags, want)
	}
}

func TestOutputDirNotALayout(t *testing.T) {
	out := t.TempDir()
	must(t, os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644))
	_, err := WriteImage(context.Background(), out, specFor(t.TempDir(), None))
	if err == nil || !strings.Contains(err.Error(), "output_dir") || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Fatalf("want output_dir error, got %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "notes.txt")); string(b) != "mine" {
		t.Fatal("the user's file was touched")
	}
	// an empty directory is fine and becomes a layout
	empty := t.TempDir()
	res := buildImage(t, empty, specFor(t.TempDir(), None))
	if res.Created || !isLayout(empty) {
		t.Fatalf("empty dir: created=%v layout=%v", res.Created, isLayout(empty))
	}
}

func TestBadSpecFields(t *testing.T) {
	s := specFor(t.TempDir(), None)
	s.Platform = ocispec.Platform{}
	if _, err := WriteImage(context.Background(), filepath.Join(t.TempDir(), "o"), s); err == nil || !strings.Contains(err.Error(), "platform") {
		t.Fatalf("want platform error, got %v", err)
	}
	s = specFor(t.TempDir(), None)
	s.Tags = []string{"bad tag"}
	if _, err := WriteImage(context.Background(), filepath.Join(t.TempDir(), "o"), s); err == nil || !strings.Contains(err.Error(), "tags[0]") {
		t.Fatalf("want tags error, got %v", err)
	}
	s = specFor(filepath.Join(t.TempDir(), "missing"), None)
	out := filepath.Join(t.TempDir(), "o")
	if _, err := WriteImage(context.Background(), out, s); err == nil || !strings.Contains(err.Error(), "layer root") {
		t.Fatalf("want layer root error, got %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed build left output_dir behind: %v", err)
	}
}

func TestCancelLeavesNothingHalfWritten(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	if _, err := WriteImage(ctx, out, specFor(root, Zstd)); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("cancelled build left %v", ents)
	}

	// existing layout: index.json and the blob set are unchanged
	first := t.TempDir()
	must(t, os.WriteFile(filepath.Join(first, "f"), []byte("1"), 0o644))
	buildImage(t, out, specFor(first, Zstd))
	before, _ := os.ReadFile(filepath.Join(out, "index.json"))
	blobsBefore, _ := os.ReadDir(filepath.Join(out, "blobs", "sha256"))
	if _, err := WriteImage(ctx, out, specFor(root, Zstd)); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(out, "index.json"))
	blobsAfter, _ := os.ReadDir(filepath.Join(out, "blobs", "sha256"))
	if !bytes.Equal(before, after) || len(blobsBefore) != len(blobsAfter) {
		t.Fatalf("cancelled build changed the layout: index equal=%v blobs %d→%d", bytes.Equal(before, after), len(blobsBefore), len(blobsAfter))
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp") {
			t.Fatalf("temp file left: %s", e.Name())
		}
	}
}

func TestCancelMidLayer(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, 0)
	ctx, cancel := context.WithCancel(context.Background())
	w := &cancelAfter{n: 4096, cancel: cancel}
	_, err := WriteLayer(ctx, root, w, LayerOptions{Compression: None, Created: epoch})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

type cancelAfter struct {
	n      int
	cancel func()
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.n -= len(p)
	if c.n < 0 {
		c.cancel()
	}
	return len(p), nil
}

// --- bases -------------------------------------------------------------------------

func TestBaseLayoutByTagAndDigest(t *testing.T) {
	baseRoot := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(baseRoot, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(baseRoot, "bin", "sh"), []byte("shell"), 0o755))
	baseDir := filepath.Join(t.TempDir(), "base")
	bs := specFor(baseRoot, Gzip)
	bs.Config = ocispec.ImageConfig{Env: []string{"PATH=/bin", "A=0"}, Cmd: []string{"sh"}, Labels: map[string]string{"x": "base"}}
	bres := buildImage(t, baseDir, bs)

	for _, ref := range []string{baseDir + ":v1", baseDir + "@" + bres.Manifest.Digest.String(), baseDir} {
		b, err := LoadBase(context.Background(), ref)
		if err != nil {
			t.Fatalf("LoadBase(%q): %v", ref, err)
		}
		if b.Kind != BaseLayout || b.Digest != bres.Manifest.Digest || len(b.Layers) != 1 || b.Ref != ref {
			t.Fatalf("LoadBase(%q) = %+v", ref, b)
		}
		root := t.TempDir()
		must(t, os.WriteFile(filepath.Join(root, "app"), []byte("app"), 0o755))
		s := specFor(root, Zstd)
		s.Base = b
		s.Config = ocispec.ImageConfig{Env: []string{"A=1", "B=2"}, Labels: map[string]string{"y": "app"}}
		out := filepath.Join(t.TempDir(), "out")
		res := buildImage(t, out, s)
		var m ocispec.Manifest
		readJSON(t, blobPath(out, res.Manifest.Digest), &m)
		if len(m.Layers) != 2 || m.Layers[0].Digest != b.Layers[0].Digest || m.Layers[1].Digest != res.Layer.Digest {
			t.Fatalf("layers: %+v", m.Layers)
		}
		if err := verifyBlob(context.Background(), out, m.Layers[0]); err != nil {
			t.Fatalf("base layer not copied: %v", err)
		}
		var cfg ocispec.Image
		readJSON(t, blobPath(out, res.Config.Digest), &cfg)
		if !slices.Equal(cfg.Config.Env, []string{"PATH=/bin", "A=1", "B=2"}) || !slices.Equal(cfg.Config.Cmd, []string{"sh"}) ||
			cfg.Config.Labels["x"] != "base" || cfg.Config.Labels["y"] != "app" || len(cfg.RootFS.DiffIDs) != 2 || len(cfg.History) != 2 {
			t.Fatalf("merged config: %+v %+v", cfg.Config, cfg.RootFS)
		}
	}
}

func TestMergeConfigEntrypointDropsInheritedCmd(t *testing.T) {
	got := mergeConfig(ocispec.ImageConfig{Entrypoint: []string{"/a"}, Cmd: []string{"x"}, User: "1"}, ocispec.ImageConfig{Entrypoint: []string{"/b"}})
	if !slices.Equal(got.Entrypoint, []string{"/b"}) || got.Cmd != nil || got.User != "1" {
		t.Fatalf("%+v", got)
	}
}

func TestLoadBaseErrors(t *testing.T) {
	ctx := context.Background()
	good := filepath.Join(t.TempDir(), "good")
	root := t.TempDir()
	must(t, os.WriteFile(filepath.Join(root, "f"), []byte("payload payload payload"), 0o644))
	res := buildImage(t, good, specFor(root, None))

	corrupt := filepath.Join(t.TempDir(), "corrupt")
	buildImage(t, corrupt, specFor(root, None))
	lp := blobPath(corrupt, res.Layer.Digest)
	b, _ := os.ReadFile(lp)
	b[600] ^= 0xff // same size, different bytes
	must(t, os.WriteFile(lp, b, 0o644))

	notLayout := t.TempDir()
	badTar := filepath.Join(t.TempDir(), "rootfs.tar")
	must(t, os.WriteFile(badTar, []byte("this is not a tar archive at all"), 0o644))

	cases := []struct{ base, want string }{
		{"", "empty"},
		{filepath.Join(t.TempDir(), "missing"), "no such file"},
		{filepath.Join(t.TempDir(), "missing") + ":v1", "does not exist"},
		{good + ":nope", `no tag "nope"`},
		{good + "@sha256:" + strings.Repeat("0", 64), "no manifest"},
		{good + "@md5:abc", "not a sha256 digest"},
		{corrupt + ":v1", res.Layer.Digest.String()},
		{notLayout, "not an OCI image layout"},
		{badTar, "tar"},
	}
	for _, c := range cases {
		_, err := LoadBase(ctx, c.base)
		if err == nil {
			t.Errorf("LoadBase(%q): no error", c.base)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "base") || !strings.Contains(msg, c.want) {
			t.Errorf("LoadBase(%q): %q must start with base and contain %q", c.base, msg, c.want)
		}
		if c.want == "empty" && !strings.Contains(msg, "scratch") {
			t.Errorf("error must say what is accepted: %s", msg)
		}
	}
	if _, err := LoadBase(ctx, corrupt+":v1"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt blob error must say so: %v", err)
	}
	if b, err := LoadBase(ctx, "scratch"); err != nil || b.Kind != BaseScratch || b.Digest != "" {
		t.Errorf("scratch: %+v %v", b, err)
	}
}

// writeRootfsTar writes a tarball the way a distribution would ship one: "./" names,
// real owners, host times and user names.
func writeRootfsTar(t testing.TB, p string, c Compression, mtime time.Time) {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	ents := []tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./etc/shadow", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 0, Gid: 42, Gname: "shadow", Size: 5},
		{Name: "./bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./bin/sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: 5, Uname: "builder"},
		{Name: "./bin/ash", Typeflag: tar.TypeLink, Linkname: "./bin/sh"},
		{Name: "./dev/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Name: "./lib", Typeflag: tar.TypeSymlink, Linkname: "usr/lib"},
	}
	for _, h := range ents {
		h.ModTime, h.AccessTime, h.ChangeTime = mtime, mtime, mtime
		h.Format = tar.FormatPAX
		must(t, tw.WriteHeader(&h))
		if h.Size > 0 {
			_, err := tw.Write([]byte("12345"))
			must(t, err)
		}
	}
	must(t, tw.Close())
	var out bytes.Buffer
	switch c {
	case Gzip:
		zw := gzip.NewWriter(&out)
		_, _ = zw.Write(raw.Bytes())
		must(t, zw.Close())
	case Zstd:
		zw, _ := zstd.NewWriter(&out)
		_, _ = zw.Write(raw.Bytes())
		must(t, zw.Close())
	default:
		out = raw
	}
	must(t, os.WriteFile(p, out.Bytes(), 0o644))
}

func TestTarballBase(t *testing.T) {
	var digests []digest.Digest
	for i, c := range allComps {
		p := filepath.Join(t.TempDir(), "rootfs.tar"+map[Compression]string{Gzip: ".gz", Zstd: ".zst"}[c])
		// the same content compressed three ways and with times after the epoch
		writeRootfsTar(t, p, c, epoch.Add(time.Duration(i+1)*time.Hour))
		b, err := LoadBase(context.Background(), p)
		if err != nil {
			t.Fatalf("LoadBase(%s): %v", p, err)
		}
		sum, _ := os.ReadFile(p)
		if b.Kind != BaseTarball || b.Digest != digest.FromBytes(sum) {
			t.Fatalf("tarball base %+v", b)
		}
		root := t.TempDir()
		must(t, os.WriteFile(filepath.Join(root, "app"), []byte("app"), 0o755))
		s := specFor(root, Zstd)
		s.Base = b
		out := filepath.Join(t.TempDir(), "out")
		res := buildImage(t, out, s)
		var m ocispec.Manifest
		readJSON(t, blobPath(out, res.Manifest.Digest), &m)
		if len(m.Layers) != 2 || m.Layers[0].Digest != res.BaseLayer.Digest {
			t.Fatalf("layers %+v", m.Layers)
		}
		// check the re-written base layer
		lb, _ := os.ReadFile(blobPath(out, res.BaseLayer.Digest))
		tr := tar.NewReader(bytes.NewReader(decompress(t, Zstd, lb)))
		var names []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			must(t, err)
			names = append(names, h.Name)
			if !h.ModTime.Equal(epoch) || h.Uname != "" || h.Gname != "" || !h.AccessTime.IsZero() {
				t.Errorf("%s: not normalised: %v %q %q", h.Name, h.ModTime, h.Uname, h.Gname)
			}
			switch h.Name {
			case "etc/shadow":
				if h.Gid != 42 || h.Mode != 0o640 {
					t.Errorf("shadow ownership lost: %d %o", h.Gid, h.Mode)
				}
			case "bin/ash":
				if h.Linkname != "bin/sh" {
					t.Errorf("hard link %q", h.Linkname)
				}
			case "dev/null":
				if h.Typeflag != tar.TypeChar || h.Devmajor != 1 || h.Devminor != 3 {
					t.Errorf("device %+v", h)
				}
			}
		}
		if !slices.Equal(names, []string{"etc/", "etc/shadow", "bin/", "bin/sh", "bin/ash", "dev/", "dev/null", "lib"}) {
			t.Fatalf("names %q", names)
		}
		digests = append(digests, res.Manifest.Digest)
	}
	if digests[0] != digests[1] || digests[1] != digests[2] {
		t.Fatalf("same rootfs content compressed differently must give the same image: %v", digests)
	}
}

func TestTarballEscapesRefused(t *testing.T) {
	for _, name := range []string{"../evil", "a/../../evil"} {
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		must(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}))
		must(t, tw.Close())
		p := filepath.Join(t.TempDir(), "x.tar")
		must(t, os.WriteFile(p, raw.Bytes(), 0o644))
		if _, err := LoadBase(context.Background(), p); err == nil || !strings.Contains(err.Error(), `".."`) {
			t.Fatalf("%s: want escape error, got %v", name, err)
		}
	}
}

// --- referrers ---------------------------------------------------------------------

func TestReferrers(t *testing.T) {
	root := t.TempDir()
	must(t, os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644))
	out := filepath.Join(t.TempDir(), "out")
	res := buildImage(t, out, specFor(root, Gzip))
	before := tagsOf(t, out)

	const at = "application/vnd.dev.sigstore.bundle.v0.3+json"
	bundle := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`)
	d, err := AttachReferrer(out, res.Manifest, at, at, bundle, map[string]string{"dev.sigstore.bundle.content": "dsse-envelope"})
	must(t, err)
	if d.ArtifactType != at {
		t.Fatalf("descriptor %+v", d)
	}
	// attaching the same content again is idempotent
	d2, err := AttachReferrer(out, res.Manifest, at, at, bundle, map[string]string{"dev.sigstore.bundle.content": "dsse-envelope"})
	must(t, err)
	if d2.Digest != d.Digest {
		t.Fatal("same referrer gave another digest")
	}
	refs, err := Referrers(out, res.Manifest.Digest)
	must(t, err)
	if len(refs) != 1 || refs[0].Digest != d.Digest || refs[0].ArtifactType != at || refs[0].Annotations["dev.sigstore.bundle.content"] != "dsse-envelope" {
		t.Fatalf("Referrers: %+v", refs)
	}
	if none, _ := Referrers(out, digest.FromString("other")); len(none) != 0 {
		t.Fatalf("referrers of another digest: %v", none)
	}
	var m ocispec.Manifest
	readJSON(t, blobPath(out, d.Digest), &m)
	if m.Subject == nil || m.Subject.Digest != res.Manifest.Digest || m.Config.Digest.String() != "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" || len(m.Layers) != 1 {
		t.Fatalf("artifact manifest %+v", m)
	}
	got, _ := os.ReadFile(blobPath(out, m.Layers[0].Digest))
	if !bytes.Equal(got, bundle) {
		t.Fatal("bundle blob differs")
	}
	if after := tagsOf(t, out); !slices.Equal(before, after) {
		t.Fatalf("tags changed: %v → %v", before, after)
	}
	var idx ocispec.Index
	readJSON(t, filepath.Join(out, "index.json"), &idx)
	if idx.Manifests[0].Annotations[CosignKindAnnotation] != CosignImageKind {
		t.Fatalf("subject not marked for cosign --local-image: %+v", idx.Manifests[0])
	}
	// a base built from this layout by tag still resolves the image, not the artifact
	if b, err := LoadBase(context.Background(), out); err != nil || b.Digest != res.Manifest.Digest {
		t.Fatalf("LoadBase(untagged) with a referrer present: %v %v", b, err)
	}
	if _, err := AttachReferrer(out, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("nope"), Size: 4}, at, at, bundle, nil); err == nil {
		t.Fatal("attaching to a missing subject must fail")
	}
}

func tagsOf(t testing.TB, dir string) []string {
	var idx ocispec.Index
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	var tags []string
	for _, m := range idx.Manifests {
		if n := m.Annotations[ocispec.AnnotationRefName]; n != "" {
			tags = append(tags, n+"="+m.Digest.String())
		}
	}
	slices.Sort(tags)
	return tags
}

// --- fuzz --------------------------------------------------------------------------

func FuzzParseBaseRef(f *testing.F) {
	for _, s := range []string{"scratch", "", "out", "out:v1", "out@sha256:" + strings.Repeat("a", 64), "/abs/dir:tag", "rootfs.tar.gz", "a:b:c", "host:5000/x", "@", "x@", "dir:", ":tag"} {
		f.Add(s, false, false)
		f.Add(s, true, true)
		f.Add(s, true, false)
	}
	f.Fuzz(func(t *testing.T, s string, exists, isDir bool) {
		r, err := parseBaseRef(s, func(string) (bool, bool) { return exists, isDir })
		if err != nil {
			if !strings.HasPrefix(err.Error(), "base") {
				t.Fatalf("error does not name the field: %v", err)
			}
			return
		}
		switch r.kind {
		case BaseScratch:
			if s != "scratch" {
				t.Fatalf("%q parsed as scratch", s)
			}
		case BaseLayout:
			if r.path == "" || (r.tag != "" && r.digest != "") {
				t.Fatalf("%q: %+v", s, r)
			}
			if r.digest != "" && r.digest.Validate() != nil {
				t.Fatalf("%q: invalid digest accepted", s)
			}
		case BaseTarball:
			if !exists || isDir {
				t.Fatalf("%q: tarball without a file", s)
			}
		default:
			t.Fatalf("%q: kind %q", s, r.kind)
		}
	})
}

func FuzzRewriteTar(f *testing.F) {
	dir := f.TempDir()
	for _, c := range allComps {
		p := filepath.Join(dir, "seed-"+string(c))
		writeRootfsTar(f, p, c, epoch)
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		var out bytes.Buffer
		err := rewriteTarLimit(context.Background(), bytes.NewReader(b), &out, epoch, 16<<20)
		if err != nil {
			return
		}
		// whatever was accepted must be a valid, normalised tar without escapes
		tr := tar.NewReader(&out)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("rewritten tar unreadable: %v", err)
			}
			if strings.HasPrefix(h.Name, "/") || slices.Contains(strings.Split(h.Name, "/"), "..") {
				t.Fatalf("escaping name %q", h.Name)
			}
			if h.ModTime.After(epoch) || h.Uname != "" || h.Gname != "" {
				t.Fatalf("not normalised: %+v", h)
			}
		}
	})
}
