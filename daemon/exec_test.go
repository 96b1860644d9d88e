package daemon

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

func TestExecProcessRequest(t *testing.T) {
	c := &Container{ID: strings.Repeat("a", 64), Name: "web", Config: &container.Config{
		Hostname: "box", Env: []string{"PATH=/usr/bin:/bin", "A=1", "B=2"}, User: "app", WorkingDir: "/srv", Tty: true,
	}, HostConfig: &container.HostConfig{}}
	req := execProcessRequest(c, &container.ExecOptions{Cmd: []string{"sh", "-c", "env"}, Env: []string{"B=3", "C=4"}, AttachStdin: true}, nil)
	if got := strings.Join(req.Env, ","); got != "HOSTNAME=box,PATH=/usr/bin:/bin,A=1,B=3,C=4" {
		t.Errorf("env %s (no TERM without the exec's TTY)", got)
	}
	if req.User != "app" || req.Cwd != "/srv" || !req.Stdin || req.TTY || strings.Join(req.Args, " ") != "sh -c env" {
		t.Errorf("request %+v", req)
	}
	req = execProcessRequest(c, &container.ExecOptions{Cmd: []string{"sh"}, User: "nobody", WorkingDir: "/tmp", Tty: true}, &[2]uint{30, 100})
	if req.User != "nobody" || req.Cwd != "/tmp" || req.Rows != 30 || req.Cols != 100 || !strings.Contains(strings.Join(req.Env, ","), "TERM=xterm") {
		t.Errorf("request %+v", req)
	}
}

func TestExecStartError(t *testing.T) {
	code, err := execStartError(&agentclient.AgentError{Op: "exec", Code: agentproto.ErrCommandNotFound, Message: `exec: "x": executable file not found in $PATH`})
	if code != 127 || err.Error() != `OCI runtime exec failed: exec failed: unable to start container process: exec: "x": executable file not found in $PATH: unknown` {
		t.Errorf("%d %v", code, err)
	}
	if code, _ := execStartError(&agentclient.AgentError{Code: agentproto.ErrCommandNotExecutable, Message: "exec /bin/x: permission denied"}); code != 126 {
		t.Errorf("permission denied: %d", code)
	}
	if code, _ := execStartError(errors.New("connection lost")); code != 126 {
		t.Errorf("other: %d", code)
	}
}

func TestExecStoreDropsRun(t *testing.T) {
	s := newExecStore()
	r := &runtime{finished: make(chan struct{})}
	c := &Container{ID: strings.Repeat("b", 64)}
	e1 := &execInstance{id: "one", c: c, run: r, created: time.Now()}
	e2 := &execInstance{id: "two", c: c, run: r, created: time.Now().Add(time.Millisecond)}
	s.add(e2)
	s.add(e1)
	if ids := s.ids(r); strings.Join(ids, ",") != "one,two" {
		t.Fatalf("ids %v", ids)
	}
	if _, err := s.get("nope"); err == nil || !strings.Contains(err.Error(), "No such exec instance: nope") {
		t.Fatalf("get nope: %v", err)
	}
	s.dropRun(r)
	if _, err := s.get("one"); err == nil || s.ids(r) != nil {
		t.Fatal("execs survived their run")
	}
}

// slowWriter records writes; it blocks until released.
type slowWriter struct {
	mu      sync.Mutex
	b       bytes.Buffer
	release chan struct{}
}

func (w *slowWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestOutputQueue(t *testing.T) {
	out := &slowWriter{release: make(chan struct{})}
	q := newOutputQueue()
	w1, w2 := q.writer(out), q.writer(out)
	done := make(chan struct{})
	go func() {
		// The agent's reader does not wait for a slow client.
		for i := 0; i < 100; i++ {
			w1.Write([]byte("a"))
			w2.Write([]byte("b"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("writes blocked on a slow client")
	}
	close(out.release)
	q.close()
	if got := out.b.String(); got != strings.Repeat("ab", 100) {
		t.Fatalf("delivered %q", got)
	}

	// A failing client: the rest is dropped, writers never block.
	q = newOutputQueue()
	w := q.writer(writerFunc(func([]byte) (int, error) { return 0, errors.New("gone") }))
	for i := 0; i < 10; i++ {
		if n, err := w.Write([]byte("x")); n != 1 || err != nil {
			t.Fatalf("write %d: %d %v", i, n, err)
		}
	}
	q.close()
}

func TestToStatsResponse(t *testing.T) {
	gs := &agentproto.GuestStats{
		CPUTotal: 10e9, CPUBusy: 4e9, CPUUser: 3e9, CPUSystem: 1e9, PerCPUBusy: []uint64{4e9}, OnlineCPUs: 1,
		Memory:   map[string]uint64{"MemTotal": 200 << 20, "MemAvailable": 150 << 20, "Cached": 10 << 20, "Inactive(file)": 5 << 20},
		Disks:    []agentproto.DiskStats{{Name: "vda", Major: 254, ReadBytes: 1000, WriteBytes: 2000, Reads: 3, Writes: 4}},
		Networks: []agentproto.NetStats{{Name: "eth0", RxBytes: 5, TxBytes: 6}},
		Pids:     2,
	}
	prev := &agentproto.GuestStats{CPUTotal: 9e9, CPUBusy: 3.5e9, OnlineCPUs: 1}
	now := time.Now()
	s := toStatsResponse("/web", "id", gs, now, prev, now.Add(-time.Second))
	if s.Name != "/web" || s.CPUStats.CPUUsage.TotalUsage != 4e9 || s.CPUStats.SystemUsage != 10e9 || s.PreCPUStats.SystemUsage != 9e9 ||
		s.MemoryStats.Usage != 50<<20 || s.MemoryStats.Limit != 200<<20 || s.MemoryStats.Stats["cache"] != 10<<20 ||
		s.PidsStats.Current != 2 || s.Networks["eth0"].TxBytes != 6 || len(s.BlkioStats.IoServiceBytesRecursive) != 2 ||
		s.BlkioStats.IoServiceBytesRecursive[1].Op != "write" || s.BlkioStats.IoServiceBytesRecursive[1].Value != 2000 {
		t.Fatalf("%+v", s)
	}
	if _, ok := s.MemoryStats.Stats["inactive_file"]; ok {
		t.Fatal("inactive_file would be subtracted from usage by the CLI")
	}
	// The CLI's CPU %: 0.5s busy of 1s total on one CPU.
	cpu := float64(s.CPUStats.CPUUsage.TotalUsage-s.PreCPUStats.CPUUsage.TotalUsage) / float64(s.CPUStats.SystemUsage-s.PreCPUStats.SystemUsage) * float64(s.CPUStats.OnlineCPUs) * 100
	if cpu != 50 {
		t.Fatalf("cpu %v%%", cpu)
	}
}
