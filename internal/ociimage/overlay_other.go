//go:build !linux

package ociimage

import (
	"context"
	"errors"
	"io/fs"
)

// OverlayLowers needs overlayfs, which only Linux has.
func (b *Base) OverlayLowers(context.Context, string) ([]string, DirModes, error) {
	if b.Kind == BaseScratch {
		return nil, DirModes{}, nil
	}
	return nil, nil, errors.New("commands on top of a base image need Linux (overlayfs)")
}

const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

func overlayWhiteout(fs.FileInfo) bool { return false }

func overlayOpaque(string) bool { return false }
