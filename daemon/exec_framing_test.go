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

// `docker restart` of a --rm container restarts it; the stop's exit does
// not remove it (dockerd's TestContainerWithAutoRemoveCanBeRestarted).
func TestFakeRestartAutoRemoveContainer(t *testing.T) {
	d, vms, _ := fakeDaemon(t, nil)
	c := fakeContainer(t, d, "rmrestart")
	c.HostConfig.AutoRemove = true
	if err := d.ContainerStart(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	timeout := 1
	if err := d.ContainerRestart(context.Background(), c.ID, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if _, err := d.containers.get(c.ID); err != nil {
		t.Fatalf("the restarted --rm container is gone: %v", err)
	}
	c.mu.Lock()
	running := c.running()
	// The test's clean-up kills the VM; this fake daemon has no image
	// store for the removal that would follow.
	c.HostConfig.AutoRemove = false
	c.mu.Unlock()
	if !running || len(vms.Started()) != 2 {
		t.Fatalf("after restart: running %v, %d VMs started", running, len(vms.Started()))
	}
}
