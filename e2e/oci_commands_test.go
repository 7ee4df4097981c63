//go:build e2e

package e2e

import (
	"archive/tar"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// staticBusybox copies a statically linked busybox (Debian: busybox-static) into dir:
// the only shell that runs in a chroot of an image built from scratch.
func staticBusybox(t *testing.T, dir string) {
	t.Helper()
	p := tool(t, "busybox")
	f, err := elf.Open(p)
	if err != nil {
		t.Fatalf("busybox %s: %v", p, err)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Fatalf("busybox %s is dynamically linked; install busybox-static", p)
		}
	}
	f.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestAccOCIAllowCommandsRunsShellInAChroot: with allow_commands, the stock shell
// provisioner runs inside a chroot of the staged image (here a static busybox that the
// file provisioner put there), what it writes is in the layer, and the provisioner's
// own upload is cleaned away again. Without allow_commands the same build is refused
// naming the option.
func TestAccOCIAllowCommandsRunsShellInAChroot(t *testing.T) {
	requireAcc(t)
	if os.Geteuid() != 0 {
		t.Skip("allow_commands needs root (chroot)")
	}
	dir := t.TempDir()
	staticBusybox(t, dir)
	tpl := func(allow bool) string {
		a := "false"
		if allow {
			a = "true"
		}
		return ociTemplate(`
  base              = "scratch"
  output_dir        = "out"
  tags              = ["cmd"]
  source_date_epoch = "1700000000"
  allow_commands    = `+a+`
`, `
  provisioner "file" {
    source      = "busybox"
    destination = "/bin/busybox"
  }
  provisioner "file" {
    source      = "busybox"
    destination = "/bin/sh"
  }
  provisioner "shell" {
    execute_command = "/bin/busybox sh {{ .Path }}"
    inline = [
      "/bin/busybox --install -s /bin",
      "mkdir -p /etc /var/lib/app",
      "echo built-in-chroot > /etc/motd",
      "test ! -e /work && test ! -e /root/.cache",
      "ls / > /var/lib/app/root-listing",
    ]
  }
`)
	}

	// Refused as a command the image cannot execute (exit 126), not as a Start error,
	// which the shell provisioner would retry for five minutes.
	r := packerBuild(t, dir, tpl(false))
	if r.Code == 0 || !strings.Contains(r.Output(), "allow_commands = true") || !strings.Contains(r.Output(), "exit status: 126") || strings.Contains(r.Output(), "Error chmodding") {
		t.Fatalf("without allow_commands the shell provisioner must be refused naming the option: %s", r.Output())
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Fatal("a refused build left an output_dir")
	}

	if r := packerBuild(t, dir, tpl(true)); r.Code != 0 {
		t.Fatalf("packer build: %s", r.Output())
	}
	rootfs := umociUnpack(t, filepath.Join(dir, "out"), "cmd")
	if got := mustRead(t, filepath.Join(rootfs, "etc/motd")); got != "built-in-chroot\n" {
		t.Fatalf("/etc/motd = %q", got)
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "bin/ls")); err != nil || target != "/bin/busybox" {
		t.Fatalf("/bin/ls from busybox --install: %q %v", target, err)
	}
	// The chroot saw the image, not the build host: its / holds only what was staged.
	listing := strings.Fields(mustRead(t, filepath.Join(rootfs, "var/lib/app/root-listing")))
	if strings.Join(listing, " ") != "bin etc tmp var" {
		t.Fatalf("ls / inside the chroot: %v", listing)
	}
	scripts, _ := filepath.Glob(filepath.Join(rootfs, "tmp", "script_*"))
	if len(scripts) != 0 {
		t.Fatalf("the shell provisioner's script was left in the image: %v", scripts)
	}
	// The image runs: the layer's /bin/sh is the busybox the build used.
	out, err := exec.Command("chroot", rootfs, "/bin/sh", "-c", "cat /etc/motd").CombinedOutput()
	if err != nil || string(out) != "built-in-chroot\n" {
		t.Fatalf("chroot into the unpacked image: %v %s", err, out)
	}
}

// commandsBuildDir is a build directory with rootfs.tar, a busybox base image, for
// the allow_commands tests (which need root: chroot, overlayfs).
func commandsBuildDir(t *testing.T) string {
	t.Helper()
	requireAcc(t)
	if os.Geteuid() != 0 {
		t.Skip("allow_commands needs root (chroot, overlayfs)")
	}
	dir := t.TempDir()
	writeBusyboxRootfs(t, dir, "rootfs.tar")
	return dir
}

// writeBusyboxRootfs writes a rootfs tarball with a static busybox as /bin/sh and a
// few files for commands to delete and replace.
func writeBusyboxRootfs(t *testing.T, dir, name string) {
	t.Helper()
	staticBusybox(t, dir)
	bb, err := os.ReadFile(filepath.Join(dir, "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin/", "etc/", "opt/", "opt/data/"} {
		add(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	add(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil)
	add(&tar.Header{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "proc/", Typeflag: tar.TypeDir, Mode: 0o555}, nil)
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bb)
	add(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox"}, nil)
	for _, p := range []string{"etc/old", "etc/keep", "opt/data/a", "opt/data/b"} {
		add(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o644}, []byte("base "+p+"\n"))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// topLayerNames lists the entries of the newest layer of layout:tag (gzip layers).
func topLayerNames(t *testing.T, layout, tag string) []string {
	t.Helper()
	var names []string
	for _, h := range topLayer(t, layout, tag) {
		names = append(names, h.Name)
	}
	return names
}

// topLayer reads the headers of the newest layer of layout:tag (gzip layers).
func topLayer(t *testing.T, layout, tag string) []*tar.Header {
	t.Helper()
	var idx, man struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	blob := func(d string) string {
		return filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
	}
	if err := json.Unmarshal([]byte(mustRead(t, filepath.Join(layout, "index.json"))), &idx); err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == tag {
			if err := json.Unmarshal([]byte(mustRead(t, blob(m.Digest))), &man); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(man.Layers) == 0 {
		t.Fatalf("%s:%s: no layers", layout, tag)
	}
	f, err := os.Open(blob(man.Layers[len(man.Layers)-1].Digest))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var hdrs []*tar.Header
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
	}
}

// TestAccOCIAllowCommandsSeeTheBaseImage: commands run over the base image's files
// (a tarball base, then a layout base of two layers), and what they change — a new
// file, a deleted file, a directory replaced — is exactly what the new layer holds,
// as OCI whiteouts for the deletions; umoci applies them.
func TestAccOCIAllowCommandsSeeTheBaseImage(t *testing.T) {
	dir := commandsBuildDir(t)
	build := func(base, tag, inline string) {
		t.Helper()
		tpl := ociTemplate(`
  base              = "`+base+`"
  output_dir        = "out"
  tags              = ["`+tag+`"]
  source_date_epoch = "1700000000"
  allow_commands    = true
`, `
  provisioner "shell" {
    inline = [`+inline+`]
  }
`)
		if r := packerBuild(t, dir, tpl); r.Code != 0 {
			t.Fatalf("packer build %s: %s", tag, r.Output())
		}
	}
	build("rootfs.tar", "one", `
      "test -x /bin/busybox && test -f /etc/keep",
      "echo discarded > /dev/null && test -c /dev/null && test -c /dev/urandom",
      "/bin/busybox grep -q '^Name:' /proc/self/status",
      "/bin/busybox rm /etc/old",
      "/bin/busybox rm -r /opt/data && /bin/busybox mkdir /opt/data",
      "echo one > /opt/data/only",
      "echo one > /etc/new",
    `)
	got := strings.Join(topLayerNames(t, filepath.Join(dir, "out"), "one"), " ")
	// walk order by on-disk name (the whiteout of "old" sorts as "old"); tmp/ is where
	// the shell provisioner uploaded its script (the script itself was removed)
	if got != "etc/ etc/new etc/.wh.old opt/ opt/data/ opt/data/.wh..wh..opq opt/data/only tmp/" {
		t.Fatalf("layer of build one: %s", got)
	}
	// The provisioner's upload created /tmp in the layer: with the base's mode, or a
	// runtime applying the layer would turn the image's 1777 /tmp into 0755.
	for _, h := range topLayer(t, filepath.Join(dir, "out"), "one") {
		if h.Name == "tmp/" && h.Mode != 0o1777 {
			t.Fatalf("tmp/ in the new layer has mode %o, the base's is 1777", h.Mode)
		}
	}

	build("out:one", "two", `
      "test \"$(/bin/busybox cat /etc/new)\" = one",
      "/bin/busybox rm /etc/new",
      "echo two > /etc/keep",
    `)
	got = strings.Join(topLayerNames(t, filepath.Join(dir, "out"), "two"), " ")
	if got != "etc/ etc/keep etc/.wh.new tmp/" {
		t.Fatalf("layer of build two: %s", got)
	}

	rootfs := umociUnpack(t, filepath.Join(dir, "out"), "two")
	for p, want := range map[string]string{"etc/keep": "two\n", "opt/data/only": "one\n"} {
		if got := mustRead(t, filepath.Join(rootfs, p)); got != want {
			t.Errorf("/%s = %q, want %q", p, got, want)
		}
	}
	for _, gone := range []string{"etc/old", "etc/new", "opt/data/a", "opt/data/b"} {
		if _, err := os.Lstat(filepath.Join(rootfs, gone)); err == nil {
			t.Errorf("/%s should have been deleted", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(rootfs, "bin/busybox")); err != nil {
		t.Errorf("the base's /bin/busybox is missing: %v", err)
	}
}

// TestAccExampleCommands runs example/commands as its comment shows, on a busybox
// rootfs tarball made the same way.
func TestAccExampleCommands(t *testing.T) {
	dir := commandsBuildDir(t)
	tpl, err := os.ReadFile(filepath.Join("..", "example", "commands", "build.pkr.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if r := packerBuild(t, dir, string(tpl), "-var", "base=rootfs.tar"); r.Code != 0 {
		t.Fatalf("packer build example/commands: %s", r.Output())
	}
	rootfs := umociUnpack(t, filepath.Join(dir, "output", "commands"), "1.0.0")
	if got := mustRead(t, filepath.Join(rootfs, "srv/app/motd")); got != "hello from a command\n" {
		t.Fatalf("/srv/app/motd = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/old")); err == nil {
		t.Fatal("/etc/old was deleted by the example's command but is in the image")
	}
	if _, err := os.Stat(filepath.Join(rootfs, "etc/keep")); err != nil {
		t.Fatalf("the base's /etc/keep is missing: %v", err)
	}
}

// TestAccOCIUploadKeepsTheBaseDirectoryModes: without commands, the file provisioner
// uploading /tmp/x onto a base whose /tmp is 1777 must not put a 0755 tmp/ into the
// layer (the base's directory modes are read from its layer headers).
func TestAccOCIUploadKeepsTheBaseDirectoryModes(t *testing.T) {
	requireAcc(t)
	dir := t.TempDir()
	writeBusyboxRootfs(t, dir, "rootfs.tar")
	writeFiles(t, dir, inputFiles, time.Now())
	tpl := ociTemplate(`
  base              = "rootfs.tar"
  output_dir        = "out"
  tags              = ["up"]
  source_date_epoch = "1700000000"
`, `
  provisioner "file" {
    source      = "in/hello.txt"
    destination = "/tmp/hello.txt"
  }
  provisioner "file" {
    source      = "in/hello.txt"
    destination = "/srv/new/hello.txt"
  }
`)
	if r := packerBuild(t, dir, tpl); r.Code != 0 {
		t.Fatalf("packer build: %s", r.Output())
	}
	modes := map[string]int64{}
	for _, h := range topLayer(t, filepath.Join(dir, "out"), "up") {
		modes[h.Name] = h.Mode
	}
	if modes["tmp/"] != 0o1777 || modes["srv/"] != 0o755 || modes["srv/new/"] != 0o755 || modes["tmp/hello.txt"] != 0o644 {
		t.Fatalf("modes in the new layer: %v (octal: tmp/ %o)", modes, modes["tmp/"])
	}
}
