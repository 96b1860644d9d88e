package daemon

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/vmbackend"
)

// Pause and unpause stop and continue the container VM's vCPUs (QMP
// stop/cont): the guest, its clock included, stands still; the VMM process
// and the guest's memory stay. A paused VM's agent cannot answer, so stop
// and kill resume the VM before they signal, and a daemon restart resumes
// a paused VM just long enough to reconnect to its agent.

// ContainerPause pauses a running container.
func (d *Daemon) ContainerPause(ctx context.Context, ref string) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.State.Status == container.StateRestarting:
		return errdefs.Conflict(fmt.Errorf("Container %s is restarting, wait until the container is running", c.ID))
	case c.State.Status == container.StatePaused:
		return errdefs.Conflict(fmt.Errorf("Container %s is already paused", c.ID))
	case !c.running() || c.run == nil:
		return errdefs.Conflict(fmt.Errorf("Container %s is not running", c.ID))
	}
	if err := d.pauseRun(ctx, c, true); err != nil {
		return fmt.Errorf("cannot pause container %s: %w", c.ID, err)
	}
	c.State.Status = container.StatePaused
	if err := c.save(); err != nil {
		d.log.WithError(err).Warn("could not save container to disk")
	}
	d.containerEvent(c, events.ActionPause, nil)
	d.log.WithField("container", c.ID[:12]).Info("container paused")
	return nil
}

// ContainerUnpause resumes a paused container.
func (d *Daemon) ContainerUnpause(ctx context.Context, ref string) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.State.Status != container.StatePaused || c.run == nil {
		return errdefs.Conflict(fmt.Errorf("Container %s is not paused", c.ID))
	}
	if err := d.pauseRun(ctx, c, false); err != nil {
		return fmt.Errorf("Cannot unpause container %s: %w", c.ID, err)
	}
	c.State.Status = container.StateRunning
	if err := c.save(); err != nil {
		d.log.WithError(err).Warn("could not save container to disk")
	}
	d.containerEvent(c, events.ActionUnPause, nil)
	d.log.WithField("container", c.ID[:12]).Info("container unpaused")
	return nil
}

// resumeForStop resumes a paused container's VM so that its agent can
// deliver a stop signal (dockerd unpauses in that case too, without an
// unpause event). Callers hold c.mu.
func (d *Daemon) resumeForStop(ctx context.Context, c *Container) error {
	if c.State.Status != container.StatePaused || c.run == nil {
		return nil
	}
	if err := d.pauseRun(ctx, c, false); err != nil {
		return fmt.Errorf("resume paused container %s to stop it: %w", c.ID, err)
	}
	c.State.Status = container.StateRunning
	return nil
}

// pauseRun pauses or resumes c's run: its VM, or for a container in
// another's VM (pods.go) its own processes, through the agent, which
// only answers while that VM runs. So the VM's container is kept from
// pausing meanwhile (its lock), and a member of a paused VM, which stands
// still with it, is only marked. Callers hold c.mu.
func (d *Daemon) pauseRun(ctx context.Context, c *Container, pause bool) error {
	r := c.run
	if r.podHost == "" {
		if pause {
			return r.machine.Pause(ctx)
		}
		return r.machine.Resume(ctx)
	}
	host, err := d.containers.get(r.podHost)
	if err != nil {
		return err
	}
	host.mu.Lock()
	defer host.mu.Unlock()
	if host.State.Status == container.StatePaused {
		if pause {
			return nil // frozen with its VM
		}
		return errdefs.Conflict(fmt.Errorf("the container's VM is paused with container %s: unpause that first", strings.TrimPrefix(host.Name, "/")))
	}
	if pause {
		return r.machine.Pause(ctx)
	}
	return r.machine.Resume(ctx)
}

// attachRuntimeKeepingPause reconnects a re-adopted VM's agent. The agent
// only answers a running guest, so the VM is resumed for the handshake
// (QMP cont is harmless on a running VM, and this also repairs a record
// that missed a pause) and paused again if the container was paused.
// Callers hold c.mu.
func (d *Daemon) attachRuntimeKeepingPause(ctx context.Context, c *Container, m vmbackend.Machine) error {
	paused := c.State.Status == container.StatePaused
	if err := m.Resume(ctx); err != nil && paused {
		return fmt.Errorf("resume paused VM to reconnect: %w", err)
	}
	if err := d.attachRuntime(ctx, c, m); err != nil {
		return err
	}
	if paused && c.run != nil {
		if err := m.Pause(ctx); err != nil {
			d.log.WithError(err).WithField("container", c.ID[:12]).Warn("could not pause the re-adopted VM again; it runs")
			c.State.Status = container.StateRunning
			_ = c.save()
		}
	}
	return nil
}
