package agentclient

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/jevm/jevm/vmbackend/agentclient/fakeagent"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

func TestExec(t *testing.T) {
	host, a := fakeagent.NewPair(t)
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		a.Hello(nil, "running", agentproto.Version, func(m *agentproto.Msg) { m.Pid = 5 })

		// First exec: stream 2 was left in use by a previous connection,
		// the client retries on the next stream.
		f, m := a.NextMsg(agentproto.MsgExec)
		if f.Stream <= agentproto.MainStream || m.Process == nil || m.Process.Args[0] != "cat" || !m.Process.Stdin || m.Process.User != "nobody" {
			t.Errorf("bad exec request: stream %d %+v", f.Stream, m.Process)
		}
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: "stream 2 is in use"})
		f, m = a.NextMsg(agentproto.MsgExec)
		s1 := f.Stream
		if s1 <= 2 {
			t.Errorf("retry used stream %d", s1)
		}
		a.W.WriteFrame(agentproto.FrameStdout, s1, []byte("early "))
		a.W.WriteMsg(s1, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: 100})

		// Second exec on another stream, while the first runs.
		f, m = a.NextMsg(agentproto.MsgExec)
		s2 := f.Stream
		if s2 == s1 || s2 <= agentproto.MainStream {
			t.Errorf("second exec stream %d (first %d)", s2, s1)
		}
		a.W.WriteMsg(s2, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: 101})
		a.W.WriteFrame(agentproto.FrameStderr, s2, []byte("two-err\n"))
		// Main-stream output is not delivered to execs (nobody reattached).
		a.W.WriteFrame(agentproto.FrameStdout, agentproto.MainStream, []byte("main\n"))

		// stdin, EOF, signal and resize arrive on the first exec's stream.
		f, _ = a.Next()
		if f.Type != agentproto.FrameStdin || f.Stream != s1 || string(f.Payload) != "data" {
			t.Errorf("stdin frame: type %d stream %d %q", f.Type, f.Stream, f.Payload)
		}
		f, _ = a.Next()
		if f.Type != agentproto.FrameEOF || f.Stream != s1 {
			t.Errorf("EOF frame: type %d stream %d", f.Type, f.Stream)
		}
		f, m = a.NextMsg(agentproto.MsgResize)
		if f.Stream != s1 || m.Rows != 30 || m.Cols != 100 {
			t.Errorf("resize on stream %d: %+v", f.Stream, m)
		}
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID})
		f, m = a.NextMsg(agentproto.MsgSignal)
		if f.Stream != s2 || m.Signal != 9 {
			t.Errorf("signal on stream %d: %+v", f.Stream, m)
		}
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID})

		a.W.WriteFrame(agentproto.FrameStdout, s1, []byte("data"))
		a.W.WriteMsg(s1, &agentproto.Msg{Type: agentproto.MsgExit, Status: &agentproto.ExitStatus{Code: 4}})
		a.W.WriteMsg(s2, &agentproto.Msg{Type: agentproto.MsgExit, Status: &agentproto.ExitStatus{Code: 137, Signal: 9}})

		// A failing exec.
		f, m = a.NextMsg(agentproto.MsgExec)
		if f.Stream == s1 || f.Stream == s2 {
			t.Errorf("stream %d reused", f.Stream)
		}
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: `exec: "nope": executable file not found in $PATH`})

		// top and stats
		f, m = a.NextMsg(agentproto.MsgTop)
		if f.Stream != 0 || m.PsArgs != "aux" {
			t.Errorf("top on stream %d args %q", f.Stream, m.PsArgs)
		}
		a.W.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID, Top: &agentproto.TopResult{Titles: []string{"PID", "CMD"}, Processes: [][]string{{"5", "sleep 1"}}}})
		_, m = a.NextMsg(agentproto.MsgStats)
		a.W.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID, Stats: &agentproto.GuestStats{CPUTotal: 10, Pids: 3, Memory: map[string]uint64{"MemTotal": 1 << 20}}})
		_, m = a.NextMsg(agentproto.MsgTop)
		a.W.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: "unsupported ps arguments"})
	}()

	ctx := ctxT(t)
	c, _, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out1, out2 syncBuf
	p1, err := c.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"cat"}, Stdin: true, User: "nobody"}, ProcessIO{Stdout: &out1, Stderr: &out1})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"sh"}}, ProcessIO{Stdout: &out2, Stderr: &out2})
	if err != nil {
		t.Fatal(err)
	}
	if p1.Pid() != 100 || p2.Pid() != 101 {
		t.Fatalf("pids %d %d", p1.Pid(), p2.Pid())
	}
	if _, err := io.WriteString(p1.Stdin(), "data"); err != nil {
		t.Fatal(err)
	}
	if err := p1.Stdin().Close(); err != nil {
		t.Fatal(err)
	}
	if err := p1.Resize(ctx, 30, 100); err != nil {
		t.Fatal(err)
	}
	if err := p2.Signal(ctx, 9); err != nil {
		t.Fatal(err)
	}
	<-p1.Exited()
	<-p2.Exited()
	if st, ok := p1.Status(); !ok || st.Code != 4 {
		t.Fatalf("p1 status %+v %v", st, ok)
	}
	if st, ok := p2.Status(); !ok || st.Code != 137 || st.Signal != 9 {
		t.Fatalf("p2 status %+v %v", st, ok)
	}
	if out1.String() != "early data" || out2.String() != "two-err\n" {
		t.Fatalf("out1 %q out2 %q", out1.String(), out2.String())
	}

	_, err = c.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"nope"}}, ProcessIO{})
	var ae *AgentError
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "executable file not found") {
		t.Fatalf("exec nope: %v", err)
	}

	top, err := c.Top(ctx, "aux")
	if err != nil || len(top.Titles) != 2 || top.Processes[0][1] != "sleep 1" {
		t.Fatalf("top %+v %v", top, err)
	}
	st, err := c.Stats(ctx)
	if err != nil || st.Pids != 3 || st.Memory["MemTotal"] != 1<<20 {
		t.Fatalf("stats %+v %v", st, err)
	}
	if _, err := c.Top(ctx, "-x"); err == nil {
		t.Fatal("top with an agent error succeeded")
	}
	<-agentDone
}

func TestExecConnectionLost(t *testing.T) {
	host, a := fakeagent.NewPair(t)
	go func() {
		a.Hello(nil, "running", agentproto.Version, nil)
		f, m := a.NextMsg(agentproto.MsgExec)
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: 9})
		a.Conn.Close()
	}()
	ctx := ctxT(t)
	c, _, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"sleep", "9"}}, ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	if _, ok := p.Status(); ok {
		t.Fatal("status ok after connection loss")
	}
	if _, err := c.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"x"}}, ProcessIO{}); err == nil {
		t.Fatal("exec on a lost connection succeeded")
	}
}
