//go:build linux

package guestagent

// The main process's exec helper, forked ahead of time: the "zygote".
//
// Starting the exec helper (the agent's own binary re-executed, a fresh
// Go runtime) was the largest part of a container's start: about 500 ms
// of the start's 800 ms in the guest under TCG (the start's Timings,
// 2026-12-05). The agent therefore forks one helper at boot, before the
// template is snapshotted, as PID 1 of a new PID namespace and leader of
// a new session, and leaves it waiting on a socket. Every clone restores
// it with the rest of the guest's memory, already started. The main
// container's start hands it the helper spec, the program's argv and
// environment, and its stdio descriptors (SCM_RIGHTS) in one message;
// the zygote takes them as its stdin, stdout and stderr, makes a terminal
// its controlling one, and goes on as a freshly started helper would
// (helperWithSpec): a failure is reported on the same socket, and a successful
// execve closes it. A start that cannot use it (--pid host, --init) kills
// it, so that no stray process is left in the guest's PID namespace;
// joined containers and execs start helpers as before.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// zygoteArg is the helper's argument that makes it a zygote.
const zygoteArg = "--zygote"

// maxZygoteRequest bounds the one message the zygote receives (a
// SOCK_SEQPACKET datagram); a larger start (a huge environment) uses a
// fresh helper.
const maxZygoteRequest = 128 << 10

// zygoteRequest is what the zygote gets with the stdio descriptors.
type zygoteRequest struct {
	Spec execHelperSpec `json:"spec"`
	Args []string       `json:"args"`
	Env  []string       `json:"env"`
	// TTY: descriptor 0 is a terminal to make the controlling one.
	TTY bool `json:"tty,omitempty"`
}

// zygote is the agent's handle on the waiting helper.
type zygote struct {
	pid  int
	sock *os.File // the agent's end of the socket pair
}

// startZygote forks the zygote (at boot, after the reaper started: if it
// dies, it is reaped as an unknown child). A failure only costs speed.
func (a *agent) startZygote() {
	z, err := forkZygote(agentHelper())
	if err != nil {
		a.logf("zygote: %v", err)
		return
	}
	a.mu.Lock()
	a.zyg = z
	a.mu.Unlock()
}

// forkZygote starts hc as a zygote: PID 1 of a new PID namespace, leader
// of a new session, its stdio /dev/null until it takes the program's.
func forkZygote(hc helperCommand) (*zygote, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parent, child := os.NewFile(uintptr(fds[0]), "zygote"), os.NewFile(uintptr(fds[1]), "zygote-child")
	defer child.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		parent.Close()
		return nil, err
	}
	defer null.Close()
	env := hc.Env
	if env == nil {
		env = []string{}
	}
	p, err := os.StartProcess(hc.Path, append(append([]string(nil), hc.Argv...), zygoteArg), &os.ProcAttr{
		Env:   env,
		Files: []*os.File{null, null, null, child},
		Sys:   &syscall.SysProcAttr{Setsid: true, Cloneflags: unix.CLONE_NEWPID},
	})
	if err != nil {
		parent.Close()
		return nil, fmt.Errorf("start: %w", err)
	}
	z := &zygote{pid: p.Pid, sock: parent}
	p.Release() // Pid is -1 after this; the agent's reaper waits for it
	return z, nil
}

// takeZygote hands the zygote to one start; nil if there is none (any
// more).
func (a *agent) takeZygote() *zygote {
	a.mu.Lock()
	defer a.mu.Unlock()
	z := a.zyg
	a.zyg = nil
	return z
}

// discard kills an unused zygote.
func (z *zygote) discard() {
	if z == nil {
		return
	}
	unix.Kill(z.pid, unix.SIGKILL)
	z.sock.Close()
}

// start runs the program through the zygote, as startWithHelper through
// a fresh helper: it returns the process's pid once the execve succeeded,
// or the error that prevented it (a failed zygote exits; the reaper
// reaps it). ok is false if the zygote could not take the request at all
// (the caller then starts a fresh helper). No os.Process is made: one
// found by pid may already see the process gone (a program that exits
// at once), and the agent's reaper is what waits for it.
func (z *zygote) start(spec execHelperSpec, args, env []string, files []*os.File, tty bool) (pid int, ok bool, err error) {
	defer z.sock.Close()
	if len(files) != 3 {
		z.discard()
		return 0, false, nil
	}
	spec.NArgs = len(args)
	b, err := json.Marshal(&zygoteRequest{Spec: spec, Args: args, Env: env, TTY: tty})
	if err != nil || len(b) > maxZygoteRequest {
		z.discard()
		return 0, false, nil
	}
	rights := unix.UnixRights(int(files[0].Fd()), int(files[1].Fd()), int(files[2].Fd()))
	if err := unix.Sendmsg(int(z.sock.Fd()), b, rights, nil, 0); err != nil {
		z.discard()
		return 0, false, nil
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(int(z.sock.Fd()), buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			unix.Kill(z.pid, unix.SIGKILL)
			return z.pid, true, fmt.Errorf("exec helper: %w", err)
		}
		if n == 0 {
			return z.pid, true, nil // execve succeeded: the socket closed with it
		}
		return z.pid, true, helperResult(buf[:n], spec)
	}
}

// zygoteMain is the zygote: it waits for its request, takes the stdio it
// brings, and becomes the helper. It does not return.
func zygoteMain() {
	// PID 1 of its namespace until the execve: catch (and drop) what a
	// signal's default would end the Go runtime with, as the helper does.
	signal.Notify(make(chan os.Signal, 1))
	buf := make([]byte, maxZygoteRequest+1)
	oob := make([]byte, unix.CmsgSpace(3*4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(helperStatusFd, buf, oob, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil || n == 0 {
		os.Exit(0) // the agent let it go
	}
	fail := func(msg string) {
		b, _ := json.Marshal(&helperFailure{Stage: "spec", Errno: int(unix.EINVAL), Message: "exec helper: " + msg})
		unix.Write(helperStatusFd, b)
		os.Exit(127)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		fail("no descriptors")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 3 {
		fail("want 3 descriptors")
	}
	for i, fd := range fds {
		if err := unix.Dup3(fd, i, 0); err != nil {
			fail(fmt.Sprintf("dup3: %v", err))
		}
	}
	for _, fd := range fds {
		if fd > 2 {
			unix.Close(fd)
		}
	}
	var req zygoteRequest
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		fail(err.Error())
	}
	if req.Spec.NArgs < 1 || req.Spec.NArgs != len(req.Args) {
		fail("bad argument count")
	}
	if req.TTY {
		// A session leader (Setsid at its fork) without a terminal: make
		// its stdin the controlling one, as Setctty does.
		if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
			var errno syscall.Errno
			errors.As(err, &errno)
			b, _ := json.Marshal(&helperFailure{Stage: "spec", Errno: int(errno), Message: fmt.Sprintf("set controlling terminal: %v", err)})
			unix.Write(helperStatusFd, b)
			os.Exit(127)
		}
	}
	helperWithSpec(req.Spec, req.Args, req.Env)
}
