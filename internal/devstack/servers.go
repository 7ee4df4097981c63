//go:build unix

package devstack

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/atomicfile"
)

// startAttempts bounds retries of a server whose reserved port was taken by someone
// else between reservation and bind.
const startAttempts = 3

// launch starts a server with fresh ports until it answers on probe (built from the
// ports by build) or fails for a reason other than a lost port race.
func (s *Stack) launch(ctx context.Context, name, bin string, nports int,
	build func(ports []int) (args []string, probe string)) (ports []int, body []byte, err error) {
	for attempt := 1; ; attempt++ {
		if ports, err = freePorts(nports); err != nil {
			return nil, nil, err
		}
		args, probe := build(ports)
		p, err := startProc(name, bin, s.LogPath(name), args)
		if err != nil {
			return nil, nil, err
		}
		s.mu.Lock()
		s.procs[name] = p
		s.mu.Unlock()
		begin := time.Now()
		body, err = waitHTTP(ctx, p, probe, s.opts.StartTimeout)
		if err == nil {
			s.logf("devstack: %s answered at %s after %s", name, probe, time.Since(begin).Round(time.Millisecond))
			return ports, body, nil
		}
		_ = p.stop()
		if !portRace(p) || attempt == startAttempts {
			return nil, nil, err
		}
		s.logf("devstack: %s lost a port race (%v), retrying with new ports", name, errPortRace)
	}
}

// startRekor generates a fresh Ed25519 log key and starts rekor-tiles with POSIX storage.
// The checkpoint origin (--hostname) is 127.0.0.1, the host of RekorURL: sigstore-go
// verifies checkpoints under the host name of the log's base URL.
func (s *Stack) startRekor(ctx context.Context, bin string) error {
	dir := filepath.Join(s.Dir, "rekor")
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("devstack: reset %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	keyPath := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	s.RekorPublicKeyPath = filepath.Join(dir, "rekor.pub")
	if err := atomicfile.WriteFile(s.RekorPublicKeyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return err
	}
	ports, _, err := s.launch(ctx, RekorProgram, bin, 3, func(p []int) ([]string, string) {
		return []string{"serve",
			"--http-address", "127.0.0.1", "--http-port", strconv.Itoa(p[0]),
			"--grpc-address", "127.0.0.1", "--grpc-port", strconv.Itoa(p[1]),
			"--http-metrics-port", strconv.Itoa(p[2]),
			"--hostname", "127.0.0.1",
			"--storage-dir", filepath.Join(dir, "data"),
			"--signer-filepath", keyPath,
			"--checkpoint-interval", "250ms",
			"--batch-max-age", "50ms",
			"--log-level", "warn",
		}, fmt.Sprintf("http://127.0.0.1:%d/healthz", p[0])
	})
	if err != nil {
		return err
	}
	s.RekorURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	s.rekorPub = pub
	return nil
}

// tsaLockPath is shared by every devstack on the machine: timestamp-server v2.1.3
// hard-codes its metrics listener at :2112 and exits if that is taken, so two of them
// cannot run at once. Stacks queue on this lock instead of crashing each other.
func tsaLockPath() string {
	return filepath.Join(os.TempDir(), "fixity-devstack-timestamp-server-2112.lock")
}

// startTSA starts timestamp-server with an in-memory signer (a fresh chain each start)
// and NTP monitoring off (it would poll public NTP servers).
func (s *Stack) startTSA(ctx context.Context, bin string) error {
	lock, err := lockFile(ctx, tsaLockPath(), s.opts.TSALockWait, s.logf, "another devstack's timestamp-server (it always binds :2112)")
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.tsaLock = lock
	s.mu.Unlock()
	if l, err := net.Listen("tcp", ":2112"); err != nil {
		return fmt.Errorf("devstack: port 2112 is in use by a program that is not a devstack (%v): timestamp-server v2.1.3 always serves metrics on :2112 and exits when it cannot; stop that program", err)
	} else {
		_ = l.Close()
	}
	dir := filepath.Join(s.Dir, "tsa")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ports, chain, err := s.launch(ctx, TSAProgram, bin, 1, func(p []int) ([]string, string) {
		return []string{"serve",
			"--host", "127.0.0.1", "--port", strconv.Itoa(p[0]),
			"--timestamp-signer", "memory",
			"--disable-ntp-monitoring",
			"--log-type", "prod",
		}, fmt.Sprintf("http://127.0.0.1:%d/api/v1/timestamp/certchain", p[0])
	})
	if err != nil {
		return err
	}
	s.TSAURL = fmt.Sprintf("http://127.0.0.1:%d/api/v1/timestamp", ports[0])
	s.TSAChainPath = filepath.Join(dir, "chain.pem")
	return atomicfile.WriteFile(s.TSAChainPath, chain, 0o644)
}

func (s *Stack) releaseTSALock() {
	s.mu.Lock()
	l := s.tsaLock
	s.tsaLock = nil
	s.mu.Unlock()
	l.release()
}

// startFulcio starts Fulcio with an ephemeral CA and no CT log (certificates carry no
// SCT: verifiers need cosign's --insecure-ignore-sct), trusting both local issuers
// with the same claim templates production Fulcio uses for GitHub Actions and GitLab.
func (s *Stack) startFulcio(ctx context.Context, bin string) error {
	dir := filepath.Join(s.Dir, "fulcio")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, err := json.MarshalIndent(fulcioConfig(s.IssuerURL, s.GitLabIssuerURL), "", "  ")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "config.json")
	if err := atomicfile.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return err
	}
	var sock [8]byte
	_, _ = rand.Read(sock[:])
	socket := "@fixity-devstack-fulcio-" + hex.EncodeToString(sock[:])
	if runtime.GOOS != "linux" { // abstract sockets are Linux-only
		socket = filepath.Join(os.TempDir(), "fxf-"+hex.EncodeToString(sock[:4])+".sock")
	}
	ports, chain, err := s.launch(ctx, FulcioProgram, bin, 3, func(p []int) ([]string, string) {
		return []string{"serve",
			"--ca", "ephemeralca",
			"--config-path", cfgPath,
			"--ct-log-url=",
			"--host", "127.0.0.1", "--port", strconv.Itoa(p[0]),
			"--grpc-host", "127.0.0.1", "--grpc-port", strconv.Itoa(p[1]),
			"--metrics-port", strconv.Itoa(p[2]),
			"--legacy-unix-domain-socket", socket,
			"--log_type", "prod",
		}, fmt.Sprintf("http://127.0.0.1:%d/api/v1/rootCert", p[0])
	})
	if err != nil {
		return err
	}
	s.FulcioURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	s.FulcioChainPath = filepath.Join(dir, "chain.pem")
	return atomicfile.WriteFile(s.FulcioChainPath, chain, 0o644)
}
