//go:build !unix

package ociimage

import (
	"io"
	"os"
)

// fileID identifies an inode, to store hard links once; other systems store every
// name as its own file.
type fileID struct{ dev, ino uint64 }

// statAndRead completes a regular file's header and, when it is small and fits, reads
// it whole into room; it returns how many bytes of room it used.
func statAndRead(e *entry, room []byte) (int, error) {
	f, err := os.Open(e.path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := e.fileInfoHeader(info.Mode(), info.Size()); err != nil {
		return 0, err
	}
	size := int(info.Size())
	if e.large || size == 0 {
		return 0, nil
	}
	if size+1 > len(room) {
		e.deferred = true
		return 0, nil
	}
	n, err := io.ReadFull(f, room[:size+1])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return 0, err
	}
	if n != size {
		return 0, errChanged
	}
	e.data, e.deferred = room[:size], false
	return size, nil
}
