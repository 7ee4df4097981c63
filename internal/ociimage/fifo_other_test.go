//go:build !unix

package ociimage

import "errors"

func mkfifo(string) error { return errors.New("no FIFOs here") }
