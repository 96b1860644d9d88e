package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeQMP is a QMP server on a unix socket: it greets, and hands each
// command line to serve, which writes what QEMU would.
type fakeQMP struct {
	path string
	// serve answers one command (decoded, with its descriptors); it
	// writes to w, one line per reply or event.
	serve func(cmd map[string]any, fds []int, w func(string))
	// beforeCapsReply is written between qmp_capabilities and its reply.
	beforeCapsReply string
	// closeAfter names a command after whose reply the socket closes.
	closeAfter string
}

func startFakeQMP(t *testing.T, f *fakeQMP) {
	t.Helper()
	f.path = filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			go f.conn(c)
		}
	}()
}

// connectFakeQMP starts f and connects a monitor to it; ctx bounds the
// test.
func connectFakeQMP(t *testing.T, f *fakeQMP) (*monitor, context.Context) {
	t.Helper()
	startFakeQMP(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	m, err := dialQMP(ctx, f.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	return m, ctx
}

func (f *fakeQMP) conn(c *net.UnixConn) {
	defer c.Close()
	var wmu sync.Mutex
	w := func(line string) {
		wmu.Lock()
		defer wmu.Unlock()
		c.Write([]byte(line + "\n"))
	}
	w(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`)
	buf := make([]byte, 64<<10)
	oob := make([]byte, 1024)
	caps := false
	for {
		// One command per message: ReadMsgUnix takes the descriptors
		// that came with it.
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		var fds []int
		if oobn > 0 {
			msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				got, _ := syscall.ParseUnixRights(&m)
				fds = append(fds, got...)
			}
		}
		for _, line := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
			var cmd map[string]any
			if err := json.Unmarshal([]byte(line), &cmd); err != nil {
				w(`{"error": {"class": "GenericError", "desc": "JSON parse error"}}`)
				continue
			}
			if cmd["execute"] == "qmp_capabilities" && !caps {
				caps = true
				if f.beforeCapsReply != "" {
					w(f.beforeCapsReply)
					time.Sleep(20 * time.Millisecond) // two reads for the client
				}
				w(`{"return": {}}`)
				continue
			}
			f.serve(cmd, fds, w)
			fds = nil
			if cmd["execute"] == f.closeAfter {
				return
			}
		}
	}
}

func idOf(cmd map[string]any) string {
	b, _ := json.Marshal(cmd["id"])
	return string(b)
}

// Replies reach the command they answer: an event right after a reply
// does not replace it (go-qemu's client shared the reply's buffer with
// its reader: run this with -race), an event before the capabilities
// reply is not taken for it, errors carry QEMU's description.
func TestQMPRepliesAndEvents(t *testing.T) {
	f := &fakeQMP{
		beforeCapsReply: `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}`,
		serve: func(cmd map[string]any, _ []int, w func(string)) {
			switch cmd["execute"] {
			case "query-status":
				// A reply of a few KiB, as query-block's: the client's
				// next read goes over it in go-qemu's buffer.
				w(fmt.Sprintf(`{"return": {"status": "running", "running": true, "pad": "%s"}, "id": %s}`, strings.Repeat("p", 3000), idOf(cmd)))
				// Events right after the reply, in the client's next read.
				time.Sleep(time.Millisecond)
				for i := 0; i < 3; i++ {
					w(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "DEVICE_DELETED", "data": {"path": "/machine/peripheral/nic1/virtio-backend"}}`)
				}
			default:
				w(fmt.Sprintf(`{"error": {"class": "CommandNotFound", "desc": "The command %s has not been found"}, "id": %s}`, cmd["execute"], idOf(cmd)))
			}
		},
	}
	m, ctx := connectFakeQMP(t, f)
	for i := 0; i < 50; i++ {
		st, err := m.queryStatus(ctx)
		if err != nil || st.Status != "running" || !st.Running {
			t.Fatalf("query %d: %+v %v", i, st, err)
		}
	}
	err := m.run(ctx, "no-such-command", nil, nil)
	if err == nil || err.Error() != "qmp no-such-command: The command no-such-command has not been found" {
		t.Fatalf("error reply: %v", err)
	}
}

// A reply that comes just before the socket closes (QEMU's answer to
// quit) is the command's answer, not the closed socket.
func TestQMPReplyBeforeClose(t *testing.T) {
	f := &fakeQMP{closeAfter: "quit", serve: func(cmd map[string]any, _ []int, w func(string)) {
		w(fmt.Sprintf(`{"return": {}, "id": %s}`, idOf(cmd)))
	}}
	startFakeQMP(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		m, err := dialQMP(ctx, f.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.run(ctx, "quit", nil, nil); err != nil {
			t.Fatalf("quit %d: %v", i, err)
		}
		m.close()
	}
}

// A command whose context ended is abandoned: its late reply is not
// taken as the next command's.
func TestQMPLateReplyDropped(t *testing.T) {
	release := make(chan struct{})
	f := &fakeQMP{serve: func(cmd map[string]any, _ []int, w func(string)) {
		switch cmd["execute"] {
		case "slow":
			go func() {
				<-release
				w(fmt.Sprintf(`{"return": {"status": "slow"}, "id": %s}`, idOf(cmd)))
			}()
		default:
			go func() {
				// The slow command's reply comes first.
				time.Sleep(50 * time.Millisecond)
				w(fmt.Sprintf(`{"return": {"status": "fast"}, "id": %s}`, idOf(cmd)))
			}()
		}
	}}
	m, ctx := connectFakeQMP(t, f)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	var st statusInfo
	if err := m.run(short, "slow", nil, &st); err == nil {
		t.Fatalf("slow: no error, %+v", st)
	}
	close(release)
	if err := m.run(ctx, "query-status", nil, &st); err != nil || st.Status != "fast" {
		t.Fatalf("the next command got %+v, %v", st, err)
	}
}

// A descriptor travels with getfd; a line longer than maxQMPLine ends
// the monitor with an error instead of growing a buffer; a closed socket
// fails the waiting command.
func TestQMPFileAndBounds(t *testing.T) {
	gotFile := make(chan string, 1)
	f := &fakeQMP{serve: func(cmd map[string]any, fds []int, w func(string)) {
		switch cmd["execute"] {
		case "getfd":
			if len(fds) == 1 {
				b := make([]byte, 16)
				n, _ := syscall.Pread(fds[0], b, 0)
				gotFile <- string(b[:n])
				syscall.Close(fds[0])
			}
			w(fmt.Sprintf(`{"return": {}, "id": %s}`, idOf(cmd)))
		case "huge":
			w(`{"return": "` + strings.Repeat("x", maxQMPLine) + `"}`)
		}
	}}
	m, ctx := connectFakeQMP(t, f)
	p := filepath.Join(t.TempDir(), "state")
	os.WriteFile(p, []byte("state bytes"), 0o644)
	file, _ := os.Open(p)
	defer file.Close()
	if err := m.passFile(ctx, "jevm-state", file); err != nil {
		t.Fatal(err)
	}
	if got := <-gotFile; got != "state bytes" {
		t.Fatalf("the descriptor QEMU got reads %q", got)
	}
	err := m.run(ctx, "huge", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "token too long") {
		t.Fatalf("an over-long line: %v", err)
	}
	if err := m.run(ctx, "query-status", nil, nil); err == nil {
		t.Fatal("a command after the monitor ended succeeded")
	}
}

// The handshake is bounded by ctx: a socket that never greets (QEMU
// busy with another client) fails when ctx ends.
func TestQMPHandshakeBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(5 * time.Second)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if _, err := dialQMP(ctx, path, nil); err == nil || time.Since(t0) > 3*time.Second {
		t.Fatalf("dial of a silent socket: %v after %s", err, time.Since(t0))
	}
}
