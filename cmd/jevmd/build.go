package main

import (
	"context"
	"io"
	"io/fs"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/system"

	"github.com/jevm/jevm/api/types/backend"

	"github.com/jevm/jevm/api"
	"github.com/jevm/jevm/builder"
	"github.com/jevm/jevm/cluster"
	"github.com/jevm/jevm/daemon"
	"github.com/jevm/jevm/imagestore"
)

// engine is what the API serves: the daemon, plus the builder for /build
// (which drives the daemon itself, so it cannot live inside it) and the
// swarm node (swarm.go).
type engine struct {
	*daemon.Daemon
	b *builder.Builder
	c *cluster.Cluster
}

var _ api.Backend = engine{}

func (e engine) Build(ctx context.Context, opts *build.ImageBuildOptions, out io.Writer) (string, error) {
	return e.b.Build(ctx, opts, out)
}

func (e engine) BuildCachePrune(ctx context.Context, opts build.CachePruneOptions) (*build.CachePruneReport, error) {
	return e.b.PruneCache(ctx, opts)
}

func (e engine) BuildCancel(ctx context.Context, id string) error { return e.b.Cancel(ctx, id) }

// SystemDiskUsage adds the builder's step cache to the daemon's answer.
func (e engine) SystemDiskUsage(ctx context.Context, opts backend.DiskUsageOptions) (*system.DiskUsage, error) {
	du, err := e.Daemon.SystemDiskUsage(ctx, opts)
	if err != nil || !opts.BuildCache {
		return du, err
	}
	if du.BuildCache, err = e.b.DiskUsage(ctx); err != nil {
		return nil, err
	}
	return du, nil
}

// buildImages adapts the image store (and the daemon, for pulls, which
// it reports as events) to builder.ImageBackend.
type buildImages struct {
	s *imagestore.Store
	d *daemon.Daemon
}

var (
	_ builder.ImageBackend     = buildImages{}
	_ builder.ContainerBackend = (*daemon.Daemon)(nil)
)

func (a buildImages) GetImage(ctx context.Context, ref string) (*builder.Image, error) {
	img, err := a.s.Get(ref)
	if err != nil {
		return nil, err
	}
	return &builder.Image{ID: img.ID.String(), Config: img.ContainerConfig(), OS: img.Config.OS, Size: img.Size, Tagged: len(img.RepoTags) > 0}, nil
}

func (a buildImages) PullImage(ctx context.Context, ref, platform string, auth *registry.AuthConfig, out io.Writer) error {
	named, err := imagestore.ParseReference(ref)
	if err != nil {
		return err
	}
	return a.d.PullImage(ctx, named.String(), platform, auth, out)
}

func (a buildImages) CommitLayer(ctx context.Context, req builder.LayerCommit) (string, error) {
	img, err := a.s.Commit(ctx, req.Layer, imagestore.CommitOptions{
		Parent:     req.Parent,
		Config:     req.Config,
		Author:     req.Author,
		CreatedBy:  req.CreatedBy,
		LazyDisk:   true,
		EmptyLayer: req.Layer == nil,
	})
	if err != nil {
		return "", err
	}
	a.d.BuildImageCreated(img.ID.String())
	return img.ID.String(), nil
}

func (a buildImages) UnpackImage(ctx context.Context, id, dir string) error {
	return a.s.Unpack(ctx, id, dir)
}

func (a buildImages) StatImagePaths(ctx context.Context, id string, paths []string) (map[string]fs.FileMode, error) {
	return a.s.StatPaths(ctx, id, paths)
}

func (a buildImages) ReadImageFile(ctx context.Context, id, path string, max int64) ([]byte, bool, error) {
	return a.s.ReadFile(ctx, id, path, max)
}

func (a buildImages) TagImage(ctx context.Context, id, repo, tag string) error {
	return a.d.ImageTag(ctx, id, repo, tag)
}

func (a buildImages) PrepareImage(ctx context.Context, id string) error {
	_, err := a.s.BaseDisk(ctx, id)
	return err
}
