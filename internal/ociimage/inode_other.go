//go:build !unix

package ociimage

import "io/fs"

// fileID identifies an inode, to store hard links once; other systems store every
// name as its own file.
type fileID struct{ dev, ino uint64 }

func hardLinkID(fs.FileInfo) (fileID, bool) { return fileID{}, false }
