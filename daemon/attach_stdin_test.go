package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"
)

func TestParseDetachKeys(t *testing.T) {
	for in, want := range map[string][]byte{
		"ctrl-p,ctrl-q":  {0x10, 0x11},
		"ctrl-a":         {0x01},
		"ctrl-z":         {0x1a},
		"ctrl-@":         {0x00},
		"ctrl-[":         {0x1b},
		`ctrl-\`:         {0x1c},
		"ctrl-]":         {0x1d},
		"ctrl-^":         {0x1e},
		"ctrl-_":         {0x1f},
		"a,b":            {'a', 'b'},
		"x,ctrl-c,DEL,,": nil, // the empty keys make it invalid
		"DEL":            {0x7f},
		",":              nil,
	} {
		got, err := parseDetachKeys(in)
		if want == nil {
			if err == nil {
				t.Errorf("parseDetachKeys(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("parseDetachKeys(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ctrl-", "ctrl-P", "ctrl-1", "ctrl-ab", "ab", "ctrl-p,,ctrl-q"} {
		if got, err := parseDetachKeys(bad); err == nil {
			t.Errorf("parseDetachKeys(%q) = %v, want an error", bad, got)
		} else if bad == "ab" && err.Error() != "Unknown character: 'ab'" {
			t.Errorf("error = %q", err)
		}
	}
	if keys, err := attachDetachKeys(""); err != nil || !bytes.Equal(keys, []byte{0x10, 0x11}) {
		t.Errorf("default keys = %v, %v", keys, err)
	}
	if _, err := attachDetachKeys("nope"); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "Invalid detach keys (nope) provided") {
		t.Errorf("bad keys: %v", err)
	}
}

func TestCopyStdinScanner(t *testing.T) {
	pq := []byte{0x10, 0x11}
	for _, c := range []struct {
		name       string
		in         string
		keys       []byte
		want       string
		detach     bool
		oneByteRds bool
	}{
		{"plain", "hello\x10world", nil, "hello\x10world", false, false},
		{"no sequence", "abc\x10x\x11y", pq, "abc\x10x\x11y", false, false},
		{"mid-stream", "before\x10\x11after", pq, "before", true, false},
		{"mid-stream bytewise", "before\x10\x11after", pq, "before", true, true},
		{"at start", "\x10\x11after", pq, "", true, false},
		{"repeated first key", "a\x10\x10\x11b", pq, "a\x10", true, true},
		{"repeated first key, one read", "a\x10\x10\x11b", pq, "a\x10", true, false},
		{"partial at end", "abc\x10", pq, "abc\x10", false, false},
		{"partial at end bytewise", "abc\x10", pq, "abc\x10", false, true},
		{"three keys overlap", "xaab" + "aabc" + "zz", []byte("aabc"), "xaab", true, true},
		{"three keys overlap, one read", "xaab" + "aabc" + "zz", []byte("aabc"), "xaab", true, false},
		{"single key", "12q34", []byte("q"), "12", true, false},
	} {
		var src io.Reader = strings.NewReader(c.in)
		if c.oneByteRds {
			src = iotest.OneByteReader(src)
		}
		var dst bytes.Buffer
		n, err := copyStdin(&dst, src, c.keys)
		if got := dst.String(); got != c.want || n != int64(len(c.want)) {
			t.Errorf("%s: passed on %q (n=%d), want %q", c.name, got, n, c.want)
		}
		if errors.Is(err, errDetached) != c.detach || (!c.detach && err != nil) {
			t.Errorf("%s: err = %v, detach want %v", c.name, err, c.detach)
		}
	}
}

func TestCopyStdinLarge(t *testing.T) {
	data := make([]byte, 3<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	// Without keys (no TTY) random data passes untouched, even with the
	// default sequence in it.
	// The first sequence is at 1000: random bytes could hold one earlier
	// (1.5% of runs did), so no 0x10 before it.
	for i := range data[:1000] {
		if data[i] == 0x10 {
			data[i] = 0
		}
	}
	data[1000], data[1001] = 0x10, 0x11
	var dst bytes.Buffer
	if _, err := copyStdin(&dst, bytes.NewReader(data), nil); err != nil || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("plain copy: err %v, equal %v", err, bytes.Equal(dst.Bytes(), data))
	}
	// With keys, everything before the first sequence passes.
	dst.Reset()
	_, err := copyStdin(&dst, bytes.NewReader(data), []byte{0x10, 0x11})
	if !errors.Is(err, errDetached) || !bytes.Equal(dst.Bytes(), data[:1000]) {
		t.Fatalf("scan: err %v, got %d bytes", err, dst.Len())
	}
}

// clientConn is an attached client's input: what the test writes, then
// (on close) the end of input.
func clientConn() (io.Reader, *io.PipeWriter) { return io.Pipe() }

func newAttachTestContainer(tty, stdinOnce bool) (*Daemon, *Container) {
	d := &Daemon{events: newEventBus()}
	c := &Container{
		ID:     strings.Repeat("c", 64),
		Name:   "box",
		Config: &container.Config{Tty: tty, OpenStdin: true, StdinOnce: stdinOnce},
		State:  ContainerState{Status: container.StateRunning},
	}
	c.stdin = newStdinPipe()
	return d, c
}

// readN reads n bytes from the container's side of the stdin pipe.
func readN(t *testing.T, c *Container, n int) string {
	t.Helper()
	buf := make([]byte, n)
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(c.stdin.r, buf); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("read container stdin: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("container stdin: no %d bytes within 5s", n)
	}
	return string(buf)
}

func runAttach(d *Daemon, c *Container, in io.Reader, tty, stdinOnce bool, keys []byte) (chan struct{}, *subscriber) {
	sub := c.hub().subscribe(io.Discard, io.Discard)
	ended := make(chan struct{})
	go func() {
		d.attachStreams(context.Background(), c, sub, c.stdin, in, tty, stdinOnce, keys)
		close(ended)
	}()
	return ended, sub
}

func waitEnded(t *testing.T, ended chan struct{}, want bool) {
	t.Helper()
	select {
	case <-ended:
		if !want {
			t.Fatal("attach ended")
		}
	case <-time.After(300 * time.Millisecond):
		if want {
			t.Fatal("attach did not end")
		}
	}
}

func TestAttachDetachKeepsStdin(t *testing.T) {
	d, c := newAttachTestContainer(true, true)
	_, live, cancel := d.events.subscribe()
	defer cancel()

	in1, w1 := clientConn()
	ended, _ := runAttach(d, c, in1, true, true, []byte{0x10, 0x11})
	go w1.Write([]byte("echo one\r"))
	if got := readN(t, c, 9); got != "echo one\r" {
		t.Fatalf("first client: %q", got)
	}
	// Typed slowly, with the sequence split across reads.
	go func() {
		w1.Write([]byte("ls\x10"))
		time.Sleep(50 * time.Millisecond)
		w1.Write([]byte("\x11dropped"))
	}()
	if got := readN(t, c, 2); got != "ls" {
		t.Fatalf("before the sequence: %q", got)
	}
	waitEnded(t, ended, true)
	select {
	case m := <-live:
		if m.Action != events.ActionDetach || m.Actor.Attributes["name"] != "box" {
			t.Fatalf("event %+v, want detach", m)
		}
	case <-time.After(time.Second):
		t.Fatal("no detach event")
	}

	// The stdin pipe is still open: the next client's input arrives, and
	// nothing of the first client's after the sequence.
	in2, w2 := clientConn()
	ended2, _ := runAttach(d, c, in2, true, true, []byte{0x10, 0x11})
	go w2.Write([]byte("echo back\r"))
	if got := readN(t, c, 10); got != "echo back\r" {
		t.Fatalf("second client: %q", got)
	}
	// A TTY client that goes away ends its attach, not the stdin (even
	// with StdinOnce, as dockerd).
	w2.Close()
	waitEnded(t, ended2, true)
	in3, w3 := clientConn()
	runAttach(d, c, in3, true, true, []byte{0x10, 0x11})
	go w3.Write([]byte("x"))
	if got := readN(t, c, 1); got != "x" {
		t.Fatalf("third client: %q", got)
	}
}

func TestAttachStdinOnceClosesOnEOF(t *testing.T) {
	d, c := newAttachTestContainer(false, true)
	in, w := clientConn()
	ended, sub := runAttach(d, c, in, false, true, defaultDetachKeys)
	// No TTY: the detach sequence is data.
	go func() {
		w.Write([]byte("data\x10\x11more\n"))
		w.Close()
	}()
	got, err := io.ReadAll(c.stdin.r)
	if err != nil || string(got) != "data\x10\x11more\n" {
		t.Fatalf("container stdin: %q, %v", got, err)
	}
	// EOF closed the container's stdin; the attach goes on for the output
	// until the run ends.
	waitEnded(t, ended, false)
	c.hub().endRun()
	<-sub.done
	waitEnded(t, ended, true)
}
