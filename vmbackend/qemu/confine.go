package qemu

// A second seccomp filter for QEMU, installed by jevmd before QEMU's own
// (-sandbox, cmdline.go) and kept for the process's life (filters stack):
// what QEMU's 9p server may do to a shared host directory on a guest's
// behalf. QEMU serves 9p with security_model=passthrough and keeps the
// capabilities that needs (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER,
// CAP_FSETID: user.go; as root with --vm-user root), so a guest could
// otherwise create device nodes and setuid (or setgid
// executable) files in a bind-mounted host directory, or give a file
// capabilities (security.capability): each a way to root on the host for
// anyone who then runs or opens them there. Kata and Firecracker's jailer
// take the same care; docs/SECURITY.md says what each layer stops.
//
// Denied (EPERM, so the guest sees a refusal):
//   - mknod/mknodat of a character or block device (FIFOs and sockets
//     stay allowed);
//   - chmod/fchmod/fchmodat/fchmodat2, and open/openat/creat with a
//     creation mode, that set S_ISUID, or S_ISGID with group execute
//     (a setgid executable; the filter cannot tell a directory, so
//     `chmod g+s` of a directory with group execute in a share is
//     refused too);
// and, since their arguments cannot be inspected, openat2 (ENOSYS: QEMU
// and the C library fall back to openat) and setting extended attributes
// at all (EOPNOTSUPP: the guest's `setfattr`, ACLs and file capabilities
// in shares).

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/internal/seccomp"
)

const (
	modeFileType   = 0o170000 // S_IFMT
	modeCharDevice = 0o020000 // S_IFCHR
	modeBlockDev   = 0o060000 // S_IFBLK
	modeSetUID     = 0o4000
	modeSetGIDExec = 0o2010 // S_ISGID|S_IXGRP
)

// hostFilterRules is the filter's rule list (allow the rest).
func hostFilterRules() []seccomp.Rule {
	eperm, enosys, eopnotsupp := uint(unix.EPERM), uint(unix.ENOSYS), uint(unix.EOPNOTSUPP)
	deny := func(names []string, arg uint, mask, want uint64) seccomp.Rule {
		return seccomp.Rule{Names: names, Action: "SCMP_ACT_ERRNO", ErrnoRet: &eperm,
			Args: []seccomp.Arg{{Index: arg, Value: mask, ValueTwo: want, Op: "SCMP_CMP_MASKED_EQ"}}}
	}
	var rules []seccomp.Rule
	for _, c := range []struct {
		names []string
		arg   uint // the mode argument
	}{{[]string{"mknod"}, 1}, {[]string{"mknodat"}, 2}} {
		rules = append(rules, deny(c.names, c.arg, modeFileType, modeCharDevice), deny(c.names, c.arg, modeFileType, modeBlockDev))
	}
	for _, c := range []struct {
		names []string
		arg   uint
	}{
		{[]string{"chmod", "fchmod", "creat"}, 1},
		{[]string{"fchmodat", "fchmodat2", "open"}, 2},
		{[]string{"openat"}, 3},
	} {
		rules = append(rules, deny(c.names, c.arg, modeSetUID, modeSetUID), deny(c.names, c.arg, modeSetGIDExec, modeSetGIDExec))
	}
	rules = append(rules,
		seccomp.Rule{Names: []string{"openat2"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: &enosys},
		seccomp.Rule{Names: []string{"setxattr", "lsetxattr", "fsetxattr"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: &eopnotsupp},
	)
	return rules
}

// hostFilter is the compiled filter (struct sock_filter array).
var hostFilter = sync.OnceValues(func() ([]unix.SockFilter, error) {
	prog, err := seccomp.Compile(&seccomp.Resolved{DefaultAction: "SCMP_ACT_ALLOW", Rules: hostFilterRules()})
	if err != nil {
		return nil, fmt.Errorf("qemu: host seccomp filter: %w", err)
	}
	out := make([]unix.SockFilter, len(prog.Instructions))
	for i, ins := range prog.Instructions {
		out[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return out, nil
})

// installHostFilter installs the filter on the calling thread, which the
// caller has locked and never unlocks (the thread must end with its
// goroutine: the filter is the thread's, and what it forks inherits it).
// jevmd is root: no no_new_privs is needed, so QEMU keeps the right to
// open what a root process may.
func installHostFilter() error {
	filter, err := hostFilter()
	if err != nil {
		return err
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	const setModeFilter = 1 // SECCOMP_SET_MODE_FILTER
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, setModeFilter, 0, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("qemu: install the host seccomp filter: %w", errno)
	}
	return nil
}

// startFiltered runs start (which forks QEMU) on a thread of its own that
// carries the host filter, after prepare (if not nil) set the thread up
// (its jail: jail.go). hold, if not nil, keeps that thread until it is
// closed: a child with Pdeathsig is signalled when the thread that forked
// it ends, not the process.
//
// That thread is never the process's main thread: Go cannot end the main
// thread, so a goroutine locked to it that exits leaves it as it was,
// for good, and the main thread is what /proc/self shows. A jailed main
// thread would make /proc/self/mountinfo the jail's, and every later
// lookup of jevmd's own mounts (pod shares, staged files) would miss.
func startFiltered(prepare, start func() error, hold <-chan struct{}) error {
	errc := make(chan error, 1)
	var run func(onThread chan<- struct{})
	run = func(onThread chan<- struct{}) {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread: go on in another goroutine, which cannot
			// land here while this one holds the main thread, then give
			// the main thread back untouched.
			next := make(chan struct{})
			go run(next)
			<-next
			runtime.UnlockOSThread()
			return
		}
		if onThread != nil {
			close(onThread)
		}
		// Never unlocked: the thread ends with the goroutine.
		if prepare != nil {
			if err := prepare(); err != nil {
				errc <- err
				return
			}
		}
		if err := installHostFilter(); err != nil {
			errc <- err
			return
		}
		err := start()
		errc <- err
		if err == nil && hold != nil {
			<-hold
		}
	}
	go run(nil)
	return <-errc
}
