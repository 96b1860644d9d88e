package agentclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Connect repeats its host-hello, backing off from helloResendMin to
// helloResendMax, until the agent answers: a hello can be lost when it
// lands in the middle of a partial frame a previous host left behind (the
// agent resynchronises on the next magic). QEMU holds data until the guest
// opens its port, so on a cold boot the repeats queue up and the agent
// answers each (the client ignores the extra Hellos).
const (
	helloResendMin = 250 * time.Millisecond
	helloResendMax = 4 * time.Second
)

// maxEarlyOutput bounds the main-stream output buffered between Connect and
// Reattach (output of a running process the daemon has not re-adopted yet).
const maxEarlyOutput = 4 << 20

// ErrClosed is the connection error after Close.
var ErrClosed = errors.New("agentclient: connection closed")

type client struct {
	conn io.ReadWriteCloser
	r    *agentproto.Reader
	w    *agentproto.Writer

	nonce   string
	helloCh chan *agentproto.Msg // receives the matching Hello once

	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	errv    error
	nextID  uint64
	pending map[uint64]chan *agentproto.Msg
	procs   map[uint32]*process
	hello   *agentproto.Msg // nil until the handshake completed
	main    *process        // main process seen before Reattach (phase running/exited)
	// joined are the processes of the containers Hello listed as joined,
	// by container, until ReattachJoined (pods.go).
	joined map[string]*process
	// lastStream is the last stream allocated to an exec (exec.go).
	lastStream uint32
	// files are the streams of file operations (archive.go).
	files fileStreams
}

func connect(ctx context.Context, conn io.ReadWriteCloser) (*Client, *agentproto.Msg, error) {
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, nil, fmt.Errorf("agentclient: nonce: %w", err)
	}
	c := &client{
		conn:    conn,
		r:       agentproto.NewReader(conn),
		w:       agentproto.NewWriter(conn),
		nonce:   hex.EncodeToString(nb[:]),
		helloCh: make(chan *agentproto.Msg, 1),
		done:    make(chan struct{}),
		pending: map[uint64]chan *agentproto.Msg{},
		procs:   map[uint32]*process{},
	}
	// Output and the exit of the main process that arrive during the
	// handshake (a running guest blocked writing while no host was
	// connected) are kept for Reattach.
	c.main = newProcess(c, agentproto.MainStream)
	c.main.buffering = true
	c.procs[agentproto.MainStream] = c.main

	go c.readLoop()

	hh := &agentproto.Msg{Type: agentproto.MsgHostHello, Version: agentproto.Version, Nonce: c.nonce}
	stopResend := make(chan struct{})
	defer close(stopResend)
	go func() {
		wait := helloResendMin
		for {
			if err := c.w.WriteMsg(0, hh); err != nil {
				c.fail(fmt.Errorf("agentclient: send host-hello: %w", err))
				return
			}
			t := time.NewTimer(wait)
			if wait *= 2; wait > helloResendMax {
				wait = helloResendMax
			}
			select {
			case <-t.C:
			case <-stopResend:
				t.Stop()
				return
			case <-c.done:
				t.Stop()
				return
			}
		}
	}()

	select {
	case h := <-c.helloCh:
		if h.Version != agentproto.Version {
			c.failAndClose(fmt.Errorf("agentclient: agent speaks protocol version %d, want %d", h.Version, agentproto.Version))
			return nil, nil, c.err()
		}
		return &Client{impl: c}, h, nil
	case <-c.done:
		return nil, nil, c.err()
	case <-ctx.Done():
		c.failAndClose(ctx.Err())
		return nil, nil, ctx.Err()
	}
}

func (c *client) readLoop() {
	for {
		f, err := c.r.ReadFrame()
		if err != nil {
			c.mu.Lock()
			handshaking := c.hello == nil
			c.mu.Unlock()
			// Before the Hello, the stream may hold the tail of a frame of a
			// previous connection: resynchronise on the magic.
			if errors.Is(err, agentproto.ErrBadMagic) || (handshaking && errors.Is(err, agentproto.ErrTooLarge)) {
				if err := c.r.Resync(); err != nil {
					c.fail(streamErr(err))
					return
				}
				continue
			}
			c.fail(streamErr(err))
			return
		}
		if !c.dispatch(f) {
			return
		}
	}
}

func streamErr(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("agentclient: agent connection closed: %w", err)
	}
	return fmt.Errorf("agentclient: agent connection: %w", err)
}

// dispatch handles one frame; it returns false to stop the reader.
func (c *client) dispatch(f *agentproto.Frame) bool {
	c.mu.Lock()
	handshaking := c.hello == nil
	p := c.procs[f.Stream]
	c.mu.Unlock()
	if !handshaking && c.dispatchFile(f) { // file operations: archive.go
		return true
	}

	switch f.Type {
	case agentproto.FrameStdout, agentproto.FrameStderr:
		if p != nil {
			p.output(f.Type, f.Payload)
		}
		return true
	case agentproto.FrameMsg:
	default:
		if !handshaking {
			logrus.Debugf("agentclient: ignoring frame type %d on stream %d", f.Type, f.Stream)
		}
		return true
	}

	m, err := agentproto.DecodeMsg(f)
	if err != nil {
		if handshaking {
			return true // garbage from a previous connection
		}
		c.failAndClose(err)
		return false
	}

	if handshaking {
		switch {
		case m.Type == agentproto.MsgHello && m.Nonce == c.nonce:
			c.mu.Lock()
			c.hello = m
			main := c.main
			if m.Phase != "running" && m.Phase != "exited" {
				// Nothing to re-adopt: forget what we buffered.
				delete(c.procs, agentproto.MainStream)
				c.main = nil
			} else {
				main.mu.Lock()
				main.pid = m.Pid
				if !main.hasStatus && m.Exit != nil {
					main.st, main.hasStatus, main.ok = *m.Exit, true, true
				}
				main.mu.Unlock()
				main.grantStdin(m.StdinWindow, true)
			}
			// Joined containers' streams: buffered until ReattachJoined,
			// as the main stream is until Reattach.
			c.joined = map[string]*process{}
			for _, j := range m.Joined {
				if j.Container == "" || j.Stream <= agentproto.MainStream || c.procs[j.Stream] != nil {
					continue
				}
				jp := newProcess(c, j.Stream)
				jp.buffering = true
				jp.pid = j.Pid
				jp.grantStdin(j.StdinWindow, true)
				if j.Exit != nil {
					jp.st, jp.hasStatus, jp.ok = *j.Exit, true, true
				} else {
					c.procs[j.Stream] = jp
				}
				c.joined[j.Container] = jp
			}
			c.mu.Unlock()
			c.helloCh <- m
		case m.Type == agentproto.MsgExit && p != nil:
			p.setExit(m.Status)
		}
		return true
	}

	switch m.Type {
	case agentproto.MsgCredit:
		if p != nil && m.File != nil {
			p.grantStdin(m.File.Credit, false)
		}
		return true
	case agentproto.MsgExit:
		if p != nil {
			c.mu.Lock()
			delete(c.procs, f.Stream)
			c.mu.Unlock()
			p.setExit(m.Status)
		}
		return true
	case agentproto.MsgLog:
		logrus.Infof("jevm agent: %s", m.Message)
		return true
	case agentproto.MsgHello:
		return true // a late answer to a repeated host-hello
	}
	if m.ID != 0 {
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
			return true
		}
	}
	logrus.Debugf("agentclient: unexpected %q message (id %d) on stream %d", m.Type, m.ID, f.Stream)
	return true
}

// fail records the first error and ends the connection's life: pending
// requests fail and processes still running are marked lost.
func (c *client) fail(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.errv = err
		procs := c.procs
		c.procs = map[uint32]*process{}
		if c.main != nil {
			procs[agentproto.MainStream] = c.main
		}
		c.mu.Unlock()
		close(c.done)
		for _, p := range procs {
			p.lost()
		}
	})
}

func (c *client) failAndClose(err error) {
	c.fail(err)
	c.conn.Close()
}

func (c *client) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.errv
}

func (c *client) close() error {
	c.fail(ErrClosed)
	return c.conn.Close()
}

// request sends m (assigning its ID) on stream and waits for the reply.
// An Error reply is returned as an error.
func (c *client) request(ctx context.Context, stream uint32, m *agentproto.Msg) (*agentproto.Msg, error) {
	// The guest is untrusted: a reply it never sends must not hold the
	// caller for ever (a guest that hangs, or whose VM is stopped).
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	ch := make(chan *agentproto.Msg, 1)
	c.mu.Lock()
	if c.errv != nil {
		err := c.errv
		c.mu.Unlock()
		return nil, err
	}
	c.nextID++
	m.ID = c.nextID
	c.pending[m.ID] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
	}
	if err := c.w.WriteMsg(stream, m); err != nil {
		forget()
		return nil, fmt.Errorf("agentclient: send %s: %w", m.Type, err)
	}
	reply := func(r *agentproto.Msg) (*agentproto.Msg, error) {
		if r.Type == agentproto.MsgError {
			code := r.ErrCode
			if code == "" && (m.Type == agentproto.MsgStart || m.Type == agentproto.MsgExec) {
				code = legacyProcessErrCode(r.Message)
			}
			return r, &AgentError{Op: m.Type, Code: code, Message: r.Message}
		}
		return r, nil
	}
	select {
	case r := <-ch:
		return reply(r)
	case <-c.done:
		// The reply may have arrived just before the connection ended.
		select {
		case r := <-ch:
			return reply(r)
		default:
		}
		forget()
		return nil, c.err()
	case <-ctx.Done():
		forget()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("agentclient: %s: the guest agent did not answer: %w", m.Type, ctx.Err())
		}
		return nil, ctx.Err()
	}
}

// RequestTimeout bounds the wait for the agent's reply to any request
// (the data of file operations flows after the reply, under credit, and
// is not bounded by it). The slowest replies are a start's and a join's
// (a hot-plugged disk awaited for up to 20 s, then the mounts), seconds
// under TCG on a loaded host.
var RequestTimeout = 60 * time.Second

// AgentError is a request the agent refused; Message is the agent's text
// (e.g. `exec: "x": executable file not found in $PATH`). For start and
// exec, Code says why the command could not run
// (agentproto.ErrCommandNotFound, ErrCommandNotExecutable) or is empty.
type AgentError struct {
	Op      string
	Code    string
	Message string
}

func (e *AgentError) Error() string { return e.Message }

// IsCommandNotFound reports whether err is a start or exec refused because
// the command does not exist (dockerd's exit code 127).
func IsCommandNotFound(err error) bool { return agentErrCode(err) == agentproto.ErrCommandNotFound }

// IsCommandNotExecutable reports whether err is a start or exec refused
// because the command may not be executed (dockerd's exit code 126).
func IsCommandNotExecutable(err error) bool {
	return agentErrCode(err) == agentproto.ErrCommandNotExecutable
}

// IsProcessesHeld reports whether err is an exec refused because the
// container's processes are held still for a checkpoint (for a moment:
// it may be tried again).
func IsProcessesHeld(err error) bool { return agentErrCode(err) == agentproto.ErrProcessesHeld }

func agentErrCode(err error) string {
	var ae *AgentError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// legacyProcessErrCode classifies the error text of an agent that predates
// Msg.ErrCode (a container started before a daemon upgrade keeps its
// agent), as the daemon used to.
func legacyProcessErrCode(msg string) string {
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "executable file not found") || strings.Contains(lower, "no such file or directory"):
		return agentproto.ErrCommandNotFound
	case strings.Contains(lower, "permission denied"):
		return agentproto.ErrCommandNotExecutable
	}
	return ""
}

func (c *client) start(ctx context.Context, req *agentproto.StartRequest, pio ProcessIO) (*Process, error) {
	p := newProcess(c, agentproto.MainStream)
	p.pio = pio
	p.stdinOK = req.Process.Stdin
	c.mu.Lock()
	if c.main != nil {
		c.mu.Unlock()
		return nil, errors.New("agentclient: the agent already runs a main process")
	}
	if old := c.procs[agentproto.MainStream]; old != nil {
		c.mu.Unlock()
		return nil, errors.New("agentclient: a main process was already started")
	}
	// Registered before the request: output may precede Started.
	c.procs[agentproto.MainStream] = p
	c.mu.Unlock()

	r, err := c.request(ctx, agentproto.MainStream, &agentproto.Msg{Type: agentproto.MsgStart, Start: req})
	if err != nil {
		c.mu.Lock()
		if c.procs[agentproto.MainStream] == p {
			delete(c.procs, agentproto.MainStream)
		}
		c.mu.Unlock()
		return nil, err
	}
	p.mu.Lock()
	p.pid = r.Pid
	p.timings = boundedTimings(r.Timings)
	p.mu.Unlock()
	p.grantStdin(r.StdinWindow, true)
	return &Process{impl: p}, nil
}

// maxTimings bounds what a (possibly hostile) guest may put in the
// host's start trace: names are short words, at most this many.
const maxTimings = 32

func boundedTimings(in map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range in {
		if len(out) == maxTimings {
			break
		}
		ok := k != "" && len(k) <= 32
		for _, r := range k {
			ok = ok && (r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
		}
		if ok && v >= 0 && v < 1e7 {
			out[k] = v
		}
	}
	return out
}

func (c *client) reattach(pio ProcessIO) *Process {
	c.mu.Lock()
	p := c.main
	c.main = nil
	c.mu.Unlock()
	if p == nil {
		// The agent was idle: nothing runs. Return a process that is
		// already lost so callers do not block forever.
		p = newProcess(c, agentproto.MainStream)
		p.lost()
		return &Process{impl: p}
	}
	p.attach(pio)
	return &Process{impl: p}
}

func (c *client) shutdown(ctx context.Context) error {
	_, err := c.request(ctx, 0, &agentproto.Msg{Type: agentproto.MsgShutdown})
	if err != nil {
		select {
		case <-c.done:
			// The guest powered off before (or instead of) answering.
			if !errors.Is(c.err(), ErrClosed) {
				return nil
			}
		default:
		}
		return err
	}
	return nil
}

type process struct {
	c      *client
	stream uint32
	exited chan struct{}

	mu        sync.Mutex
	pid       int
	timings   map[string]float64 // the agent's start phases (ms)
	pio       ProcessIO
	buffering bool // no ProcessIO yet (before Reattach)
	early     []earlyChunk
	earlySize int
	st        agentproto.ExitStatus
	hasStatus bool // status received
	closed    bool // exited channel closed
	ok        bool
	stdinOK   bool
	stdinW    *stdinWriter
	// Stdin flow control (agentproto.Msg.StdinWindow): once windowed,
	// stdin is sent only within credit, which the agent's MsgCredit
	// frames add to; creditCond (on mu) wakes a writer waiting for it.
	windowed   bool
	credit     int64
	creditCond *sync.Cond
}

// maxStdinCredit bounds the credit a (possibly hostile) guest can grant.
const maxStdinCredit = 64 << 20

// grantStdin adds n bytes to the stdin credit (the initial window with
// window set, or the agent's MsgCredit).
func (p *process) grantStdin(n int64, window bool) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	if window {
		p.windowed = true
	}
	p.credit = min(p.credit+n, maxStdinCredit)
	p.creditCond.Broadcast()
	p.mu.Unlock()
}

type earlyChunk struct {
	typ  byte
	data []byte
}

func newProcess(c *client, stream uint32) *process {
	p := &process{c: c, stream: stream, exited: make(chan struct{})}
	p.creditCond = sync.NewCond(&p.mu)
	return p
}

func (p *process) output(typ byte, data []byte) {
	p.mu.Lock()
	if p.buffering {
		if p.earlySize+len(data) <= maxEarlyOutput {
			p.early = append(p.early, earlyChunk{typ, data})
			p.earlySize += len(data)
		}
		p.mu.Unlock()
		return
	}
	w := p.pio.Stdout
	if typ == agentproto.FrameStderr {
		w = p.pio.Stderr
	}
	p.mu.Unlock()
	if w != nil {
		w.Write(data)
	}
}

func (p *process) setExit(st *agentproto.ExitStatus) {
	p.mu.Lock()
	if st != nil {
		p.st = *st
	}
	p.hasStatus = true
	p.ok = true
	buffering := p.buffering
	p.mu.Unlock()
	if !buffering {
		p.closeExited()
	}
}

func (p *process) closeExited() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.exited)
	}
	p.creditCond.Broadcast()
}

// lost marks the process as gone with the connection.
func (p *process) lost() {
	p.mu.Lock()
	buffering := p.buffering
	p.creditCond.Broadcast() // a stdin writer waiting for credit gives up
	p.mu.Unlock()
	if !buffering {
		p.closeExited()
	}
}

func (p *process) attach(pio ProcessIO) {
	p.mu.Lock()
	early := p.early
	p.early, p.earlySize = nil, 0
	p.mu.Unlock()
	// Deliver what was buffered, then switch to direct delivery. The
	// reader may append more while we flush, so loop until empty.
	for {
		for _, ch := range early {
			w := pio.Stdout
			if ch.typ == agentproto.FrameStderr {
				w = pio.Stderr
			}
			if w != nil {
				w.Write(ch.data)
			}
		}
		p.mu.Lock()
		if len(p.early) == 0 {
			p.buffering = false
			p.pio = pio
			done := p.hasStatus
			p.mu.Unlock()
			select {
			case <-p.c.done:
				done = true
			default:
			}
			if done {
				p.closeExited()
			}
			return
		}
		early = p.early
		p.early, p.earlySize = nil, 0
		p.mu.Unlock()
	}
}

func (p *process) status() (agentproto.ExitStatus, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st, p.ok
}

func (p *process) stdin() io.WriteCloser {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdinW == nil {
		p.stdinW = &stdinWriter{p: p}
	}
	return p.stdinW
}

func (p *process) signal(ctx context.Context, sig int) error {
	_, err := p.c.request(ctx, p.stream, &agentproto.Msg{Type: agentproto.MsgSignal, Signal: sig})
	return err
}

func (p *process) resize(ctx context.Context, rows, cols uint16) error {
	_, err := p.c.request(ctx, p.stream, &agentproto.Msg{Type: agentproto.MsgResize, Rows: rows, Cols: cols})
	return err
}

type stdinWriter struct {
	p      *process
	mu     sync.Mutex
	closed bool
}

func (s *stdinWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, io.ErrClosedPipe
	}
	if err := s.p.c.err(); err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	written := 0
	for written < len(b) {
		n, err := s.p.takeCredit(len(b) - written)
		if err != nil {
			return written, err
		}
		if err := s.p.c.w.WriteFrame(agentproto.FrameStdin, s.p.stream, b[written:written+n]); err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

// takeCredit waits until stdin may be sent and returns how much of want
// (all of it without a window), or an error once the process is gone.
func (p *process) takeCredit(want int) (int, error) {
	p.mu.Lock()
	for p.windowed && p.credit == 0 {
		if p.closed {
			p.mu.Unlock()
			return 0, io.ErrClosedPipe
		}
		select {
		case <-p.c.done:
			p.mu.Unlock()
			return 0, p.c.err() // not under p.mu: c.mu is taken before it
		default:
		}
		p.creditCond.Wait()
	}
	defer p.mu.Unlock()
	if !p.windowed {
		return want, nil
	}
	n := int(min(int64(want), p.credit))
	p.credit -= int64(n)
	return n, nil
}

func (s *stdinWriter) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.p.c.err(); err != nil {
		return err
	}
	return s.p.c.w.WriteFrame(agentproto.FrameEOF, s.p.stream, nil)
}
