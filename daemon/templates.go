package daemon

import (
	"context"
	"fmt"

	"github.com/jevm/jevm/vmbackend"
)

// CollectTemplates removes the VM templates no container can use any more
// (vmbackend.TemplateCollector): those of shapes no container has, but
// the default, and those an older kernel, agent or QEMU made. jevmd calls
// it once at start-up, before the API serves: a start then in progress
// (a restart policy's) is of a container whose shape is kept, and a
// template being built is never removed. Each template holds a memory file
// of its shape's size (256 MiB by default).
func (d *Daemon) CollectTemplates() error {
	tc, ok := d.vms.(vmbackend.TemplateCollector)
	if !ok {
		return nil
	}
	seen := map[vmbackend.Shape]bool{d.cfg.DefaultShape: true}
	keep := []vmbackend.Shape{d.cfg.DefaultShape}
	for _, c := range d.containers.all() {
		c.mu.Lock()
		shapes := []vmbackend.Shape{c.Shape}
		// The one its next start takes, after a `docker update` (update.go).
		if next, _, err := d.shapeFor(c.HostConfig); err == nil {
			shapes = append(shapes, next)
		}
		c.mu.Unlock()
		for _, s := range shapes {
			if s.MemoryMiB != 0 && !seen[s] {
				seen[s] = true
				keep = append(keep, s)
			}
		}
	}
	return tc.CollectTemplates(keep)
}

// templateCorrupt asks the provider, after a VM of shape failed to start
// or to answer (a container's, or a blank of the pool), whether the
// template was damaged on disk; a damaged one is removed
// (vmbackend.TemplateChecker), so that a second start builds it again,
// and takes the warm pool's blanks of the shape with it.
func (d *Daemon) templateCorrupt(ctx context.Context, shape vmbackend.Shape) bool {
	tc, ok := d.vms.(vmbackend.TemplateChecker)
	if !ok {
		return false
	}
	removed, err := tc.CheckTemplate(ctx, shape)
	if err != nil {
		d.log.WithError(err).WithField("shape", fmt.Sprintf("%+v", shape)).Warn("check the VM template")
	}
	if removed {
		d.pool.drain(shape)
	}
	return removed
}
