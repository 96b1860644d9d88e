//go:build linux

package guestagent

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// execExitTimeout bounds how long the main process's exit path waits for
// the exec'd processes it killed to be reported.
const execExitTimeout = 2 * time.Second

// handleExec runs another process in the running container on the stream
// the host chose (docker exec). Its exit is reported on that stream; it
// does not end the container.
func (a *agent) handleExec(stream uint32, m *agentproto.Msg) {
	fail := func(err error) {
		a.debugf("exec: %v", err)
		a.reply(stream, m, err)
	}
	if stream <= agentproto.MainStream {
		fail(fmt.Errorf("exec needs a stream above %d, not %d", agentproto.MainStream, stream))
		return
	}
	if m.Process == nil {
		fail(errors.New("exec request without a process"))
		return
	}
	a.mu.Lock()
	phase, shutdown, mainExiting := a.phase, a.shutdown, a.mainExiting
	_, busy := a.procs[stream]
	pod, perr := a.lookupContainer(m.Container)
	sc := spawnContext{root: containerRoot, joinPIDNS: a.pidns, joinMountNS: a.mntns}
	frozen, held := false, a.mainHeld
	if pod != nil {
		sc, frozen, held = pod.execContext(), pod.frozen, false
	}
	a.mu.Unlock()
	switch {
	case perr != nil:
		fail(perr)
		return
	case phase != phaseRunning || shutdown || mainExiting:
		fail(errors.New("container is not running"))
		return
	case frozen:
		fail(fmt.Errorf("container %s is paused, unpause the container before exec", pod.name))
		return
	case held:
		fail(&execError{"container is being checkpointed: its processes are held still, try again when the checkpoint is done", agentproto.ErrProcessesHeld})
		return
	case busy:
		fail(fmt.Errorf("stream %d is in use", stream))
		return
	}
	p, err := a.spawn(stream, m.Process, sc)
	if err != nil {
		fail(err)
		return
	}
	a.send(stream, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: p.pid, StdinWindow: p.stdinGrant()})
	close(p.started)
	a.debugf("exec'd pid %d on stream %d: %q", p.pid, stream, m.Process.Args)

	// The main process may have exited (and killed everything) while this
	// one was being started: it must not outlive the container.
	a.mu.Lock()
	late := a.mainExiting || (pod != nil && (pod.exiting || pod.exit != nil))
	a.mu.Unlock()
	if late {
		unix.Kill(p.pid, unix.SIGKILL)
	}
}

// markMainExiting stops new execs; called first thing when the main process
// exited.
func (a *agent) markMainExiting() {
	a.mu.Lock()
	a.mainExiting = true
	a.mu.Unlock()
}

// finishExecs waits (bounded) until the exec'd processes, killed with the
// rest of the container, were reaped and their exits sent; those still
// unreported then get an exit 137 of their own, so that the host hears of
// every process before the VM powers off.
func (a *agent) finishExecs() {
	deadline := time.Now().Add(execExitTimeout)
	for {
		a.mu.Lock()
		var left []*proc
		for s, p := range a.procs {
			if s != agentproto.MainStream {
				left = append(left, p)
			}
		}
		sending := a.execExitsSending
		a.mu.Unlock()
		if len(left) == 0 && sending == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range left {
				a.mu.Lock()
				if a.procs[p.stream] != p {
					a.mu.Unlock()
					continue
				}
				delete(a.procs, p.stream)
				a.mu.Unlock()
				a.logf("exec'd pid %d not reaped in time; reporting it killed", p.pid)
				a.sendBounded(p.stream, &agentproto.Msg{Type: agentproto.MsgExit,
					Status: &agentproto.ExitStatus{Code: 128 + int(unix.SIGKILL), Signal: int(unix.SIGKILL)}})
			}
			return
		}
		for _, p := range left {
			unix.Kill(p.pid, unix.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sendBounded sends m but gives up waiting after exitSendTimeout (the host
// may be disconnected; writes block then).
func (a *agent) sendBounded(stream uint32, m *agentproto.Msg) {
	sent := make(chan struct{})
	go func() {
		a.send(stream, m)
		close(sent)
	}()
	select {
	case <-sent:
	case <-time.After(exitSendTimeout):
	}
}
