package api

import (
	"io"
	"strings"
	"testing"

	"golang.org/x/net/websocket"
)

// Websocket attach: raw (never multiplexed) output in binary frames,
// stdin from the client's frames.
func TestAttachWebsocket(t *testing.T) {
	e := newTestEnv(t)
	e.fake.output = "hello\n"
	e.fake.errOutput = "oops\n"
	id := e.createContainer("ws1", false)
	url := "ws://" + e.hs.Listener.Addr().String() + "/v1.51/containers/ws1/attach/ws?stream=1&stdin=1&stdout=1&stderr=1"
	conn, err := websocket.Dial(url, "", "http://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if r, b := e.do("POST", "/containers/ws1/start", nil); r.StatusCode != 204 {
		t.Fatalf("start: %d %s", r.StatusCode, b)
	}
	if _, err := conn.Write([]byte("typed")); err != nil {
		t.Fatal(err)
	}
	// The fake backend reads stdin to its end: a close frame ends it.
	conn.WriteClose(1000)
	got, err := io.ReadAll(conn)
	if err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "hello\n") || !strings.Contains(string(got), "oops\n") || strings.Contains(string(got), "\x01\x00\x00\x00") {
		t.Fatalf("websocket output %q (raw, both streams)", got)
	}
	e.fake.mu.Lock()
	defer e.fake.mu.Unlock()
	if e.fake.stdin[id] != "typed" {
		t.Fatalf("backend stdin %q", e.fake.stdin[id])
	}
	if a := e.fake.lastAttach; !a.UseStdin || !a.UseStdout || !a.Stream {
		t.Fatalf("attach config %+v", a)
	}
}

// Before the upgrade, an unknown container is an ordinary 404.
func TestAttachWebsocketUnknownContainer(t *testing.T) {
	e := newTestEnv(t)
	resp, body := e.do("GET", "/containers/nope/attach/ws?stream=1", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("GET attach/ws of an unknown container = %d %s", resp.StatusCode, body)
	}
}
