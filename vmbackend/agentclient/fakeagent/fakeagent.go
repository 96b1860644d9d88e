// Package fakeagent is a guest agent for tests, speaking agentproto over
// an in-memory connection: Agent is a scripted peer that a test drives
// frame by frame (agentclient's own tests), Guest a small agent that
// serves whole sessions (hello, start, exec, signal, shutdown, mount) and
// runs its "processes" as Go functions (daemon tests, with vmbackend/fakevm).
package fakeagent

import (
	"net"
	"testing"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Agent serves the agent side of a net.Pipe, driven by the test.
type Agent struct {
	T    testing.TB
	Conn net.Conn
	R    *agentproto.Reader
	W    *agentproto.Writer
}

// NewPair returns the host end of a connection and the fake agent on the
// other end; both are closed when the test ends.
func NewPair(t testing.TB) (host net.Conn, a *Agent) {
	h, g := net.Pipe()
	t.Cleanup(func() { h.Close(); g.Close() })
	return h, &Agent{T: t, Conn: g, R: agentproto.NewReader(g), W: agentproto.NewWriter(g)}
}

// Next reads the next frame; m is its message if it is a FrameMsg. Both
// are nil once the connection fails.
func (a *Agent) Next() (*agentproto.Frame, *agentproto.Msg) {
	f, err := a.R.ReadFrame()
	if err != nil {
		a.T.Errorf("fake agent read: %v", err)
		return nil, nil
	}
	if f.Type != agentproto.FrameMsg {
		return f, nil
	}
	m, err := agentproto.DecodeMsg(f)
	if err != nil {
		a.T.Errorf("fake agent decode: %v", err)
	}
	return f, m
}

// NextMsg reads until a message of type typ, skipping others.
func (a *Agent) NextMsg(typ string) (*agentproto.Frame, *agentproto.Msg) {
	for {
		f, m := a.Next()
		if f == nil {
			return nil, nil
		}
		if m != nil && m.Type == typ {
			return f, m
		}
	}
}

// Hello answers the host-hello; junk is written first (a partial frame),
// and a stale hello (wrong nonce) before the right one. extra may adjust
// the hello.
func (a *Agent) Hello(junk []byte, phase string, version int, extra func(*agentproto.Msg)) {
	_, hh := a.NextMsg(agentproto.MsgHostHello)
	if hh == nil {
		return
	}
	if len(junk) > 0 {
		a.Conn.Write(junk)
	}
	m := &agentproto.Msg{Type: agentproto.MsgHello, Version: version, Nonce: hh.Nonce, Agent: "test", Kernel: "6.1", Phase: phase}
	if extra != nil {
		extra(m)
	}
	// A hello with a wrong nonce (stale) must be skipped.
	a.W.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgHello, Version: version, Nonce: "stale", Phase: "idle"})
	a.W.WriteMsg(0, m)
}

// Drain reads frames until the connection closes.
func (a *Agent) Drain() {
	for {
		if _, err := a.R.ReadFrame(); err != nil {
			return
		}
	}
}
