package fakeagent

import (
	"io"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Guest is a fake guest agent serving whole sessions: it answers
// host-hello with its phase, runs the main process on start, joined
// containers' processes on join (pods) and others on exec (as Go
// functions), delivers signals, answers mount, freeze, thaw and
// shutdown, and powers the VM off (PowerOff) when the main process has
// exited, as the real agent does: after killing the joined containers
// and reporting their exits. Set the fields before the first connection.
type Guest struct {
	// Main is the container's main process; it returns the exit code
	// (128+signal for a signal death). Default: WaitSignal, any signal.
	Main func(p *Proc) int
	// Exec is an exec'd process (e.g. a health probe); p.Container says
	// in which container. Default: exit 0.
	Exec func(p *Proc) int
	// Join is the process of a container that joined the VM
	// (p.Container). Default: WaitSignal, any signal.
	Join func(p *Proc) int
	// JoinError, if set, may refuse a join as StartError a start.
	JoinError func(req *agentproto.StartRequest) (msg, code string)
	// StartError, if set, may refuse a start: a non-empty message is the
	// error reply, code its Msg.ErrCode.
	StartError func(req *agentproto.StartRequest) (msg, code string)
	// PowerOff is called once when the VM powers off (after the main
	// process's exit, or a shutdown of an idle agent).
	PowerOff func()

	mu       sync.Mutex
	w        *agentproto.Writer
	phase    string
	exit     *agentproto.ExitStatus
	procs    map[uint32]*Proc
	nextPid  int
	requests []string
	start    *agentproto.StartRequest
	offOnce  sync.Once
	// joined are the containers that joined, by name (running, or exited
	// until one of the same name joins again).
	joined map[string]*joinedCtr
	// mainHeld: the main container's processes are held for a
	// checkpoint (freeze with no container): execs into it are refused.
	mainHeld bool
}

// joinedCtr is a container that joined the fake VM.
type joinedCtr struct {
	req    *agentproto.StartRequest
	stream uint32
	proc   *Proc
	exit   *agentproto.ExitStatus
	frozen bool
	done   chan struct{} // closed once its exit was sent
}

// Proc is a process the fake agent runs.
type Proc struct {
	Stream uint32
	Req    *agentproto.ProcessRequest
	Pid    int
	// Container is the joined container the process runs in ("" for the
	// main container).
	Container string
	g         *Guest
	signals   chan int
}

// Signals delivers the signals the host sends to the process.
func (p *Proc) Signals() <-chan int { return p.signals }

// WaitSignal waits for one of sigs (any signal if none) and returns
// 128+signal, the exit code of a process it killed.
func (p *Proc) WaitSignal(sigs ...syscall.Signal) int {
	for s := range p.signals {
		if len(sigs) == 0 {
			return 128 + s
		}
		for _, want := range sigs {
			if s == int(want) {
				return 128 + s
			}
		}
	}
	return 137
}

// Stdout writes to the process's stdout.
func (p *Proc) Stdout(s string) { p.g.write(agentproto.FrameStdout, p.Stream, []byte(s)) }

// Stderr writes to the process's stderr.
func (p *Proc) Stderr(s string) { p.g.write(agentproto.FrameStderr, p.Stream, []byte(s)) }

// Requests are the types of the messages the agent received, in order.
func (g *Guest) Requests() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.requests...)
}

// MainHeld reports whether the main container's processes are held
// still for a checkpoint (a freeze without a container, not yet thawed
// or released by restored).
func (g *Guest) MainHeld() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mainHeld
}

// StartRequest is the last start (or mount) request received.
func (g *Guest) StartRequest() *agentproto.StartRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.start
}

// JoinRequest is the last join request of the container name, nil if it
// never joined.
func (g *Guest) JoinRequest(name string) *agentproto.StartRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	if j := g.joined[name]; j != nil {
		return j.req
	}
	return nil
}

// Frozen reports whether the joined container name is frozen (freeze
// without a thaw since).
func (g *Guest) Frozen(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	j := g.joined[name]
	return j != nil && j.frozen
}

// Joined is what Hello lists of the joined containers.
func (g *Guest) Joined() []agentproto.JoinedState {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.joinedStates()
}

func (g *Guest) joinedStates() []agentproto.JoinedState {
	var out []agentproto.JoinedState
	for name, j := range g.joined {
		js := agentproto.JoinedState{Container: name, Stream: j.stream}
		if j.exit != nil {
			e := *j.exit
			js.Exit = &e
		} else {
			js.Pid = j.proc.Pid
		}
		out = append(out, js)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Container < out[j].Container })
	return out
}

// lookup returns the joined container name if it runs; "" or the main
// container's name is the main container (nil, true). g.mu is held.
func (g *Guest) lookup(name string) (j *joinedCtr, ok bool) {
	if name == "" || (g.start != nil && name == g.start.Container) {
		return nil, true
	}
	j = g.joined[name]
	if j == nil || j.exit != nil {
		return nil, false
	}
	return j, true
}

// Phase is the agent's phase: "idle", "running" or "exited".
func (g *Guest) Phase() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.phase == "" {
		return "idle"
	}
	return g.phase
}

// Serve answers the host on conn until it closes. A new connection (a
// host that reconnects) takes over from the previous one.
func (g *Guest) Serve(conn io.ReadWriter) {
	w := agentproto.NewWriter(conn)
	g.mu.Lock()
	g.w = w
	if g.procs == nil {
		g.procs = map[uint32]*Proc{}
	}
	g.mu.Unlock()
	r := agentproto.NewReader(conn)
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return
		}
		if f.Type != agentproto.FrameMsg {
			continue
		}
		m, err := agentproto.DecodeMsg(f)
		if err != nil {
			continue
		}
		g.mu.Lock()
		g.requests = append(g.requests, m.Type)
		g.mu.Unlock()
		g.handle(f.Stream, m)
	}
}

func (g *Guest) write(typ byte, stream uint32, b []byte) {
	g.mu.Lock()
	w := g.w
	g.mu.Unlock()
	if w != nil {
		_ = w.WriteFrame(typ, stream, b)
	}
}

func (g *Guest) send(stream uint32, m *agentproto.Msg) {
	g.mu.Lock()
	w := g.w
	g.mu.Unlock()
	if w != nil {
		_ = w.WriteMsg(stream, m)
	}
}

func (g *Guest) reply(stream uint32, m *agentproto.Msg, errMsg, code string) {
	r := &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID}
	if errMsg != "" {
		r.Type, r.Message, r.ErrCode = agentproto.MsgError, errMsg, code
	}
	g.send(stream, r)
}

func (g *Guest) handle(stream uint32, m *agentproto.Msg) {
	switch m.Type {
	case agentproto.MsgHostHello:
		g.mu.Lock()
		h := &agentproto.Msg{Type: agentproto.MsgHello, ID: m.ID, Version: agentproto.Version, Nonce: m.Nonce, Agent: "fake", Kernel: "6.1", Phase: g.phase}
		if h.Phase == "" {
			h.Phase = "idle"
		}
		if p := g.procs[agentproto.MainStream]; p != nil && g.phase == "running" {
			h.Pid = p.Pid
		}
		if g.exit != nil {
			e := *g.exit
			h.Exit = &e
		}
		h.Joined = g.joinedStates()
		g.mu.Unlock()
		g.send(0, h)
	case agentproto.MsgMount:
		g.mu.Lock()
		g.start = m.Start
		g.mu.Unlock()
		g.reply(stream, m, "", "")
	case agentproto.MsgStart:
		g.mu.Lock()
		g.start = m.Start
		g.mu.Unlock()
		if g.StartError != nil && m.Start != nil {
			if msg, code := g.StartError(m.Start); msg != "" {
				g.reply(stream, m, msg, code)
				return
			}
		}
		p := g.spawn(agentproto.MainStream, &m.Start.Process)
		g.mu.Lock()
		g.phase = "running"
		g.mu.Unlock()
		g.send(stream, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: p.Pid})
		go g.runMain(p)
	case agentproto.MsgExec:
		g.mu.Lock()
		running := g.phase == "running"
		_, busy := g.procs[stream]
		jc, known := g.lookup(m.Container)
		held := jc == nil && g.mainHeld
		g.mu.Unlock()
		switch {
		case !known:
			g.reply(stream, m, "no such container in this VM: "+m.Container, "")
			return
		case held:
			g.reply(stream, m, "container is being checkpointed: its processes are held still, try again when the checkpoint is done", agentproto.ErrProcessesHeld)
			return
		case !running:
			g.reply(stream, m, "container is not running", "")
			return
		case busy:
			g.reply(stream, m, "stream is in use", "")
			return
		}
		p := g.spawn(stream, m.Process)
		if jc != nil {
			p.Container = m.Container
		}
		g.send(stream, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: p.Pid})
		go g.runExec(p)
	case agentproto.MsgJoin:
		g.handleJoin(stream, m)
	case agentproto.MsgRestored:
		g.mu.Lock()
		g.mainHeld = false // released once the identity is set
		g.mu.Unlock()
		g.reply(stream, m, "", "")
	case agentproto.MsgFreeze, agentproto.MsgThaw:
		freeze := m.Type == agentproto.MsgFreeze
		g.mu.Lock()
		j, ok := g.lookup(m.Container)
		switch {
		case j != nil:
			j.frozen = freeze
		case ok: // the main container: a checkpoint's hold
			g.mainHeld = freeze
		}
		g.mu.Unlock()
		if !ok {
			g.reply(stream, m, "no such container in this VM: "+m.Container, "")
			return
		}
		g.reply(stream, m, "", "")
	case agentproto.MsgSignal:
		g.mu.Lock()
		p := g.procs[stream]
		g.mu.Unlock()
		if p == nil {
			g.reply(stream, m, "no such process", "")
			return
		}
		select {
		case p.signals <- m.Signal:
		default:
		}
		g.reply(stream, m, "", "")
	case agentproto.MsgResize:
		g.reply(stream, m, "", "")
	case agentproto.MsgShutdown:
		g.reply(stream, m, "", "")
		g.mu.Lock()
		p := g.procs[agentproto.MainStream]
		g.mu.Unlock()
		if p != nil {
			select {
			case p.signals <- int(syscall.SIGKILL):
			default:
			}
			return
		}
		go g.powerOff()
	default:
		g.reply(stream, m, "the fake agent does not serve "+m.Type, "")
	}
}

func (g *Guest) handleJoin(stream uint32, m *agentproto.Msg) {
	req := m.Start
	name := m.Container
	if req != nil && name == "" {
		name = req.Container
	}
	g.mu.Lock()
	running := g.phase == "running"
	_, busy := g.procs[stream]
	old := g.joined[name]
	isMain := g.start != nil && name == g.start.Container
	g.mu.Unlock()
	switch {
	case req == nil || name == "" || req.RootSerial == "":
		g.reply(stream, m, "join request without a container name or root disk serial", "")
		return
	case !running:
		g.reply(stream, m, "the VM's main container is not running", "")
		return
	case isMain:
		g.reply(stream, m, name+" is the VM's main container", "")
		return
	case old != nil && old.exit == nil:
		g.reply(stream, m, "container "+name+" is already running in this VM", "")
		return
	case busy || stream <= agentproto.MainStream:
		g.reply(stream, m, "stream is in use", "")
		return
	}
	if g.JoinError != nil {
		if msg, code := g.JoinError(req); msg != "" {
			g.reply(stream, m, msg, code)
			return
		}
	}
	p := g.spawn(stream, &req.Process)
	p.Container = name
	j := &joinedCtr{req: req, stream: stream, proc: p, done: make(chan struct{})}
	g.mu.Lock()
	if g.joined == nil {
		g.joined = map[string]*joinedCtr{}
	}
	g.joined[name] = j
	g.mu.Unlock()
	g.send(stream, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: p.Pid})
	go g.runJoined(j)
}

// runJoined runs a joined container's process; its exit does not end the
// VM.
func (g *Guest) runJoined(j *joinedCtr) {
	run := g.Join
	if run == nil {
		run = func(p *Proc) int { return p.WaitSignal() }
	}
	code := run(j.proc)
	st := agentproto.ExitStatus{Code: code}
	if code > 128 {
		st.Signal = code - 128
	}
	g.mu.Lock()
	delete(g.procs, j.stream)
	j.exit = &st
	j.frozen = false
	g.mu.Unlock()
	g.send(j.stream, &agentproto.Msg{Type: agentproto.MsgExit, Status: &st})
	close(j.done)
}

func (g *Guest) spawn(stream uint32, req *agentproto.ProcessRequest) *Proc {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nextPid++
	p := &Proc{Stream: stream, Req: req, Pid: 100 + g.nextPid, g: g, signals: make(chan int, 16)}
	g.procs[stream] = p
	return p
}

func (g *Guest) runMain(p *Proc) {
	main := g.Main
	if main == nil {
		main = func(p *Proc) int { return p.WaitSignal() }
	}
	code := main(p)
	st := agentproto.ExitStatus{Code: code}
	if code > 128 {
		st.Signal = code - 128
	}
	g.mu.Lock()
	g.phase = "exited"
	g.exit = &st
	var execs []*Proc
	for s, q := range g.procs {
		if s != agentproto.MainStream {
			execs = append(execs, q)
		}
	}
	var joined []*joinedCtr
	for _, j := range g.joined {
		if j.exit == nil {
			joined = append(joined, j)
		}
	}
	g.mu.Unlock()
	// Everything else dies with the main process.
	for _, q := range execs {
		select {
		case q.signals <- int(syscall.SIGKILL):
		default:
		}
	}
	// The joined containers' exits come before the main one's (bounded,
	// as the real agent's wait).
	deadline := time.Now().Add(2 * time.Second)
	for _, j := range joined {
		t := time.NewTimer(max(time.Until(deadline), 0))
		select {
		case <-j.done:
		case <-t.C:
		}
		t.Stop()
	}
	g.send(agentproto.MainStream, &agentproto.Msg{Type: agentproto.MsgExit, Status: &st})
	g.powerOff()
}

func (g *Guest) runExec(p *Proc) {
	run := g.Exec
	if run == nil {
		run = func(*Proc) int { return 0 }
	}
	code := run(p)
	g.mu.Lock()
	delete(g.procs, p.Stream)
	g.mu.Unlock()
	g.send(p.Stream, &agentproto.Msg{Type: agentproto.MsgExit, Status: &agentproto.ExitStatus{Code: code}})
}

func (g *Guest) powerOff() {
	g.offOnce.Do(func() {
		if g.PowerOff != nil {
			g.PowerOff()
		}
	})
}
