//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/ledgertest"
)

// freePort asks the kernel for an unused loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRegistry runs a real registry on loopback until the test ends and returns
// "127.0.0.1:PORT". kind is "distribution" (registry v3, no referrers API) or
// "olareg" (referrers API).
func startRegistry(t *testing.T, kind string) string {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var cmd *exec.Cmd
	switch kind {
	case "distribution":
		cfg := filepath.Join(dir, "config.yml")
		body := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command(tool(t, "registry"), "serve", cfg)
	case "olareg":
		cmd = exec.Command(tool(t, "olareg"), "serve", "--addr", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", filepath.Join(dir, "data"), "--api-delete", "--gc-frequency", "-1s")
	default:
		t.Fatalf("unknown registry kind %q", kind)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("%s on %s not ready after 20s: %v\n%s", kind, addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var repoSeq atomic.Int64

// ociBackend gives every test its own repository on the registry at addr.
func ociBackend(addr string) ledgertest.Backend {
	return ledgertest.Backend{New: func(t *testing.T) (func() ledger.Ledger, ledgertest.Tamperer) {
		repo := fmt.Sprintf("%s/fixity/ledger-%d", addr, repoSeq.Add(1))
		return func() ledger.Ledger {
			l, err := ledger.OpenOCI(repo, ledger.OCIOptions{Lease: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return l
		}, ledgertest.OCITamper{Repo: repo}
	}, Writers: 4, PerWriter: 5}
}

// ledgerWriters re-executes this test binary as n writer processes that append m
// releases each (see TestLedgerWriterProcess). Each prints "ok I" per acknowledged append.
func ledgerWriters(t *testing.T, url, prefix string, n, m int) []*exec.Cmd {
	t.Helper()
	var cmds []*exec.Cmd
	for w := 0; w < n; w++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLedgerWriterProcess$")
		cmd.Env = append(os.Environ(), "FIXITY_LEDGER_WRITER="+url, fmt.Sprintf("FIXITY_WRITER_ID=%sw%d", prefix, w), fmt.Sprintf("FIXITY_WRITER_M=%d", m))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		cmds = append(cmds, cmd)
	}
	return cmds
}

// writerProcess is the body of one writer process.
func writerProcess() error {
	l, err := ledger.Open(os.Getenv("FIXITY_LEDGER_WRITER"))
	if err != nil {
		return err
	}
	id := os.Getenv("FIXITY_WRITER_ID")
	m, _ := strconv.Atoi(os.Getenv("FIXITY_WRITER_M"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := 0; i < m; i++ {
		if _, err := ledger.RecordRelease(ctx, l, ledgertest.Rec(id, strconv.Itoa(i)), ledger.Actor{Issuer: "local", Subject: id}); err != nil {
			return err
		}
		fmt.Printf("ok %d\n", i)
	}
	return nil
}
