package daemon

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"
)

// ContainerRename renames a container.
func (d *Daemon) ContainerRename(ctx context.Context, ref, newName string) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	newName = strings.TrimPrefix(newName, "/")
	if newName == "" {
		return errdefs.InvalidParameter(fmt.Errorf("Neither old nor new names may be empty"))
	}
	if !validName.MatchString(newName) {
		return errdefs.InvalidParameter(fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", newName))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Name == newName {
		return errdefs.InvalidParameter(fmt.Errorf("Renaming a container with the same name as its current name"))
	}
	old := c.Name
	if err := d.containers.rename(c, old, newName); err != nil {
		return err
	}
	c.Name = newName
	if err := c.save(); err != nil {
		c.Name = old
		_ = d.containers.rename(c, newName, old)
		return err
	}
	d.containerEvent(c, events.ActionRename, map[string]string{"oldName": "/" + old})
	return nil
}
