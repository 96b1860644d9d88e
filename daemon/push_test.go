package daemon

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// regImages is an image service that only pushes and logs in.
type regImages struct {
	ImageService
	pushed  string
	pushErr error
}

func (f *regImages) ImageConfig(string) (string, *container.Config, error) {
	return "sha256:1111", &container.Config{Labels: map[string]string{"l": "v"}}, nil
}

func (f *regImages) Push(_ context.Context, ref string, _ *ocispec.Platform, _ *registry.AuthConfig, out io.Writer) error {
	f.pushed = ref
	return f.pushErr
}

func (f *regImages) Login(_ context.Context, auth *registry.AuthConfig) (string, string, error) {
	if auth.Password != "ok" {
		return "", "", errdefs.Unauthorized(errors.New("unauthorized: incorrect username or password"))
	}
	return "Login Succeeded", "", nil
}

func TestImagePushEventAndLogin(t *testing.T) {
	imgs := &regImages{}
	d := &Daemon{events: newEventBus(), images: imgs}
	if err := d.ImagePush(context.Background(), "localhost:5000/app:v1", nil, &registry.AuthConfig{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if imgs.pushed != "localhost:5000/app:v1" {
		t.Fatalf("pushed %q", imgs.pushed)
	}
	// A failed push logs nothing.
	imgs.pushErr = errors.New("denied")
	if err := d.ImagePush(context.Background(), "localhost:5000/app:v2", nil, &registry.AuthConfig{}, io.Discard); err == nil {
		t.Fatal("error lost")
	}
	all, _, cancel := d.events.subscribe()
	cancel()
	if len(all) != 1 {
		t.Fatalf("%d events: %+v", len(all), all)
	}
	// dockerd: the ID is the reference pushed, name the repository.
	if m := all[0]; m.Type != events.ImageEventType || m.Action != events.ActionPush || m.Actor.ID != "localhost:5000/app:v1" ||
		m.Actor.Attributes["name"] != "localhost:5000/app" || m.Actor.Attributes["l"] != "v" {
		t.Fatalf("push event %+v", m)
	}

	if st, _, err := d.AuthenticateToRegistry(context.Background(), &registry.AuthConfig{Password: "ok"}); err != nil || st != "Login Succeeded" {
		t.Fatalf("login: %q %v", st, err)
	}
	if _, _, err := d.AuthenticateToRegistry(context.Background(), &registry.AuthConfig{Password: "no"}); !errdefs.IsUnauthorized(err) {
		t.Fatalf("bad login: %v", err)
	}

	// An image service that cannot talk to registries: 501.
	d2 := &Daemon{events: newEventBus(), images: struct{ ImageService }{}}
	if err := d2.ImagePush(context.Background(), "a:b", nil, nil, io.Discard); !errdefs.IsNotImplemented(err) {
		t.Fatalf("push without a registry client: %v", err)
	}
}
