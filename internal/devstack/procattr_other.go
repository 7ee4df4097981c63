//go:build unix && !linux

package devstack

import "syscall"

// procAttr puts a server in its own process group so stop reaches all of it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
