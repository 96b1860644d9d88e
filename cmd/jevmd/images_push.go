package main

import (
	"context"
	"io"

	"github.com/docker/docker/api/types/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api"
	"github.com/jevm/jevm/daemon"
)

var _ daemon.RegistryClient = imageService{}

// The daemon serves push and login (next to backend.go's assertions, one
// per area).
var _ api.RegistryBackend = (*daemon.Daemon)(nil)

// Push implements daemon.RegistryClient (docker push).
func (a imageService) Push(ctx context.Context, ref string, platform *ocispec.Platform, auth *registry.AuthConfig, out io.Writer) error {
	return a.s.Push(ctx, ref, platform, auth, out)
}

// Login implements daemon.RegistryClient (docker login).
func (a imageService) Login(ctx context.Context, auth *registry.AuthConfig) (string, string, error) {
	return a.s.Login(ctx, auth)
}
