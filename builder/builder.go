// Package builder builds images from Dockerfiles for POST /build, with the
// semantics and output of dockerd's classic builder: every instruction is a
// step that makes an image; a step that runs code (RUN) runs in a jeVM of
// its own, cloned from the template, on a disk holding the previous step's
// file system, and its changes become the step's layer; steps that run no
// code (COPY, ADD, ENV, LABEL, ...) need no VM: their layer (or config) is
// made on the host. Dockerfiles are parsed with BuildKit's parser, the one
// dockerd uses. Steps are cached by parent image and instruction.
//
// The builder depends on the engine only through ImageBackend and
// ContainerBackend, which the daemon and the image store implement.
package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// Image is what the builder needs to know of an image.
type Image struct {
	ID     string // "sha256:..."
	Config *container.Config
	OS     string
}

// LayerCommit describes an image the builder makes without a container.
type LayerCommit struct {
	Parent string // "" for FROM scratch
	// Layer is an uncompressed OCI layer tar; nil when the step changed no
	// file (ENV, LABEL, ...).
	Layer     io.Reader
	Config    *container.Config
	Author    string
	CreatedBy string
}

// ImageBackend is what the builder needs of the image store.
type ImageBackend interface {
	// GetImage resolves a local image reference or ID (errdefs.NotFound
	// when there is none).
	GetImage(ctx context.Context, ref string) (*Image, error)
	// PullImage pulls ref, writing JSON progress messages to out.
	PullImage(ctx context.Context, ref, platform string, auth *registry.AuthConfig, out io.Writer) error
	// CommitLayer records a new image and returns its ID; its base disk
	// is made when first needed.
	CommitLayer(ctx context.Context, req LayerCommit) (string, error)
	// UnpackImage writes the image's root file system into dir.
	UnpackImage(ctx context.Context, id, dir string) error
	// StatImagePaths returns the modes of those of paths that exist in the
	// image's root file system.
	StatImagePaths(ctx context.Context, id string, paths []string) (map[string]fs.FileMode, error)
	// ReadImageFile returns a regular file of the image (at most max bytes).
	ReadImageFile(ctx context.Context, id, path string, max int64) ([]byte, bool, error)
	// TagImage points repo:tag at the image.
	TagImage(ctx context.Context, id, repo, tag string) error
	// PrepareImage makes the image's base disk now, so that the built
	// image's first run does not wait for it and its size is known.
	PrepareImage(ctx context.Context, id string) error
}

// ContainerBackend is what the builder needs of the engine to run steps.
type ContainerBackend interface {
	ContainerCreate(ctx context.Context, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig, platform *ocispec.Platform) (container.CreateResponse, error)
	// RunBuildContainer starts the container, streams its output to stdout
	// and stderr from the first byte and returns its exit code.
	RunBuildContainer(ctx context.Context, id string, stdout, stderr io.Writer) (int, error)
	// CommitBuildContainer makes an image of the container's changes with
	// exactly cfg as its config.
	CommitBuildContainer(ctx context.Context, id string, cfg *container.Config, createdBy string) (string, error)
	ContainerRemove(ctx context.Context, nameOrID string, opts container.RemoveOptions) error
}

// Options configures a Builder.
type Options struct {
	// Root is the builder's own directory (DATA_ROOT/builder): the cache
	// index and the build contexts being read.
	Root       string
	Images     ImageBackend
	Containers ContainerBackend
	Log        logrus.FieldLogger
}

// Builder runs builds. It is safe for concurrent use.
type Builder struct {
	opts  Options
	log   logrus.FieldLogger
	cache *cacheIndex

	mu      sync.Mutex
	running map[string]context.CancelFunc // by build ID (POST /build/cancel)
}

// New opens the builder's state under opts.Root.
func New(opts Options) (*Builder, error) {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	if err := os.MkdirAll(filepath.Join(opts.Root, "tmp"), 0o700); err != nil {
		return nil, err
	}
	// Contexts of builds a previous daemon did not finish.
	if entries, err := os.ReadDir(filepath.Join(opts.Root, "tmp")); err == nil {
		for _, e := range entries {
			os.RemoveAll(filepath.Join(opts.Root, "tmp", e.Name()))
		}
	}
	cache, err := openCache(filepath.Join(opts.Root, "cache.json"))
	if err != nil {
		return nil, err
	}
	return &Builder{opts: opts, log: opts.Log, cache: cache, running: map[string]context.CancelFunc{}}, nil
}

// Build runs the build opts describes, with the context tar in
// opts.Context, writing dockerd's JSON message stream to out; it returns
// the built image's ID. Errors before any output carry their errdefs kind;
// a failed RUN is a *jsonmessage.JSONError with the command's exit code.
func (b *Builder) Build(ctx context.Context, opts *build.ImageBuildOptions, out io.Writer) (string, error) {
	start := time.Now()
	if err := validateOptions(opts); err != nil {
		return "", err
	}
	tags, err := parseTags(opts.Tags)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opts.BuildID != "" {
		b.mu.Lock()
		b.running[opts.BuildID] = cancel
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			delete(b.running, opts.BuildID)
			b.mu.Unlock()
		}()
	}

	dir, err := os.MkdirTemp(filepath.Join(b.opts.Root, "tmp"), "context-")
	if err != nil {
		return "", errdefs.System(err)
	}
	defer os.RemoveAll(dir)
	bc, err := openContext(ctx, opts.Context, dir, opts.Dockerfile)
	if err != nil {
		return "", err
	}
	df, err := parseDockerfile(bc.dockerfile, opts.Target)
	if err != nil {
		return "", err
	}
	if len(opts.Labels) > 0 {
		df.addLabels(opts.Labels)
	}

	st := newBuildState(b, opts, bc, df, out)
	defer st.cleanup()
	imageID, err := st.run(ctx)
	if err != nil {
		b.log.WithError(err).WithField("took", time.Since(start).Round(time.Millisecond)).Info("build failed")
		return "", err
	}
	if err := b.opts.Images.PrepareImage(ctx, imageID); err != nil {
		return "", err
	}
	for _, t := range tags {
		if err := b.opts.Images.TagImage(ctx, imageID, reference.FamiliarName(t), t.Tag()); err != nil {
			return "", err
		}
	}
	if opts.SuppressOutput {
		st.out.forceStream(imageID + "\n")
	} else {
		st.out.stream(fmt.Sprintf("Successfully built %s\n", shortID(imageID)))
		for _, t := range tags {
			st.out.stream(fmt.Sprintf("Successfully tagged %s\n", reference.FamiliarString(t)))
		}
	}
	b.log.WithFields(logrus.Fields{
		"image": imageID,
		"steps": st.steps,
		"runs":  st.runs,
		"cache": st.cacheHits,
		"took":  time.Since(start).Round(time.Millisecond),
	}).Info("build finished")
	return imageID, nil
}

// Cancel ends the build with the given ID (POST /build/cancel).
func (b *Builder) Cancel(ctx context.Context, buildID string) error {
	b.mu.Lock()
	cancel := b.running[buildID]
	b.mu.Unlock()
	if cancel == nil {
		return errdefs.NotFound(fmt.Errorf("no such build: %s", buildID))
	}
	cancel()
	return nil
}

// PruneCache forgets the cached steps (POST /build/prune): the next build
// runs every step. The intermediate images stay while a tagged image needs
// them; deleting that image deletes them.
func (b *Builder) PruneCache(ctx context.Context, opts build.CachePruneOptions) (*build.CachePruneReport, error) {
	keys, err := b.cache.clear()
	if err != nil {
		return nil, errdefs.System(err)
	}
	return &build.CachePruneReport{CachesDeleted: keys, SpaceReclaimed: 0}, nil
}

func validateOptions(opts *build.ImageBuildOptions) error {
	switch {
	case opts.Version == build.BuilderBuildKit:
		return errdefs.InvalidParameter(errors.New("buildkit not supported by daemon"))
	case opts.RemoteContext != "":
		return errdefs.NotImplemented(errors.New("jevm does not build from a remote context (git or URL) yet: send the context as a tar"))
	case opts.Squash:
		return errdefs.InvalidParameter(errors.New("squash is only supported with experimental mode"))
	case opts.Context == nil:
		return errdefs.InvalidParameter(errors.New("no build context"))
	}
	if p := opts.Platform; p != "" {
		if err := checkPlatform(p); err != nil {
			return err
		}
	}
	for _, o := range opts.Outputs {
		if o.Type != "" && o.Type != "moby" {
			return errdefs.InvalidParameter(fmt.Errorf("build output type %q requires BuildKit", o.Type))
		}
	}
	return nil
}

// checkPlatform accepts the platform jevm's guests run.
func checkPlatform(p string) error {
	plat, err := platforms.Parse(p)
	if err != nil {
		return errdefs.InvalidParameter(err)
	}
	plat = platforms.Normalize(plat)
	if plat.OS != "linux" || plat.Architecture != "amd64" {
		return errdefs.InvalidParameter(fmt.Errorf("platform %q is not supported: jevm builds for linux/amd64", p))
	}
	return nil
}

// parseTags validates every tag before anything is built, as dockerd does.
func parseTags(in []string) ([]reference.NamedTagged, error) {
	var out []reference.NamedTagged
	for _, t := range in {
		if t == "" {
			continue
		}
		named, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid reference format: %w", err))
		}
		if _, ok := named.(reference.Digested); ok {
			return nil, errdefs.InvalidParameter(errors.New("build tag cannot contain a digest"))
		}
		tagged, ok := reference.TagNameOnly(named).(reference.NamedTagged)
		if !ok {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid tag %q", t))
		}
		out = append(out, tagged)
	}
	return out, nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
