//go:build linux

package guestagent

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

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

// openNamespace opens the namespace of kind ("ipc", "pid") of process
// pid.
func openNamespace(pid int, kind string) (*os.File, error) {
	return os.OpenFile(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), os.O_RDONLY|unix.O_CLOEXEC, 0)
}

// joinIPCNamespace returns a thread preparation that moves the thread
// (and so the process it forks) into the IPC namespace ns.
func joinIPCNamespace(ns *os.File) func() error {
	return func() error {
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWIPC); err != nil {
			return fmt.Errorf("join the container's IPC namespace: %w", err)
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

// A signal for the namespace's init that it has no handler for is
// dropped by the kernel. In a runc container the entrypoint installs its
// handlers (a shell's trap) within a millisecond of its execve, before
// anything the client sends after `docker start` returns can reach it;
// under TCG the same start-up takes the guest tens of milliseconds, so
// `docker start` then `docker stop` at once (moby's TestWaitBlocked,
// TestWaitRestartedContainer, TestStopContainerWithTimeoutCancel) would
// find the trap not yet there and the SIGTERM lost. So a signal for the
// init in its first signalHoldMax waits until the program is past its
// start-up: it has a handler for the signal, or it waits for something
// (sleeping, stopped: no longer running or reading its program), or the
// time is up. Then it is sent, and the kernel delivers or drops it as
// for any init. SIGKILL and SIGSTOP, which the kernel forces on an init
// from outside its namespace, are never held.
const (
	signalHoldMax  = 2 * time.Second
	signalHoldPoll = 5 * time.Millisecond
)

// holdSignal reports whether sig for p must wait for p's start-up.
func (a *agent) holdSignal(p *proc, sig int) bool {
	if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) || !p.nsInit {
		return false
	}
	return time.Since(p.startedAt) < signalHoldMax
}

// awaitStartup waits (until signalHoldMax after p started) until p has a
// handler for sig or is no longer starting up.
func awaitStartup(p *proc, sig int) {
	deadline := p.startedAt.Add(signalHoldMax)
	dir := "/proc/" + strconv.Itoa(p.pid)
	for time.Now().Before(deadline) {
		status, err := os.ReadFile(dir + "/status")
		if err != nil {
			return // gone
		}
		if caught, ok := statusSigMask(status, "SigCgt"); ok && caught&(1<<(sig-1)) != 0 {
			return
		}
		b, err := os.ReadFile(dir + "/stat")
		if err != nil {
			return
		}
		st, err := parseProcStat(b)
		if err != nil || (st.state != 'R' && st.state != 'D') {
			return
		}
		time.Sleep(signalHoldPoll)
	}
}

// statusSigMask reads a signal mask line (SigCgt, SigBlk, ...) of
// /proc/<pid>/status.
func statusSigMask(status []byte, key string) (uint64, bool) {
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}
