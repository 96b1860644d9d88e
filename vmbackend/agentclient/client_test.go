package agentclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend/agentclient/fakeagent"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

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
	host, a := fakeagent.NewPair(t)
	go func() {
		// Tail of a frame from a previous connection, then garbage that
		// contains the magic with an absurd length.
		junk := append([]byte("tail-of-old-frame"), 'J', 'V', 'M', '1', 3, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff)
		a.Hello(junk, "idle", agentproto.Version, nil)
		f, m := a.NextMsg(agentproto.MsgStart)
		if m == nil {
			return
		}
		if f.Stream != agentproto.MainStream || m.Start.Hostname != "box" || m.Start.Process.Args[0] != "sh" {
			t.Errorf("bad start request: stream %d %+v", f.Stream, m.Start)
		}
		// Output may precede Started.
		a.W.WriteFrame(agentproto.FrameStdout, 1, []byte("hel"))
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: 42})
		a.W.WriteFrame(agentproto.FrameStdout, 1, []byte("lo\n"))
		a.W.WriteFrame(agentproto.FrameStderr, 1, []byte("err\n"))

		// stdin
		f, _ = a.Next()
		if f.Type != agentproto.FrameStdin || string(f.Payload) != "input" {
			t.Errorf("want stdin frame, got %d %q", f.Type, f.Payload)
		}
		f, _ = a.Next()
		if f.Type != agentproto.FrameEOF {
			t.Errorf("want EOF frame, got %d", f.Type)
		}
		// signal: OK; resize: Error
		_, m = a.NextMsg(agentproto.MsgSignal)
		if m.Signal != 15 {
			t.Errorf("signal %d", m.Signal)
		}
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID})
		_, m = a.NextMsg(agentproto.MsgResize)
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: "no tty"})

		a.W.WriteFrame(agentproto.FrameStdout, 1, []byte("bye\n"))
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgExit, Status: &agentproto.ExitStatus{Code: 3}})
		_, m = a.NextMsg(agentproto.MsgShutdown)
		a.W.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID})
		a.Conn.Close()
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
	host, a := fakeagent.NewPair(t)
	go func() {
		a.Hello(nil, "idle", agentproto.Version, nil)
		_, m := a.NextMsg(agentproto.MsgStart)
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, ErrCode: agentproto.ErrCommandNotFound, Message: `exec: "nosuchcmd": executable file not found in $PATH`})
		// An agent that predates errCode: the text is classified.
		_, m = a.NextMsg(agentproto.MsgStart)
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: `exec: "/x": permission denied`})
		_, m = a.NextMsg(agentproto.MsgStart)
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: `unable to find user x: no matching entries in passwd file`})
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
	host, a := fakeagent.NewPair(t)
	go a.Hello(nil, "idle", agentproto.Version+1, nil)
	_, _, err := Connect(ctxT(t), host)
	if err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("err %v", err)
	}
}

func TestConnectContext(t *testing.T) {
	host, a := fakeagent.NewPair(t)
	go func() { // read host-hellos, never answer
		for {
			if _, err := a.R.ReadFrame(); err != nil {
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
	host, a := fakeagent.NewPair(t)
	release := make(chan struct{})
	go func() {
		_, hh := a.NextMsg(agentproto.MsgHostHello)
		// Output the agent was blocked writing while no host was connected.
		a.W.WriteFrame(agentproto.FrameStdout, 1, []byte("before "))
		a.W.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgHello, Version: agentproto.Version, Nonce: hh.Nonce, Phase: "running", Pid: 7})
		a.W.WriteFrame(agentproto.FrameStdout, 1, []byte("between "))
		<-release
		a.W.WriteFrame(agentproto.FrameStdout, 1, []byte("after"))
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgExit, Status: &agentproto.ExitStatus{Code: 137, Signal: 9}})
		a.Conn.Close()
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
	host, a := fakeagent.NewPair(t)
	go func() {
		_, hh := a.NextMsg(agentproto.MsgHostHello)
		a.W.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgHello, Version: agentproto.Version, Nonce: hh.Nonce, Phase: "exited", Exit: &agentproto.ExitStatus{Code: 5}})
		a.Conn.Close()
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
	host, a := fakeagent.NewPair(t)
	go func() {
		a.Hello(nil, "idle", agentproto.Version, nil)
		_, m := a.NextMsg(agentproto.MsgStart)
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: 1})
		a.Conn.Close()
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

// A guest that reads a request and never answers holds its caller for
// RequestTimeout, no longer (TestGuestNeverAnswers shows the same with a
// stopped VM); the connection stays usable for the next request.
func TestRequestTimeout(t *testing.T) {
	defer func(d time.Duration) { RequestTimeout = d }(RequestTimeout)
	RequestTimeout = 200 * time.Millisecond
	host, a := fakeagent.NewPair(t)
	go func() {
		a.Hello(nil, "running", agentproto.Version, nil)
		a.NextMsg(agentproto.MsgExec) // never answered
		f, m := a.NextMsg(agentproto.MsgExec)
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: "answered"})
	}()
	ctx := ctxT(t)
	c, _, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	_, err = c.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"x"}}, ProcessIO{})
	if err == nil || !strings.Contains(err.Error(), "did not answer") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a request the guest never answers: %v", err)
	}
	if d := time.Since(t0); d < RequestTimeout || d > RequestTimeout+2*time.Second {
		t.Fatalf("the unanswered request failed after %v, RequestTimeout is %v", d, RequestTimeout)
	}
	if _, err := c.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"x"}}, ProcessIO{}); err == nil || !strings.Contains(err.Error(), "answered") {
		t.Fatalf("the next request: %v", err)
	}
}

// What a guest reports of its start phases is bounded before it reaches
// the host's log: known-shape names, sane values, at most maxTimings.
func TestBoundedTimings(t *testing.T) {
	in := map[string]float64{"root-mount": 12.5, "spawn": 3, "Bad Name": 1, "neg": -1, "huge": 1e9, "": 2,
		strings.Repeat("a", 33): 1}
	for i := 0; i < 100; i++ {
		in[fmt.Sprintf("p%d", i)] = 1
	}
	out := boundedTimings(in)
	if len(out) > maxTimings {
		t.Fatalf("%d timings kept", len(out))
	}
	for k, v := range out {
		if k == "Bad Name" || k == "neg" || k == "huge" || k == "" || len(k) > 32 || v < 0 {
			t.Fatalf("kept %q=%v", k, v)
		}
	}
}

// Stdin within the agent's window (Msg.StdinWindow): the host sends what
// the credit allows and waits for MsgCredit; a signal goes through while
// the writer waits; the process's exit ends the wait.
func TestStdinWindow(t *testing.T) {
	host, a := fakeagent.NewPair(t)
	got := make(chan string, 8)
	go func() {
		a.Hello(nil, "idle", agentproto.Version, nil)
		_, m := a.NextMsg(agentproto.MsgStart)
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: 7, StdinWindow: 4})
		f, _ := a.Next()
		got <- string(f.Payload) // the first 4 bytes
		// The writer now waits; a signal is not held up behind it.
		_, m = a.NextMsg(agentproto.MsgSignal)
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID})
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgCredit, File: &agentproto.FileOp{Credit: 3}})
		f, _ = a.Next()
		got <- string(f.Payload)
		// No more credit: the exit ends the writer's wait.
		a.W.WriteMsg(1, &agentproto.Msg{Type: agentproto.MsgExit, Status: &agentproto.ExitStatus{Code: 0}})
	}()
	ctx := ctxT(t)
	c, _, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.Start(ctx, &agentproto.StartRequest{Process: agentproto.ProcessRequest{Args: []string{"cat"}, Stdin: true}}, ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	var n int
	go func() {
		var err error
		n, err = p.Stdin().Write([]byte("0123456789"))
		werr <- err
	}()
	if s := <-got; s != "0123" {
		t.Fatalf("first stdin frame %q, want the window's 4 bytes", s)
	}
	if err := p.Signal(ctx, 15); err != nil {
		t.Fatalf("signal while stdin waits for credit: %v", err)
	}
	if s := <-got; s != "456" {
		t.Fatalf("second stdin frame %q, want the credit's 3 bytes", s)
	}
	select {
	case err := <-werr:
		if err == nil || n != 7 {
			t.Fatalf("write after the exit: %d, %v", n, err)
		}
	case <-ctx.Done():
		t.Fatal("the writer still waits after the exit")
	}
}
