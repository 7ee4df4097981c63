//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sshTarget is a real OpenSSH server on loopback with a non-root login user that may
// sudo with its password: the shape of a freshly booted cloud VM that Packer's null
// builder (or any real builder) provisions.
type sshTarget struct {
	Host, User, Password, KeyFile string
	Port                          int
}

const sshE2EUser = "fixity-e2e"

// startSSHD starts sshd (Debian package openssh-server) on 127.0.0.1:<free port> with
// its own host key and config, creates the login user if missing, and lets it sudo
// with a password through a sudoers.d drop-in. Everything is undone by t.Cleanup. The
// test must run as root (CI does): it creates a user and a sudoers file.
func startSSHD(t *testing.T) *sshTarget {
	t.Helper()
	requireAcc(t)
	if os.Geteuid() != 0 {
		t.Fatalf("the sshd end-to-end test creates a user and a sudoers rule: run it as root (CI does)")
	}
	sshd := sshSbinTool(t, "sshd")
	keygen := tool(t, "ssh-keygen")
	sudo := tool(t, "sudo")
	visudo := sshSbinTool(t, "visudo")
	_ = sudo

	// A directory every user can traverse: sshd reads authorized_keys as the user.
	dir, err := os.MkdirTemp("/tmp", "fixity-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run(keygen, "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host_ed25519_key"))
	run(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "fixity-e2e", "-f", filepath.Join(dir, "client_key"))
	pub, err := os.ReadFile(filepath.Join(dir, "client_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o644); err != nil {
		t.Fatal(err)
	}

	// The login user, with a random password that only sudo asks for.
	password := sshRandomHex(t, 12)
	if _, err := user.Lookup(sshE2EUser); err != nil {
		run("useradd", "--create-home", "--shell", "/bin/sh", sshE2EUser)
		t.Cleanup(func() { _ = exec.Command("userdel", "--remove", sshE2EUser).Run() })
	}
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(sshE2EUser + ":" + password + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	sudoers := filepath.Join("/etc/sudoers.d", "fixity-e2e-"+sshRandomHex(t, 4))
	rule := sshE2EUser + " ALL=(root) ALL\nDefaults:" + sshE2EUser + " !lecture\n"
	if err := os.WriteFile(sudoers+".tmp", []byte(rule), 0o440); err != nil {
		t.Fatal(err)
	}
	run(visudo, "-c", "-f", sudoers+".tmp")
	if err := os.Rename(sudoers+".tmp", sudoers); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sudoers) })

	port := freePort(t)
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
AllowUsers %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, port, filepath.Join(dir, "host_ed25519_key"), filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"), sshE2EUser)
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // privilege separation dir
		t.Fatal(err)
	}
	run(sshd, "-t", "-f", cfgPath)
	logf, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("sshd log:\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on 127.0.0.1:%d", port)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &sshTarget{Host: "127.0.0.1", Port: port, User: sshE2EUser, Password: password, KeyFile: filepath.Join(dir, "client_key")}
}

// sbinTool finds a program that Debian installs into /usr/sbin (not on every PATH).
func sshSbinTool(t *testing.T, name string) string {
	t.Helper()
	requireAcc(t)
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(d, name); sshIsExecutable(p) {
			return p
		}
	}
	t.Fatalf("%s not found: apt-get install -y openssh-server sudo", name)
	return ""
}

func sshIsExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func sshRandomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
