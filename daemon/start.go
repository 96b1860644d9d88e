package daemon

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
)

// ContainerStart starts a created or exited container in a new clone.
func (d *Daemon) ContainerStart(ctx context.Context, ref string) (err error) {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removing {
		return errdefs.Conflict(fmt.Errorf("container is marked for removal and cannot be started"))
	}
	if c.State.Status == container.StatePaused {
		return errdefs.Conflict(fmt.Errorf("cannot start a paused container, try unpause instead"))
	}
	if c.running() {
		return errdefs.NotModified(fmt.Errorf("container %s is already running", c.ID))
	}
	if err := d.beforeStart(c); err != nil {
		return err
	}
	err = d.startContainer(ctx, c)
	if err != nil && c.HostConfig.AutoRemove {
		// As dockerd does: a --rm container whose start failed is removed
		// (`docker run --rm` waits for that before it reports the error).
		go func() {
			if rmErr := d.removeContainer(context.Background(), c, true); rmErr != nil {
				d.log.WithError(rmErr).WithField("container", c.ID[:12]).Warn("remove after failed start")
			}
		}()
	}
	return err
}
