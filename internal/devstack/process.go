//go:build unix

package devstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one server process. Its output goes to a log file so a failed start can quote
// the server's own reason.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error
	once    sync.Once
}

// startProc runs bin with args, output appended to logPath. The process gets its own
// process group (so stop reaches every child) and, on Linux, dies with its parent.
func startProc(name, bin, logPath string, args []string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devstack: %s log: %w", name, err)
	}
	fmt.Fprintf(logf, "\n# %s %s %s\n", time.Now().UTC().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "TMPDIR="+os.TempDir())
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("devstack: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, waits up to 10 s, then SIGKILLs.
func (p *proc) stop() error {
	var err error
	p.once.Do(func() {
		if p.exited() {
			return
		}
		pgid := -p.cmd.Process.Pid
		_ = syscall.Kill(pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(pgid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				err = fmt.Errorf("devstack: %s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
			}
		}
	})
	return err
}

// tail returns the last n lines of the process log, for error messages.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1. They are released before
// the server binds them, so a start that loses the race is retried by the caller.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("devstack: free port on 127.0.0.1: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

var probeClient = &http.Client{Timeout: 3 * time.Second}

// waitHTTP polls url until it answers 200 and returns the body. It gives up when the
// process exits, ctx ends or timeout passes, quoting the server log.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := probeClient.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return body, nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		if p.exited() {
			return nil, fmt.Errorf("devstack: %s exited before it was ready (%v); log %s:\n%s", p.name, p.waitErr, p.logPath, p.tail(15))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("devstack: %s not ready after %s at %s (last: %s); log %s:\n%s", p.name, timeout, url, last, p.logPath, p.tail(15))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("devstack: waiting for %s: %w", p.name, ctx.Err())
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// errPortRace marks a start that failed because a port was taken between reserving
// and binding; the caller retries with new ports.
var errPortRace = errors.New("port taken")

func portRace(p *proc) bool {
	return p.exited() && strings.Contains(p.tail(30), "address already in use")
}

// fileLock is an exclusive advisory lock on a file, held across processes.
type fileLock struct{ f *os.File }

// lockFile takes an exclusive flock on path, waiting up to wait. It reports through
// logf once if it has to wait.
func lockFile(ctx context.Context, path string, wait time.Duration, logf func(string, ...any), why string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("devstack: lock %s: %w", path, err)
	}
	deadline := time.Now().Add(wait)
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// Say who holds it, for the error of the next stack that has to wait.
			_ = f.Truncate(0)
			_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d (%s) since %s", os.Getpid(), filepath.Base(os.Args[0]), time.Now().UTC().Format(time.RFC3339))), 0)
			return &fileLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("devstack: lock %s: %w", path, err)
		}
		if !told {
			logf("devstack: waiting up to %s for %s; held by %s (lock %s)", wait, why, holder(path), path)
			told = true
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("devstack: gave up after %s waiting for %s, held by %s (lock %s): stop that stack (tests: Close or StopTSA as soon as signing is done) or raise Options.TSALockWait", wait, why, holder(path), path)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// holder reads who took the lock, as written by lockFile.
func holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return "another process"
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

func (l *fileLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}
