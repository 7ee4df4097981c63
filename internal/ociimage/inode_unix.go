//go:build unix

package ociimage

import (
	"io/fs"
	"syscall"
)

// fileID identifies an inode, to store hard links once.
type fileID struct{ dev, ino uint64 }

// statAndRead opens a regular file the walk listed, completes its header from fstat and,
// when it is small and fits, reads it whole into room. It returns how many bytes of room
// it used. Raw syscalls: os.Open would also try to register every regular file with the
// network poller (one more syscall each), which shows on trees of many small files.
// O_NOFOLLOW refuses a file that was swapped for a symlink after the listing, and
// O_NONBLOCK keeps a swapped-in FIFO from blocking the open; fstat then refuses it.
func statAndRead(e *entry, room []byte) (int, error) {
	fd, err := syscall.Open(e.path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err == syscall.ELOOP {
		return 0, errChanged
	}
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: e.path, Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, &fs.PathError{Op: "fstat", Path: e.path, Err: err}
	}
	if err := e.fileInfoHeader(fileMode(uint32(st.Mode)), st.Size); err != nil { //nolint:unconvert // Mode is uint16 on some platforms
		return 0, err
	}
	if st.Nlink > 1 {
		e.id = fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)} //nolint:unconvert // Dev is int32 on some platforms
		e.multi = true
	}
	size := int(st.Size)
	if e.large || size == 0 {
		return 0, nil
	}
	if size+1 > len(room) {
		e.deferred = true
		return 0, nil
	}
	// One byte more than fstat promised: a file that grows while it is read is caught.
	buf := room[:size+1]
	n := 0
	for {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: e.path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
		if n > size {
			return 0, errChanged
		}
		if n == size {
			// A regular file returns less than asked only at its end, so there is no need
			// to spend another syscall on reading the EOF.
			break
		}
	}
	if n != size {
		return 0, errChanged
	}
	e.data, e.deferred = buf[:size], false
	return size, nil
}

// fileMode converts a stat mode the way package os does, for the bits a layer keeps
// or refuses.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & syscall.S_IFMT {
	case syscall.S_IFDIR:
		mode |= fs.ModeDir
	case syscall.S_IFLNK:
		mode |= fs.ModeSymlink
	case syscall.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		mode |= fs.ModeSocket
	case syscall.S_IFBLK:
		mode |= fs.ModeDevice
	case syscall.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	}
	if m&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}
