package daemon

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"
)

// ContainerRemove removes a container, killing its VM first with force.
func (d *Daemon) ContainerRemove(ctx context.Context, ref string, opts container.RemoveOptions) error {
	if opts.RemoveLinks {
		return d.removeLink(ref) // links.go
	}
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	if opts.RemoveVolumes {
		c.mu.Lock()
		c.removeVolumes = true
		c.mu.Unlock()
	}
	return d.removeContainer(ctx, c, opts.Force)
}

func (d *Daemon) removeContainer(ctx context.Context, c *Container, force bool) error {
	// Not while containers run in its VM (pods.go).
	if err := d.checkNoMembers(c); err != nil {
		return err
	}
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("removal of container %s is already in progress", c.ID))
	}
	if err := d.beforeRemove(c, force); err != nil {
		c.mu.Unlock()
		return err
	}
	if c.running() {
		if !force {
			c.mu.Unlock()
			return errdefs.Conflict(fmt.Errorf("cannot remove container %q: container is running: stop the container before removing or force remove", "/"+c.Name))
		}
	}
	c.removing = true
	r := c.run
	c.mu.Unlock()
	if r != nil {
		r.stopRequested = true
		d.killEvent(c, syscall.SIGKILL)
		if err := r.machine.Kill(ctx); err != nil {
			d.log.WithError(err).WithField("container", c.ID[:12]).Warn("kill VM for removal")
		}
		<-r.finished
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.RemoveAll(c.Dir); err != nil {
		c.removing = false
		return fmt.Errorf("remove container files: %w", err)
	}
	_ = os.RemoveAll(d.vmStateDir(c.ID))
	d.containers.remove(c)
	// Volume references; `rm -v` and --rm also remove anonymous volumes.
	d.removeMounts(c, c.removeVolumes || c.HostConfig.AutoRemove)
	d.containerEvent(c, events.ActionDestroy, nil)
	c.State.Status = container.StateDead
	c.notifyWaiters(waitRemoved)
	d.log.WithField("container", c.ID[:12]).Info("container removed")
	go d.images.GCDisks(d.imageUsers)
	return nil
}
