//go:build linux

package guestagent

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// PID namespaces. In a runc container the entrypoint is PID 1 of its own
// PID namespace, and that is what signals and `docker stop` rely on: the
// kernel does not deliver to a namespace's init a signal it sends from
// inside, or from outside (but SIGKILL and SIGSTOP), while its disposition
// is the default one. So a shell without a trap ignores `docker stop`'s
// SIGTERM and ends by the SIGKILL after the timeout (exit 137), and
// `docker kill` with SIGKILL still works. In a jeVM the agent is the
// guest's PID 1; the container's main process is started as PID 1 of a
// new PID namespace (CLONE_NEWPID) unless the container has --pid host:
//
//   - The main process always goes through the exec helper
//     (rlimit_linux.go), which, as the namespace's first process, mounts a
//     proc of the namespace at the container's /proc before it chroots:
//     a proc shows the processes of the namespace of whoever mounted it,
//     so `ps` in the container sees the entrypoint as PID 1 and
//     /proc/self (and /dev/fd, /dev/stdout) resolves for the container's
//     processes. The guest's own proc is not mounted in the container.
//   - Exec'd processes join the namespace: setns(CLONE_NEWPID) changes the
//     namespace of the calling thread's future children only, and is
//     allowed in a threaded process, so the agent calls it on a locked
//     thread of its own, forks the process from it and lets the thread
//     end (runtime.LockOSThread without an unlock: Go discards the thread
//     with its goroutine; it also makes new threads come from the
//     runtime's template thread, not this one).
//   - The agent still sees every process by its guest PID: fork returns
//     the child's PID in the agent's namespace, so the reaper, a.byPid,
//     signals, top and stats are unchanged.
//   - When the namespace's init exits, the kernel kills the rest of the
//     namespace (exec'd processes too), and its exit reaches the agent
//     only after the agent reaped those: their exits come first, as
//     before.

// openPIDNamespace opens the PID namespace of process pid, for execs to
// join.
func openPIDNamespace(pid int) (*os.File, error) {
	return os.OpenFile(fmt.Sprintf("/proc/%d/ns/pid", pid), os.O_RDONLY|unix.O_CLOEXEC, 0)
}

// joinPIDNamespace returns a thread preparation (for startOnThread) that
// puts the thread's future children in the PID namespace ns.
func joinPIDNamespace(ns *os.File) func() error {
	return func() error {
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWPID); err != nil {
			return fmt.Errorf("join the container's PID namespace: %w", err)
		}
		return nil
	}
}

// startOnThread runs start (a fork and execve) on a fresh OS thread after
// the preparations (per-thread changes: the capability bounding set, the
// PID namespace of children); with none it runs start where it is. The
// thread is never unlocked, so it ends with its goroutine and no other
// goroutine runs with its changes.
func startOnThread(start func() (*os.Process, error), prep ...func() error) (*os.Process, error) {
	if len(prep) == 0 {
		return start()
	}
	type result struct {
		p   *os.Process
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		for _, f := range prep {
			if err := f(); err != nil {
				ch <- result{nil, err}
				return
			}
		}
		p, err := start()
		ch <- result{p, err}
	}()
	r := <-ch
	return r.p, r.err
}
