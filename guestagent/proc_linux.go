//go:build linux

package guestagent

import (
	"errors"
	"fmt"
	"github.com/jevm/jevm/internal/mountinfo"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// outputDrainTimeout is how long the exit path waits for a process's
// output after it exited while none of its output pipes has anything to
// read: then a pipe is held open, idle, by a process that does not die
// (`sh -c 'sleep 100 &'`). While a pipe still has data or its end of file
// waiting, the output is not lost to a busy guest: the wait goes on, up to
// outputDrainCap.
const (
	outputDrainTimeout = 2 * time.Second
	outputDrainCap     = 60 * time.Second
)

// exitSendTimeout bounds how long the exit path waits to hand the Exit
// message to a host that may not be connected (then the console marker is
// what tells a restarted daemon).
const exitSendTimeout = 2 * time.Second

// proc is a process started through the agent.
type proc struct {
	a      *agent
	stream uint32
	tty    bool
	pid    int
	// pod is the joined container the process belongs to (nil: the main
	// one); init marks a container's own process (not an exec), nsInit
	// one that is PID 1 of a PID namespace of its own.
	pod          *podCtr
	init, nsInit bool

	startedAt time.Time // when the process was started (its pid registered)

	started chan struct{} // closed once Started was sent

	master *os.File // pty master (TTY)
	stdin  *os.File // write end of the stdin pipe (no TTY, Stdin)
	stdout *os.File // read end of the stdout pipe (no TTY)
	stderr *os.File // read end of the stderr pipe (no TTY)
	child  []*os.File

	stdinMu     sync.Mutex
	stdinCond   *sync.Cond // signalled when the queue shrinks or closes
	stdinQ      [][]byte
	stdinBytes  int
	stdinEOF    bool
	stdinWake   chan struct{}
	stdinClosed bool
	// stdinWindowed: the host was granted a stdin window (stdinGrant)
	// and is sent credit for what leaves the queue.
	stdinWindowed bool

	outWG sync.WaitGroup

	oomBefore int64
	killMu    sync.Mutex
	killed    bool // the host sent SIGKILL (not an OOM kill)
}

// maxStdinQueue bounds the stdin data queued for a process that does not
// read it; beyond it the protocol reader waits (backpressure to the host).
const maxStdinQueue = 4 << 20

func newProc(a *agent, stream uint32, req *agentproto.ProcessRequest) *proc {
	p := &proc{a: a, stream: stream, tty: req.TTY, started: make(chan struct{}), stdinWake: make(chan struct{}, 1)}
	p.stdinCond = sync.NewCond(&p.stdinMu)
	return p
}

// setupStdio creates the child's stdin/stdout/stderr.
func (p *proc) setupStdio(root string, req *agentproto.ProcessRequest) ([]*os.File, error) {
	if req.TTY {
		master, slave, err := openPTY(root + "/dev/pts")
		if err != nil {
			return nil, fmt.Errorf("open pty: %w", err)
		}
		p.master = master
		p.child = []*os.File{slave}
		if req.Rows > 0 && req.Cols > 0 {
			p.resize(req.Rows, req.Cols)
		}
		// As runc does: the container's /dev/console is its terminal
		// (the main process's; exec'd processes leave it alone).
		cons := root + "/dev/console"
		if !p.init {
			return []*os.File{slave, slave, slave}, nil
		}
		if f, err := os.OpenFile(cons, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			f.Close()
			if err := unix.Mount(slave.Name(), cons, "", unix.MS_BIND, ""); err != nil {
				p.a.debugf("bind /dev/console: %v", err)
			}
		}
		return []*os.File{slave, slave, slave}, nil
	}
	var in *os.File
	if req.Stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		p.stdin = w
		in = r
	} else {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		in = f
	}
	p.child = append(p.child, in)
	or, ow, err := os.Pipe()
	if err != nil {
		p.closeChildFiles()
		p.closeAll()
		return nil, err
	}
	p.stdout = or
	p.child = append(p.child, ow)
	er, ew, err := os.Pipe()
	if err != nil {
		p.closeChildFiles()
		p.closeAll()
		return nil, err
	}
	p.stderr = er
	p.child = append(p.child, ew)
	return []*os.File{in, ow, ew}, nil
}

// openPTY allocates a terminal from the devpts instance mounted at pts (the
// container's own, so the slave's name is valid inside the container).
func openPTY(pts string) (master, slave *os.File, err error) {
	mfd, err := unix.Open(pts+"/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	name := fmt.Sprintf("%s/%d", pts, n)
	sfd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(mfd)
		return nil, nil, err
	}
	unix.SetNonblock(mfd, true)
	return os.NewFile(uintptr(mfd), pts+"/ptmx"), os.NewFile(uintptr(sfd), name), nil
}

func (p *proc) resize(rows, cols uint16) error {
	if p.master == nil {
		return errors.New("the process has no terminal")
	}
	sc, err := p.master.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	cerr := sc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if cerr != nil {
		return cerr
	}
	return ierr
}

func (p *proc) closeChildFiles() {
	for _, f := range p.child {
		f.Close()
	}
	p.child = nil
}

func (p *proc) closeAll() {
	for _, f := range []*os.File{p.master, p.stdin, p.stdout, p.stderr} {
		if f != nil {
			f.Close()
		}
	}
}

func (p *proc) markKilled() {
	p.killMu.Lock()
	p.killed = true
	p.killMu.Unlock()
}

// startIO starts copying the process's output to the host and the host's
// input to the process.
func (p *proc) startIO() {
	copyOut := func(f *os.File, typ byte) {
		defer p.outWG.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if werr := p.a.w.WriteFrame(typ, p.stream, buf[:n]); werr != nil {
					p.a.logf("write output: %v", werr)
				}
			}
			if err != nil {
				return
			}
		}
	}
	if p.master != nil {
		p.outWG.Add(1)
		go copyOut(p.master, agentproto.FrameStdout)
		go p.stdinLoop(p.master)
		return
	}
	p.outWG.Add(2)
	go copyOut(p.stdout, agentproto.FrameStdout)
	go copyOut(p.stderr, agentproto.FrameStderr)
	if p.stdin != nil {
		go p.stdinLoop(p.stdin)
	}
}

// stdinGrant returns the stdin window to grant the host in Started
// (Msg.StdinWindow): 0 for a process without stdin.
func (p *proc) stdinGrant() int64 {
	if p.stdin == nil && p.master == nil {
		return 0
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	p.stdinWindowed = true
	return maxStdinQueue
}

// stdinFree is the window left to a reconnecting host (Hello): what the
// queue has room for.
func (p *proc) stdinFree() int64 {
	if p.stdin == nil && p.master == nil {
		return 0
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if !p.stdinWindowed || p.stdinClosed || p.stdinEOF {
		return 0
	}
	return max(int64(maxStdinQueue-p.stdinBytes), 1)
}

// stdinCredit tells the host that n more bytes of stdin left the queue
// (written, or dropped), when it was granted a window.
func (p *proc) stdinCredit(n int) {
	p.stdinMu.Lock()
	windowed := p.stdinWindowed
	p.stdinMu.Unlock()
	if windowed && n > 0 {
		p.a.send(p.stream, &agentproto.Msg{Type: agentproto.MsgCredit, File: &agentproto.FileOp{Credit: int64(n)}})
	}
}

// queueStdin queues data for the process's stdin. A host within its
// window never fills the queue past maxStdinQueue; one without a window
// (an older host) is held, with the protocol reader, while more than
// that waits.
func (p *proc) queueStdin(b []byte) {
	if p.stdin == nil && p.master == nil {
		return // started without stdin
	}
	p.stdinMu.Lock()
	for p.stdinBytes > maxStdinQueue && !p.stdinClosed && !p.stdinWindowed {
		p.stdinCond.Wait()
	}
	dropped := 0
	if !p.stdinEOF && !p.stdinClosed {
		p.stdinQ = append(p.stdinQ, b)
		p.stdinBytes += len(b)
	} else {
		dropped = len(b)
	}
	p.stdinMu.Unlock()
	p.stdinCredit(dropped)
	p.wakeStdin()
}

func (p *proc) closeStdin() {
	p.stdinMu.Lock()
	p.stdinEOF = true
	p.stdinMu.Unlock()
	p.wakeStdin()
}

func (p *proc) wakeStdin() {
	select {
	case p.stdinWake <- struct{}{}:
	default:
	}
}

func (p *proc) stdinLoop(w *os.File) {
	for range p.stdinWake {
		for {
			p.stdinMu.Lock()
			if len(p.stdinQ) == 0 {
				eof, closed := p.stdinEOF, p.stdinClosed
				p.stdinMu.Unlock()
				if closed {
					return
				}
				if eof {
					// A terminal has no EOF to send: closing the master
					// would hang the session up. Pipes are closed.
					if p.master == nil {
						w.Close()
					}
					p.stdinMu.Lock()
					p.stdinClosed, p.stdinQ, p.stdinBytes = true, nil, 0
					p.stdinCond.Broadcast()
					p.stdinMu.Unlock()
					return
				}
				break
			}
			b := p.stdinQ[0]
			p.stdinQ = p.stdinQ[1:]
			p.stdinBytes -= len(b)
			p.stdinCond.Broadcast()
			p.stdinMu.Unlock()
			if _, err := w.Write(b); err != nil {
				// The process closed its stdin (EPIPE) or is gone: what
				// is queued is dropped, and credited.
				p.stdinMu.Lock()
				dropped := p.stdinBytes
				p.stdinClosed, p.stdinQ, p.stdinBytes = true, nil, 0
				p.stdinCond.Broadcast()
				p.stdinMu.Unlock()
				p.stdinCredit(len(b) + dropped)
				if p.master == nil {
					w.Close()
				}
				return
			}
			p.stdinCredit(len(b))
		}
	}
}

// stopStdin ends the stdin loop.
func (p *proc) stopStdin() {
	p.stdinMu.Lock()
	p.stdinClosed, p.stdinQ, p.stdinBytes = true, nil, 0
	p.stdinCond.Broadcast()
	p.stdinMu.Unlock()
	p.wakeStdin()
}

// reaper reaps every child of PID 1 (orphans included) on SIGCHLD.
func (a *agent) reaper(sigch <-chan os.Signal) {
	for range sigch {
		var exited []struct {
			p  *proc
			ws unix.WaitStatus
		}
		a.mu.Lock()
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			if p := a.byPid[pid]; p != nil && (ws.Exited() || ws.Signaled()) {
				delete(a.byPid, pid)
				exited = append(exited, struct {
					p  *proc
					ws unix.WaitStatus
				}{p, ws})
			}
		}
		a.mu.Unlock()
		for _, e := range exited {
			go a.processExited(e.p, e.ws)
		}
	}
}

func exitStatus(ws unix.WaitStatus) agentproto.ExitStatus {
	if ws.Signaled() {
		sig := int(ws.Signal())
		return agentproto.ExitStatus{Code: 128 + sig, Signal: sig}
	}
	return agentproto.ExitStatus{Code: ws.ExitStatus()}
}

func (a *agent) processExited(p *proc, ws unix.WaitStatus) {
	st := exitStatus(ws)
	p.killMu.Lock()
	killed := p.killed
	p.killMu.Unlock()
	if st.Signal == int(unix.SIGKILL) && !killed && p.oomBefore >= 0 && oomKills() > p.oomBefore {
		st.OOMKilled = true
	}
	<-p.started // Started goes out before Exit
	if p.pod != nil && p.init {
		// A joined container's process: the container ends with it, the
		// VM goes on (pods_linux.go).
		a.podExited(p, st)
		return
	}
	if p.stream != agentproto.MainStream {
		// (exec processes, later) drain and report; the VM keeps running.
		a.drain(p)
		// Counted while sent, so that the main process's exit, which
		// waits for the execs' (finishExecs), cannot overtake it.
		a.mu.Lock()
		delete(a.procs, p.stream)
		a.execExitsSending++
		a.mu.Unlock()
		a.send(p.stream, &agentproto.Msg{Type: agentproto.MsgExit, Status: &st})
		a.mu.Lock()
		a.execExitsSending--
		a.mu.Unlock()
		return
	}

	// The main process ended: the container ends with it. Exec'd
	// processes die too; their exits are reported before the main one's.
	a.markMainExiting()
	a.killJoined()
	unix.Kill(-1, unix.SIGKILL)
	a.drain(p)
	a.finishJoined()
	a.finishExecs()
	a.mu.Lock()
	a.phase = phaseExited
	a.exit = &st
	a.mu.Unlock()
	a.logf("main process exited: code %d%s", st.Code, sigSuffix(st))
	a.consoleLine(fmt.Sprintf("%s %d", agentproto.ConsoleExitMarker, st.Code))
	sent := make(chan struct{})
	go func() {
		a.send(p.stream, &agentproto.Msg{Type: agentproto.MsgExit, Status: &st})
		close(sent)
	}()
	select {
	case <-sent:
	case <-time.After(exitSendTimeout):
		a.logf("host not reading: powering off without delivering the exit status")
		a.powerOff()
	}
	a.mu.Lock()
	hold := a.hold
	a.mu.Unlock()
	if hold {
		// A build step: the host reads the changes from this VM, then
		// sends Shutdown. Nothing else may run meanwhile.
		unix.Kill(-1, unix.SIGKILL)
		a.logf("holding after the exit for the host (build step)")
		return
	}
	a.powerOff()
}

func sigSuffix(st agentproto.ExitStatus) string {
	if st.Signal != 0 {
		s := fmt.Sprintf(" (signal %d)", st.Signal)
		if st.OOMKilled {
			s += " OOM-killed"
		}
		return s
	}
	return ""
}

// drain waits (bounded) until the process's output was forwarded.
func (a *agent) drain(p *proc) {
	p.stopStdin()
	done := make(chan struct{})
	go func() { p.outWG.Wait(); close(done) }()
	tick := time.NewTicker(outputDrainTimeout)
	defer tick.Stop()
	begin := time.Now()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			// A guest starved of CPU (TCG on a busy host) may not have
			// run the copiers yet: output still in a pipe is not dropped.
			if !p.outputWaiting() {
				a.logf("output of pid %d not drained: a pipe is held open, idle, after the process exited", p.pid)
				break wait
			}
			if time.Since(begin) > outputDrainCap {
				a.logf("output of pid %d not drained after %v", p.pid, outputDrainCap)
				break wait
			}
		}
	}
	p.closeAll()
}

// outputWaiting reports whether one of p's output pipes (or its pty) has
// data or an end of file waiting to be read.
func (p *proc) outputWaiting() bool {
	for _, f := range []*os.File{p.master, p.stdout, p.stderr} {
		if f != nil && readable(f) {
			return true
		}
	}
	return false
}

// readable polls f without blocking; SyscallConn keeps the file in the
// runtime poller's non-blocking mode (Fd would switch it to blocking).
func readable(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	ready := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0 {
			ready = true
		}
	})
	return ready
}

// powerOff kills everything, unmounts the container, syncs and powers off.
func (a *agent) powerOff() {
	a.powerOnce.Do(func() {
		unix.Kill(-1, unix.SIGKILL)
		a.closeMountNamespaces()
		a.unmountContainer()
		a.unmountPods()
		unix.Sync()
		a.debugf("powering off")
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	})
	select {} // the other caller waits for the power to go
}

// unmountContainer unmounts everything under containerRoot, deepest first,
// retrying briefly while killed processes still hold files; the root is
// remounted read-only if it stays busy.
func (a *agent) unmountContainer() {
	if busy := unmountUnder(containerRoot, time.Second); busy != nil {
		a.logf("%v; remounting read-only", busy)
		for _, mp := range mountPointsUnder(containerRoot) {
			if mp != containerRoot {
				unix.Unmount(mp, unix.MNT_DETACH)
			}
		}
		unix.Mount("", containerRoot, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	}
}

// unmountPods unmounts what is left of joined containers (powering off).
func (a *agent) unmountPods() {
	if busy := unmountUnder(podsDir, time.Second); busy != nil {
		a.logf("%v; remounting read-only", busy)
		for _, mp := range mountPointsUnder(podsDir) {
			if unix.Mount("", mp, "", unix.MS_REMOUNT|unix.MS_RDONLY, "") != nil {
				unix.Unmount(mp, unix.MNT_DETACH)
			}
		}
	}
}

// mountPointsUnder lists mount points at or below dir, in unmount order.
func mountPointsUnder(dir string) []string {
	mps, _ := mountinfo.Under(dir)
	return mps
}
