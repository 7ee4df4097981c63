package devstack

import "syscall"

// procAttr puts a server in its own process group and has the kernel kill it when the
// process that started it dies, so a crashed test leaves no server behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
