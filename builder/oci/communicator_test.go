package oci

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
)

func newComm(t *testing.T) (*Communicator, string) {
	t.Helper()
	dir := t.TempDir()
	c, err := NewCommunicator(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, dir
}

func TestUploadDownloadRoundTripKeepsMode(t *testing.T) {
	c, dir := newComm(t)
	src := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(src)
	f, _ := os.Open(src)
	defer f.Close()
	if err := c.Upload("/usr/local/bin/tool", f, &fi); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "usr/local/bin/tool"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o750 {
		t.Fatalf("mode %v, want 0750", st.Mode().Perm())
	}
	var buf bytes.Buffer
	if err := c.Download("/usr/local/bin/tool", &buf); err != nil || buf.String() != "#!/bin/sh\n" {
		t.Fatalf("download %q %v", buf.String(), err)
	}
}

func TestUploadRefusesEscapes(t *testing.T) {
	c, dir := newComm(t)
	outside := t.TempDir()
	// A symlink planted inside the root that points outside it (absolute) and one
	// that climbs out relatively.
	if err := os.Symlink(outside, filepath.Join(dir, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../..", filepath.Join(dir, "rel")); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"../evil", "/etc/../../evil", "abs/evil", "/rel/evil", "abs/sub/evil"} {
		err := c.Upload(dst, strings.NewReader("x"), nil)
		if err == nil {
			t.Errorf("upload to %q succeeded, want refusal", dst)
		}
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Fatalf("something was written outside the staging root: %v", entries)
	}
}

func TestUploadDirRsyncSemantics(t *testing.T) {
	c, dir := newComm(t)
	src := filepath.Join(t.TempDir(), "conf")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "a"), []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.UploadDir("/etc", src, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc/conf/sub/a")); err != nil {
		t.Fatalf("without trailing slash the directory itself is copied: %v", err)
	}
	if err := c.UploadDir("/opt", src+"/", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "opt/sub/a")); err != nil {
		t.Fatalf("with trailing slash the contents are copied: %v", err)
	}
	out := t.TempDir()
	if err := c.DownloadDir("/etc/conf", out, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "conf/sub/a")); err != nil || string(b) != "a" {
		t.Fatalf("download dir: %q %v", b, err)
	}
}

func TestStartRefusedUnlessOptedIn(t *testing.T) {
	c, _ := newComm(t)
	run := func(command string) (int, string) {
		var stderr strings.Builder
		cmd := &packersdk.RemoteCmd{Command: command, Stderr: &stderr}
		if err := c.Start(context.Background(), cmd); err != nil {
			t.Fatalf("Start must report a refusal as an exit status, not an error (the shell provisioner retries errors for 5 minutes): %v", err)
		}
		return cmd.Wait(), stderr.String()
	}
	code, msg := run("apt-get install x")
	if code != exitRefused || !strings.Contains(msg, "allow_commands") || !strings.Contains(msg, "file") || !strings.Contains(msg, `"apt-get"`) {
		t.Fatalf("refusal must exit %d and name the alternative: %d %q", exitRefused, code, msg)
	}
	c.allowCommands = true
	if os.Geteuid() == 0 {
		code, msg = run("true")
		if code != exitRefused || !strings.Contains(msg, "/bin/sh") {
			t.Fatalf("a root without a shell must be refused: %d %q", code, msg)
		}
	} else {
		code, msg = run("true")
		if code != exitRefused || !strings.Contains(msg, "root") {
			t.Fatalf("allow_commands without root must be refused: %d %q", code, msg)
		}
	}
}
