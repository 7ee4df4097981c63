package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ociimage"
)

// Communicator lets provisioners work on the image's staging root filesystem as if
// it were a machine: image paths ("/etc/fixity/policy.json") map into the staging
// directory. Every access goes through an os.Root, so neither "../" nor a symlink
// (absolute or relative) can reach outside the staging root.
type Communicator struct {
	root          *os.Root
	dir           string
	allowCommands bool

	// With a base image, commands run in an overlay whose lower layers are the base's
	// layers and whose upper directory is the staging root, so they see the base's
	// files and what they change lands in this build's layer only.
	base    *ociimage.Base
	overlay *overlay // unpacked base layers, on the first command

	dirModesOnce sync.Once
	dirModes     ociimage.DirModes // the base's directories, read on the first mkdir
	dirModesErr  error
}

var _ packersdk.Communicator = (*Communicator)(nil)

// NewCommunicator opens dir as the staging root.
func NewCommunicator(dir string, allowCommands bool) (*Communicator, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &Communicator{root: r, dir: dir, allowCommands: allowCommands}, nil
}

// SetBase tells the communicator what the new layer goes on top of: directories it
// creates take the base's modes, and commands see the base's files (Linux, overlayfs).
func (c *Communicator) SetBase(b *ociimage.Base) { c.base = b }

// dirMode is the mode for a directory this build creates on its way to a file: the
// base's mode when the base has that directory (a 1777 /tmp or a 0700 /root must not
// come out of the new layer as 0755), else 0755 exactly.
func (c *Communicator) dirMode(rel string) (fs.FileMode, error) {
	if c.base == nil || c.base.Kind == ociimage.BaseScratch {
		return 0o755, nil
	}
	var modes ociimage.DirModes
	if c.commandsOverBase() {
		// Commands will unpack the base anyway; that pass yields the modes too.
		o, err := c.ensureOverlay(context.Background())
		if err != nil {
			return 0, err
		}
		modes = o.modes
	} else {
		c.dirModesOnce.Do(func() {
			c.dirModes, c.dirModesErr = c.base.DirModes(context.Background())
		})
		if c.dirModesErr != nil {
			return 0, fmt.Errorf("reading the base image's directories: %w", c.dirModesErr)
		}
		modes = c.dirModes
	}
	if m, ok := modes[rel]; ok {
		return m, nil
	}
	return 0o755, nil
}

// commandsOverBase: commands are allowed and will run over the base's files.
func (c *Communicator) commandsOverBase() bool {
	return c.allowCommands && overlaySupported && c.base != nil && c.base.Kind != ociimage.BaseScratch
}

// ensureOverlay unpacks the base for commands, once.
func (c *Communicator) ensureOverlay(ctx context.Context) (*overlay, error) {
	if c.overlay == nil {
		o, err := newOverlay(ctx, c.base, c.dir)
		if err != nil {
			return nil, fmt.Errorf("fixity-oci: allow_commands: %w", err)
		}
		c.overlay = o
	}
	return c.overlay, nil
}

// UsedOverlay reports whether commands ran over the base image: the staging root is
// then an overlayfs upper directory whose whiteouts mark deletions.
func (c *Communicator) UsedOverlay() bool { return c.overlay != nil }

// Close releases the staging root and removes the unpacked base layers.
func (c *Communicator) Close() error {
	if c.overlay != nil {
		c.overlay.remove()
	}
	return c.root.Close()
}

// imagePath turns an image path into a path relative to the staging root. "../"
// components are refused outright rather than cleaned away: a provisioner that
// writes them has a bug the user should see.
func imagePath(p string) (string, error) {
	if p == "" {
		return "", errors.New("fixity-oci: empty path")
	}
	slashed := filepath.ToSlash(p)
	for _, part := range strings.Split(slashed, "/") {
		if part == ".." {
			return "", fmt.Errorf("fixity-oci: path %q leaves the image root ('..' is not allowed); write absolute image paths such as /etc/app/config", p)
		}
	}
	rel := strings.TrimPrefix(path.Clean("/"+slashed), "/")
	if rel == "" {
		rel = "."
	}
	return rel, nil
}

// explain turns os.Root's terse escape error into one that says what happened.
func explain(op, p string, err error) error {
	if err != nil && strings.Contains(err.Error(), "escapes from parent") {
		return fmt.Errorf("fixity-oci: %s %s: refused: a symlink on that path points outside the image root; nothing is written outside the staged image (replace the symlink or write elsewhere)", op, p)
	}
	return fmt.Errorf("fixity-oci: %s %s: %w", op, p, err)
}

// mkdirAll creates the missing directories of rel with the base's mode for them, else
// 0755 exactly. Modes must not come from the build host's umask: a 027 umask would
// give 0750 directories and a different image digest on that machine.
func (c *Communicator) mkdirAll(rel string) error {
	cur := ""
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." {
			continue
		}
		cur = path.Join(cur, part)
		st, err := c.root.Lstat(cur)
		if err == nil {
			if !st.IsDir() {
				if st.Mode()&fs.ModeSymlink != 0 {
					// Let os.Root decide whether following it stays inside the root.
					if _, err := c.root.Stat(cur); err != nil {
						return err
					}
					continue
				}
				return fmt.Errorf("%s exists and is not a directory", "/"+cur)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		mode, err := c.dirMode(cur)
		if err != nil {
			return err
		}
		if err := c.root.Mkdir(cur, 0o755); err != nil {
			return err
		}
		if err := c.root.Chmod(cur, mode); err != nil {
			return err
		}
	}
	return nil
}

// Upload writes one file into the image. The mode comes from fi when the
// provisioner passes one (the file provisioner does), else 0644.
func (c *Communicator) Upload(dst string, r io.Reader, fi *os.FileInfo) error {
	rel, err := imagePath(dst)
	if err != nil {
		return err
	}
	if strings.HasSuffix(dst, "/") {
		return fmt.Errorf("fixity-oci: upload destination %q is a directory; name the file", dst)
	}
	mode := fs.FileMode(0o644)
	if fi != nil && *fi != nil {
		mode = (*fi).Mode().Perm()
	}
	if dir := path.Dir(rel); dir != "." {
		if err := c.mkdirAll(dir); err != nil {
			return explain("upload", dst, err)
		}
	}
	// Replace rather than write through: a symlink planted at dst must not redirect
	// the write (os.Root would refuse an escaping one; replacing also avoids in-root
	// surprises).
	if st, err := c.root.Lstat(rel); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		if err := c.root.Remove(rel); err != nil {
			return explain("upload", dst, err)
		}
	}
	f, err := c.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return explain("upload", dst, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return explain("upload", dst, err)
	}
	if err := f.Close(); err != nil {
		return explain("upload", dst, err)
	}
	// OpenFile applies the umask; the image must get exactly the requested mode.
	return c.root.Chmod(rel, mode)
}

// UploadDir copies a host directory into the image with rsync semantics: without a
// trailing slash on src, the directory itself is created under dst.
func (c *Communicator) UploadDir(dst, src string, exclude []string) error {
	base, err := imagePath(dst)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(src, "/") {
		base = path.Join(base, filepath.Base(src))
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		relSrc, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if excluded(relSrc, exclude) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := path.Join(base, filepath.ToSlash(relSrc))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := c.mkdirAll(target); err != nil {
				return explain("upload dir", dst, err)
			}
			return c.root.Chmod(target, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			_ = c.root.Remove(target)
			return c.root.Symlink(link, target)
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return c.Upload("/"+target, f, &info)
		default:
			return fmt.Errorf("fixity-oci: upload dir %s: %s is not a regular file, directory or symlink", dst, p)
		}
	})
}

func excluded(rel string, patterns []string) bool {
	for _, pat := range patterns {
		if ok, _ := filepath.Match(pat, rel); ok {
			return true
		}
	}
	return false
}

// Download reads one file of the image.
func (c *Communicator) Download(src string, w io.Writer) error {
	rel, err := imagePath(src)
	if err != nil {
		return err
	}
	f, err := c.root.Open(rel)
	if err != nil {
		return explain("download", src, err)
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// DownloadDir copies an image directory to the host with rsync semantics.
func (c *Communicator) DownloadDir(src, dst string, exclude []string) error {
	rel, err := imagePath(src)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(src, "/") && rel != "." {
		dst = filepath.Join(dst, path.Base(rel))
	}
	sub, err := c.root.OpenRoot(rel)
	if err != nil {
		return fmt.Errorf("fixity-oci: download dir %s: %w", src, err)
	}
	defer sub.Close()
	return fs.WalkDir(sub.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if excluded(p, exclude) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, filepath.FromSlash(p))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := sub.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			in, err := sub.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
	})
}

// Start runs a command in a chroot of the staging root, only when the user opted in
// with allow_commands, Packer runs as root and the staged tree has /bin/sh. Anything
// else is refused with the way out, never run on the build host by mistake.
//
// A refusal is reported the way a remote shell reports a command it cannot execute:
// the reason on the command's stderr and exit status 126. An error from Start would be
// taken for a communicator that is not up yet, and the shell provisioner would retry it
// for start_retry_timeout (5 minutes) before failing the build.
func (c *Communicator) Start(ctx context.Context, cmd *packersdk.RemoteCmd) error {
	if err := c.commandsRefused(cmd); err != nil {
		refuse(cmd, err)
		return nil
	}
	rootfs, release, err := c.commandRoot(ctx)
	if err != nil {
		refuse(cmd, err) // retrying would not help either: unpacking or mounting failed
		return nil
	}
	ex := exec.CommandContext(ctx, "chroot", rootfs, "/bin/sh", "-c", cmd.Command)
	ex.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	ex.Stdin, ex.Stdout, ex.Stderr = cmd.Stdin, cmd.Stdout, cmd.Stderr
	if err := ex.Start(); err != nil {
		release()
		refuse(cmd, fmt.Errorf("fixity-oci: chroot: %w", err))
		return nil
	}
	go func() {
		status := 0
		if err := ex.Wait(); err != nil {
			status = 1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				status = ee.ExitCode()
			}
		}
		release()
		cmd.SetExited(status)
	}()
	return nil
}

// commandRoot is the directory commands are chrooted into: the staging root, or with
// a base image an overlay of the staging root on the base's layers, mounted for this
// command only (uploads between commands write to the staging root directly, which
// overlayfs does not allow while it is mounted).
func (c *Communicator) commandRoot(ctx context.Context) (string, func(), error) {
	if c.base == nil || c.base.Kind == ociimage.BaseScratch {
		return c.dir, func() {}, nil
	}
	o, err := c.ensureOverlay(ctx) // fails with the reason where overlayfs is missing
	if err != nil {
		return "", nil, err
	}
	merged, err := o.mount()
	if err != nil {
		return "", nil, fmt.Errorf("fixity-oci: allow_commands: %w", err)
	}
	return merged, c.overlay.unmount, nil
}

// refuse ends cmd without running it: the reason on its stderr, exit status 126.
func refuse(cmd *packersdk.RemoteCmd, err error) {
	if cmd.Stderr != nil {
		fmt.Fprintln(cmd.Stderr, err)
	}
	go cmd.SetExited(exitRefused)
}

// exitRefused is the exit status of a command this builder will not run (126: "found
// but cannot be executed", as sh reports it).
const exitRefused = 126

// commandsRefused says why cmd may not run here, or nil.
func (c *Communicator) commandsRefused(cmd *packersdk.RemoteCmd) error {
	if !c.allowCommands {
		return fmt.Errorf("fixity-oci: cannot run %q: this builder runs no commands by default; add files with the `file` or `fixity-oidc` provisioner, or set allow_commands = true to run commands in a chroot (needs root and /bin/sh in the image)", firstWord(cmd.Command))
	}
	if os.Geteuid() != 0 {
		return errors.New("fixity-oci: allow_commands needs Packer to run as root (chroot); run as root or add files with the `file` provisioner instead")
	}
	if st, err := c.root.Lstat("bin/sh"); (err != nil || st.IsDir()) && !c.baseMayHaveShell() {
		return errors.New("fixity-oci: allow_commands: the image has no /bin/sh to run commands with; build on a base image that has one, upload a static shell first, or use the `file` provisioner")
	}
	return nil
}

// baseMayHaveShell: with a base image the shell is looked for once the base is
// unpacked, by the chroot itself (which then fails with its own message).
func (c *Communicator) baseMayHaveShell() bool { return c.commandsOverBase() }

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return s
}
