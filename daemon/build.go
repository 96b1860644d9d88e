package daemon

// The container side of `docker build`: every RUN step of a Dockerfile runs
// in a container of its own (a jeVM cloned from the template, on a disk
// holding the previous step's file system), and its changes become the next
// image. Package builder drives these through its ContainerBackend.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"
)

// RunBuildContainer starts a build step's container (made by
// ContainerCreate) with its output going to stdout and stderr from the
// first byte (the subscription is made before the start), waits for it to
// exit and returns the exit code. If ctx ends first, the container is
// killed.
func (d *Daemon) RunBuildContainer(ctx context.Context, id string, stdout, stderr io.Writer) (int, error) {
	c, err := d.containers.get(id)
	if err != nil {
		return 0, err
	}
	id = c.ID
	c.mu.Lock()
	hub := c.hub()
	sub := hub.subscribe(stdout, stderr)
	c.mu.Unlock()
	defer hub.unsubscribe(sub)

	waitCh, err := d.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err != nil {
		return 0, err
	}
	if err := d.ContainerStart(ctx, id); err != nil {
		return 0, err
	}
	var res container.WaitResponse
	select {
	case res = <-waitCh:
	case <-ctx.Done():
		// The client went away or cancelled the build: stop the step with
		// a context of our own, since ctx is done.
		kctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.ContainerKill(kctx, id, "KILL"); err != nil {
			d.log.WithError(err).WithField("container", id[:12]).Warn("killing a cancelled build step")
		}
		return 0, ctx.Err()
	}
	// The exit is recorded once the run's output ended; the subscription
	// closes with it.
	select {
	case <-sub.done:
	case <-time.After(10 * time.Second):
		d.log.WithField("container", id[:12]).Warn("build step output did not end with its process")
	}
	if res.Error != nil && res.Error.Message != "" {
		return int(res.StatusCode), errdefs.System(errors.New(res.Error.Message))
	}
	return int(res.StatusCode), nil
}

// BuildImageCreated records the image event of a build step that made an
// image without a container (COPY, ENV, ...), as dockerd's commit of each
// step does.
func (d *Daemon) BuildImageCreated(imageID string) {
	d.imageEvent(events.ActionCreate, imageID, imageID, nil)
}

// CommitBuildContainer makes an image of a build step's container: its
// changes on top of its image, with exactly cfg as the image's config (no
// merging with the container's, which ran the step's command) and
// createdBy as the history entry. The image's base disk is built when it
// is first needed.
func (d *Daemon) CommitBuildContainer(ctx context.Context, id string, cfg *container.Config, createdBy string) (string, error) {
	c, err := d.containers.get(id)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	parent := c.ImageID
	running := c.running()
	c.mu.Unlock()
	if running {
		return "", errdefs.Conflict(fmt.Errorf("build step container %s is still running", c.ID[:12]))
	}
	start := time.Now()
	imageID, layerBytes, _, err := d.commitContainer(ctx, c, false, CommitRequest{
		Parent:    parent,
		Config:    cfg,
		CreatedBy: createdBy,
		LazyDisk:  true,
	})
	if err != nil {
		return "", err
	}
	d.imageEvent(events.ActionCreate, imageID, imageID, nil)
	d.log.WithFields(logrus.Fields{
		"container":  c.ID[:12],
		"image":      imageID,
		"layerBytes": layerBytes,
		"took":       time.Since(start).Round(time.Millisecond).String(),
	}).Info("build step committed")
	return imageID, nil
}
