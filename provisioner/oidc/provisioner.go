// Package oidc is the fixity-oidc provisioner: it bakes a rendered Fixity policy
// bundle (policy.json, jwks/, manifest.json) into the image being built, and
// optionally the static `fixity` verifier, through whatever communicator the builder
// offers, then reads every file back and fails the build if one differs.
package oidc

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/interpolate"
)

//go:embed install.sh
var installScript []byte

// OCIBuilderType is the fixity-oci builder's type as Packer names it; its
// communicator maps uploads into the image tree and runs no commands by default, so
// uploads go straight to the destination.
const OCIBuilderType = "fixity-oci"

// Provisioner is the fixity-oidc provisioner.
type Provisioner struct {
	config Config
}

var _ packersdk.Provisioner = (*Provisioner)(nil)

// ConfigSpec implements packersdk.HCL2Speccer.
func (p *Provisioner) ConfigSpec() hcldec.ObjectSpec { return p.config.FlatMapstructure().HCL2Spec() }

// Prepare implements packersdk.Provisioner.
func (p *Provisioner) Prepare(raws ...interface{}) error { return p.config.Prepare(raws...) }

// direct reports whether uploads go straight to the destination.
func (c *Config) direct() bool {
	if c.DirectUpload != nil {
		return *c.DirectUpload
	}
	return c.PackerBuilderType == OCIBuilderType
}

// Provision implements packersdk.Provisioner.
func (p *Provisioner) Provision(ctx context.Context, ui packersdk.Ui, comm packersdk.Communicator, _ map[string]interface{}) error {
	c := &p.config
	if comm == nil {
		return fmt.Errorf("fixity-oidc: this build has no communicator: use a builder with communicator = \"ssh\"/\"winrm\" or the fixity-oci builder")
	}
	dir, cleanup, err := c.bundleDir(ui)
	if err != nil {
		return err
	}
	defer cleanup()
	b, err := readLocalBundle(dir)
	if err != nil {
		return err
	}
	digest, err := bundleDigest(dir)
	if err != nil {
		return err
	}
	if c.Digest != "" && c.Digest != digest {
		return fmt.Errorf("fixity-oidc: bundle %s has digest %s but digest = %s: the bundle changed since the data source rendered it; rebuild", dir, digest, c.Digest)
	}
	var verifier string
	if c.InstallVerifier {
		var done func()
		verifier, done, err = c.verifierBinary(ctx, ui)
		if err != nil {
			return err
		}
		defer done()
	}

	ui.Say(fmt.Sprintf("fixity-oidc: installing policy bundle %s (%d files) at %s", digest, len(b.Files), c.Destination))
	if c.direct() {
		err = c.uploadDirect(comm, b, verifier)
	} else {
		err = c.uploadStaged(ctx, ui, comm, b, verifier)
	}
	if err != nil {
		return err
	}
	if err := c.verifyRemote(comm, b, verifier); err != nil {
		return err
	}
	ui.Say(fmt.Sprintf("fixity-oidc: verified %d files at %s; policy digest %s", len(b.Files), c.Destination, digest))
	return nil
}

// uploadDirect writes every file to its final path with its final mode through the
// communicator alone (no commands): file uploads create the parent directories, then
// an upload of a local tree holding only the directories (mode 0555) sets their modes
// last, so nothing is written into a directory after it became read-only.
func (c *Config) uploadDirect(comm packersdk.Communicator, b *localBundle, verifier string) error {
	for _, f := range b.Files {
		if err := uploadFile(comm, path.Join(c.Destination, f.Rel), f.Abs, 0o444); err != nil {
			return err
		}
	}
	dirs, err := os.MkdirTemp("", "fixity-oidc-dirs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dirs)
	for _, d := range b.Dirs {
		if err := os.MkdirAll(filepath.Join(dirs, filepath.FromSlash(d)), 0o755); err != nil {
			return err
		}
	}
	// Deepest first, so a parent never turns read-only before its children are done.
	for i := len(b.Dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(filepath.Join(dirs, filepath.FromSlash(b.Dirs[i])), 0o555); err != nil {
			return err
		}
	}
	if err := os.Chmod(dirs, 0o555); err != nil {
		return err
	}
	defer os.Chmod(dirs, 0o755) //nolint:errcheck // lets RemoveAll run; it reports nothing useful
	for _, d := range b.Dirs {
		defer os.Chmod(filepath.Join(dirs, filepath.FromSlash(d)), 0o755) //nolint:errcheck
	}
	if err := comm.UploadDir(c.Destination+"/", dirs+"/", nil); err != nil {
		return fmt.Errorf("fixity-oidc: set directory modes under %s: %w", c.Destination, err)
	}
	if verifier != "" {
		if err := uploadFile(comm, c.VerifierPath, verifier, 0o555); err != nil {
			return err
		}
	}
	return nil
}

// uploadStaged uploads to the staging directory as the connecting user and runs the
// install script through execute_command (typically with sudo).
func (c *Config) uploadStaged(ctx context.Context, ui packersdk.Ui, comm packersdk.Communicator, b *localBundle, verifier string) (err error) {
	stage := c.StagingDirectory
	mk := []string{path.Join(stage, "bundle")}
	for _, d := range b.Dirs {
		mk = append(mk, path.Join(stage, "bundle", d))
	}
	// The staging directory must be new and private: the install script in it runs
	// as root, so a directory another user prepared in /tmp must never be reused.
	if err := run(ctx, ui, comm, "umask 077 && mkdir -m 0700 "+stage+" && mkdir -p "+strings.Join(mk, " ")); err != nil {
		return fmt.Errorf("fixity-oidc: create staging_directory %s: %w: it must not exist yet and its parent must be writable by the connecting user (over WinRM, set direct_upload = true)", stage, err)
	}
	defer func() {
		if rerr := run(ctx, ui, comm, "rm -rf "+stage); rerr != nil && err == nil {
			err = fmt.Errorf("fixity-oidc: remove staging_directory %s: %w", stage, rerr)
		}
	}()
	for _, f := range b.Files {
		if err := uploadFile(comm, path.Join(stage, "bundle", f.Rel), f.Abs, 0o644); err != nil {
			return err
		}
	}
	vars := "FIXITY_STAGING=" + stage + " FIXITY_DEST=" + c.Destination
	if verifier != "" {
		if err := uploadFile(comm, path.Join(stage, "fixity"), verifier, 0o755); err != nil {
			return err
		}
		vars += " FIXITY_VERIFIER_PATH=" + c.VerifierPath
	}
	script := path.Join(stage, "install.sh")
	if err := comm.Upload(script, bytes.NewReader(installScript), fileInfo("install.sh", int64(len(installScript)), 0o755)); err != nil {
		return fmt.Errorf("fixity-oidc: upload %s: %w", script, err)
	}
	ictx := c.ctx
	ictx.Data = &executeData{Path: script, Vars: vars, Command: vars + " sh " + script, StagingDirectory: stage, Destination: c.Destination}
	cmd, err := interpolate.Render(c.ExecuteCommand, &ictx)
	if err != nil {
		return fmt.Errorf("fixity-oidc: execute_command: %w", err)
	}
	if err := run(ctx, ui, comm, cmd); err != nil {
		return fmt.Errorf("fixity-oidc: install into %s: %w: if the user cannot write there, run it with sudo, e.g. execute_command = \"sudo -n sh -c '{{ .Command }}'\"", c.Destination, err)
	}
	return nil
}

// verifyRemote reads every installed file back through the communicator and compares
// its sha256 with the local bundle: what the image holds is exactly what was tested.
func (c *Config) verifyRemote(comm packersdk.Communicator, b *localBundle, verifier string) error {
	check := func(remote, want string) error {
		var buf bytes.Buffer
		if err := comm.Download(remote, &buf); err != nil {
			return fmt.Errorf("fixity-oidc: read back %s: %w", remote, err)
		}
		sum := sha256.Sum256(buf.Bytes())
		if got := hex.EncodeToString(sum[:]); got != want {
			return fmt.Errorf("fixity-oidc: %s in the image has sha256 %s, want %s: the upload was altered or truncated; the build fails closed", remote, got, want)
		}
		return nil
	}
	for _, f := range b.Files {
		if err := check(path.Join(c.Destination, f.Rel), f.SHA256); err != nil {
			return err
		}
	}
	if verifier != "" {
		sum, _, err := hashFile(verifier)
		if err != nil {
			return err
		}
		if err := check(c.VerifierPath, sum); err != nil {
			return err
		}
	}
	if c.direct() {
		// Direct uploads cannot delete what an earlier layer or provisioner left in
		// the destination; a stale extra file would ride along unverified, so refuse.
		return c.checkNoExtraFiles(comm, b)
	}
	return nil
}

func (c *Config) checkNoExtraFiles(comm packersdk.Communicator, b *localBundle) error {
	tmp, err := os.MkdirTemp("", "fixity-oidc-readback-")
	if err != nil {
		return err
	}
	defer func() {
		_ = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(tmp)
	}()
	if err := comm.DownloadDir(c.Destination+"/", tmp+"/", nil); err != nil {
		return fmt.Errorf("fixity-oidc: read back %s: %w", c.Destination, err)
	}
	got, err := readLocalBundle(tmp)
	if err != nil {
		return fmt.Errorf("fixity-oidc: read back %s: %w", c.Destination, err)
	}
	want := map[string]bool{}
	for _, f := range b.Files {
		want[f.Rel] = true
	}
	for _, f := range got.Files {
		if !want[f.Rel] {
			return fmt.Errorf("fixity-oidc: %s holds %s, which is not part of the bundle: install into an empty destination (direct uploads cannot delete files)", c.Destination, f.Rel)
		}
	}
	return nil
}

func uploadFile(comm packersdk.Communicator, dst, src string, mode os.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("fixity-oidc: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("fixity-oidc: %w", err)
	}
	if err := comm.Upload(dst, f, fileInfo(path.Base(dst), st.Size(), mode)); err != nil {
		return fmt.Errorf("fixity-oidc: upload %s to %s: %w", src, dst, err)
	}
	return nil
}

func run(ctx context.Context, ui packersdk.Ui, comm packersdk.Communicator, command string) error {
	cmd := &packersdk.RemoteCmd{Command: command}
	if err := cmd.RunWithUi(ctx, comm, ui); err != nil {
		return err
	}
	if st := cmd.ExitStatus(); st != 0 {
		return fmt.Errorf("command exited with status %d", st)
	}
	return nil
}

// staticInfo is an os.FileInfo for uploads: communicators take the mode from it
// (SSH sets it with scp/sftp, the fixity-oci communicator writes it into the layer).
type staticInfo struct {
	name string
	size int64
	mode os.FileMode
}

func (s staticInfo) Name() string       { return s.name }
func (s staticInfo) Size() int64        { return s.size }
func (s staticInfo) Mode() os.FileMode  { return s.mode }
func (s staticInfo) ModTime() time.Time { return time.Unix(0, 0) }
func (s staticInfo) IsDir() bool        { return s.mode.IsDir() }
func (s staticInfo) Sys() interface{}   { return nil }

func fileInfo(name string, size int64, mode os.FileMode) *os.FileInfo {
	var fi os.FileInfo = staticInfo{name: name, size: size, mode: mode}
	return &fi
}

// executeData is what execute_command templates see.
type executeData struct {
	Path             string
	Vars             string
	Command          string
	StagingDirectory string
	Destination      string
}
