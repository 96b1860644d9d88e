package main

import (
	"context"
	"io"

	"github.com/jevm/jevm/daemon"
	"github.com/jevm/jevm/imagestore"
)

var _ daemon.ImageCommitter = imageService{}

// CommitImage implements daemon.ImageCommitter (docker commit).
func (a imageService) CommitImage(ctx context.Context, layer io.Reader, req daemon.CommitRequest) (string, error) {
	img, err := a.s.Commit(ctx, layer, imagestore.CommitOptions{
		Parent:    req.Parent,
		Config:    req.Config,
		Author:    req.Author,
		Comment:   req.Comment,
		CreatedBy: req.CreatedBy,
		Repo:      req.Repo,
		Tag:       req.Tag,
		LazyDisk:  req.LazyDisk,
	})
	if err != nil {
		return "", err
	}
	return img.ID.String(), nil
}
