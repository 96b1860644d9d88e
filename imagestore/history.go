package imagestore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/containerd/archive/compression"
	"github.com/containerd/containerd/content"
	"github.com/containerd/platforms"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// History returns GET /images/{name}/history's answer, built as dockerd
// builds it: one entry per history entry of the image config, newest first;
// an entry that made a layer gets the size of that layer's files. The top
// entry carries the image's ID and tags; going down, entries that belong to
// the image's parent (a committed image's) carry the parent's ID and tags,
// and the rest "<missing>". platform, if set, must match the image.
func (s *Store) History(ctx context.Context, nameOrID string, platform *ocispec.Platform) ([]image.HistoryResponseItem, error) {
	img, err := s.Resolve(nameOrID)
	if err != nil {
		return nil, err
	}
	if platform != nil && !platformMatches(img.Config, platform) {
		return nil, errdefs.NotFound(fmt.Errorf("image with reference %s was found but does not provide the specified platform (%s)", nameOrID, platforms.Format(*platform)))
	}
	diffIDs := img.Config.RootFS.DiffIDs
	var items []image.HistoryResponseItem
	layer := 0
	for _, h := range img.Config.History {
		var size int64
		if !h.EmptyLayer {
			if layer >= len(diffIDs) || layer >= len(img.Layers) {
				return nil, errdefs.System(errors.New("too many non-empty layers in History section"))
			}
			n, err := s.layerFilesSize(ctx, img.Layers[layer])
			if err != nil {
				return nil, err
			}
			size = n
			layer++
		}
		var created int64
		if h.Created != nil {
			created = h.Created.Unix()
		}
		items = append([]image.HistoryResponseItem{{
			ID:        "<missing>",
			Created:   created,
			CreatedBy: h.CreatedBy,
			Comment:   h.Comment,
			Size:      size,
		}}, items...)
	}

	// Name the entries of the image and of its parents.
	cur := img
	for i := range items {
		items[i].ID = cur.ID.String()
		items[i].Tags = cur.RepoTags
		if len(items[i].Tags) == 0 {
			items[i].Tags = nil
		}
		if cur.Parent == "" {
			break
		}
		p, err := s.Resolve(cur.Parent.String())
		if err != nil {
			break
		}
		cur = p
	}
	return items, nil
}

// layerFilesSize is the size of the files of a layer (what dockerd calls a
// layer's diff size): the sizes of the regular files of its tar. It reads
// the layer once and remembers the answer.
func (s *Store) layerFilesSize(ctx context.Context, desc ocispec.Descriptor) (int64, error) {
	s.mu.Lock()
	if n, ok := s.layerSizes[desc.Digest]; ok {
		s.mu.Unlock()
		return n, nil
	}
	s.mu.Unlock()
	ra, err := s.cs.ReaderAt(ctx, desc)
	if err != nil {
		return 0, errdefs.System(fmt.Errorf("opening layer %s: %w", desc.Digest, err))
	}
	defer ra.Close()
	ds, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return 0, errdefs.System(fmt.Errorf("decompressing layer %s: %w", desc.Digest, err))
	}
	defer ds.Close()
	tr := tar.NewReader(ds)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, errdefs.System(fmt.Errorf("reading layer %s: %w", desc.Digest, err))
		}
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA { //nolint:staticcheck // old layers
			n += h.Size
		}
	}
	s.mu.Lock()
	if s.layerSizes == nil {
		s.layerSizes = map[digest.Digest]int64{}
	}
	s.layerSizes[desc.Digest] = n
	s.mu.Unlock()
	return n, nil
}
