package daemon

// docker push and docker login: the image store talks to the registry;
// the daemon adds the events dockerd logs.

import (
	"context"
	"errors"
	"io"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// RegistryClient is implemented by image services that can push images
// and check registry credentials (the image store's adapter does).
type RegistryClient interface {
	// Push pushes ref ("name:tag", or a bare name for all its tags),
	// writing JSON progress messages to out.
	// platform, when set, must match the image's.
	Push(ctx context.Context, ref string, platform *ocispec.Platform, auth *registry.AuthConfig, out io.Writer) error
	// Login checks auth against auth.ServerAddress's registry.
	Login(ctx context.Context, auth *registry.AuthConfig) (status, identityToken string, err error)
}

func (d *Daemon) registryClient() (RegistryClient, error) {
	rc, ok := d.images.(RegistryClient)
	if !ok {
		return nil, errdefs.NotImplemented(errors.New("the image store cannot talk to registries for push or login"))
	}
	return rc, nil
}

// ImagePush serves POST /images/{name}/push.
func (d *Daemon) ImagePush(ctx context.Context, ref string, platform *ocispec.Platform, auth *registry.AuthConfig, out io.Writer) error {
	rc, err := d.registryClient()
	if err != nil {
		return err
	}
	if err := rc.Push(ctx, ref, platform, auth, out); err != nil {
		return err
	}
	// dockerd: the event's ID is the reference pushed, its name the
	// repository.
	name := ref
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		name = reference.FamiliarName(named)
	}
	d.imageEvent(events.ActionPush, familiarRef(ref), name, d.imageLabels(ref))
	return nil
}

// AuthenticateToRegistry serves POST /auth.
func (d *Daemon) AuthenticateToRegistry(ctx context.Context, auth *registry.AuthConfig) (string, string, error) {
	rc, err := d.registryClient()
	if err != nil {
		return "", "", err
	}
	return rc.Login(ctx, auth)
}
