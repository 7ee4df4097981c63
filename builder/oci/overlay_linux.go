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
	modes   ociimage.DirModes // the base's directories, from the same unpacking
	mounted bool
	special []string // /dev and /proc mounts inside the merged view
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
	lowers, modes, err := base.OverlayLowers(ctx, filepath.Join(dir, "lower"))
	if err != nil {
		o.remove()
		return nil, fmt.Errorf("unpacking the base image for commands: %w", err)
	}
	o.lowers, o.modes = lowers, modes
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
	o.special = mountSpecial(merged)
	return merged, nil
}

// mountSpecial gives commands the /dev and /proc that scripts take for granted
// (`> /dev/null`, package managers reading /proc), where the image has those
// directories: a private tmpfs with the harmless device nodes on /dev, and proc on
// /proc. Neither writes into the staging root, so nothing of them reaches the layer.
// It returns what to unmount, innermost first. A mount that fails is skipped: the
// command then sees the image's own (empty) directory.
func mountSpecial(rootfs string) []string {
	var mounted []string
	isDir := func(p string) bool {
		fi, err := os.Lstat(p)
		return err == nil && fi.IsDir()
	}
	dev := filepath.Join(rootfs, "dev")
	if isDir(dev) && syscall.Mount("tmpfs", dev, "tmpfs", syscall.MS_NOSUID|syscall.MS_NOEXEC, "mode=0755,size=64k") == nil {
		mounted = append(mounted, dev)
		for name, rdev := range map[string]int{"null": 1<<8 | 3, "zero": 1<<8 | 5, "full": 1<<8 | 7, "random": 1<<8 | 8, "urandom": 1<<8 | 9, "tty": 5 << 8} {
			p := filepath.Join(dev, name)
			if syscall.Mknod(p, syscall.S_IFCHR|0o666, rdev) == nil {
				_ = os.Chmod(p, 0o666)
			}
		}
	}
	proc := filepath.Join(rootfs, "proc")
	if isDir(proc) && syscall.Mount("proc", proc, "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "") == nil {
		mounted = append(mounted, proc)
	}
	return mounted
}

// unmount ends a command's mount; a process the command left running keeps the old
// view (lazy unmount) and changes nothing in the staging root any more.
func (o *overlay) unmount() {
	for i := len(o.special) - 1; i >= 0; i-- {
		if err := syscall.Unmount(o.special[i], 0); err != nil {
			_ = syscall.Unmount(o.special[i], syscall.MNT_DETACH)
		}
	}
	o.special = nil
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
