//go:build !linux

package oci

import (
	"context"
	"errors"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ociimage"
)

const overlaySupported = false

type overlay struct{ modes ociimage.DirModes }

func newOverlay(context.Context, *ociimage.Base, string) (*overlay, error) {
	return nil, errors.New("commands over a base image need Linux (overlayfs)")
}

func (o *overlay) mount() (string, error) { return "", errors.New("not supported") }
func (o *overlay) unmount()               {}
func (o *overlay) remove()                {}
