package agentclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// guestConn is the host's end of a fake virtio-serial port whose guest
// writes whatever a fuzz input says: prefix bytes before answering the
// host-hello, then (unless the mode says not to) a Hello echoing the
// host's nonce, then suffix bytes, then the end of the stream or, in
// mode hang, nothing more until the host closes.
type guestConn struct {
	pr *io.PipeReader // guest -> host
	pw *io.PipeWriter

	hr *io.PipeReader // host -> guest
	hw *io.PipeWriter

	closeOnce sync.Once
}

const (
	modeNoHello = iota // garbage, then EOF: Connect must fail
	modeEOF            // garbage, Hello, more bytes, EOF
	modeHang           // garbage, Hello, more bytes, then silence
	modes
)

func newGuestConn(prefix, suffix []byte, hello *agentproto.Msg, mode int) *guestConn {
	c := &guestConn{}
	c.pr, c.pw = io.Pipe()
	c.hr, c.hw = io.Pipe()
	go func() {
		// Read the host's frames: the first host-hello gives the nonce;
		// the rest (repeated hellos, requests) is drained.
		r := agentproto.NewReader(c.hr)
		nonce := make(chan string, 16)
		go func() {
			for {
				f, err := r.ReadFrame()
				if err != nil {
					close(nonce)
					return
				}
				if m, err := agentproto.DecodeMsg(f); err == nil && m.Type == agentproto.MsgHostHello {
					select {
					case nonce <- m.Nonce:
					default:
					}
				}
			}
		}()
		w := agentproto.NewWriter(c.pw)
		if _, err := c.pw.Write(prefix); err != nil && len(prefix) > 0 {
			return
		}
		if mode == modeNoHello {
			c.pw.Close()
			return
		}
		// Answer every host-hello, as the agent does: a Hello may be
		// lost in the garbage before it (the host resynchronises past
		// it) and the host's repeated hello gets another.
		first := true
		for n := range nonce {
			h := *hello
			h.Type, h.Nonce = agentproto.MsgHello, n
			if err := w.WriteMsg(0, &h); err != nil {
				return
			}
			if !first {
				continue
			}
			first = false
			if len(suffix) > 0 {
				if _, err := c.pw.Write(suffix); err != nil {
					return
				}
			}
			if mode == modeEOF {
				c.pw.Close()
				return
			}
		}
	}()
	return c
}

func (c *guestConn) Read(p []byte) (int, error)  { return c.pr.Read(p) }
func (c *guestConn) Write(p []byte) (int, error) { return c.hw.Write(p) }
func (c *guestConn) Close() error {
	c.closeOnce.Do(func() {
		c.pr.CloseWithError(io.ErrClosedPipe)
		c.pw.CloseWithError(io.ErrClosedPipe)
		c.hr.Close()
		c.hw.Close()
	})
	return nil
}

// countingWriter counts what the host delivers to a process's stdout or
// stderr.
type countingWriter struct {
	mu sync.Mutex
	n  int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.n += len(p)
	w.mu.Unlock()
	return len(p), nil
}

func (w *countingWriter) count() int { w.mu.Lock(); defer w.mu.Unlock(); return w.n }

// FuzzConnect plays a hostile or broken guest against Connect and the
// reader loop: whatever the guest writes, the host never panics, Connect
// returns (a client whose Hello carries our nonce and version, or an
// error) within its deadline, the connection ends when the stream ends or
// the host closes it, and a re-adopted process neither blocks forever nor
// receives more output than the guest wrote.
func FuzzConnect(f *testing.F) {
	out := func(typ byte, stream uint32, s string) []byte {
		return append(hdr(typ, stream, uint32(len(s))), s...)
	}
	msg := func(stream uint32, js string) []byte { return out(agentproto.FrameMsg, stream, js) }
	cat := func(bs ...[]byte) []byte {
		var r []byte
		for _, b := range bs {
			r = append(r, b...)
		}
		return r
	}
	f.Add([]byte{}, "idle", 0, "", []byte{}, uint8(modeEOF))
	f.Add([]byte("tail-of-old-frameJVM1"), "running", 7, "", cat(out(agentproto.FrameStdout, 1, "hello"), msg(1, `{"type":"exit","status":{"code":3}}`)), uint8(modeEOF))
	f.Add([]byte("garbage"), "exited", 7, `[{"container":"b","stream":2,"pid":9}]`, out(agentproto.FrameStderr, 2, "side"), uint8(modeHang))
	f.Add(msg(0, `{"type":"hello","version":1,"nonce":"not ours"}`), "idle", 0, "", []byte{}, uint8(modeNoHello))
	f.Add(hdr(agentproto.FrameMsg, 0, agentproto.MaxPayload+1), "idle", 0, "", []byte("JVM1\xff\xff\xff\xff"), uint8(modeEOF))
	f.Add([]byte{}, "running", 1, `[{"container":"","stream":1},{"container":"x","stream":0},{"container":"y","stream":4294967295,"exit":{"code":1}}]`,
		cat(msg(1, `{"type":"exit"}`), msg(0, `{"type":"ok","id":1}`), msg(0, `{"type":"log","message":"x"}`), msg(5, `not json`)), uint8(modeEOF))
	f.Add([]byte{}, "running", 1, "", cat(msg(0, `{"type":"error","id":18446744073709551615}`), out(9, 1, "odd type"), msg(3, `{"type":"started"}`)), uint8(modeHang))
	f.Fuzz(func(t *testing.T, prefix []byte, phase string, pid int, joined string, suffix []byte, mode uint8) {
		m := int(mode % modes)
		hello := &agentproto.Msg{Version: agentproto.Version, Phase: phase, Pid: pid}
		if joined != "" {
			_ = json.Unmarshal([]byte(joined), &hello.Joined)
		}
		conn := newGuestConn(prefix, suffix, hello, m)
		defer conn.Close()

		timeout := 5 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		begin := time.Now()
		c, h, err := Connect(ctx, conn)
		if time.Since(begin) > timeout+2*time.Second {
			t.Fatalf("Connect took %v", time.Since(begin))
		}
		if err != nil {
			if c != nil || h != nil {
				t.Fatalf("Connect failed (%v) but returned a client", err)
			}
			if m != modeNoHello && !errors.Is(err, context.DeadlineExceeded) && len(prefix) == 0 {
				t.Fatalf("Connect failed with a clean stream and a Hello: %v", err)
			}
			return
		}
		if m == modeNoHello {
			t.Fatalf("Connect succeeded without a Hello echoing its nonce: %+v", h)
		}
		if h.Version != agentproto.Version || h.Type != agentproto.MsgHello || h.Nonce == "" {
			t.Fatalf("Hello %+v", h)
		}
		// Re-adopt what the Hello announced, as the daemon does.
		var stdout, stderr countingWriter
		pio := ProcessIO{Stdout: &stdout, Stderr: &stderr}
		procs := []*Process{c.Reattach(pio)}
		for _, j := range c.Joined() {
			if p, ok := c.ReattachJoined(j.Container, pio); ok {
				procs = append(procs, p)
			}
		}
		if m == modeHang {
			// A guest that goes silent: the host's Close ends it.
			time.Sleep(time.Millisecond)
			c.Close()
		}
		select {
		case <-c.Done():
		case <-time.After(timeout):
			t.Fatal("the connection did not end after the guest's stream ended or the host closed it")
		}
		if c.Err() == nil {
			t.Fatal("Done without an error")
		}
		for _, p := range procs {
			select {
			case <-p.Exited():
			case <-time.After(timeout):
				t.Fatalf("process on stream %d never ended after the connection was lost", p.impl.stream)
			}
		}
		if n := stdout.count() + stderr.count(); n > len(prefix)+len(suffix) {
			t.Fatalf("%d bytes of output delivered, the guest wrote %d", n, len(prefix)+len(suffix))
		}
		c.Close()
	})
}

func hdr(typ byte, stream, n uint32) []byte {
	b := make([]byte, agentproto.HeaderSize)
	copy(b, agentproto.Magic[:])
	b[4] = typ
	b[8], b[9], b[10], b[11] = byte(stream>>24), byte(stream>>16), byte(stream>>8), byte(stream)
	b[12], b[13], b[14], b[15] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return b
}
