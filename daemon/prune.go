package daemon

import (
	"context"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/internal/filterutil"
)

// ContainersPrune removes stopped containers.
func (d *Daemon) ContainersPrune(ctx context.Context, pruneFilters filters.Args) (*container.PruneReport, error) {
	if err := pruneFilters.Validate(map[string]bool{"label": true, "label!": true, "until": true}); err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	var until time.Time
	if vals := pruneFilters.Get("until"); len(vals) > 0 {
		t, err := filterutil.ParseTime(vals[0], time.Now())
		if err != nil {
			return nil, err
		}
		until = t
	}
	report := &container.PruneReport{}
	for _, c := range d.containers.all() {
		c.mu.Lock()
		keep := c.running() || c.removing ||
			(!until.IsZero() && c.Created.After(until)) ||
			!filterutil.MatchLabels(pruneFilters, c.Config.Labels)
		c.mu.Unlock()
		if keep {
			continue
		}
		size := allocatedSize(c.diskPath()) // what removing the disk frees
		if err := d.removeContainer(ctx, c, false); err != nil {
			continue
		}
		report.ContainersDeleted = append(report.ContainersDeleted, c.ID)
		report.SpaceReclaimed += uint64(size)
	}
	d.logEvent(events.ContainerEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(report.SpaceReclaimed, 10)})
	return report, nil
}
