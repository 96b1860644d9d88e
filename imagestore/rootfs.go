package imagestore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/containerd/containerd/archive/compression"
	"github.com/containerd/containerd/content"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Unpack applies the image's layers, bottom first, into dir (which must
// exist and be empty): the image's root file system as a container would
// see it. The builder reads files of other images from it (COPY --from).
func (s *Store) Unpack(ctx context.Context, nameOrID, dir string) error {
	img, err := s.Resolve(nameOrID)
	if err != nil {
		return err
	}
	release := s.lease(layerDigests(img)...)
	defer release()
	for i, l := range img.Layers {
		var diffID digest.Digest
		if i < len(img.Config.RootFS.DiffIDs) {
			diffID = img.Config.RootFS.DiffIDs[i]
		}
		if _, err := s.applyLayer(ctx, dir, l, diffID, nil); err != nil {
			return err
		}
	}
	return nil
}

func layerDigests(img *Image) []digest.Digest {
	out := make([]digest.Digest, 0, len(img.Layers))
	for _, l := range img.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// StatPaths reports what each of paths (absolute, inside the image) is in
// the image's root file system: the mode (type and permission bits) of
// those that exist. It reads the layers' tar headers from the top layer
// down; a path is settled by the first layer that has it or hides it (a
// whiteout of it or of a parent, or an opaque parent directory). Symbolic
// links in the paths' parents are not followed. The builder uses it to tell
// whether a COPY destination is an existing directory without unpacking the
// image.
func (s *Store) StatPaths(ctx context.Context, nameOrID string, paths []string) (map[string]fs.FileMode, error) {
	out := map[string]fs.FileMode{}
	_, err := s.scanLayers(ctx, nameOrID, paths, "", func(p string, h *tar.Header, _ io.Reader) error {
		out[p] = h.FileInfo().Mode()
		return nil
	})
	return out, err
}

// ReadFile returns the content of the regular file p in the image's root
// file system (found as StatPaths finds it), at most max bytes, and whether
// it exists. The builder reads /etc/passwd and /etc/group through it.
func (s *Store) ReadFile(ctx context.Context, nameOrID, p string, max int64) ([]byte, bool, error) {
	var data []byte
	found := false
	_, err := s.scanLayers(ctx, nameOrID, []string{p}, p, func(_ string, h *tar.Header, r io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		if h.Size > max {
			return errdefs.InvalidParameter(fmt.Errorf("%s is larger than %d bytes", p, max))
		}
		b, err := io.ReadAll(io.LimitReader(r, max))
		if err != nil {
			return errdefs.System(err)
		}
		data, found = b, true
		return nil
	})
	return data, found, err
}

// scanLayers settles each of paths from the top layer down and calls found
// for each one a layer has (with the entry's content for readPath).
func (s *Store) scanLayers(ctx context.Context, nameOrID string, paths []string, readPath string, found func(p string, h *tar.Header, r io.Reader) error) (int, error) {
	img, err := s.Resolve(nameOrID)
	if err != nil {
		return 0, err
	}
	open := map[string]string{} // cleaned relative name -> path as given
	for _, p := range paths {
		name := strings.TrimPrefix(path.Clean("/"+p), "/")
		if name == "" {
			if err := found(p, &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755, Name: "/"}, nil); err != nil {
				return 0, err
			}
			continue
		}
		open[name] = p
	}
	readName := strings.TrimPrefix(path.Clean("/"+readPath), "/")
	release := s.lease(layerDigests(img)...)
	defer release()
	scanned := 0
	for i := len(img.Layers) - 1; i >= 0 && len(open) > 0; i-- {
		scanned++
		settled, err := s.scanLayer(ctx, img.Layers[i], open, readName, found)
		if err != nil {
			return scanned, err
		}
		for _, name := range settled {
			delete(open, name)
		}
	}
	return scanned, nil
}

// scanLayer reads one layer's headers and returns the names it settles.
func (s *Store) scanLayer(ctx context.Context, desc ocispec.Descriptor, open map[string]string, readName string, found func(p string, h *tar.Header, r io.Reader) error) ([]string, error) {
	ra, err := s.cs.ReaderAt(ctx, desc)
	if err != nil {
		return nil, errdefs.System(fmt.Errorf("opening layer %s: %v", desc.Digest, err))
	}
	defer ra.Close()
	ds, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return nil, errdefs.System(fmt.Errorf("decompressing layer %s: %v", desc.Digest, err))
	}
	defer ds.Close()
	tr := tar.NewReader(ds)
	has := map[string]bool{}
	hidden := map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errdefs.System(fmt.Errorf("reading layer %s: %v", desc.Digest, err))
		}
		entry := strings.TrimSuffix(strings.TrimPrefix(path.Clean("/"+h.Name), "/"), "/")
		dir, base := path.Split(entry)
		dir = strings.TrimSuffix(dir, "/")
		for name, given := range open {
			switch {
			case entry == name:
				has[name] = true
				var r io.Reader
				if name == readName {
					r = tr
				}
				if err := found(given, h, r); err != nil {
					return nil, err
				}
			case base == ".wh..wh..opq" && isStrictParent(dir, name):
				hidden[name] = true
			case strings.HasPrefix(base, ".wh."):
				gone := path.Join(dir, strings.TrimPrefix(base, ".wh."))
				if gone == name || isStrictParent(gone, name) {
					hidden[name] = true
				}
			}
		}
	}
	var settled []string
	for name := range open {
		if has[name] || hidden[name] {
			settled = append(settled, name)
		}
	}
	return settled, nil
}

// isStrictParent reports whether dir is a proper ancestor of name (both
// relative, cleaned; "" is the root).
func isStrictParent(dir, name string) bool {
	if dir == "" {
		return name != ""
	}
	return strings.HasPrefix(name, dir+"/")
}
