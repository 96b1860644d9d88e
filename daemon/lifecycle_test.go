package daemon

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/vmbackend/fakevm"
)

func TestNextBackoff(t *testing.T) {
	var got []time.Duration
	b := time.Duration(0)
	for i := 0; i < 12; i++ {
		b = nextBackoff(b, time.Second)
		got = append(got, b)
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoff sequence = %v, want %v ms", got, want)
		}
	}
	if b := nextBackoff(30*time.Second, 10*time.Second); b != 100*time.Millisecond {
		t.Errorf("after a 10 s run: %v, want reset to 100ms", b)
	}
	if b := nextBackoff(400*time.Millisecond, 9*time.Second); b != 800*time.Millisecond {
		t.Errorf("after a 9 s run: %v, want doubled", b)
	}
}

func TestDecideRestart(t *testing.T) {
	pol := func(name string, max int) container.RestartPolicy {
		return container.RestartPolicy{Name: container.RestartPolicyMode(name), MaximumRetryCount: max}
	}
	for _, tc := range []struct {
		name string
		in   restartInput
		want bool
	}{
		{"no policy", restartInput{Policy: pol("", 0), ExitCode: 1}, false},
		{"no", restartInput{Policy: pol("no", 0), ExitCode: 1}, false},
		{"always exit 0", restartInput{Policy: pol("always", 0)}, true},
		{"always after stop", restartInput{Policy: pol("always", 0), Canceled: true}, false},
		{"always manually killed with another signal", restartInput{Policy: pol("always", 0), ManuallyStopped: true}, true},
		{"unless-stopped", restartInput{Policy: pol("unless-stopped", 0), ExitCode: 0}, true},
		{"unless-stopped stopped", restartInput{Policy: pol("unless-stopped", 0), ManuallyStopped: true}, false},
		{"on-failure exit 0", restartInput{Policy: pol("on-failure", 0)}, false},
		{"on-failure exit 3", restartInput{Policy: pol("on-failure", 0), ExitCode: 3, RestartCount: 100}, true},
		{"on-failure:2 count 1", restartInput{Policy: pol("on-failure", 2), ExitCode: 3, RestartCount: 1}, true},
		{"on-failure:2 count 2", restartInput{Policy: pol("on-failure", 2), ExitCode: 3, RestartCount: 2}, false},
		{"on-failure canceled", restartInput{Policy: pol("on-failure", 0), ExitCode: 137, Canceled: true}, false},
	} {
		got, backoff := decideRestart(tc.in)
		if got != tc.want {
			t.Errorf("%s: restart = %v, want %v", tc.name, got, tc.want)
		}
		if got && backoff != 100*time.Millisecond {
			t.Errorf("%s: first backoff = %v", tc.name, backoff)
		}
	}
	// The backoff grows across restarts and is kept when not restarting.
	_, b := decideRestart(restartInput{Policy: pol("always", 0), Backoff: 400 * time.Millisecond, RanFor: time.Second})
	if b != 800*time.Millisecond {
		t.Errorf("backoff after 400ms = %v", b)
	}
}

func TestOnFailureCountsRestarts(t *testing.T) {
	// on-failure:2 with a command that always fails: restarted twice.
	in := restartInput{Policy: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 2}, ExitCode: 3}
	restarts := 0
	for {
		ok, b := decideRestart(in)
		if !ok {
			break
		}
		restarts++
		in.RestartCount++
		in.Backoff = b
		if restarts > 10 {
			t.Fatal("never gives up")
		}
	}
	if restarts != 2 {
		t.Errorf("restarts = %d, want 2", restarts)
	}
}

func TestProbeCommand(t *testing.T) {
	for _, tc := range []struct {
		test  []string
		shell []string
		want  string
	}{
		{[]string{"CMD-SHELL", "test -f /tmp/ok"}, nil, "/bin/sh|-c|test -f /tmp/ok"},
		{[]string{"CMD-SHELL", "x"}, []string{"/bin/bash", "-ec"}, "/bin/bash|-ec|x"},
		{[]string{"CMD", "curl", "-f", "http://localhost"}, nil, "curl|-f|http://localhost"},
		{[]string{"NONE"}, nil, ""},
		{[]string{"CMD"}, nil, ""},
		{nil, nil, ""},
		{[]string{"BOGUS", "x"}, nil, ""},
	} {
		got := strings.Join(probeCommand(&container.HealthConfig{Test: tc.test}, tc.shell), "|")
		if got != tc.want {
			t.Errorf("probeCommand(%q) = %q, want %q", tc.test, got, tc.want)
		}
	}
	if probeCommand(nil, nil) != nil {
		t.Error("nil config has a probe")
	}
}

func TestMergeHealthcheck(t *testing.T) {
	img := &container.HealthConfig{Test: []string{"CMD", "img"}, Interval: 5 * time.Second, Retries: 4, Timeout: 2 * time.Second}
	m := mergeHealthcheck(&container.HealthConfig{Interval: time.Second}, img)
	if m.Test[1] != "img" || m.Interval != time.Second || m.Retries != 4 || m.Timeout != 2*time.Second {
		t.Errorf("merged = %+v", m)
	}
	m = mergeHealthcheck(&container.HealthConfig{Test: []string{"NONE"}}, img)
	if probeCommand(m, nil) != nil {
		t.Errorf("--no-healthcheck kept the image's check: %+v", m)
	}
	if m = mergeHealthcheck(nil, img); m == img || m.Test[1] != "img" {
		t.Errorf("image only = %+v", m)
	}
	if mergeHealthcheck(nil, nil) != nil {
		t.Error("no health check from nothing")
	}
	if err := validateHealthcheck(&container.HealthConfig{Interval: 500 * time.Microsecond}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("0.5ms interval: %v", err)
	}
	if err := validateHealthcheck(&container.HealthConfig{Retries: -1}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("negative retries: %v", err)
	}
}

func TestHealthTransitions(t *testing.T) {
	started := time.Now()
	s := healthSettings{Interval: time.Second, Timeout: time.Second, Retries: 2, StartPeriod: 10 * time.Second, StartInterval: 100 * time.Millisecond}
	h := &container.Health{Status: container.Starting}
	res := func(code int, at time.Duration) *container.HealthcheckResult {
		return &container.HealthcheckResult{Start: started.Add(at), End: started.Add(at), ExitCode: code}
	}
	// Failures in the start period do not count while starting.
	applyProbeResult(h, res(1, time.Second), s, started)
	applyProbeResult(h, res(1, 2*time.Second), s, started)
	if h.Status != container.Starting || h.FailingStreak != 0 {
		t.Fatalf("in start period: %+v", h)
	}
	if old := applyProbeResult(h, res(0, 3*time.Second), s, started); old != container.Starting || h.Status != container.Healthy {
		t.Fatalf("success: old %s, now %+v", old, h)
	}
	// Once healthy, failures count even in the start period.
	applyProbeResult(h, res(1, 4*time.Second), s, started)
	if h.Status != container.Healthy || h.FailingStreak != 1 {
		t.Fatalf("one failure: %+v", h)
	}
	if old := applyProbeResult(h, res(-1, 5*time.Second), s, started); old != container.Healthy || h.Status != container.Unhealthy || h.FailingStreak != 2 {
		t.Fatalf("retries reached: %+v", h)
	}
	applyProbeResult(h, res(0, 6*time.Second), s, started)
	if h.Status != container.Healthy || h.FailingStreak != 0 {
		t.Fatalf("recovered: %+v", h)
	}
	if len(h.Log) != maxHealthLogEntries || !h.Log[len(h.Log)-1].Start.Equal(started.Add(6*time.Second)) {
		t.Fatalf("log keeps the last %d: %d entries", maxHealthLogEntries, len(h.Log))
	}
	// Starting, past the start period: failures count.
	h = &container.Health{Status: container.Starting}
	applyProbeResult(h, res(1, 11*time.Second), s, started)
	applyProbeResult(h, res(1, 12*time.Second), s, started)
	if h.Status != container.Unhealthy {
		t.Fatalf("starting past start period: %+v", h)
	}

	if d := nextProbeDelay(s, container.Starting, time.Second); d != s.StartInterval {
		t.Errorf("delay while starting = %v", d)
	}
	if d := nextProbeDelay(s, container.Healthy, time.Second); d != s.Interval {
		t.Errorf("delay when healthy = %v", d)
	}
	if d := nextProbeDelay(s, container.Starting, 11*time.Second); d != s.Interval {
		t.Errorf("delay after start period = %v", d)
	}
	if got := healthSettingsOf(nil); got.Interval != 30*time.Second || got.Retries != 3 || got.Timeout != 30*time.Second {
		t.Errorf("defaults = %+v", got)
	}
	if healthString(&container.Health{Status: container.Starting}) != "health: starting" || healthString(&container.Health{Status: "healthy"}) != "healthy" {
		t.Error("healthString")
	}
}

func TestProbeOutputTruncates(t *testing.T) {
	b := &probeOutput{max: 8}
	b.Write([]byte("12345"))
	b.Write([]byte("67890"))
	if got := b.String(); got != "12345678..." {
		t.Errorf("got %q", got)
	}
}

func testDaemon(t *testing.T) *Daemon {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return &Daemon{
		cfg:        Config{DefaultShape: shapeOf(256, 1), MinMemoryMiB: 128},
		log:        logrus.NewEntry(l),
		vms:        fakevm.New(),
		containers: newContainerStore(),
		events:     newEventBus(),
		stopping:   make(chan struct{}),
	}
}

func testContainer(t *testing.T, d *Daemon, name string) *Container {
	c := &Container{
		ID: strings.Repeat(name[:1], 64), Name: name, Dir: t.TempDir(),
		Config: &container.Config{}, HostConfig: &container.HostConfig{},
		Shape: shapeOf(256, 1), State: ContainerState{Status: container.StateExited},
	}
	d.containers.add(c)
	return c
}

func TestStopCancelsPendingRestart(t *testing.T) {
	d := testDaemon(t)
	c := testContainer(t, d, "r1")
	c.HostConfig.RestartPolicy = container.RestartPolicy{Name: "always"}
	c.mu.Lock()
	c.State.Status = container.StateRestarting
	c.State.ExitCode = 3
	d.scheduleRestart(c, time.Hour)
	c.mu.Unlock()

	if err := d.ContainerStart(context.Background(), "r1"); !errdefs.IsNotModified(err) {
		t.Fatalf("start of a restarting container: %v", err)
	}
	if err := d.ContainerPause(context.Background(), "r1"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "is restarting") {
		t.Fatalf("pause of a restarting container: %v", err)
	}
	if err := d.ContainerRemove(context.Background(), "r1", container.RemoveOptions{}); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "container is restarting") {
		t.Fatalf("rm of a restarting container: %v", err)
	}
	if err := d.ContainerStop(context.Background(), "r1", container.StopOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.State.Status != container.StateExited || c.State.ExitCode != 3 || c.lc.pendingRestart != nil || !c.HasBeenManuallyStopped {
		t.Fatalf("after stop: %+v pending=%v manual=%v", c.State, c.lc.pendingRestart, c.HasBeenManuallyStopped)
	}
}

func TestPauseErrorsWhenNotRunning(t *testing.T) {
	d := testDaemon(t)
	c := testContainer(t, d, "p1")
	if err := d.ContainerPause(context.Background(), "p1"); !errdefs.IsConflict(err) || err.Error() != "Container "+c.ID+" is not running" {
		t.Fatalf("pause stopped: %v", err)
	}
	if err := d.ContainerUnpause(context.Background(), "p1"); !errdefs.IsConflict(err) || err.Error() != "Container "+c.ID+" is not paused" {
		t.Fatalf("unpause stopped: %v", err)
	}
}

func TestUpdate(t *testing.T) {
	d := testDaemon(t)
	c := testContainer(t, d, "u1")
	ctx := context.Background()

	resp, err := d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 3}})
	if err != nil || len(resp.Warnings) != 0 || c.HostConfig.RestartPolicy.Name != "on-failure" || c.HostConfig.RestartPolicy.MaximumRetryCount != 3 {
		t.Fatalf("restart policy: %v %v %+v", resp, err, c.HostConfig.RestartPolicy)
	}
	// A stopped container gets its new shape at once (no warning).
	resp, err = d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{Resources: container.Resources{Memory: 512 << 20}})
	if err != nil || len(resp.Warnings) != 0 || c.Shape.MemoryMiB != 512 || c.HostConfig.Memory != 512<<20 {
		t.Fatalf("memory on stopped: %v %v %+v", resp, err, c.Shape)
	}
	// A running one keeps its VM until the next start, with a warning.
	c.State.Status = container.StateRunning
	resp, err = d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{Resources: container.Resources{NanoCPUs: 2e9}})
	if err != nil || len(resp.Warnings) != 1 || resp.Warnings[0] != updateVCPUWarning || c.Shape.VCPUs != 1 {
		t.Fatalf("cpus on running: %v %v %+v", resp, err, c.Shape)
	}
	c.mu.Lock()
	d.refreshShape(c)
	c.mu.Unlock()
	if c.Shape != shapeOf(512, 2) {
		t.Fatalf("shape at next start = %+v", c.Shape)
	}
	pids := int64(10)
	for _, bad := range []container.Resources{{BlkioWeight: 300}, {KernelMemory: 1 << 30}, {PidsLimit: &pids}} {
		if _, err := d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{Resources: bad}); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "cannot be applied to a jeVM") {
			t.Errorf("update %+v: %v", bad, err)
		}
	}
	if _, err := d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: "sometimes"}}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("bad policy: %v", err)
	}
	c.HostConfig.AutoRemove = true
	if _, err := d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: "always"}}); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "AutoRemove") {
		t.Errorf("restart policy with --rm: %v", err)
	}
	if err := validateHostConfig(&container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "unless-stopped"}}); err != nil {
		t.Errorf("create with unless-stopped: %v", err)
	}
	if err := validateHostConfig(&container.HostConfig{AutoRemove: true, RestartPolicy: container.RestartPolicy{Name: "always"}}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("create --rm --restart always: %v", err)
	}
}

func TestStatusStrings(t *testing.T) {
	now := time.Now()
	c := &Container{Config: &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"CMD", "true"}}}, HostConfig: &container.HostConfig{}}
	c.State = ContainerState{Status: container.StateRunning, StartedAt: now.Add(-5 * time.Second), Health: &container.Health{Status: container.Healthy}}
	if s := statusString(c); s != "Up 5 seconds (healthy)" {
		t.Errorf("healthy: %q", s)
	}
	c.State.Health.Status = container.Starting
	if s := statusString(c); s != "Up 5 seconds (health: starting)" {
		t.Errorf("starting: %q", s)
	}
	if v := healthFilterValue(c); v != "starting" {
		t.Errorf("health filter value %q", v)
	}
	c.State.Status = container.StatePaused
	if s := statusString(c); s != "Up 5 seconds (Paused)" {
		t.Errorf("paused: %q", s)
	}
	c.State = ContainerState{Status: container.StateRestarting, ExitCode: 3, FinishedAt: now.Add(-2 * time.Second)}
	if s := statusString(c); s != "Restarting (3) 2 seconds ago" {
		t.Errorf("restarting: %q", s)
	}
	if v := healthFilterValue(c); v != "none" {
		t.Errorf("health filter value without state %q", v)
	}
}
