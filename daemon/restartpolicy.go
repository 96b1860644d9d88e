package daemon

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"
)

// Restart policies, as dockerd's restart manager applies them: after an
// exit that nobody asked for (stop, kill with the stop signal or SIGKILL,
// rm -f and daemon shutdown cancel it), "always" restarts, "unless-stopped"
// restarts unless the user stopped the container, "on-failure[:N]"
// restarts on a non-zero exit (at most N times). The delay starts at
// 100 ms and doubles with every restart, up to a minute, and goes back to
// 100 ms after a run that lasted 10 s or more. While it waits the container
// is "restarting"; `docker stop`, `kill` and `rm -f` cancel the restart.
//
// On start-up the daemon starts the containers whose policy says so, as
// dockerd does: "always" ones in any case, "unless-stopped" ones unless the
// user stopped them, "on-failure" ones whose last exit was a failure with
// retries left.

const (
	restartBackoffMin  = 100 * time.Millisecond
	restartBackoffMax  = time.Minute
	restartBackoffDrop = 10 * time.Second // a run this long resets the backoff
)

// lifecycle is the run-time part of restart policies and health checks;
// it is not persisted. Callers hold c.mu.
type lifecycle struct {
	// backoff is the restart manager's current delay (0: none yet).
	backoff time.Duration
	// pendingRestart is closed to cancel a scheduled restart.
	pendingRestart chan struct{}
	// autoStart is set while the container waits for its start after a
	// daemon restart; stop, start and removal clear it.
	autoStart bool
	// restarting is set during `docker restart`: the stop's exit must not
	// auto-remove a --rm container that is about to start again.
	restarting bool
}

// restartInput is what a restart decision depends on.
type restartInput struct {
	Policy       container.RestartPolicy
	ExitCode     int
	RestartCount int
	// ManuallyStopped: the user stopped or killed the container (matters
	// for unless-stopped only).
	ManuallyStopped bool
	// Canceled: the exit was asked for (stop, kill with the stop signal or
	// SIGKILL, removal, daemon shutdown): no policy restarts it.
	Canceled bool
	// RanFor is how long the run lasted.
	RanFor time.Duration
	// Backoff is the previous delay (0 when none).
	Backoff time.Duration
}

// nextBackoff is dockerd's delay schedule: 100 ms, doubled each time up to
// a minute, back to 100 ms after a run of 10 s or more.
func nextBackoff(prev, ranFor time.Duration) time.Duration {
	if ranFor >= restartBackoffDrop {
		prev = 0
	}
	switch {
	case prev <= 0:
		prev = restartBackoffMin
	case prev < restartBackoffMax:
		prev *= 2
	}
	if prev > restartBackoffMax {
		prev = restartBackoffMax
	}
	return prev
}

// decideRestart says whether a container that exited is restarted, and the
// delay (the new backoff, which is also kept when it is not restarted).
func decideRestart(in restartInput) (restart bool, backoff time.Duration) {
	p := in.Policy
	if p.IsNone() || in.Canceled {
		return false, in.Backoff
	}
	backoff = nextBackoff(in.Backoff, in.RanFor)
	switch {
	case p.IsAlways():
		restart = true
	case p.IsUnlessStopped():
		restart = !in.ManuallyStopped
	case p.IsOnFailure():
		if p.MaximumRetryCount == 0 || in.RestartCount < p.MaximumRetryCount {
			restart = in.ExitCode != 0
		}
	}
	return restart, backoff
}

// hasRestartPolicy reports whether hc names a policy other than "no".
func hasRestartPolicy(hc *container.HostConfig) bool {
	return hc != nil && !hc.RestartPolicy.IsNone()
}

// restartAfterExit is called by the monitor with c.mu held once the exit is
// recorded in c.State: it applies the restart policy, and when the
// container is to be restarted marks it "restarting", counts the restart
// and schedules it. It reports whether it did.
func (d *Daemon) restartAfterExit(c *Container, r *runtime) bool {
	shuttingDown := false
	select {
	case <-d.stopping:
		shuttingDown = true
	default:
	}
	restart, backoff := decideRestart(restartInput{
		Policy:          c.HostConfig.RestartPolicy,
		ExitCode:        c.State.ExitCode,
		RestartCount:    c.RestartCount,
		ManuallyStopped: c.HasBeenManuallyStopped,
		Canceled:        r.stopRequested || c.removing || shuttingDown,
		RanFor:          c.State.FinishedAt.Sub(c.State.StartedAt),
		Backoff:         c.lc.backoff,
	})
	c.lc.backoff = backoff
	if !restart {
		return false
	}
	c.RestartCount++
	c.State.Status = container.StateRestarting
	d.log.WithFields(logrus.Fields{"container": c.ID[:12], "restartCount": c.RestartCount, "exitCode": c.State.ExitCode, "delay": backoff.String()}).Info("restarting container (restart policy)")
	d.scheduleRestart(c, backoff)
	return true
}

// scheduleRestart starts c again after delay unless the restart is
// cancelled first. Callers hold c.mu.
func (d *Daemon) scheduleRestart(c *Container, delay time.Duration) {
	cancel := make(chan struct{})
	c.lc.pendingRestart = cancel
	go func() {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-cancel:
			return
		case <-d.stopping:
			// The record says "restarting": the next daemon decides.
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.lc.pendingRestart != cancel {
			return // cancelled while we waited for the lock
		}
		c.lc.pendingRestart = nil
		select {
		case <-d.stopping:
			return
		default:
		}
		if c.removing || c.State.Status != container.StateRestarting {
			return
		}
		if err := d.startContainer(context.Background(), c); err != nil {
			d.log.WithError(err).WithField("container", c.ID[:12]).Warn("restart by restart policy failed")
			d.setStoppedAfterRestart(c, err.Error())
		}
	}()
}

// setStoppedAfterRestart records that a pending restart did not happen.
// Callers hold c.mu.
func (d *Daemon) setStoppedAfterRestart(c *Container, reason string) {
	c.State.Status = container.StateExited
	c.State.Pid = 0
	if reason != "" {
		c.State.Error = reason
	}
	if err := c.save(); err != nil {
		d.log.WithError(err).Error("save container")
	}
	c.notifyWaiters(waitExit)
}

// cancelRestart cancels a scheduled restart; the container is then exited
// (with the exit status of its last run). It reports whether there was one.
// Callers hold c.mu.
func (d *Daemon) cancelRestart(c *Container) bool {
	c.lc.autoStart = false
	if c.lc.pendingRestart == nil {
		if c.State.Status == container.StateRestarting {
			// Restored from disk in "restarting" and not restarted
			// (yet): settle it.
			d.setStoppedAfterRestart(c, "")
			return true
		}
		return false
	}
	close(c.lc.pendingRestart)
	c.lc.pendingRestart = nil
	d.setStoppedAfterRestart(c, "")
	return true
}

// beforeStart is called by explicit starts (start, restart) with c.mu
// held: a restarting container is left to its restart manager, otherwise
// the restart manager is reset as dockerd does (restart count and backoff
// back to zero, unless-stopped armed again).
func (d *Daemon) beforeStart(c *Container) error {
	if c.State.Status == container.StateRestarting && c.lc.pendingRestart != nil {
		return errdefs.NotModified(fmt.Errorf("container %s is restarting", c.ID))
	}
	if c.lc.pendingRestart != nil {
		close(c.lc.pendingRestart)
		c.lc.pendingRestart = nil
	}
	c.lc.autoStart = false
	c.RestartCount = 0
	c.lc.backoff = 0
	c.HasBeenManuallyStopped = false
	return nil
}

// beforeStop is called by stop and kill with c.mu held, before they look
// at the run. A pending restart is cancelled (then the container is
// stopped and done is true). Otherwise, for a running container, it
// records that the user stopped it (unless-stopped), marks the exit as
// asked for when the signal ends the container (dockerd's ExitOnNext:
// the stop signal or SIGKILL), and resumes a paused VM so that its agent
// can deliver the signal. A paused container is not resumed for other
// signals: err says so.
func (d *Daemon) beforeStop(ctx context.Context, c *Container, terminating bool) (done bool, err error) {
	if c.State.Status == container.StateRestarting {
		c.HasBeenManuallyStopped = true
		return d.cancelRestart(c), nil
	}
	c.lc.autoStart = false
	if !c.running() || c.run == nil {
		return false, nil
	}
	if c.State.Status == container.StatePaused {
		if !terminating {
			return false, errdefs.Conflict(fmt.Errorf("Container %s is paused. Unpause the container before sending it a signal that does not stop it", c.ID))
		}
		if err := d.resumeForStop(ctx, c); err != nil {
			return false, err
		}
	}
	c.HasBeenManuallyStopped = true
	if terminating {
		c.run.stopRequested = true
	}
	if err := c.save(); err != nil {
		d.log.WithError(err).Error("save container")
	}
	return false, nil
}

// beforeRemove is called by removal with c.mu held: a restarting
// container is removed only with force (its restart is cancelled).
func (d *Daemon) beforeRemove(c *Container, force bool) error {
	c.lc.autoStart = false
	if c.State.Status != container.StateRestarting {
		return nil
	}
	if !force {
		return errdefs.Conflict(fmt.Errorf("cannot remove container %q: container is restarting: stop the container before removing or force remove", "/"+c.Name))
	}
	d.cancelRestart(c)
	return nil
}

// autoStartRestored starts, after a daemon restart, the containers that
// dockerd would start: those whose restart policy says so and that ran
// before. It runs in the background, one container at a time.
func (d *Daemon) autoStartRestored() {
	var todo []*Container
	for _, c := range d.containers.all() {
		c.mu.Lock()
		switch {
		case c.running() || c.removing:
		case c.State.Status == container.StateRestarting || c.State.Status == container.StateExited:
			// A container that was restarting when the previous daemon
			// went away had its restart decided (and counted) already.
			restart := c.State.Status == container.StateRestarting
			if !restart {
				restart, _ = decideRestart(restartInput{
					Policy:          c.HostConfig.RestartPolicy,
					ExitCode:        c.State.ExitCode,
					RestartCount:    c.RestartCount,
					ManuallyStopped: c.HasBeenManuallyStopped,
					RanFor:          c.State.FinishedAt.Sub(c.State.StartedAt),
				})
			}
			if restart && hasRestartPolicy(c.HostConfig) && !c.State.StartedAt.IsZero() {
				c.lc.autoStart = true
				todo = append(todo, c)
			} else if c.State.Status == container.StateRestarting {
				d.setStoppedAfterRestart(c, "")
			}
		}
		c.mu.Unlock()
	}
	if len(todo) == 0 {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for _, c := range todo {
			select {
			case <-d.stopping:
				return
			default:
			}
			c.mu.Lock()
			if c.lc.autoStart && !c.running() && !c.removing {
				c.lc.autoStart = false
				log := d.log.WithField("container", c.ID[:12])
				if err := d.startContainer(context.Background(), c); err != nil {
					log.WithError(err).Warn("start by restart policy after daemon restart failed")
					d.setStoppedAfterRestart(c, err.Error())
				} else {
					log.WithField("policy", c.HostConfig.RestartPolicy.Name).Info("started by restart policy after daemon restart")
				}
			}
			c.mu.Unlock()
		}
	}()
}

// killEndsContainer reports whether a kill signal is one after which the
// container is not restarted (dockerd's ExitOnNext): SIGKILL or the
// container's stop signal. Callers hold c.mu.
func killEndsContainer(c *Container, sig syscall.Signal) bool {
	if sig == syscall.SIGKILL {
		return true
	}
	stop := syscall.SIGTERM
	if c.Config.StopSignal != "" {
		if s, err := parseSignal(c.Config.StopSignal); err == nil {
			stop = s
		}
	}
	return sig == stop
}
