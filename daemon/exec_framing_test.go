package daemon

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/vmbackend/agentclient/fakeagent"
)

// lockedBuffer collects an exec's output while the daemon writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// As dockerd: the start request's Tty decides whether the exec's output is
// multiplexed, whatever the exec was created with. SDKs create an exec
// with a TTY and start it with Tty=false, then read stdcopy frames.
func TestFakeExecStartTtyDecidesFraming(t *testing.T) {
	d, _, _ := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{Exec: func(p *fakeagent.Proc) int { p.Stdout("hello\n"); return 0 }}
	})
	c := fakeContainer(t, d, "framing")
	if err := d.ContainerStart(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ execTty, startTty, wantMux bool }{
		{true, false, true},
		{true, true, false},
		{false, false, true},
		{false, true, false},
	} {
		id, err := d.ContainerExecCreate(context.Background(), c.ID, &container.ExecOptions{Cmd: []string{"echo", "hello"}, Tty: tc.execTty, AttachStdout: true, AttachStderr: true})
		if err != nil {
			t.Fatal(err)
		}
		var gotMux *bool
		var out lockedBuffer
		err = d.ContainerExecStart(context.Background(), id, &backend.ExecStartConfig{Tty: tc.startTty,
			GetStreams: func(mux bool) (io.ReadCloser, io.Writer, io.Writer, error) {
				gotMux = &mux
				return nil, &out, &out, nil
			}})
		if err != nil {
			t.Fatalf("exec tty=%v start tty=%v: %v", tc.execTty, tc.startTty, err)
		}
		if gotMux == nil || *gotMux != tc.wantMux {
			t.Errorf("exec tty=%v start tty=%v: multiplexed = %v, want %v", tc.execTty, tc.startTty, gotMux, tc.wantMux)
		}
		if out.String() != "hello\n" {
			t.Errorf("exec tty=%v start tty=%v: output %q", tc.execTty, tc.startTty, out.String())
		}
	}
}
