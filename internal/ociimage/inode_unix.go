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
