package daemon

import (
	"strconv"
	"syscall"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
)

// The events the daemon's code paths emit, with dockerd's attributes.

// lockedContainerEvent is containerEvent for callers that do not hold c.mu.
func (d *Daemon) lockedContainerEvent(c *Container, action events.Action, extra map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d.containerEvent(c, action, extra)
}

// killEvent records a signal delivered to the main process ("signal" is
// its number, as with dockerd). Callers do not hold c.mu.
func (d *Daemon) killEvent(c *Container, sig syscall.Signal) {
	d.lockedContainerEvent(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
}

// dieEvent records the end of a run from the container's state. Callers
// hold c.mu.
func (d *Daemon) dieEvent(c *Container) {
	attrs := map[string]string{"exitCode": strconv.Itoa(c.State.ExitCode)}
	if !c.State.StartedAt.IsZero() && c.State.FinishedAt.After(c.State.StartedAt) {
		attrs["execDuration"] = strconv.Itoa(int(c.State.FinishedAt.Sub(c.State.StartedAt).Seconds()))
	}
	d.containerEvent(c, events.ActionDie, attrs)
}

// familiarRef shortens a reference as the CLI shows it
// ("docker.io/library/busybox:latest" -> "busybox:latest").
func familiarRef(s string) string {
	ref, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return s
	}
	return reference.FamiliarString(ref)
}

// pullEvent: dockerd names a pull's event after the reference pulled.
func (d *Daemon) pullEvent(ref string) {
	name := familiarRef(ref)
	d.imageEvent(events.ActionPull, name, name, d.imageLabels(ref))
}

// tagEvent: the image's ID, named by the new reference.
func (d *Daemon) tagEvent(source, repo, tag string) {
	id, _, err := d.images.ImageConfig(source)
	if err != nil {
		return
	}
	name := repo
	if tag != "" {
		name += ":" + tag
	}
	d.imageEvent(events.ActionTag, id, familiarRef(name), d.imageLabels(id))
}

// imageLabels are the image's labels, which dockerd adds to its events.
func (d *Daemon) imageLabels(nameOrID string) map[string]string {
	_, cfg, err := d.images.ImageConfig(nameOrID)
	if err != nil || cfg == nil {
		return nil
	}
	return cfg.Labels
}

// imageDeleteEvents records what a delete did: an untag per removed
// reference and a delete per removed image (id is the image the delete
// was asked for, resolved before).
func (d *Daemon) imageDeleteEvents(id string, resp []image.DeleteResponse) {
	for _, r := range resp {
		switch {
		case r.Untagged != "" && id != "":
			d.imageEvent(events.ActionUnTag, id, id, nil)
		case r.Deleted != "":
			d.imageEvent(events.ActionDelete, r.Deleted, r.Deleted, nil)
		}
	}
}

// imagePruneEvents records the images a prune deleted and the prune.
func (d *Daemon) imagePruneEvents(rep *image.PruneReport) {
	for _, r := range rep.ImagesDeleted {
		if r.Deleted != "" {
			d.imageEvent(events.ActionDelete, r.Deleted, r.Deleted, nil)
		}
	}
	d.logEvent(events.ImageEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(rep.SpaceReclaimed, 10)})
}
