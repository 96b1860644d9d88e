package main

import (
	"context"
	"io"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/daemon"
	"github.com/jevm/jevm/imagestore"
)

var _ daemon.ImageArchiver = imageService{}

// SaveImages implements daemon.ImageArchiver (docker save).
func (a imageService) SaveImages(ctx context.Context, names []string, platform *ocispec.Platform, out io.Writer) ([]string, error) {
	return a.s.Save(ctx, names, platform, out)
}

// LoadImages implements daemon.ImageArchiver (docker load).
func (a imageService) LoadImages(ctx context.Context, r io.Reader, opts backend.ImageLoadConfig, out io.Writer) ([]daemon.LoadedImage, error) {
	loaded, err := a.s.Load(ctx, r, imagestore.LoadOptions{Quiet: opts.Quiet, Platform: opts.Platform}, out)
	if err != nil {
		return nil, err
	}
	res := make([]daemon.LoadedImage, 0, len(loaded))
	for _, l := range loaded {
		res = append(res, daemon.LoadedImage{ID: l.ID, Tags: l.Tags})
	}
	return res, nil
}

// ImportImage implements daemon.ImageArchiver (docker import).
func (a imageService) ImportImage(ctx context.Context, r io.Reader, req daemon.ImportRequest) (string, error) {
	img, err := a.s.Import(ctx, r, imagestore.ImportOptions{
		Config:   req.Config,
		Platform: req.Platform,
		Message:  req.Message,
		Repo:     req.Repo,
		Tag:      req.Tag,
	})
	if err != nil {
		return "", err
	}
	return img.ID.String(), nil
}

// ImageHistory implements daemon.ImageArchiver (docker history).
func (a imageService) ImageHistory(ctx context.Context, nameOrID string, platform *ocispec.Platform) ([]image.HistoryResponseItem, error) {
	return a.s.History(ctx, nameOrID, platform)
}

// DistributionInspect implements daemon.ImageArchiver.
func (a imageService) DistributionInspect(ctx context.Context, ref string, auth *registry.AuthConfig) (*registry.DistributionInspect, error) {
	return a.s.DistributionInspect(ctx, ref, auth)
}
