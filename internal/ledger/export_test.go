package ledger

import (
	"os"
	"syscall"
)

// Writer processes started by the tests (the test binary itself, see writers in
// ledger_test.go) die with SIGKILL at the step FIXITY_LEDGER_CRASH names.
func init() {
	point := os.Getenv("FIXITY_LEDGER_CRASH")
	if point == "" {
		return
	}
	crashAt = func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never continue past a crash point
		}
	}
}
