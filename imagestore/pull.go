package imagestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/remotes"
	cerrdefs "github.com/containerd/errdefs"
	clog "github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

const (
	// DefaultMaxConcurrentDownloads is dockerd's default of
	// --max-concurrent-downloads.
	DefaultMaxConcurrentDownloads = 3
	// maxDownloadAttempts is how often a layer download is tried.
	maxDownloadAttempts = 3
	// maxSmallBlob bounds manifests, indexes and configs.
	maxSmallBlob = 8 << 20
)

const (
	mediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	mediaTypeDockerConfig        = "application/vnd.docker.container.image.v1+json"
	defaultPlatformString        = "linux/amd64"
	errSchema1Deprecated         = "[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. Suggest the author of %s to upgrade the image to the OCI Format or Docker Image manifest v2, schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/"
)

// ParsePlatform parses a platform string; "" means linux/amd64.
func ParsePlatform(s string) (ocispec.Platform, error) {
	if s == "" {
		s = defaultPlatformString
	}
	p, err := platforms.Parse(s)
	if err != nil {
		return ocispec.Platform{}, errdefs.InvalidParameter(err)
	}
	return platforms.Normalize(p), nil
}

// Pull pulls ref (normalised as dockerd does) for platform ("" =
// linux/amd64), writing dockerd-style JSON progress messages to out, builds
// the image's base disk and records the image. See PullWithAuth.
func (s *Store) Pull(ctx context.Context, ref, platform string, out io.Writer) (*Image, error) {
	return s.PullWithAuth(ctx, ref, platform, nil, out)
}

// PullWithAuth is Pull with registry credentials (nil: anonymous, with
// token authentication as the registry asks for it). Errors that occur before
// anything was written to out are the ones a client should get as an HTTP
// status: invalid references (errdefs.InvalidParameter), unknown
// repositories or manifests (errdefs.NotFound, worded as dockerd words
// them), unreachable registries (errdefs.System). Later errors are returned
// as well; by then the caller streams them as a JSON error message.
func (s *Store) PullWithAuth(ctx context.Context, refStr, platform string, auth *registry.AuthConfig, out io.Writer) (*Image, error) {
	named, err := ParseReference(refStr)
	if err != nil {
		return nil, err
	}
	plat, err := ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	log := s.log.WithFields(logrus.Fields{"ref": named.String(), "platform": platforms.Format(plat)})
	ctx = clog.WithLogger(ctx, log)
	po := newProgressOut(out)
	start := time.Now()

	resolver := s.resolver(auth)
	ctx, failure := withAuthFailure(ctx)
	name, target, err := s.resolve(ctx, auth, named)
	if err != nil {
		log.WithError(err).Info("resolving image failed")
		if berr, ok := failure.basicAuthError(err); ok && isPullAuthError(err) {
			return nil, berr
		}
		return nil, translatePullError(err, named)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		return nil, translatePullError(err, named)
	}
	log = log.WithField("digest", target.Digest)

	releaseTarget := s.lease(target.Digest)
	defer releaseTarget()

	manifestDesc, manifest, err := s.fetchManifest(ctx, fetcher, target, plat, named)
	if err != nil {
		return nil, err
	}
	dgsts := []digest.Digest{manifestDesc.Digest, manifest.Config.Digest}
	for _, l := range manifest.Layers {
		dgsts = append(dgsts, l.Digest)
	}
	releaseBlobs := s.lease(dgsts...)
	defer releaseBlobs()

	cfgBytes, err := s.fetchSmall(ctx, fetcher, manifest.Config)
	if err != nil {
		return nil, translatePullError(err, named)
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
		return nil, errdefs.System(fmt.Errorf("parsing image config %s: %w", manifest.Config.Digest, err))
	}
	if cfg.RootFS.Type != "" && cfg.RootFS.Type != "layers" {
		return nil, errdefs.InvalidParameter(fmt.Errorf("image config %s: unsupported rootfs type %q", manifest.Config.Digest, cfg.RootFS.Type))
	}
	if len(cfg.RootFS.DiffIDs) != len(manifest.Layers) {
		return nil, errdefs.System(fmt.Errorf("image %s: %d layers in the manifest but %d diff IDs in the config",
			reference.FamiliarString(named), len(manifest.Layers), len(cfg.RootFS.DiffIDs)))
	}
	id := manifest.Config.Digest
	if platform != "" && cfg.OS != "" {
		actual := ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
		if !platforms.Only(plat).Match(platforms.Normalize(actual)) {
			return nil, errdefs.NotFound(fmt.Errorf("image with reference %s was found but does not match the specified platform: wanted %s, actual: %s",
				reference.FamiliarString(named), platforms.Format(plat), platforms.Format(actual)))
		}
	}

	tagOrDigest := ""
	if c, ok := named.(reference.Canonical); ok {
		tagOrDigest = c.Digest().String()
	} else if t, ok := named.(reference.NamedTagged); ok {
		tagOrDigest = t.Tag()
	}
	// dockerd names the repository by its path on the registry.
	po.status(tagOrDigest, "Pulling from "+reference.Path(named))

	size, err := s.pullLayers(ctx, fetcher, id, manifest.Layers, cfg.RootFS.DiffIDs, po, log)
	if err != nil {
		log.WithError(err).Warn("pull failed")
		return nil, typedError(err)
	}

	img, upToDate, err := s.commitPull(named, id, target, manifestDesc, manifest, cfg, size)
	if err != nil {
		return nil, err
	}
	po.status("", "Digest: "+target.Digest.String())
	if upToDate {
		po.status("", "Status: Image is up to date for "+reference.FamiliarString(named))
	} else {
		po.status("", "Status: Downloaded newer image for "+reference.FamiliarString(named))
	}
	log.WithFields(logrus.Fields{"id": id, "upToDate": upToDate, "took": time.Since(start).Round(time.Millisecond)}).Info("pulled image")
	return img, nil
}

// fetchManifest fetches the resolved target and, for an index / manifest
// list, the manifest for the platform. Both are stored in the content store.
func (s *Store) fetchManifest(ctx context.Context, fetcher remotes.Fetcher, target ocispec.Descriptor, plat ocispec.Platform, named reference.Named) (ocispec.Descriptor, *ocispec.Manifest, error) {
	desc := target
	for depth := 0; depth < 3; depth++ {
		b, err := s.fetchSmall(ctx, fetcher, desc)
		if err != nil {
			return desc, nil, translatePullError(err, named)
		}
		mt := detectMediaType(desc.MediaType, b)
		switch mt {
		case mediaTypeDockerSchema1, mediaTypeDockerSchema1Signed:
			return desc, nil, errdefs.InvalidParameter(fmt.Errorf(errSchema1Deprecated, reference.FamiliarString(named)))
		case images.MediaTypeDockerSchema2ManifestList, ocispec.MediaTypeImageIndex:
			var idx ocispec.Index
			if err := json.Unmarshal(b, &idx); err != nil {
				return desc, nil, errdefs.System(fmt.Errorf("parsing manifest list %s: %w", desc.Digest, err))
			}
			m := platforms.Only(plat)
			var candidates []ocispec.Descriptor
			for _, d := range idx.Manifests {
				if d.Platform != nil && m.Match(*d.Platform) {
					candidates = append(candidates, d)
				}
			}
			if len(candidates) == 0 {
				return desc, nil, errdefs.NotFound(fmt.Errorf("no matching manifest for %s in the manifest list entries", platforms.Format(plat)))
			}
			sort.SliceStable(candidates, func(i, j int) bool { return m.Less(*candidates[i].Platform, *candidates[j].Platform) })
			desc = candidates[0]
			continue
		case images.MediaTypeDockerSchema2Manifest, ocispec.MediaTypeImageManifest:
			var man ocispec.Manifest
			if err := json.Unmarshal(b, &man); err != nil {
				return desc, nil, errdefs.System(fmt.Errorf("parsing manifest %s: %w", desc.Digest, err))
			}
			switch man.Config.MediaType {
			case mediaTypeDockerConfig, ocispec.MediaTypeImageConfig, "":
			default:
				return desc, nil, errdefs.InvalidParameter(fmt.Errorf("%s is not a container image (config media type %q)", reference.FamiliarString(named), man.Config.MediaType))
			}
			for _, l := range man.Layers {
				if !isLayerType(l.MediaType) {
					return desc, nil, errdefs.InvalidParameter(fmt.Errorf("%s: unsupported layer media type %q", reference.FamiliarString(named), l.MediaType))
				}
			}
			desc.MediaType = mt
			return desc, &man, nil
		default:
			return desc, nil, errdefs.InvalidParameter(fmt.Errorf("%s: unsupported manifest media type %q", reference.FamiliarString(named), desc.MediaType))
		}
	}
	return desc, nil, errdefs.InvalidParameter(fmt.Errorf("%s: manifest lists nested too deeply", reference.FamiliarString(named)))
}

// detectMediaType trusts the descriptor's media type when it is one we know
// and otherwise looks at the document.
func detectMediaType(mt string, b []byte) string {
	switch mt {
	case images.MediaTypeDockerSchema2Manifest, ocispec.MediaTypeImageManifest,
		images.MediaTypeDockerSchema2ManifestList, ocispec.MediaTypeImageIndex,
		mediaTypeDockerSchema1, mediaTypeDockerSchema1Signed:
		return mt
	}
	var probe struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     json.RawMessage   `json:"manifests"`
		Layers        json.RawMessage   `json:"layers"`
		FSLayers      []json.RawMessage `json:"fsLayers"`
	}
	if json.Unmarshal(b, &probe) != nil {
		return mt
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.SchemaVersion == 1 || probe.FSLayers != nil:
		return mediaTypeDockerSchema1
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case probe.Layers != nil:
		return ocispec.MediaTypeImageManifest
	}
	return mt
}

func isLayerType(mt string) bool {
	switch mt {
	case images.MediaTypeDockerSchema2Layer, images.MediaTypeDockerSchema2LayerGzip,
		images.MediaTypeDockerSchema2LayerForeign, images.MediaTypeDockerSchema2LayerForeignGzip,
		ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
		ocispec.MediaTypeImageLayerNonDistributable, ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck // still found in the wild
		ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck // still found in the wild
		return true
	}
	return false
}

// fetchSmall returns a small blob (manifest, index, config), from the content
// store when present, else from the registry (verified and stored).
func (s *Store) fetchSmall(ctx context.Context, fetcher remotes.Fetcher, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxSmallBlob {
		return nil, fmt.Errorf("blob %s is too large (%d bytes)", desc.Digest, desc.Size)
	}
	if b, err := content.ReadBlob(ctx, s.cs, desc); err == nil {
		return b, nil
	}
	rc, err := fetcher.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSmallBlob+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSmallBlob {
		return nil, fmt.Errorf("blob %s is too large", desc.Digest)
	}
	if desc.Size > 0 && int64(len(b)) != desc.Size {
		return nil, fmt.Errorf("blob %s: got %d bytes, expected %d", desc.Digest, len(b), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, fmt.Errorf("blob %s: digest mismatch (got %s)", desc.Digest, got)
	}
	desc.Size = int64(len(b))
	if err := content.WriteBlob(ctx, s.cs, "pull-"+desc.Digest.String(), bytes.NewReader(b), desc); err != nil && !cerrdefs.IsAlreadyExists(err) {
		return nil, fmt.Errorf("storing %s: %w", desc.Digest, err)
	}
	return b, nil
}

// layerJob is one distinct layer blob of a pull.
type layerJob struct {
	desc       ocispec.Descriptor
	id         string // 12 hex digits, the id the CLI shows
	present    bool   // in the content store before the pull
	done       chan struct{}
	err        error
	completed  bool // "Pull complete" sent
	extracting bool // "Extracting" progress sent
}

// pullLayers downloads the layers that are missing (up to three at a time)
// and, unless the image's base disk exists already, applies them in order
// while they arrive and builds the disk. It returns the image's size.
func (s *Store) pullLayers(ctx context.Context, fetcher remotes.Fetcher, id digest.Digest, layers []ocispec.Descriptor, diffIDs []digest.Digest, po *progressOut, log logrus.FieldLogger) (int64, error) {
	// Already complete? Then, like dockerd, say nothing per layer.
	if size, ok := s.imageComplete(ctx, id, layers); ok {
		return size, nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	jobs := map[digest.Digest]*layerJob{}
	order := make([]*layerJob, len(layers))
	var missing []*layerJob
	for i, l := range layers {
		if j := jobs[l.Digest]; j != nil {
			order[i] = j
			continue
		}
		j := &layerJob{desc: l, id: shortID(l.Digest), done: make(chan struct{})}
		if _, err := s.cs.Info(ctx, l.Digest); err == nil {
			j.present = true
			close(j.done)
		} else {
			missing = append(missing, j)
		}
		jobs[l.Digest] = j
		order[i] = j
	}
	for _, j := range order {
		if j.present && !j.completed {
			j.completed = true // nothing more to say about it
			po.update(j.id, "Already exists")
		}
	}
	for _, j := range missing {
		po.update(j.id, "Pulling fs layer")
	}
	for k, j := range missing {
		if k >= s.maxDownloads {
			po.update(j.id, "Waiting")
		}
	}

	sem := make(chan struct{}, s.maxDownloads)
	for _, j := range missing {
		go func(j *layerJob) {
			defer close(j.done)
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				j.err = ctx.Err()
				return
			}
			defer func() { <-sem }()
			j.err = s.downloadLayer(ctx, fetcher, j, po, log)
			if j.err != nil {
				cancel()
			}
		}(j)
	}
	waitAll := func() error {
		var first error
		for _, j := range missing {
			<-j.done
			if j.err != nil && (first == nil || errors.Is(first, context.Canceled)) {
				first = j.err
			}
		}
		return first
	}

	last := len(order) - 1
	spec := buildSpec{
		layers:  layers,
		diffIDs: diffIDs,
		wait: func(i int) error {
			j := order[i]
			select {
			case <-j.done:
			case <-ctx.Done():
				if err := waitAll(); err != nil {
					return err
				}
				return ctx.Err()
			}
			if j.err != nil {
				return j.err
			}
			return nil
		},
		progress: func(i int, cur, total int64) {
			j := order[i]
			if j.present || j.completed {
				return
			}
			j.extracting = true
			po.progress(j.id, "Extracting", cur, total, time.Time{})
		},
		applied: func(i int) {
			j := order[i]
			if i == last || j.present || j.completed {
				return
			}
			// A later occurrence of the same blob is applied again; say
			// "Pull complete" only once, after its last occurrence.
			for k := i + 1; k <= last; k++ {
				if order[k] == j {
					return
				}
			}
			j.completed = true
			po.update(j.id, "Pull complete")
		},
	}
	size, _, buildErr := s.ensureDisk(ctx, id, spec, false)
	if buildErr != nil {
		cancel() // no point in finishing the downloads
	}
	dlErr := waitAll()
	if buildErr != nil && !errors.Is(buildErr, context.Canceled) {
		return 0, buildErr
	}
	if dlErr != nil {
		return 0, dlErr
	}
	if buildErr != nil {
		return 0, buildErr
	}
	for _, j := range order {
		if !j.completed {
			j.completed = true
			po.update(j.id, "Pull complete")
		}
	}
	return size, nil
}

// imageComplete reports whether the image is recorded with all its blobs and
// its base disk, and returns its size.
func (s *Store) imageComplete(ctx context.Context, id digest.Digest, layers []ocispec.Descriptor) (int64, bool) {
	s.mu.Lock()
	img := s.images[id]
	var size int64
	if img != nil {
		size = img.Size
	}
	s.mu.Unlock()
	if img == nil {
		return 0, false
	}
	if _, err := os.Stat(s.diskPath(id)); err != nil {
		return 0, false
	}
	for _, l := range layers {
		if _, err := s.cs.Info(ctx, l.Digest); err != nil {
			return 0, false
		}
	}
	return size, true
}

// downloadLayer fetches one layer blob into the content store, reporting
// progress, retrying transient failures.
func (s *Store) downloadLayer(ctx context.Context, fetcher remotes.Fetcher, j *layerJob, po *progressOut, log logrus.FieldLogger) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = s.fetchBlob(ctx, fetcher, j, po)
		if err == nil || ctx.Err() != nil || attempt >= maxDownloadAttempts || cerrdefs.IsNotFound(err) {
			return err
		}
		delay := attempt * 5
		log.WithError(err).WithField("layer", j.desc.Digest).Warnf("layer download failed, retrying in %ds", delay)
		if !po.retryCountdown(ctx, j.id, delay) {
			return err
		}
	}
}

func (s *Store) fetchBlob(ctx context.Context, fetcher remotes.Fetcher, j *layerJob, po *progressOut) error {
	desc := j.desc
	w, err := content.OpenWriter(ctx, s.cs, content.WithRef("pull-"+desc.Digest.String()), content.WithDescriptor(desc))
	if err != nil {
		if cerrdefs.IsAlreadyExists(err) {
			po.update(j.id, "Download complete")
			return nil
		}
		return fmt.Errorf("opening content writer: %w", err)
	}
	defer w.Close()

	st, err := w.Status()
	if err != nil {
		return err
	}
	rc, err := fetcher.Fetch(ctx, desc)
	if err != nil {
		return err
	}
	defer rc.Close()
	offset := st.Offset
	if offset > 0 {
		if sk, ok := rc.(io.Seeker); ok && offset <= desc.Size {
			if _, err := sk.Seek(offset, io.SeekStart); err != nil {
				offset = 0
			}
		} else {
			offset = 0
		}
		if offset == 0 {
			if err := w.Truncate(0); err != nil {
				return err
			}
		}
	}
	started := time.Now()
	if offset > 0 {
		po.progress(j.id, "Downloading", offset, desc.Size, started)
	}
	cr := &countingReader{r: rc, fn: func(n int64) {
		po.progress(j.id, "Downloading", offset+n, desc.Size, started)
	}}
	buf := make([]byte, 128<<10)
	if _, err := io.CopyBuffer(w, cr, buf); err != nil {
		return fmt.Errorf("downloading %s: %w", desc.Digest, err)
	}
	po.update(j.id, "Verifying Checksum")
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil && !cerrdefs.IsAlreadyExists(err) {
		return fmt.Errorf("verifying %s: %w", desc.Digest, err)
	}
	po.update(j.id, "Download complete")
	return nil
}

// commitPull records the image and its references. upToDate reports
// whether the reference already pointed at this image (dockerd's "Image is
// up to date").
func (s *Store) commitPull(named reference.Named, id digest.Digest, target, manifestDesc ocispec.Descriptor, manifest *ocispec.Manifest, cfg dockerspec.DockerOCIImage, size int64) (*Image, bool, error) {
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	img := s.images[id]
	if img == nil {
		img = &Image{
			ID:               id,
			Target:           stripDescriptor(target),
			Manifest:         stripDescriptor(manifestDesc),
			ConfigDescriptor: stripDescriptor(manifest.Config),
			Layers:           manifest.Layers,
			Config:           cfg,
			Size:             size,
			Pulled:           now,
		}
		if m, ok := s.orphanSize(id); ok && size == 0 {
			img.Size = m
		}
		delete(s.orphans, id)
		s.images[id] = img
	} else if img.Size == 0 && size > 0 {
		img.Size = size
	}

	upToDate := false
	if c, ok := named.(reference.Canonical); ok {
		key := refKey(c)
		upToDate = s.refs[key] == id
		s.refs[key] = id
	} else {
		key := refKey(named)
		upToDate = s.refs[key] == id
		s.refs[key] = id
		if dref, err := reference.WithDigest(reference.TrimNamed(named), target.Digest); err == nil {
			s.refs[dref.String()] = id
		}
	}
	if !upToDate {
		img.LastTagTime = now
	}
	if err := s.saveLocked(); err != nil {
		return nil, false, errdefs.System(err)
	}
	return s.copyLocked(img), upToDate, nil
}

// stripDescriptor keeps what identifies a blob.
func stripDescriptor(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, Platform: d.Platform}
}

// typedError gives an error from the middle of a pull an errdefs type
// without rewording it.
func typedError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errdefs.IsNotFound(err), errdefs.IsSystem(err), errdefs.IsInvalidParameter(err),
		errdefs.IsUnavailable(err), errdefs.IsConflict(err), errdefs.IsUnknown(err):
		return err
	case cerrdefs.IsNotFound(err):
		return errdefs.NotFound(err)
	}
	return errdefs.System(err)
}
