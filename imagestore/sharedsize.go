package imagestore

import (
	"context"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// sharedSizes returns, per image, the size of the files in its layers that
// at least one other image also has (dockerd's SharedSize, which `docker
// system df -v` shows). Layer sizes are read once and remembered.
func (s *Store) sharedSizes(ctx context.Context) map[digest.Digest]int64 {
	s.mu.Lock()
	uses := map[digest.Digest]int{}
	layersOf := map[digest.Digest][]ocispec.Descriptor{}
	for id, img := range s.images {
		seen := map[digest.Digest]bool{}
		for _, l := range img.Layers {
			if !seen[l.Digest] {
				seen[l.Digest] = true
				uses[l.Digest]++
			}
		}
		layersOf[id] = append([]ocispec.Descriptor(nil), img.Layers...)
	}
	s.mu.Unlock()
	out := map[digest.Digest]int64{}
	for id, layers := range layersOf {
		var n int64
		seen := map[digest.Digest]bool{}
		for _, l := range layers {
			if uses[l.Digest] < 2 || seen[l.Digest] {
				continue
			}
			seen[l.Digest] = true
			size, err := s.layerFilesSize(ctx, l)
			if err != nil {
				n = -1
				break
			}
			n += size
		}
		out[id] = n
	}
	return out
}
