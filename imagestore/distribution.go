package imagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/containerd/images"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// DistributionInspect answers GET /distribution/{name}/json: it resolves
// ref on its registry (mirrors first for Docker Hub, with auth if given)
// and returns the descriptor it resolves to and the platforms it provides
// (an index's manifests' platforms, or a manifest's config's platform), as
// dockerd does. Nothing is stored.
func (s *Store) DistributionInspect(ctx context.Context, refStr string, auth *registry.AuthConfig) (*registry.DistributionInspect, error) {
	ref, err := reference.ParseAnyReference(refStr)
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	named, ok := ref.(reference.Named)
	if !ok {
		if _, ok := ref.(reference.Digested); ok {
			return nil, errdefs.System(errors.New("no manifest found for full image ID"))
		}
		return nil, errdefs.InvalidParameter(fmt.Errorf("unknown image reference format: %s", refStr))
	}
	if _, ok := named.(reference.Canonical); !ok {
		named = reference.TagNameOnly(named)
	}
	name, desc, err := s.resolve(ctx, auth, named)
	if err != nil {
		return nil, translatePullError(err, named)
	}
	fetcher, err := s.resolver(auth).Fetcher(ctx, name)
	if err != nil {
		return nil, translatePullError(err, named)
	}
	fetch := func(d ocispec.Descriptor) ([]byte, error) {
		if d.Size > maxSmallBlob {
			return nil, errdefs.System(fmt.Errorf("blob %s is too large", d.Digest))
		}
		rc, err := fetcher.Fetch(ctx, d)
		if err != nil {
			return nil, translatePullError(err, named)
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, maxSmallBlob+1))
		if err != nil {
			return nil, errdefs.System(err)
		}
		if got := d.Digest.Algorithm().FromBytes(b); got != d.Digest {
			return nil, errdefs.System(fmt.Errorf("blob %s: digest mismatch (got %s)", d.Digest, got))
		}
		return b, nil
	}
	b, err := fetch(desc)
	if err != nil {
		return nil, err
	}
	out := &registry.DistributionInspect{}
	mt := detectMediaType(desc.MediaType, b)
	out.Descriptor = ocispec.Descriptor{MediaType: mt, Digest: desc.Digest, Size: int64(len(b))}
	switch mt {
	case mediaTypeDockerSchema1, mediaTypeDockerSchema1Signed:
		return nil, errdefs.InvalidParameter(fmt.Errorf(errSchema1Deprecated, reference.FamiliarString(named)))
	case images.MediaTypeDockerSchema2ManifestList, ocispec.MediaTypeImageIndex:
		var idx ocispec.Index
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, errdefs.System(fmt.Errorf("parsing manifest list %s: %w", desc.Digest, err))
		}
		for _, m := range idx.Manifests {
			if m.Platform == nil {
				continue
			}
			out.Platforms = append(out.Platforms, ocispec.Platform{
				Architecture: m.Platform.Architecture,
				OS:           m.Platform.OS,
				OSVersion:    m.Platform.OSVersion,
				OSFeatures:   m.Platform.OSFeatures,
				Variant:      m.Platform.Variant,
			})
		}
	case images.MediaTypeDockerSchema2Manifest, ocispec.MediaTypeImageManifest:
		var man ocispec.Manifest
		if err := json.Unmarshal(b, &man); err != nil {
			return nil, errdefs.System(fmt.Errorf("parsing manifest %s: %w", desc.Digest, err))
		}
		// As dockerd: a config that cannot be read just gives no platform.
		if cb, err := fetch(man.Config); err == nil {
			var p ocispec.Platform
			if json.Unmarshal(cb, &p) == nil && (p.OS != "" || p.Architecture != "") {
				out.Platforms = append(out.Platforms, p)
			}
		}
	}
	s.log.WithFields(logrus.Fields{"ref": named.String(), "digest": desc.Digest, "platforms": len(out.Platforms)}).Debug("distribution inspect")
	return out, nil
}
