package agentclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// fakeAgent serves the agent side of a net.Pipe.
type fakeAgent struct {
	t    *testing.T
	conn net.Conn
	r    *agentproto.Reader
	w    *agentproto.Writer
}

func newPair(t *testing.T) (host net.Conn, a *fakeAgent) {
	h, g := net.Pipe()
	t.Cleanup(func() { h.Close(); g.Close() })
	return h, &fakeAgent{t: t, conn: g, r: agentproto.NewReader(g), w: agentproto.NewWriter(g)}
}

// next reads the next message frame, skipping others.
func (a *fakeAgent) next() (*agentproto.Frame, *agentproto.Msg) {
	for {
		f, err := a.r.ReadFrame()
		if err != nil {
			a.t.Errorf("fake agent read: %v", err)
			return nil, nil
		}
		if f.Type != agentproto.FrameMsg {
			return f, nil
		}
		m, err := agentproto.DecodeMsg(f)
		if err != nil {
			a.t.Errorf("fake agent decode: %v", err)
		}
		return f, m
	}
}

func (a *fakeAgent) nextMsg(typ string) (*agentproto.Frame, *agentproto.Msg) {
	for {
		f, m := a.next()
		if f == nil {
			return nil, nil
		}
		if m != nil && m.Type == typ {
			return f, m
		}
	}
}

// hello answers the host-hello; junk is written first (a partial frame).
func (a *fakeAgent) hello(junk []byte, phase string, version int, extra func(*agentproto.Msg)) {
	_, hh := a.nextMsg(agentproto.MsgHostHello)
	if hh == nil {
		return
	}
	if len(junk) > 0 {
		a.conn.Write(junk)
	}
	m := &agentproto.Msg{Type: agentproto.MsgHello, Version: version, Nonce: hh.Nonce, Agent: "test", Kernel: "6.1", Phase: phase}
	if extra != nil {
		extra(m)
	}
	// A hello with a wrong nonce (stale) must be skipped.
	a.w.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgHello, Version: version, Nonce: "stale", Phase: "idle"})
	a.w.WriteMsg(0, m)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuf) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStartOutputExit(t *testing.T) {
	host, a := newPair(t)
	go func() {
		// Tail of a frame from a previous connection, then garbage that
		// contains the magic with an absurd length.
		junk := append([]byte("tail-of-old-frame"), 'J', 'V', 'M', '1', 3, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff)
		a.hello(junk, "idle", agentproto.Version, nil)
		f, m := a.nextMsg(agentproto.MsgStart)
		if m == nil {
			return
		}
		if f.Stream != agentproto.MainStream || m.Start.Hostname != "box" || m.Start.Process.Args[0] != "sh" {
			t.Errorf("bad start request: stream %d %+v", f.Stream, m.Start)
		}
		// Output may precede Started.
		a.w.WriteFrame(agentproto.FrameStdout, 1, []byte("hel"))
		a.w.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: 42})
		a.w.WriteFrame(agentproto.FrameStdout, 1, []byte("lo\n"))
		a.w.WriteFrame(agentproto.FrameStderr, 1, []byte("err\n"))

		// stdin
		f, _ = a.next()
		if f.Type != agentproto.FrameStdin || string(f.Payload) != "input" {
			t.Errorf("want stdin frame, got %d %q", f.Type, f.Payload)
		}
		f, _ = a.next()
		if f.Type != agentproto.FrameEOF {
			t.Errorf("want EOF frame, got %d", f.Type)
		}
		// signal: OK; resize: Error
		_, m = a.nextMsg(agentproto.MsgSignal)
		if m.Signal != 15 {
			t.Errorf("signal %d", m.Signal)
		}
		a.w.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID})
		_, m = a.nextMsg(agentproto.MsgResize)
		a.w.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: "no tty"})

		a.w.WriteFrame(agentproto.FrameStdout, 1, []byte("bye\n"))
		a.w.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgExit, Status: &agentproto.ExitStatus{Code: 3}})
		_, m = a.nextMsg(agentproto.MsgShutdown)
		a.w.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID})
		a.conn.Close()
	}()

	ctx := ctxT(t)
	c, hello, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	if hello.Phase != "idle" || hello.Agent != "test" {
		t.Fatalf("hello %+v", hello)
	}
	var out, errb syncBuf
	p, err := c.Start(ctx, &agentproto.StartRequest{RootDevice: "/dev/vda", Hostname: "box",
		Process: agentproto.ProcessRequest{Args: []string{"sh"}, Stdin: true}}, ProcessIO{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() != 42 {
		t.Fatalf("pid %d", p.Pid())
	}
	io.WriteString(p.Stdin(), "input")
	p.Stdin().Close()
	if err := p.Signal(ctx, 15); err != nil {
		t.Fatal(err)
	}
	err = p.Resize(ctx, 24, 80)
	var ae *AgentError
	if !errors.As(err, &ae) || ae.Message != "no tty" {
		t.Fatalf("resize error %v", err)
	}
	select {
	case <-p.Exited():
	case <-ctx.Done():
		t.Fatal("no exit")
	}
	st, ok := p.Status()
	if !ok || st.Code != 3 {
		t.Fatalf("status %+v %v", st, ok)
	}
	if out.String() != "hello\nbye\n" || errb.String() != "err\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("connection not done")
	}
	if c.Err() == nil {
		t.Fatal("Err nil after done")
	}
}

func TestStartError(t *testing.T) {
	host, a := newPair(t)
	go func() {
		a.hello(nil, "idle", agentproto.Version, nil)
		_, m := a.nextMsg(agentproto.MsgStart)
		a.w.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, ErrCode: agentproto.ErrCommandNotFound, Message: `exec: "nosuchcmd": executable file not found in $PATH`})
		// An agent that predates errCode: the text is classified.
		_, m = a.nextMsg(agentproto.MsgStart)
		a.w.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: `exec: "/x": permission denied`})
		_, m = a.nextMsg(agentproto.MsgStart)
		a.w.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: `unable to find user x: no matching entries in passwd file`})
	}()
	ctx := ctxT(t)
	c, _, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Start(ctx, &agentproto.StartRequest{Process: agentproto.ProcessRequest{Args: []string{"nosuchcmd"}}}, ProcessIO{})
	if err == nil || !strings.Contains(err.Error(), "executable file not found") || !IsCommandNotFound(err) || IsCommandNotExecutable(err) {
		t.Fatalf("err %v", err)
	}
	_, err = c.Start(ctx, &agentproto.StartRequest{Process: agentproto.ProcessRequest{Args: []string{"/x"}}}, ProcessIO{})
	if !IsCommandNotExecutable(err) {
		t.Fatalf("legacy permission denied: %#v", err)
	}
	_, err = c.Start(ctx, &agentproto.StartRequest{Process: agentproto.ProcessRequest{Args: []string{"x"}}}, ProcessIO{})
	if err == nil || IsCommandNotFound(err) || IsCommandNotExecutable(err) {
		t.Fatalf("other error: %#v", err)
	}
	c.Close()
	<-c.Done()
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Err %v", c.Err())
	}
}

func TestVersionMismatch(t *testing.T) {
	host, a := newPair(t)
	go a.hello(nil, "idle", agentproto.Version+1, nil)
	_, _, err := Connect(ctxT(t), host)
	if err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("err %v", err)
	}
}

func TestConnectContext(t *testing.T) {
	host, a := newPair(t)
	go func() { // read host-hellos, never answer
		for {
			if _, err := a.r.ReadFrame(); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := Connect(ctx, host); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
}

func TestReattach(t *testing.T) {
	host, a := newPair(t)
	release := make(chan struct{})
	go func() {
		_, hh := a.nextMsg(agentproto.MsgHostHello)
		// Output the agent was blocked writing while no host was connected.
		a.w.WriteFrame(agentproto.FrameStdout, 1, []byte("before "))
		a.w.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgHello, Version: agentproto.Version, Nonce: hh.Nonce, Phase: "running", Pid: 7})
		a.w.WriteFrame(agentproto.FrameStdout, 1, []byte("between "))
		<-release
		a.w.WriteFrame(agentproto.FrameStdout, 1, []byte("after"))
		a.w.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgExit, Status: &agentproto.ExitStatus{Code: 137, Signal: 9}})
		a.conn.Close()
	}()
	ctx := ctxT(t)
	c, h, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	if h.Phase != "running" {
		t.Fatal(h.Phase)
	}
	time.Sleep(50 * time.Millisecond)
	var out syncBuf
	p := c.Reattach(ProcessIO{Stdout: &out, Stderr: &out})
	if p.Pid() != 7 {
		t.Fatalf("pid %d", p.Pid())
	}
	close(release)
	<-p.Exited()
	st, ok := p.Status()
	if !ok || st.Code != 137 || st.Signal != 9 {
		t.Fatalf("status %+v %v", st, ok)
	}
	if out.String() != "before between after" {
		t.Fatalf("out %q", out.String())
	}
}

func TestReattachExited(t *testing.T) {
	host, a := newPair(t)
	go func() {
		_, hh := a.nextMsg(agentproto.MsgHostHello)
		a.w.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgHello, Version: agentproto.Version, Nonce: hh.Nonce, Phase: "exited", Exit: &agentproto.ExitStatus{Code: 5}})
		a.conn.Close()
	}()
	ctx := ctxT(t)
	c, _, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	p := c.Reattach(ProcessIO{})
	<-p.Exited()
	if st, ok := p.Status(); !ok || st.Code != 5 {
		t.Fatalf("status %+v %v", st, ok)
	}
}

func TestConnectionLost(t *testing.T) {
	host, a := newPair(t)
	go func() {
		a.hello(nil, "idle", agentproto.Version, nil)
		_, m := a.nextMsg(agentproto.MsgStart)
		a.w.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: 1})
		a.conn.Close()
	}()
	ctx := ctxT(t)
	c, _, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Start(ctx, &agentproto.StartRequest{Process: agentproto.ProcessRequest{Args: []string{"x"}}}, ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	if _, ok := p.Status(); ok {
		t.Fatal("status ok after connection loss")
	}
	if err := p.Signal(ctx, 9); err == nil {
		t.Fatal("signal after loss succeeded")
	}
}
