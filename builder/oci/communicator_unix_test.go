//go:build unix

package oci

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCreatedDirectoriesIgnoreTheUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	c, dir := newComm(t)
	if err := c.Upload("/a/b/c.txt", strings.NewReader("x"), nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "a/b"} {
		st, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o755 {
			t.Fatalf("%s has mode %v under umask 077, want 0755", d, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, "a/b/c.txt")); st.Mode().Perm() != 0o644 {
		t.Fatalf("file mode %v, want 0644", st.Mode().Perm())
	}
}
