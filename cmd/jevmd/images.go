package main

import (
	"context"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"

	"github.com/jevm/jevm/daemon"
	"github.com/jevm/jevm/imagestore"
)

// imageService adapts the image store to the daemon's ImageService.
type imageService struct{ s *imagestore.Store }

var _ daemon.ImageService = imageService{}

func (a imageService) Pull(ctx context.Context, ref, platform string, auth *registry.AuthConfig, out io.Writer) error {
	_, err := a.s.PullWithAuth(ctx, ref, platform, auth, out)
	return err
}

func (a imageService) ImageConfig(nameOrID string) (string, *container.Config, error) {
	img, err := a.s.Get(nameOrID)
	if err != nil {
		return "", nil, err
	}
	return img.ID.String(), img.ContainerConfig(), nil
}

func (a imageService) BaseDisk(ctx context.Context, imageID string) (string, error) {
	return a.s.BaseDisk(ctx, imageID)
}

func (a imageService) List(ctx context.Context, opts image.ListOptions) ([]image.Summary, error) {
	return a.s.List(opts)
}

func (a imageService) Inspect(ctx context.Context, nameOrID string) (*image.InspectResponse, error) {
	return a.s.Inspect(nameOrID)
}

func (a imageService) Tag(ctx context.Context, source, repo, tag string) error {
	return a.s.Tag(source, repo, tag)
}

func (a imageService) Delete(ctx context.Context, nameOrID string, force, prune bool, users daemon.ImageUsers) ([]image.DeleteResponse, error) {
	return a.s.Delete(nameOrID, force, prune, users)
}

func (a imageService) Prune(ctx context.Context, f filters.Args, users daemon.ImageUsers) (*image.PruneReport, error) {
	return a.s.Prune(f, users)
}

func (a imageService) GCDisks(users daemon.ImageUsers) { a.s.GCDisks(users) }

func (a imageService) Count() int { return a.s.Count() }
