//go:build !unix

package ociimage

import (
	"io"
	"io/fs"
	"os"
)

// fileID identifies an inode, to store hard links once; other systems store every
// name as its own file.
type fileID struct{ dev, ino uint64 }

func hardLinkID(fs.FileInfo) (fileID, bool) { return fileID{}, false }

func readSmall(path string, size int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, size+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	if int64(n) != size {
		return nil, errChanged
	}
	return buf[:size], nil
}
