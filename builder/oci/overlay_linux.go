//go:build linux

package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ociimage"
)

const overlaySupported = true

// overlay is the unpacked base image and the mount point commands run in. Its
// directory sits beside the staging root (overlayfs wants upper and work dirs on one
// file system) and is removed with the communicator.
type overlay struct {
	mu      sync.Mutex // one mount at a time: Packer runs commands one by one
	dir     string
	upper   string
	lowers  []string
	mounted bool
}

func newOverlay(ctx context.Context, base *ociimage.Base, upper string) (*overlay, error) {
	dir, err := os.MkdirTemp(filepath.Dir(upper), "fixity-oci-overlay-")
	if err != nil {
		return nil, err
	}
	o := &overlay{dir: dir, upper: upper}
	for _, d := range []string{"lower", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			o.remove()
			return nil, err
		}
	}
	lowers, err := base.OverlayLowers(ctx, filepath.Join(dir, "lower"))
	if err != nil {
		o.remove()
		return nil, fmt.Errorf("unpacking the base image for commands: %w", err)
	}
	o.lowers = lowers
	for _, p := range append([]string{upper, dir}, lowers...) {
		if strings.ContainsAny(p, ",:") {
			o.remove()
			return nil, fmt.Errorf("overlay path %q contains ',' or ':'; set TMPDIR to a plain path", p)
		}
	}
	return o, nil
}

// mount mounts the overlay and returns where.
func (o *overlay) mount() (string, error) {
	o.mu.Lock()
	merged := filepath.Join(o.dir, "merged")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(o.lowers, ":"), o.upper, filepath.Join(o.dir, "work"))
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		o.mu.Unlock()
		return "", fmt.Errorf("mount overlay: %w", err)
	}
	o.mounted = true
	return merged, nil
}

// unmount ends a command's mount; a process the command left running keeps the old
// view (lazy unmount) and changes nothing in the staging root any more.
func (o *overlay) unmount() {
	if o.mounted {
		if err := syscall.Unmount(filepath.Join(o.dir, "merged"), 0); err != nil {
			_ = syscall.Unmount(filepath.Join(o.dir, "merged"), syscall.MNT_DETACH)
		}
		o.mounted = false
	}
	o.mu.Unlock()
}

func (o *overlay) remove() {
	if err := syscall.Unmount(filepath.Join(o.dir, "merged"), syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		_ = err // not mounted is the normal case
	}
	_ = os.RemoveAll(o.dir)
}
