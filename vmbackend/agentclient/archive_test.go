package agentclient

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend/agentclient/fakeagent"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

func connectFake(t *testing.T) (*Client, *fakeagent.Agent) {
	t.Helper()
	host, a := fakeagent.NewPair(t)
	go a.Hello(nil, "running", agentproto.Version, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, a
}

// TestArchiveGetFlowControl: the agent never has more than the window in
// flight, and the host credits what it reads.
func TestArchiveGetFlowControl(t *testing.T) {
	c, a := connectFake(t)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	const window = 1 << 20
	go func() {
		f, m := a.NextMsg(agentproto.MsgArchiveGet)
		if m == nil {
			return
		}
		if m.File == nil || m.File.Path != "/etc" || m.File.Window <= 0 || f.Stream < agentproto.FileStreamBase {
			t.Errorf("request %+v on stream %d", m.File, f.Stream)
			return
		}
		credit := int64(window) // the agent takes at most this window
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID, File: &agentproto.FileOp{Stat: &agentproto.PathStat{Name: "etc", Mode: 0x80000000 | 0o755}}})
		rest := payload
		for len(rest) > 0 {
			for credit <= 0 {
				_, cm := a.NextMsg(agentproto.MsgCredit)
				if cm == nil {
					return
				}
				credit += cm.File.Credit
			}
			n := int64(len(rest))
			if n > credit {
				n = credit
			}
			if n > 100000 {
				n = 100000
			}
			a.W.WriteFrame(agentproto.FrameStdout, f.Stream, rest[:n])
			credit -= n
			rest = rest[n:]
		}
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgStreamEnd})
		// Keep reading (credit messages) until the test ends.
		a.Drain()
	}()
	ctx := context.Background()
	st, rc, err := c.ArchiveGet(ctx, "/etc")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "etc" {
		t.Errorf("stat %+v", st)
	}
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes, want %d", len(got), len(payload))
	}
}

func TestArchiveErrors(t *testing.T) {
	c, a := connectFake(t)
	go func() {
		_, m := a.NextMsg(agentproto.MsgStatPath)
		a.W.WriteMsg(0, &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: "lstat /x: no such file or directory", File: &agentproto.FileOp{ErrCode: agentproto.FileErrNotFound}})
		f, m := a.NextMsg(agentproto.MsgExport)
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID})
		a.W.WriteFrame(agentproto.FrameStdout, f.Stream, []byte("partial"))
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgStreamEnd, Message: "disk on fire"})
		a.Drain()
	}()
	ctx := context.Background()
	if _, err := c.StatPath(ctx, "/x"); !IsNotFound(err) {
		t.Fatalf("stat of a missing path: %v", err)
	}
	rc, err := c.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if string(b) != "partial" || err == nil || err.Error() != "disk on fire" {
		t.Fatalf("export: %q, %v", b, err)
	}
}

// TestArchivePutFlowControl: the host sends no more than the agent's
// credit, then EOF, and returns the agent's verdict.
func TestArchivePutFlowControl(t *testing.T) {
	c, a := connectFake(t)
	body := bytes.Repeat([]byte("x"), 3<<20)
	const window = 64 << 10
	received := make(chan []byte, 1)
	go func() {
		f, m := a.NextMsg(agentproto.MsgArchivePut)
		if m.File == nil || m.File.Path != "/tmp" || !m.File.NoOverwriteDirNonDir {
			t.Errorf("put request %+v", m.File)
		}
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID, File: &agentproto.FileOp{Window: window}})
		var got []byte
		outstanding := int64(window)
		for {
			fr, _ := a.Next()
			if fr == nil {
				return
			}
			if fr.Type == agentproto.FrameEOF {
				break
			}
			if fr.Type != agentproto.FrameStdin {
				continue
			}
			outstanding -= int64(len(fr.Payload))
			if outstanding < 0 {
				t.Errorf("host exceeded the credit by %d bytes", -outstanding)
			}
			got = append(got, fr.Payload...)
			// Credit back what was "extracted".
			a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgCredit, File: &agentproto.FileOp{Credit: int64(len(fr.Payload))}})
			outstanding += int64(len(fr.Payload))
		}
		received <- got
		a.W.WriteMsg(f.Stream, &agentproto.Msg{Type: agentproto.MsgStreamEnd})
	}()
	err := c.ArchivePut(context.Background(), agentproto.FileOp{Path: "/tmp", NoOverwriteDirNonDir: true}, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if got := <-received; !bytes.Equal(got, body) {
		t.Fatalf("agent got %d bytes, want %d", len(got), len(body))
	}
}
