package fakeagent_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentclient/fakeagent"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// connect serves g on a new in-memory connection and connects a client.
func connect(t *testing.T, ctx context.Context, g *fakeagent.Guest) (*agentclient.Client, *agentproto.Msg) {
	t.Helper()
	h, gc := net.Pipe()
	t.Cleanup(func() { h.Close(); gc.Close() })
	go g.Serve(gc)
	c, hello, err := agentclient.Connect(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	return c, hello
}

func wait(t *testing.T, ctx context.Context, p *agentclient.Process) agentproto.ExitStatus {
	t.Helper()
	select {
	case <-p.Exited():
	case <-ctx.Done():
		t.Fatal("no exit")
	}
	st, _ := p.Status()
	return st
}

// TestGuestPods: the fake agent's pods, through the real client: join,
// exec in a joined container, freeze and thaw, Hello's Joined after a
// reconnect, a joined container's exit, and the main exit killing the
// joined containers before its own exit is reported.
func TestGuestPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var execIn []string
	g := &fakeagent.Guest{
		Exec: func(p *fakeagent.Proc) int {
			mu.Lock()
			execIn = append(execIn, p.Container)
			mu.Unlock()
			return 0
		},
		Join: func(p *fakeagent.Proc) int {
			p.Stdout("in " + p.Container + "\n")
			return p.WaitSignal(syscall.SIGKILL, syscall.SIGTERM)
		},
	}
	c, _ := connect(t, ctx, g)
	req := &agentproto.StartRequest{Container: "main1", RootSerial: "s1", Process: agentproto.ProcessRequest{Args: []string{"sh"}}}
	if _, err := c.Join(ctx, &agentproto.StartRequest{Container: "web", RootSerial: "s1", Process: agentproto.ProcessRequest{Args: []string{"sh"}}}, agentclient.ProcessIO{}); err == nil {
		t.Fatal("join before the main container accepted")
	}
	main, err := c.Start(ctx, &agentproto.StartRequest{Container: "main1", Process: agentproto.ProcessRequest{Args: []string{"sh"}}}, agentclient.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, req, agentclient.ProcessIO{}); err == nil || !strings.Contains(err.Error(), "main container") {
		t.Errorf("join as main1: %v", err)
	}
	var out strings.Builder
	var outMu sync.Mutex
	web, err := c.Join(ctx, &agentproto.StartRequest{Container: "web", RootSerial: "s1", Process: agentproto.ProcessRequest{Args: []string{"sh"}}},
		agentclient.ProcessIO{Stdout: writerFunc(func(b []byte) { outMu.Lock(); out.Write(b); outMu.Unlock() })})
	if err != nil {
		t.Fatal(err)
	}
	// Its output reaches this connection's pio (before the reconnect below).
	for {
		outMu.Lock()
		got := out.String()
		outMu.Unlock()
		if got == "in web\n" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("web's output %q", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := g.JoinRequest("web"); r == nil || r.RootSerial != "s1" {
		t.Errorf("join request %+v", r)
	}
	if _, err := c.Join(ctx, &agentproto.StartRequest{Container: "web", RootSerial: "s2", Process: agentproto.ProcessRequest{Args: []string{"sh"}}}, agentclient.ProcessIO{}); err == nil {
		t.Errorf("second web accepted")
	}
	for _, cl := range []*agentclient.Client{c, c.For("web"), c.For("main1")} {
		p, err := cl.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"true"}}, agentclient.ProcessIO{})
		if err != nil {
			t.Fatal(err)
		}
		wait(t, ctx, p)
	}
	mu.Lock()
	if strings.Join(execIn, ",") != ",web," {
		t.Errorf("execs ran in %q", execIn)
	}
	mu.Unlock()
	if _, err := c.For("nope").Exec(ctx, &agentproto.ProcessRequest{Args: []string{"true"}}, agentclient.ProcessIO{}); err == nil || !strings.Contains(err.Error(), "no such container in this VM: nope") {
		t.Errorf("exec in nope: %v", err)
	}
	if err := c.For("web").Freeze(ctx); err != nil || !g.Frozen("web") {
		t.Errorf("freeze: %v %v", err, g.Frozen("web"))
	}
	if err := c.For("web").Thaw(ctx); err != nil || g.Frozen("web") {
		t.Errorf("thaw: %v %v", err, g.Frozen("web"))
	}
	// The main container's freeze is a checkpoint's hold: execs into it
	// are refused until a thaw (or restored) releases it.
	if err := c.Freeze(ctx); err != nil {
		t.Errorf("hold of the main container: %v", err)
	}
	if _, err := c.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"true"}}, agentclient.ProcessIO{}); err == nil || !strings.Contains(err.Error(), "checkpointed") {
		t.Errorf("exec while held: %v", err)
	}
	if err := c.Thaw(ctx); err != nil {
		t.Errorf("release: %v", err)
	}
	if p, err := c.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"true"}}, agentclient.ProcessIO{}); err != nil {
		t.Errorf("exec after the release: %v", err)
	} else {
		wait(t, ctx, p)
	}

	// Reconnect: Hello lists web; its process is re-attached.
	c.Close()
	c, hello := connect(t, ctx, g)
	if len(hello.Joined) != 1 || hello.Joined[0].Container != "web" || hello.Joined[0].Pid != web.Pid() || hello.Joined[0].Exit != nil {
		t.Fatalf("hello's joined %+v", hello.Joined)
	}
	main = c.Reattach(agentclient.ProcessIO{})
	web, ok := c.ReattachJoined("web", agentclient.ProcessIO{})
	if !ok {
		t.Fatal("web not reattached")
	}
	if err := web.Signal(ctx, int(syscall.SIGTERM)); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, ctx, web); st.Code != 143 || st.Signal != 15 {
		t.Errorf("web's exit %+v", st)
	}
	if g.Phase() != "running" {
		t.Errorf("phase %s after web's exit", g.Phase())
	}
	if j := g.Joined(); len(j) != 1 || j[0].Exit == nil || j[0].Exit.Code != 143 {
		t.Errorf("joined after web's exit %+v", j)
	}
	// web joins again; the main container's end kills it first.
	web, err = c.Join(ctx, &agentproto.StartRequest{Container: "web", RootSerial: "s1", Process: agentproto.ProcessRequest{Args: []string{"sh"}}}, agentclient.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if err := main.Signal(ctx, int(syscall.SIGKILL)); err != nil {
		t.Fatal(err)
	}
	mst := wait(t, ctx, main)
	// The client handles the agent's frames in order: web's exit, sent
	// first, was handled before main's.
	select {
	case <-web.Exited():
	default:
		t.Errorf("main's exit (%+v) came before web's", mst)
	}
	wst := wait(t, ctx, web)
	if wst.Code != 137 || mst.Code != 137 {
		t.Errorf("web %+v main %+v", wst, mst)
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(b []byte) (int, error) { f(b); return len(b), nil }
