package daemon

// The daemon's start, stop, restart, health and shutdown paths on fake VMs
// (vmbackend/fakevm) with fake agents (vmbackend/agentclient/fakeagent):
// no QEMU, milliseconds per test.

import (
	"context"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/internal/mountinfo"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient/fakeagent"
	"github.com/jevm/jevm/vmbackend/agentproto"
	"github.com/jevm/jevm/vmbackend/fakevm"
)

// fakeDaemon is a daemon on a fake provider whose VMs run g's behaviour;
// hook sees its log (debug level).
func fakeDaemon(t *testing.T, g func() *fakeagent.Guest) (*Daemon, *fakevm.Provider, *logtest.Hook) {
	t.Helper()
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.DebugLevel)
	hook := logtest.NewLocal(l)
	vms := fakevm.New()
	if g != nil {
		vms.NewGuest = func(vmbackend.MachineSpec) *fakeagent.Guest { return g() }
	}
	root := t.TempDir()
	d := &Daemon{
		cfg:        Config{DataRoot: root + "/data", ExecRoot: root + "/run", DefaultShape: shapeOf(256, 1), MinMemoryMiB: 128},
		log:        logrus.NewEntry(l),
		vms:        vms,
		containers: newContainerStore(),
		events:     newEventBus(),
		execs:      newExecStore(),
		stopping:   make(chan struct{}),
	}
	if err := d.openVolumes(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// No restart policy starts a VM once the test is over (unless
		// the test shut the daemon down already).
		select {
		case <-d.stopping:
		default:
			close(d.stopping)
		}
		// Let no monitor outlive the test.
		for _, m := range vms.Started() {
			_ = m.Kill(context.Background())
		}
		done := make(chan struct{})
		go func() { d.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("monitors still running after the test")
		}
		// What containers left running (a shutdown with live restore)
		// keep mounted: their VMs' pod shares (podshare.go).
		mps, _ := mountinfo.Under(d.cfg.ExecRoot)
		for _, mp := range mps {
			unix.Unmount(mp, unix.MNT_DETACH)
		}
	})
	return d, vms, hook
}

func fakeContainer(t *testing.T, d *Daemon, name string) *Container {
	c := testContainer(t, d, name)
	c.Path = "app"
	c.Args = []string{"--serve"}
	c.Config.Hostname = name
	return c
}

// waitFor polls cond (with c.mu held) until it holds.
func waitFor(t *testing.T, c *Container, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		ok := cond()
		st := c.State
		c.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; state %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func startTrace(hook *logtest.Hook, kind string) *logrus.Entry {
	var last *logrus.Entry
	for _, e := range hook.AllEntries() {
		if e.Message == "start trace" && e.Data["kind"] == kind {
			last = e
		}
	}
	return last
}

// Start, then stop with a process that ignores SIGTERM: SIGKILL after the
// timeout, exit 137, nothing left.
func TestFakeStartStopEscalates(t *testing.T) {
	d, vms, hook := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{Main: func(p *fakeagent.Proc) int { return p.WaitSignal(syscall.SIGKILL) }}
	})
	c := fakeContainer(t, d, "s1")
	c.HostConfig.ShmSize = 128 << 20
	ctx := context.Background()
	if err := d.ContainerStart(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	m := vms.Machine(c.ID)
	c.mu.Lock()
	if c.State.Status != container.StateRunning || c.State.Pid != m.Pid() || c.run == nil {
		t.Fatalf("after start: %+v", c.State)
	}
	c.mu.Unlock()
	req := m.Guest.StartRequest()
	if len(req.Entropy) != startEntropyBytes || req.Hostname != "s1" || !reflect.DeepEqual(req.Process.Args, []string{"app", "--serve"}) ||
		req.RootDevice != fakevm.GuestRootDevice || req.ShmSize != 128<<20 {
		t.Fatalf("start request %+v", req)
	}
	tr := startTrace(hook, "container")
	if tr == nil || tr.Data["steps"] != "wait-file-ops,machine-spec,state-dir,prepare-mounts,resolve-links,attach-networks,start-machine,connect-agent,open-log,start-process" || tr.Data["failed"] != nil {
		t.Fatalf("start trace %v", tr)
	}
	if _, ok := tr.Data["start-machine_ms"].(float64); !ok {
		t.Fatalf("no step time in %v", tr.Data)
	}
	stateDir := d.vmStateDir(c.ID)
	if !exists(stateDir) {
		t.Fatal("no state dir while running")
	}

	one := 1
	t0 := time.Now()
	if err := d.ContainerStop(ctx, "s1", container.StopOptions{Timeout: &one}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took < time.Second || took > 4*time.Second {
		t.Errorf("stop took %v, want the 1 s timeout", took)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.State.Status != container.StateExited || c.State.ExitCode != 137 || c.run != nil {
		t.Fatalf("after stop: %+v", c.State)
	}
	if got := strings.Count(strings.Join(m.Guest.Requests(), ","), agentproto.MsgSignal); got != 2 {
		t.Errorf("signals sent %d (%v), want SIGTERM then SIGKILL", got, m.Guest.Requests())
	}
	if !m.Exited() || exists(stateDir) {
		t.Errorf("VM exited %v, state dir left %v", m.Exited(), exists(stateDir))
	}
}

// A stop whose client gives up goes on (moby's
// TestStopContainerWithTimeoutCancel): SIGKILL after the timeout all the
// same.
func TestFakeStopNotCancelledWithItsRequest(t *testing.T) {
	d, _, _ := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{Main: func(p *fakeagent.Proc) int { return p.WaitSignal(syscall.SIGKILL) }}
	})
	c := fakeContainer(t, d, "sc1")
	if err := d.ContainerStart(context.Background(), "sc1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	one := 1
	done := make(chan error, 1)
	go func() { done <- d.ContainerStop(ctx, "sc1", container.StopOptions{Timeout: &one}) }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stop did not end")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.State.Status != container.StateExited || c.State.ExitCode != 137 {
		t.Fatalf("after a cancelled stop: %+v, want exited 137", c.State)
	}
}

// The monitor records the exit code of a process that exits by itself.
func TestFakeMonitorRecordsExit(t *testing.T) {
	d, vms, _ := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{Main: func(p *fakeagent.Proc) int { p.Stdout("bye\n"); return 3 }}
	})
	c := fakeContainer(t, d, "m1")
	if err := d.ContainerStart(context.Background(), "m1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "exit", func() bool { return c.State.Status == container.StateExited })
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.State.ExitCode != 3 || c.State.Error != "" || c.State.FinishedAt.IsZero() {
		t.Fatalf("state %+v", c.State)
	}
	m := vms.Machine(c.ID)
	if !m.Exited() || m.Killed() {
		t.Errorf("VM exited %v killed %v: it should have powered off", m.Exited(), m.Killed())
	}
	b, _ := os.ReadFile(c.logFilePath())
	if !strings.Contains(string(b), `"log":"bye\n"`) {
		t.Errorf("log %s", b)
	}
}

// on-failure:2 restarts a failing process twice, then leaves it exited.
func TestFakeRestartOnFailure(t *testing.T) {
	d, vms, _ := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{Main: func(*fakeagent.Proc) int { return 1 }}
	})
	c := fakeContainer(t, d, "f1")
	c.HostConfig.RestartPolicy = container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 2}
	if err := d.ContainerStart(context.Background(), "f1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "two restarts and an exit", func() bool {
		return c.RestartCount == 2 && c.State.Status == container.StateExited
	})
	time.Sleep(500 * time.Millisecond) // no third restart (backoff would be 400 ms)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(vms.Started()); n != 3 || c.RestartCount != 2 || c.State.Status != container.StateExited || c.State.ExitCode != 1 {
		t.Fatalf("%d VMs, restart count %d, state %+v", n, c.RestartCount, c.State)
	}
}

// always restarts a process that exits 0, until a stop.
func TestFakeRestartAlways(t *testing.T) {
	var runs atomic.Int32
	d, vms, _ := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{Main: func(p *fakeagent.Proc) int {
			if runs.Add(1) < 3 {
				return 0
			}
			return p.WaitSignal()
		}}
	})
	c := fakeContainer(t, d, "a1")
	c.HostConfig.RestartPolicy = container.RestartPolicy{Name: "always"}
	if err := d.ContainerStart(context.Background(), "a1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "the third run", func() bool { return c.RestartCount == 2 && c.State.Status == container.StateRunning })
	if err := d.ContainerStop(context.Background(), "a1", container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.State.Status != container.StateExited || c.State.ExitCode != 143 || !c.HasBeenManuallyStopped || len(vms.Started()) != 3 {
		t.Fatalf("after stop: %+v manual=%v VMs=%d", c.State, c.HasBeenManuallyStopped, len(vms.Started()))
	}
}

// After a manual stop, a daemon start starts an `always` container again
// but not an `unless-stopped` one.
func TestFakeUnlessStoppedAfterManualStop(t *testing.T) {
	d, vms, _ := fakeDaemon(t, nil)
	ctx := context.Background()
	u := fakeContainer(t, d, "u1")
	u.HostConfig.RestartPolicy = container.RestartPolicy{Name: "unless-stopped"}
	a := fakeContainer(t, d, "b1")
	a.HostConfig.RestartPolicy = container.RestartPolicy{Name: "always"}
	for _, name := range []string{"u1", "b1"} {
		if err := d.ContainerStart(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := d.ContainerStop(ctx, name, container.StopOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	d.autoStartRestored()
	waitFor(t, a, "always restarted", func() bool { return a.State.Status == container.StateRunning })
	time.Sleep(100 * time.Millisecond)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.State.Status != container.StateExited || !u.HasBeenManuallyStopped {
		t.Fatalf("unless-stopped after a manual stop: %+v", u.State)
	}
	if n := len(vms.Started()); n != 3 {
		t.Errorf("%d VMs started, want 3", n)
	}
}

// A health check turns healthy, then unhealthy when the probe fails.
func TestFakeHealthCheck(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	var probes atomic.Int32
	d, _, _ := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{Exec: func(p *fakeagent.Proc) int {
			probes.Add(1)
			if len(p.Req.Args) != 2 || p.Req.Args[0] != "probe" {
				return 2
			}
			if healthy.Load() {
				return 0
			}
			p.Stdout("down\n")
			return 1
		}}
	})
	c := fakeContainer(t, d, "h1")
	c.Config.Healthcheck = &container.HealthConfig{Test: []string{"CMD", "probe", "ok"}, Interval: 20 * time.Millisecond, Timeout: time.Second, Retries: 2}
	if err := d.ContainerStart(context.Background(), "h1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "healthy", func() bool { return c.State.Health != nil && c.State.Health.Status == container.Healthy })
	healthy.Store(false)
	waitFor(t, c, "unhealthy", func() bool { return c.State.Health.Status == container.Unhealthy })
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.State.Health
	last := h.Log[len(h.Log)-1]
	if h.FailingStreak < 2 || last.ExitCode != 1 || last.Output != "down\n" {
		t.Fatalf("health %+v, last %+v", h, last)
	}
}

// While a checkpoint holds the container's processes still, the agent
// refuses execs: the health monitor records nothing for those rounds
// (neither a failure nor a success), and probes again once released.
func TestHealthProbeWhileHeld(t *testing.T) {
	var probes atomic.Int32
	d, _, _ := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{Exec: func(p *fakeagent.Proc) int {
			probes.Add(1)
			return 0
		}}
	})
	c := fakeContainer(t, d, "h1")
	c.Config.Healthcheck = &container.HealthConfig{Test: []string{"CMD", "probe"}, Interval: 20 * time.Millisecond, Timeout: time.Second, Retries: 1}
	if err := d.ContainerStart(context.Background(), "h1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "healthy", func() bool { return c.State.Health != nil && c.State.Health.Status == container.Healthy })
	c.mu.Lock()
	agent := c.run.agent
	c.mu.Unlock()
	if err := agent.Freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	entries := len(c.State.Health.Log)
	c.mu.Unlock()
	n := probes.Load()
	time.Sleep(200 * time.Millisecond) // about ten rounds
	c.mu.Lock()
	h := *c.State.Health
	c.mu.Unlock()
	if probes.Load() != n || h.Status != container.Healthy || h.FailingStreak != 0 || len(h.Log) > entries+1 {
		t.Fatalf("while held: %d probes ran, health %s, failing streak %d, %d log entries (was %d)", probes.Load()-n, h.Status, h.FailingStreak, len(h.Log), entries)
	}
	// A user's exec is refused as dockerd refuses one into a paused
	// container: 409.
	id, err := d.ContainerExecCreate(context.Background(), "h1", &container.ExecOptions{Cmd: []string{"true"}, Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerExecStart(context.Background(), id, &backend.ExecStartConfig{Detach: true}); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "being checkpointed") {
		t.Fatalf("exec while held: %v", err)
	}
	if err := agent.Thaw(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "probes after the release", func() bool { return probes.Load() > n+2 })
}

// A failed step unwinds the cleanups of the steps before it, in reverse
// order.
func TestRunStepsUnwindsInReverse(t *testing.T) {
	var got []string
	var cs cleanups
	push := func(name string) step {
		return step{name, func(context.Context) error {
			cs.push("undo-"+name, func() { got = append(got, "undo-"+name) })
			return nil
		}}
	}
	boom := errors.New("boom")
	steps := []step{push("a"), push("b"), push("c"), {"d", func(context.Context) error { return boom }}, push("e")}
	l, hook := logtest.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	tr, err := runSteps(context.Background(), logrus.NewEntry(l), "test", &cs, steps)
	if !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if want := []string{"undo-c", "undo-b", "undo-a"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("cleanups ran %v, want %v", got, want)
	}
	if !reflect.DeepEqual(tr.names, []string{"a", "b", "c", "d"}) || len(cs.stack) != 0 {
		t.Fatalf("trace %v, stack %d", tr.names, len(cs.stack))
	}
	e := hook.LastEntry()
	if e.Message != "start trace" || e.Level != logrus.DebugLevel || e.Data["failed"] != "d" || e.Data["undone"] != "undo-c,undo-b,undo-a" {
		t.Fatalf("trace line %v %v", e.Message, e.Data)
	}
	for _, n := range []string{"a_ms", "b_ms", "c_ms", "d_ms", "total_ms"} {
		if _, ok := e.Data[n].(float64); !ok {
			t.Errorf("no %s in %v", n, e.Data)
		}
	}
	// Success runs no cleanup.
	got = nil
	if _, err := runSteps(context.Background(), logrus.NewEntry(l), "test", &cs, []step{push("x")}); err != nil || got != nil {
		t.Fatalf("success: %v, ran %v", err, got)
	}
}

// A start the agent refuses (command not found, typed) fails with exit
// code 127 and leaves nothing: its cleanups ran in reverse.
func TestFakeFailedStartUnwinds(t *testing.T) {
	d, vms, hook := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{StartError: func(*agentproto.StartRequest) (string, string) {
			return `exec: "app": executable file not found in $PATH`, agentproto.ErrCommandNotFound
		}}
	})
	c := fakeContainer(t, d, "x1")
	err := d.ContainerStart(context.Background(), "x1")
	if !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "executable file not found") {
		t.Fatalf("start: %v", err)
	}
	tr := startTrace(hook, "container")
	if tr == nil || tr.Data["failed"] != "start-process" || tr.Data["undone"] != "close-log,close-agent,kill-machine,detach-networks,release-mounts,remove-state-dir" {
		t.Fatalf("start trace %v", tr)
	}
	m := vms.Machine(c.ID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.State.ExitCode != 127 || c.run != nil || c.running() {
		t.Fatalf("state %+v", c.State)
	}
	if !m.Killed() || exists(d.vmStateDir(c.ID)) {
		t.Fatalf("VM killed %v, state dir left %v", m.Killed(), exists(d.vmStateDir(c.ID)))
	}

	// A start that fails before the VM: only what was made is undone.
	vms.StartErr = errors.New("no template")
	c.mu.Unlock()
	err = d.ContainerStart(context.Background(), "x1")
	c.mu.Lock()
	if err == nil || !strings.Contains(err.Error(), "start VM: no template") {
		t.Fatalf("start: %v", err)
	}
	if tr := startTrace(hook, "container"); tr.Data["undone"] != "detach-networks,release-mounts,remove-state-dir" {
		t.Fatalf("start trace %v", tr.Data)
	}
}

// Not executable: 126, as dockerd.
func TestFakeStartNotExecutable(t *testing.T) {
	d, _, _ := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{StartError: func(*agentproto.StartRequest) (string, string) {
			return `exec: "/app": permission denied`, agentproto.ErrCommandNotExecutable
		}}
	})
	c := fakeContainer(t, d, "y1")
	if err := d.ContainerStart(context.Background(), "y1"); !errdefs.IsInvalidParameter(err) || c.State.ExitCode != 126 {
		t.Fatalf("start: %v, exit code %d", err, c.State.ExitCode)
	}
}

// With live restore disabled, Shutdown stops the running containers (stop
// signal, then their exits are recorded); with it, their VMs run on.
func TestFakeShutdownLiveRestoreDisabled(t *testing.T) {
	for _, disabled := range []bool{true, false} {
		d, vms, _ := fakeDaemon(t, nil)
		d.cfg.LiveRestoreDisabled = disabled
		var cs []*Container
		for _, name := range []string{"d1", "e1"} {
			c := fakeContainer(t, d, name)
			if err := d.ContainerStart(context.Background(), name); err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := d.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		for _, c := range cs {
			c.mu.Lock()
			st := c.State
			c.mu.Unlock()
			m := vms.Machine(c.ID)
			if disabled && (st.Status != container.StateExited || st.ExitCode != 143 || !m.Exited() || c.HasBeenManuallyStopped) {
				t.Errorf("live restore off: %s state %+v, VM exited %v", c.Name, st, m.Exited())
			}
			if !disabled && (st.Status != container.StateRunning || m.Exited()) {
				t.Errorf("live restore on: %s state %+v, VM exited %v", c.Name, st, m.Exited())
			}
		}
	}
}

// A file operation on a stopped container runs in a maintenance clone
// started by the same steps (same entropy), which powers off when a start
// makes way for the container.
func TestFakeMaintenanceClone(t *testing.T) {
	d, vms, hook := fakeDaemon(t, nil)
	c := fakeContainer(t, d, "c1")
	ctx := context.Background()
	ran := false
	if err := d.withContainerFS(ctx, c, "test", func(s *fsSession) error {
		ran = s.agent != nil && !s.running
		return nil
	}); err != nil || !ran {
		t.Fatalf("file operation: %v (ran %v)", err, ran)
	}
	m := vms.Machine(c.ID)
	if req := m.Guest.StartRequest(); req == nil || len(req.Entropy) != startEntropyBytes || req.Process.Args != nil || req.RootDevice != fakevm.GuestRootDevice {
		t.Fatalf("mount request %+v", req)
	}
	tr := startTrace(hook, "maintenance")
	if tr == nil || tr.Data["steps"] != "state-dir,start-machine,connect-agent,mount-root" {
		t.Fatalf("trace %v", tr)
	}
	// The container's start waits for the clone to go, then starts.
	if err := d.ContainerStart(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if !m.Exited() || m.Killed() || len(vms.Started()) != 2 {
		t.Fatalf("maintenance VM exited %v killed %v; %d VMs", m.Exited(), m.Killed(), len(vms.Started()))
	}
}

// The main process gets a PID namespace of its own unless --pid host or
// --init (then the agent is its init, as docker-init would be).
func TestSharesGuestPIDNamespace(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		hc   container.HostConfig
		want bool
	}{
		{container.HostConfig{}, false},
		{container.HostConfig{PidMode: "host"}, true},
		{container.HostConfig{Init: &yes}, true},
		{container.HostConfig{Init: &no}, false},
	} {
		if got := sharesGuestPIDNamespace(&tc.hc); got != tc.want {
			t.Errorf("PidMode %q Init %v: %v, want %v", tc.hc.PidMode, tc.hc.Init, got, tc.want)
		}
	}
}
