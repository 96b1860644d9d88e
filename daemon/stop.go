package daemon

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"
	"golang.org/x/sys/unix"
)

// defaultStopTimeout is dockerd's grace period before SIGKILL.
const defaultStopTimeout = 10

// ContainerStop sends the stop signal, then SIGKILL after the timeout.
// As in dockerd, a client that gives up (its request cancelled) does not
// cancel the stop: the container is still killed after the timeout.
func (d *Daemon) ContainerStop(ctx context.Context, ref string, opts container.StopOptions) error {
	ctx = context.WithoutCancel(ctx)
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	// The containers that run in its VM go first (pods.go).
	d.stopMembers(ctx, c)
	c.mu.Lock()
	if done, err := d.beforeStop(ctx, c, true); done || err != nil {
		c.mu.Unlock()
		return err
	}
	if !c.running() || c.run == nil {
		c.mu.Unlock()
		return errdefs.NotModified(fmt.Errorf("container %s is already stopped", c.ID))
	}
	r := c.run
	r.stopRequested = true
	sigName := opts.Signal
	if sigName == "" {
		sigName = c.Config.StopSignal
	}
	timeout := defaultStopTimeout
	if c.Config.StopTimeout != nil {
		timeout = *c.Config.StopTimeout
	}
	if opts.Timeout != nil {
		timeout = *opts.Timeout
	}
	c.mu.Unlock()

	sig := syscall.SIGTERM
	if sigName != "" {
		if sig, err = parseSignal(sigName); err != nil {
			return err
		}
	}
	if err := d.stopRun(ctx, c, r, sig, timeout); err != nil {
		return err
	}
	d.lockedContainerEvent(c, events.ActionStop, nil)
	return nil
}

// killGrace bounds how long a SIGKILL may take to end a container (the
// agent's answer included) before its VM is killed.
const killGrace = 5 * time.Second

// stopRun signals the run's process and escalates to SIGKILL, and to
// killing the VM if the agent does not answer. The waits for the agent
// come out of the grace periods: a guest that never answers is killed
// after the stop timeout and killGrace, as one that ignores the signal.
func (d *Daemon) stopRun(ctx context.Context, c *Container, r *runtime, sig syscall.Signal, timeout int) error {
	log := d.log.WithField("container", c.ID[:12])
	if timeout < 0 {
		if err := r.proc.Signal(ctx, int(sig)); err != nil {
			log.WithError(err).Warn("stop signal not delivered")
		} else {
			d.killEvent(c, sig)
		}
		select {
		case <-r.finished:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	grace, cancel := context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
	if err := r.proc.Signal(grace, int(sig)); err != nil {
		log.WithError(err).Warn("stop signal not delivered")
	} else {
		d.killEvent(c, sig)
	}
	select {
	case <-r.finished:
		cancel()
		return nil
	case <-grace.Done():
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	log.WithField("timeout", timeout).Info("container did not stop in time; sending SIGKILL")
	kill, cancel := context.WithTimeout(ctx, killGrace)
	defer cancel()
	if err := r.proc.Signal(kill, int(syscall.SIGKILL)); err != nil {
		log.WithError(err).Warn("SIGKILL not delivered")
	} else {
		d.killEvent(c, syscall.SIGKILL)
	}
	select {
	case <-r.finished:
		return nil
	case <-kill.Done():
	}
	log.Warn("process did not die; killing its VM")
	if err := r.machine.Kill(ctx); err != nil {
		return fmt.Errorf("kill VM: %w", err)
	}
	<-r.finished
	return nil
}

// ContainerKill sends a signal to the container's main process.
func (d *Daemon) ContainerKill(ctx context.Context, ref string, signal string) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if signal != "" {
		if sig, err = parseSignal(signal); err != nil {
			return err
		}
	}
	c.mu.Lock()
	if done, err := d.beforeStop(ctx, c, killEndsContainer(c, sig)); done || err != nil {
		c.mu.Unlock()
		return err
	}
	r := c.run
	if !c.running() || r == nil {
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("Cannot kill container: %s: Container %s is not running", ref, c.ID))
	}
	if sig == syscall.SIGKILL {
		r.stopRequested = true
	}
	c.mu.Unlock()
	sigCtx, cancel := context.WithCancel(ctx)
	if sig == syscall.SIGKILL {
		// A guest that does not answer loses its VM instead.
		sigCtx, cancel = context.WithTimeout(ctx, killGrace)
	}
	err = r.proc.Signal(sigCtx, int(sig))
	cancel()
	if err != nil {
		if sig != syscall.SIGKILL {
			return fmt.Errorf("deliver %s: %w", unix.SignalName(sig), err)
		}
		// The agent is unreachable: SIGKILL means the VM goes.
		d.killEvent(c, sig)
		return r.machine.Kill(ctx)
	}
	d.killEvent(c, sig)
	if sig == syscall.SIGKILL {
		select {
		case <-r.finished:
		case <-time.After(killGrace):
			_ = r.machine.Kill(ctx)
			<-r.finished
		}
	}
	return nil
}

// parseSignal accepts "SIGTERM", "TERM", "term" and "15", as dockerd does.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, errdefs.InvalidParameter(fmt.Errorf("Invalid signal: %s", s))
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, errdefs.InvalidParameter(fmt.Errorf("Invalid signal: %s", s))
}

// ContainerRestart stops the container if it runs, then starts it. As in
// dockerd, it is not cancelled with its request: the stop and the start
// both happen.
func (d *Daemon) ContainerRestart(ctx context.Context, ref string, opts container.StopOptions) error {
	ctx = context.WithoutCancel(ctx)
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	// As dockerd: a --rm container that is restarted is not removed by
	// the stop's exit.
	c.mu.Lock()
	c.lc.restarting = true
	c.mu.Unlock()
	err = d.ContainerStop(ctx, c.ID, opts)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lc.restarting = false
	if err != nil && !errdefs.IsNotModified(err) {
		return err
	}
	if c.running() {
		return nil
	}
	// dockerd counts only restarts made by a restart policy in
	// RestartCount, not explicit ones.
	if err := d.beforeStart(c); err != nil {
		return err
	}
	if err := d.startContainer(ctx, c); err != nil {
		return err
	}
	d.containerEvent(c, events.ActionRestart, nil)
	return nil
}
