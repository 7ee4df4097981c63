//go:build e2e

package e2e

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
