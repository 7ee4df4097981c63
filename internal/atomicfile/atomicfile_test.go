package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFileReplacesWholeWithExactMode(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	p := filepath.Join(dir, "index.json")
	for _, content := range []string{"one", "second version"} {
		if err := WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Fatalf("read %q %v, want %q", b, err, content)
		}
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v under umask 077, want 0644", st.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestWriteFileFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "missing", "x.json"), []byte("x"), 0o644); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
	target := filepath.Join(dir, "taken")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	// Renaming a file over a directory fails: the temporary file must not remain.
	if err := WriteFile(target, []byte("x"), 0o644); err == nil {
		t.Fatal("replacing a directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary file left behind: %v", entries)
	}
}

func TestWriteNewRefusesExisting(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a")
	if err := WriteNew(p, []byte("a"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := WriteNew(p, []byte("b"), 0o444); err == nil {
		t.Fatal("WriteNew overwrote an existing file")
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o444 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	if err := WriteSynced(p+"2", []byte("c"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Dir(p)); err != nil {
		t.Fatal(err)
	}
}
