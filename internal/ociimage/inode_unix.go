//go:build unix

package ociimage

import (
	"io/fs"
	"syscall"
)

// fileID identifies an inode, to store hard links once.
type fileID struct{ dev, ino uint64 }

func hardLinkID(info fs.FileInfo) (fileID, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink < 2 {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true //nolint:unconvert // Dev is int32 on some platforms
}

// readSmall reads a whole small file with raw syscalls: os.Open would also try to
// register every regular file with the network poller (one more syscall each), which
// shows for trees of many small files. O_NOFOLLOW refuses a file that was swapped for
// a symlink after the walk.
func readSmall(path string, size int64) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	buf := make([]byte, size+1)
	n := 0
	for {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
		if n > int(size) {
			return nil, errChanged // the file grew: the read asked for one byte more
		}
		if n == int(size) {
			// A regular file returns less than asked only at its end, so there is no need
			// to spend another syscall on reading the EOF.
			break
		}
	}
	if n != int(size) {
		return nil, errChanged
	}
	return buf[:size], nil
}
