//go:build unix

package ociimage

import (
	"io/fs"
	"syscall"
)

func inodeOf(fi fs.FileInfo) [2]uint64 {
	st := fi.Sys().(*syscall.Stat_t)
	return [2]uint64{uint64(st.Dev), uint64(st.Ino)} //nolint:unconvert // Dev is int32 on some platforms
}

func linkCount(fi fs.FileInfo) uint64 {
	return uint64(fi.Sys().(*syscall.Stat_t).Nlink) //nolint:unconvert // Nlink is uint16 on some platforms
}
