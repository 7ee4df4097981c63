// Package atomicfile writes files so that a crash or a concurrent reader never sees
// half of one: the ledger, OCI layouts, policy bundles, signature bundles and the dev
// stack's trust files all go through it.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data: a temporary file beside it is written, given
// perm exactly (no umask), fsynced and renamed over path, then the directory is
// fsynced so the rename survives a crash. Readers see the old file or the whole new
// one; on any error path is untouched and the temporary file is gone.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	if err := finish(f, data, perm); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteNew creates path (which must not exist), writes data with mode perm and
// fsyncs it. It is for files inside a temporary tree that is renamed into place as
// a whole; SyncDir the tree's directories before that rename.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	return finish(f, data, perm)
}

// WriteSynced writes data to path (created or truncated) and fsyncs it; the caller
// makes it visible atomically (e.g. by renaming it).
func WriteSynced(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	return finish(f, data, perm)
}

func finish(f *os.File, data []byte, perm os.FileMode) error {
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(perm)
	}
	if werr == nil {
		werr = f.Sync()
	}
	return errors.Join(werr, f.Close())
}

// SyncDir fsyncs a directory so that files created or renamed in it survive a crash.
// File systems that cannot sync a directory (EINVAL) are accepted.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
