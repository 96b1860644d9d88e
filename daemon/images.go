package daemon

import (
	"context"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
)

// ImageUsers reports the containers using an image and whether one runs;
// the image store uses it for dockerd's delete conflicts.
type ImageUsers func(imageID string) (containerIDs []string, running bool)

// ImageService is what the daemon needs from the image store.
type ImageService interface {
	Pull(ctx context.Context, ref, platform string, auth *registry.AuthConfig, out io.Writer) error
	// ImageConfig resolves a name or ID to the image ID and its config.
	ImageConfig(nameOrID string) (id string, cfg *container.Config, err error)
	// BaseDisk is the image's base disk (built on first use), over which
	// the VM backend layers each container's own disk.
	BaseDisk(ctx context.Context, imageID string) (string, error)
	List(ctx context.Context, opts image.ListOptions) ([]image.Summary, error)
	Inspect(ctx context.Context, nameOrID string) (*image.InspectResponse, error)
	Tag(ctx context.Context, source, repo, tag string) error
	Delete(ctx context.Context, nameOrID string, force, prune bool, users ImageUsers) ([]image.DeleteResponse, error)
	Prune(ctx context.Context, pruneFilters filters.Args, users ImageUsers) (*image.PruneReport, error)
	// GCDisks removes base disks of deleted images that no container
	// uses any more.
	GCDisks(users ImageUsers)
	Count() int
}

// imageUsers is the daemon's ImageUsers.
func (d *Daemon) imageUsers(imageID string) (ids []string, running bool) {
	for _, c := range d.containers.all() {
		c.mu.Lock()
		if c.ImageID == imageID {
			ids = append(ids, c.ID)
			running = running || c.running()
		}
		c.mu.Unlock()
	}
	return ids, running
}

// PullImage serves POST /images/create.
func (d *Daemon) PullImage(ctx context.Context, ref, platform string, auth *registry.AuthConfig, out io.Writer) error {
	if err := d.images.Pull(ctx, ref, platform, auth, out); err != nil {
		return err
	}
	d.pullEvent(ref)
	return nil
}

// ImageList serves GET /images/json.
func (d *Daemon) ImageList(ctx context.Context, opts image.ListOptions) ([]image.Summary, error) {
	list, err := d.images.List(ctx, opts)
	if err != nil {
		return nil, err
	}
	if opts.ContainerCount {
		for i := range list {
			ids, _ := d.imageUsers(list[i].ID)
			list[i].Containers = int64(len(ids))
		}
	}
	return list, nil
}

// ImageInspect serves GET /images/{name}/json.
func (d *Daemon) ImageInspect(ctx context.Context, nameOrID string) (*image.InspectResponse, error) {
	return d.images.Inspect(ctx, nameOrID)
}

// ImageTag serves POST /images/{name}/tag.
func (d *Daemon) ImageTag(ctx context.Context, source, repo, tag string) error {
	if err := d.images.Tag(ctx, source, repo, tag); err != nil {
		return err
	}
	d.tagEvent(source, repo, tag)
	return nil
}

// ImageDelete serves DELETE /images/{name}.
func (d *Daemon) ImageDelete(ctx context.Context, nameOrID string, force, prune bool) ([]image.DeleteResponse, error) {
	id, _, _ := d.images.ImageConfig(nameOrID)
	resp, err := d.images.Delete(ctx, nameOrID, force, prune, d.imageUsers)
	if err == nil {
		d.imageDeleteEvents(id, resp)
	}
	return resp, err
}

// ImagesPrune serves POST /images/prune.
func (d *Daemon) ImagesPrune(ctx context.Context, pruneFilters filters.Args) (*image.PruneReport, error) {
	rep, err := d.images.Prune(ctx, pruneFilters, d.imageUsers)
	if err == nil && rep != nil {
		d.imagePruneEvents(rep)
	}
	return rep, err
}
