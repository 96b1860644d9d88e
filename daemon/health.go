package daemon

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Health checks, as dockerd runs them: while the container runs (not while
// it is paused), the test command of the merged Config.Healthcheck runs in
// the guest through the agent (an exec) every interval, with a timeout.
// The status starts as "starting"; a success makes it "healthy"; Retries
// failures in a row make it "unhealthy" (failures within the start period
// do not count while it is still starting). The last five results are
// kept. Status changes are events ("health_status: healthy").

const (
	defaultProbeInterval      = 30 * time.Second
	defaultProbeTimeout       = 30 * time.Second
	defaultProbeStartInterval = 5 * time.Second
	defaultProbeRetries       = 3
	maxHealthLogEntries       = 5
	maxHealthOutput           = 4096
	// probeStartTimeout bounds the start of a probe (the exec request),
	// which does not count towards the probe's own timeout.
	probeStartTimeout = 30 * time.Second
)

// healthSettings are a health check's timings with dockerd's defaults.
type healthSettings struct {
	Interval, Timeout, StartPeriod, StartInterval time.Duration
	Retries                                       int
}

func healthSettingsOf(hc *container.HealthConfig) healthSettings {
	s := healthSettings{
		Interval:      defaultProbeInterval,
		Timeout:       defaultProbeTimeout,
		StartInterval: defaultProbeStartInterval,
		Retries:       defaultProbeRetries,
	}
	if hc == nil {
		return s
	}
	if hc.Interval > 0 {
		s.Interval = hc.Interval
	}
	if hc.Timeout > 0 {
		s.Timeout = hc.Timeout
	}
	if hc.StartPeriod > 0 {
		s.StartPeriod = hc.StartPeriod
	}
	if hc.StartInterval > 0 {
		s.StartInterval = hc.StartInterval
	}
	if hc.Retries > 0 {
		s.Retries = hc.Retries
	}
	return s
}

// probeCommand is the argv of a health check, nil when there is none:
// ["CMD", args...] runs args, ["CMD-SHELL", cmd] runs the shell (the
// image's SHELL, else /bin/sh -c), ["NONE"] disables the image's check.
func probeCommand(hc *container.HealthConfig, shell []string) []string {
	if hc == nil || len(hc.Test) == 0 {
		return nil
	}
	switch hc.Test[0] {
	case "CMD":
		if len(hc.Test) < 2 {
			return nil
		}
		return append([]string{}, hc.Test[1:]...)
	case "CMD-SHELL":
		if len(hc.Test) < 2 {
			return nil
		}
		if len(shell) == 0 {
			shell = []string{"/bin/sh", "-c"}
		}
		return append(append([]string{}, shell...), hc.Test[1:]...)
	}
	return nil // "NONE", or unknown (dockerd ignores those too)
}

// mergeHealthcheck applies dockerd's merge of the user's health check
// flags over the image's HEALTHCHECK: the user's settings win field by
// field, the image fills what the user left zero.
func mergeHealthcheck(user, img *container.HealthConfig) *container.HealthConfig {
	if img == nil {
		return user
	}
	if user == nil {
		h := *img
		return &h
	}
	h := *user
	if len(h.Test) == 0 {
		h.Test = img.Test
	}
	if h.Interval == 0 {
		h.Interval = img.Interval
	}
	if h.Timeout == 0 {
		h.Timeout = img.Timeout
	}
	if h.StartPeriod == 0 {
		h.StartPeriod = img.StartPeriod
	}
	if h.StartInterval == 0 {
		h.StartInterval = img.StartInterval
	}
	if h.Retries == 0 {
		h.Retries = img.Retries
	}
	return &h
}

// validateHealthcheck is dockerd's check of the health check settings.
func validateHealthcheck(hc *container.HealthConfig) error {
	if hc == nil {
		return nil
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Interval", hc.Interval}, {"Timeout", hc.Timeout}, {"StartPeriod", hc.StartPeriod}, {"StartInterval", hc.StartInterval}} {
		if d.v != 0 && d.v < container.MinimumDuration {
			return errdefs.InvalidParameter(fmt.Errorf("%s in Healthcheck cannot be less than %s", d.name, container.MinimumDuration))
		}
	}
	if hc.Retries < 0 {
		return errdefs.InvalidParameter(fmt.Errorf("Retries in Healthcheck cannot be negative"))
	}
	return nil
}

// applyProbeResult updates h with one probe result, as dockerd's
// handleProbeResult does, and returns the previous status.
func applyProbeResult(h *container.Health, res *container.HealthcheckResult, s healthSettings, startedAt time.Time) (old container.HealthStatus) {
	old = h.Status
	if len(h.Log) >= maxHealthLogEntries {
		h.Log = append(h.Log[len(h.Log)+1-maxHealthLogEntries:], res)
	} else {
		h.Log = append(h.Log, res)
	}
	if res.ExitCode == 0 {
		h.FailingStreak = 0
		h.Status = container.Healthy
		return old
	}
	if h.Status == container.Starting && res.Start.Sub(startedAt) < s.StartPeriod {
		return old // failures in the start period do not count yet
	}
	h.FailingStreak++
	if h.FailingStreak >= s.Retries {
		h.Status = container.Unhealthy
	}
	return old
}

// nextProbeDelay is the wait before the next probe: the start interval
// while the container is starting within its start period, else the
// interval.
func nextProbeDelay(s healthSettings, status container.HealthStatus, sinceStart time.Duration) time.Duration {
	if sinceStart < s.StartPeriod && status == container.Starting {
		return s.StartInterval
	}
	return s.Interval
}

// healthString is the health part of `docker ps`'s status and its
// "health" filter value.
func healthString(h *container.Health) string {
	if h == nil {
		return container.NoHealthcheck
	}
	if h.Status == container.Starting {
		return "health: starting"
	}
	return h.Status
}

// runStarted is called with c.mu held when a run begins or a VM was
// re-adopted: it (re)starts the health monitor of that run.
func (d *Daemon) runStarted(c *Container, r *runtime) {
	if c.run != r {
		return
	}
	cmd := probeCommand(c.Config.Healthcheck, c.Config.Shell)
	if cmd == nil {
		c.State.Health = nil
		return
	}
	// dockerd resets the health of a started, restarted or restored
	// container to "starting"; a migrated one did not stop.
	c.State.Health = &container.Health{Status: container.Starting}
	if r.keptHealth != nil { // migratedHealth's, the run's own
		c.State.Health, r.keptHealth = r.keptHealth, nil
	}
	if err := c.save(); err != nil {
		d.log.WithError(err).Error("save container")
	}
	go d.healthMonitor(c, r, cmd, healthSettingsOf(c.Config.Healthcheck), c.State.StartedAt, c.State.Health.Status)
}

// healthMonitor probes one run until it ends or the daemon shuts down.
// status is the health the run starts with.
func (d *Daemon) healthMonitor(c *Container, r *runtime, cmd []string, s healthSettings, startedAt time.Time, status container.HealthStatus) {
	log := d.log.WithField("container", c.ID[:12])
	t := time.NewTimer(nextProbeDelay(s, status, time.Since(startedAt)))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.finished:
			return
		case <-d.stopping:
			return
		}
		c.mu.Lock()
		if c.run != r {
			c.mu.Unlock()
			return
		}
		paused := c.State.Status == container.StatePaused
		req := &agentproto.ProcessRequest{
			Args: cmd,
			Env:  containerEnv(c),
			Cwd:  c.Config.WorkingDir,
			User: c.Config.User,
			// A probe is an exec: the container's rlimits.
			Rlimits:          c.Rlimits,
			AdditionalGroups: c.HostConfig.GroupAdd,
			Capabilities:     execCapabilities(c, false),
		}
		c.mu.Unlock()
		if !paused {
			res := d.probe(r, req, s.Timeout)
			if res == nil {
				return // the run ended during the probe
			}
			// A probe the agent refused because a checkpoint held the
			// processes still has no result, as while paused.
			if res != probeHeld {
				c.mu.Lock()
				if c.run != r || c.State.Health == nil {
					c.mu.Unlock()
					return
				}
				old := applyProbeResult(c.State.Health, res, s, startedAt)
				status = c.State.Health.Status
				if err := c.save(); err != nil {
					log.WithError(err).Warn("save container health")
				}
				if status != old {
					d.containerEvent(c, events.Action(string(events.ActionHealthStatus)+": "+status), nil)
					log.WithField("health", status).Info("health status changed")
				}
				c.mu.Unlock()
				if res.ExitCode != 0 {
					log.WithFields(map[string]any{"exitCode": res.ExitCode, "output": res.Output}).Debug("health check failed")
				}
			}
		}
		t.Reset(nextProbeDelay(s, status, time.Since(startedAt)))
	}
}

// probeHeld is probe's result when the agent refused the probe's exec
// because a checkpoint held the container's processes still: none.
var probeHeld = &container.HealthcheckResult{}

// probe runs one health check command in the guest. It returns nil if the
// run ended meanwhile, probeHeld if it could not run for a checkpoint.
func (d *Daemon) probe(r *runtime, req *agentproto.ProcessRequest, timeout time.Duration) *container.HealthcheckResult {
	start := time.Now()
	out := &probeOutput{max: maxHealthOutput}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.finished:
			cancel()
		case <-ctx.Done():
		}
	}()
	startCtx, startCancel := context.WithTimeout(ctx, probeStartTimeout)
	proc, err := r.agent.Exec(startCtx, req, agentclient.ProcessIO{Stdout: out, Stderr: out})
	startCancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if agentclient.IsProcessesHeld(err) {
			return probeHeld
		}
		return &container.HealthcheckResult{Start: start, End: time.Now(), ExitCode: -1, Output: err.Error()}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-proc.Exited():
		st, ok := proc.Status()
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return &container.HealthcheckResult{Start: start, End: time.Now(), ExitCode: -1, Output: "health check: the connection to the container's agent was lost"}
		}
		return &container.HealthcheckResult{Start: start, End: time.Now(), ExitCode: st.Code, Output: out.String()}
	case <-t.C:
		kctx, kcancel := context.WithTimeout(ctx, 5*time.Second)
		_ = proc.Signal(kctx, int(syscall.SIGKILL))
		select {
		case <-proc.Exited():
		case <-kctx.Done():
		}
		kcancel()
		msg := fmt.Sprintf("Health check exceeded timeout (%v)", timeout)
		if o := out.String(); o != "" {
			msg += ": " + o
		}
		return &container.HealthcheckResult{Start: start, End: time.Now(), ExitCode: -1, Output: msg}
	case <-ctx.Done():
		return nil
	}
}

// probeOutput keeps the first max bytes written to it.
type probeOutput struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (b *probeOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := b.max - b.buf.Len()
	if keep > len(p) {
		keep = len(p)
	}
	if keep > 0 {
		b.buf.Write(p[:keep])
	}
	if keep < len(p) {
		b.truncated = true
	}
	return len(p), nil
}

func (b *probeOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.truncated {
		return b.buf.String() + "..."
	}
	return b.buf.String()
}

// copyHealth is the health state for inspect (a copy: the monitor keeps
// changing the original).
func copyHealth(h *container.Health) *container.Health {
	if h == nil {
		return nil
	}
	out := *h
	out.Log = make([]*container.HealthcheckResult, len(h.Log))
	for i, r := range h.Log {
		rc := *r
		out.Log[i] = &rc
	}
	return &out
}

// healthFilterValue is what `docker ps --filter health=` matches:
// starting, healthy, unhealthy or none. Callers hold c.mu.
func healthFilterValue(c *Container) string {
	if c.State.Health == nil || probeCommand(c.Config.Healthcheck, c.Config.Shell) == nil {
		return container.NoHealthcheck
	}
	return c.State.Health.Status
}
