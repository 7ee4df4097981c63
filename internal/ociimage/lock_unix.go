//go:build unix

package ociimage

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// lockLayout takes an exclusive lock on an existing layout directory, so two writers
// (parallel packer builds into one output_dir, a build and `fixity-sign` attaching a
// referrer) never interleave their read-modify-write of index.json and a failed build
// never removes a blob another writer has just referenced. The lock is flock(2) on the
// directory itself: no extra file in the layout, and the kernel drops it if the process
// dies. It waits, polling, until ctx ends.
func lockLayout(ctx context.Context, dir string) (unlock func(), err error) {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock layout %s: %w", dir, err)
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Close(fd) }, nil // closing the only descriptor unlocks
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			syscall.Close(fd)
			return nil, fmt.Errorf("lock layout %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			syscall.Close(fd)
			return nil, fmt.Errorf("lock layout %s: another writer holds it: %w", dir, ctx.Err())
		case <-time.After(wait):
		}
	}
}
