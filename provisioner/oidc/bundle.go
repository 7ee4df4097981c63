package oidc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// localFile is one regular file of a local bundle directory.
type localFile struct {
	Rel    string // slash-separated path inside the bundle
	Abs    string
	Size   int64
	SHA256 string
}

// localBundle lists a rendered bundle: its directories (slash-separated, "" excluded)
// and files, in a stable order. Anything but directories and regular files is refused:
// a symlink in a bundle could point the image's verifier at a file outside it.
type localBundle struct {
	Dir   string
	Dirs  []string
	Files []localFile
}

// maxBundleBytes bounds what the provisioner uploads: a policy bundle is a few KiB, so
// anything near this is a wrong `source` (e.g. a home directory).
const maxBundleBytes = 64 << 20

func readLocalBundle(dir string) (*localBundle, error) {
	b := &localBundle{Dir: dir}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			if rel != "." {
				b.Dirs = append(b.Dirs, rel)
			}
			return nil
		case d.Type().IsRegular():
			sum, n, err := hashFile(p)
			if err != nil {
				return err
			}
			total += n
			if total > maxBundleBytes {
				return fmt.Errorf("bundle is over %d MiB: point source at a rendered policy bundle directory", maxBundleBytes>>20)
			}
			b.Files = append(b.Files, localFile{Rel: rel, Abs: p, Size: n, SHA256: sum})
			return nil
		default:
			return fmt.Errorf("%s: not a regular file or directory (%s): bundles hold plain files only; re-render it", p, d.Type())
		}
	})
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", dir, err)
	}
	sort.Strings(b.Dirs)
	sort.Slice(b.Files, func(i, j int) bool { return b.Files[i].Rel < b.Files[j].Rel })
	if len(b.Files) == 0 {
		return nil, fmt.Errorf("source %s: empty directory: render the bundle first", dir)
	}
	return b, nil
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
