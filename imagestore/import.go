package imagestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jevm/jevm/internal/decompress"

	"github.com/containerd/platforms"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportOptions describe the image Import makes (docker import).
type ImportOptions struct {
	// Config is the image's configuration: an empty config with the
	// import's --change instructions applied.
	Config *container.Config
	// Platform is the image's platform ("" = linux/amd64); only linux
	// images can be imported, as with dockerd's graph-driver store.
	Platform string
	// Message is the history comment ("Imported from -" by default, set by
	// the caller).
	Message string
	// Repo and Tag name the image; an empty Repo leaves it untagged.
	Repo, Tag string
}

// ParseImportPlatform checks a platform for import as dockerd does:
// containerd's parser, then the operating system must be linux.
func ParseImportPlatform(s string) (ocispec.Platform, error) {
	if s == "" {
		return ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil
	}
	p, err := platforms.Parse(s)
	if err != nil {
		return ocispec.Platform{}, errdefs.InvalidParameter(err)
	}
	if !strings.EqualFold(p.OS, "linux") {
		return ocispec.Platform{}, errdefs.InvalidParameter(errors.New("operating system is not supported"))
	}
	return p, nil
}

// Import makes a one-layer image from a root file system tar (plain,
// gzip, bzip2, xz or zstd), the way dockerd's docker import does: the
// layer is stored as given (compressed by Commit), the config holds
// opts.Config, the platform and a history entry with the message, and the
// image gets its base disk and tag. A tar that cannot be read leaves
// nothing behind.
func (s *Store) Import(ctx context.Context, r io.Reader, opts ImportOptions) (*Image, error) {
	plat, err := ParseImportPlatform(opts.Platform)
	if err != nil {
		return nil, err
	}
	if opts.Config == nil {
		opts.Config = &container.Config{}
	}
	if opts.Repo != "" {
		if _, err := tagReference(opts.Repo, opts.Tag); err != nil {
			return nil, err
		}
	}
	src := &errReader{r: r}
	ds, err := decompress.Stream(src)
	if err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("reading the image's file system: %w", err))
	}
	defer ds.Close()
	layer := &errReader{r: ds}
	img, err := s.Commit(ctx, layer, CommitOptions{
		Config:         opts.Config,
		Comment:        opts.Message,
		Repo:           opts.Repo,
		Tag:            opts.Tag,
		Platform:       &plat,
		KeepEmptyLayer: true,
	})
	if err != nil {
		for _, rerr := range []error{src.err, layer.err} {
			if rerr != nil && ctx.Err() == nil {
				return nil, errdefs.InvalidParameter(fmt.Errorf("reading the image's file system: %w", rerr))
			}
		}
		return nil, err
	}
	return img, nil
}

// errReader remembers the first read error other than EOF.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}
