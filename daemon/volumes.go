package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/internal/filterutil"
	"github.com/jevm/jevm/volumes"
)

// openVolumes opens the volume store under the data root.
func (d *Daemon) openVolumes() error {
	s, err := volumes.New(filepath.Join(d.cfg.DataRoot, "volumes"))
	if err != nil {
		return err
	}
	s.SetSharedStorage(d.cfg.SharedStorage)
	for _, ss := range d.cfg.SharedStorage {
		logrus.WithField("storage", ss.String()).Info("shared storage: bind-source volumes in this directory are mounted by the VMs from the NFS export")
	}
	d.volumes = s
	return nil
}

func (d *Daemon) volumeEvent(action, name string, attrs map[string]string) {
	d.logEvent(events.VolumeEventType, events.Action(action), name, attrs)
}

// apiVolume renders a volume for the API.
func apiVolume(v *volumes.Volume) *volume.Volume {
	labels := v.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	opts := v.Options
	if len(opts) == 0 {
		opts = nil
	}
	return &volume.Volume{
		Name:       v.Name,
		Driver:     v.Driver,
		Mountpoint: v.Mountpoint,
		CreatedAt:  v.CreatedAt.Format(time.RFC3339),
		Labels:     labels,
		Options:    opts,
		Scope:      "local",
	}
}

var volumeListFilters = map[string]bool{"dangling": true, "driver": true, "label": true, "name": true}

// volumeMatcher builds the predicate of the list and prune filters.
func (d *Daemon) volumeMatcher(f filters.Args, accepted map[string]bool) (func(*volumes.Volume) bool, error) {
	if err := f.Validate(accepted); err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	var dangling *bool
	if f.Contains("dangling") {
		vals := f.Get("dangling")
		b, err := strconv.ParseBool(vals[0])
		if err != nil || len(vals) > 1 {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid filter 'dangling=%s'", strings.Join(vals, ",")))
		}
		dangling = &b
	}
	return func(v *volumes.Volume) bool {
		if f.Contains("name") {
			hit := false
			for _, n := range f.Get("name") {
				hit = hit || strings.Contains(v.Name, n)
			}
			if !hit {
				return false
			}
		}
		if f.Contains("driver") && !f.ExactMatch("driver", v.Driver) {
			return false
		}
		if !filterutil.MatchLabels(f, v.Labels) {
			return false
		}
		if dangling != nil && d.volumes.InUse(v.Name) == *dangling {
			return false
		}
		return true
	}, nil
}

// VolumeList serves GET /volumes.
func (d *Daemon) VolumeList(ctx context.Context, f filters.Args) ([]*volume.Volume, []string, error) {
	match, err := d.volumeMatcher(f, volumeListFilters)
	if err != nil {
		return nil, nil, err
	}
	out := []*volume.Volume{}
	for _, v := range d.volumes.List() {
		if match(v) {
			out = append(out, apiVolume(v))
		}
	}
	return out, nil, nil
}

// VolumeCreate serves POST /volumes/create.
func (d *Daemon) VolumeCreate(ctx context.Context, req volume.CreateOptions) (*volume.Volume, error) {
	if req.ClusterVolumeSpec != nil {
		return nil, errdefs.Unavailable(errors.New("cluster volumes need swarm, which jevm does not have"))
	}
	v, created, err := d.volumes.Create(req.Name, req.Driver, req.DriverOpts, req.Labels, "")
	if err != nil {
		return nil, err
	}
	if created {
		d.volumeEvent("create", v.Name, map[string]string{"driver": v.Driver})
	}
	return apiVolume(v), nil
}

// VolumeInspect serves GET /volumes/{name}.
func (d *Daemon) VolumeInspect(ctx context.Context, name string) (*volume.Volume, error) {
	v, err := d.volumes.Get(name)
	if err != nil {
		return nil, err
	}
	return apiVolume(v), nil
}

// VolumeRemove serves DELETE /volumes/{name}: a volume any container
// refers to is refused (409); force only ignores a missing volume.
func (d *Daemon) VolumeRemove(ctx context.Context, name string, force bool) error {
	v, err := d.volumes.Get(name)
	if err != nil {
		if force && errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	if err := d.volumes.Remove(name); err != nil {
		return err
	}
	d.volumeEvent("destroy", name, map[string]string{"driver": v.Driver})
	return nil
}

var volumePruneFilters = map[string]bool{"label": true, "label!": true, "all": true}

// VolumesPrune serves POST /volumes/prune: unused anonymous volumes, or
// all unused ones with the filter all=true (API >= 1.42, as dockerd).
func (d *Daemon) VolumesPrune(ctx context.Context, f filters.Args) (*volume.PruneReport, error) {
	all := false
	if vals := f.Get("all"); len(vals) > 0 {
		if len(vals) > 1 {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid filter 'all=%s': only one value is expected", strings.Join(vals, ",")))
		}
		b, err := strconv.ParseBool(vals[0])
		if err != nil {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid filter 'all': %w", err))
		}
		all = b
	}
	match, err := d.volumeMatcher(f, volumePruneFilters)
	if err != nil {
		return nil, err
	}
	deleted, reclaimed, err := d.volumes.Prune(func(v *volumes.Volume) bool {
		return (all || v.Anonymous()) && match(v)
	})
	if err != nil {
		return nil, err
	}
	for _, name := range deleted {
		d.volumeEvent("destroy", name, map[string]string{"driver": volumes.DefaultDriver})
	}
	d.volumeEvent("prune", "", map[string]string{"reclaimed": strconv.FormatUint(reclaimed, 10)})
	return &volume.PruneReport{VolumesDeleted: deleted, SpaceReclaimed: reclaimed}, nil
}

// SystemDiskUsage serves GET /system/df: volumes with their sizes and
// reference counts; images and containers from what the stores know
// cheaply (a container's size is its disk's allocated blocks).
func (d *Daemon) SystemDiskUsage(ctx context.Context, opts backend.DiskUsageOptions) (*system.DiskUsage, error) {
	du := &system.DiskUsage{}
	if opts.Volumes {
		vu := &volume.DiskUsage{Items: []*volume.Volume{}}
		for _, v := range d.volumes.List() {
			av := apiVolume(v)
			size, err := d.volumes.Size(v.Name)
			if err != nil {
				size = -1
			}
			refs := int64(len(d.volumes.Refs(v.Name)))
			av.UsageData = &volume.UsageData{Size: size, RefCount: refs}
			if size > 0 {
				vu.TotalSize += size
				if refs == 0 {
					vu.Reclaimable += size
				}
			}
			vu.Items = append(vu.Items, av)
		}
		du.Volumes = vu
	}
	if opts.Images {
		list, err := d.images.List(ctx, image.ListOptions{SharedSize: true})
		if err != nil {
			return nil, err
		}
		iu := &image.DiskUsage{Items: []*image.Summary{}}
		for i := range list {
			s := list[i]
			ids, _ := d.imageUsers(s.ID)
			s.Containers = int64(len(ids))
			iu.TotalSize += s.Size
			if s.Containers == 0 {
				iu.Reclaimable += s.Size
			}
			iu.Items = append(iu.Items, &s)
		}
		du.Images = iu
	}
	if opts.Containers {
		list, err := d.ContainerList(ctx, container.ListOptions{All: true, Size: true})
		if err != nil {
			return nil, err
		}
		cu := &container.DiskUsage{Items: []*container.Summary{}}
		for i := range list {
			s := list[i]
			cu.TotalSize += s.SizeRw
			if s.State != container.StateRunning && s.State != container.StatePaused {
				cu.Reclaimable += s.SizeRw
			}
			cu.Items = append(cu.Items, &s)
		}
		du.Containers = cu
	}
	return du, nil
}

// allocatedSize is the space a (sparse) file takes on disk.
func allocatedSize(p string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}
