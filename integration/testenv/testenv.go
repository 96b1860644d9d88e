// Package testenv is the harness jevm's integration tests, benchmarks and
// demo use to get real images from a real registry on machines that reach
// no public registry: images are built from Debian packages by
// hack/testimages (cached on disk) and served by Debian's docker-registry
// on 127.0.0.1.
//
//	imgs, err := testenv.EnsureImages(ctx)
//	reg, err := testenv.StartRegistry(ctx, t.TempDir())
//	defer reg.Stop()
//	err = reg.PushAll(ctx, imgs)
//	// pull reg.Ref(testenv.Busybox), or plain "busybox" with reg.Addr as
//	// a Docker Hub mirror (library/busybox is pushed too).
//
// Or, in a test, Setup(t) does all of that and skips when the tools are
// missing.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/jevm/jevm/hack/testimages"
	"github.com/sirupsen/logrus"
)

// Image names.
const (
	Busybox = testimages.Busybox
	Debian  = testimages.Debian
	Web     = testimages.Web
	Redis   = testimages.Redis
	Layers  = testimages.Layers
)

// ImageNames lists every image, bases first.
var ImageNames = testimages.Names()

// Images is the set of built images (see testimages.Images).
type Images = testimages.Images

// Image is one built image: an OCI layout directory plus its parsed
// manifest descriptor, config and layers.
type Image = testimages.Image

// Registry is a running docker-registry (see testimages.Registry): Addr,
// Stop, PushAll, Ref, URL.
type Registry = testimages.Registry

// ErrToolsMissing wraps the reason CheckTools fails.
var ErrToolsMissing = errors.New("testenv: required tools missing")

// CheckTools reports why images cannot be built or served here: not root,
// or docker-registry, debootstrap, apt-get or dpkg missing. Tests should
// t.Skip on it.
func CheckTools() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: must run as root (debootstrap, chroot, mounts)", ErrToolsMissing)
	}
	if _, err := os.Stat(testimages.RegistryBinary); err != nil {
		return fmt.Errorf("%w: %s (apt-get install docker-registry)", ErrToolsMissing, testimages.RegistryBinary)
	}
	for _, tool := range []string{"debootstrap", "apt-get", "apt-cache", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not in PATH (apt-get install debootstrap)", ErrToolsMissing, tool)
		}
	}
	return nil
}

// EnsureImages builds missing images into the cache ($JEVM_TESTIMAGES_CACHE
// or /var/cache/jevm/testimages) and returns all of them. Warm, it takes a
// fraction of a second; cold, about a minute or two.
func EnsureImages(ctx context.Context) (*Images, error) {
	log := logrus.WithField("component", "testimages")
	return testimages.Ensure(ctx, testimages.Options{
		Logf: func(format string, args ...any) { log.Infof(format, args...) },
	})
}

// StartRegistry starts docker-registry with storage under dir on a free
// 127.0.0.1 port, no auth, deletes enabled, and waits until GET /v2/
// answers. Stop it with Registry.Stop.
func StartRegistry(ctx context.Context, dir string) (*Registry, error) {
	return testimages.StartRegistry(ctx, dir, "")
}

// StartRegistryWithAuth is StartRegistry with htpasswd (basic)
// authentication for users (name -> password); without valid credentials
// the registry answers 401.
func StartRegistryWithAuth(ctx context.Context, dir string, users map[string]string) (*Registry, error) {
	return testimages.StartRegistryWithAuth(ctx, dir, "", users)
}

// StartRegistryAt is StartRegistry listening on addr (host:port).
func StartRegistryAt(ctx context.Context, dir, addr string) (*Registry, error) {
	return testimages.StartRegistry(ctx, dir, addr)
}

var (
	imagesOnce sync.Once
	imagesSet  *Images
	imagesErr  error
)

// Setup skips t when CheckTools fails; otherwise it ensures the images,
// starts a registry in a temporary directory (stopped by t.Cleanup), pushes
// every image to it and returns both. Images are ensured once per process.
func Setup(t testing.TB) (*Registry, *Images) {
	t.Helper()
	if err := CheckTools(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	imagesOnce.Do(func() { imagesSet, imagesErr = EnsureImages(ctx) })
	if imagesErr != nil {
		t.Fatalf("testenv: images: %v", imagesErr)
	}
	reg, err := StartRegistry(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { reg.Stop() })
	if err := reg.PushAll(ctx, imagesSet); err != nil {
		t.Fatalf("testenv: push: %v", err)
	}
	return reg, imagesSet
}
