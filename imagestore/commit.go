package imagestore

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/content"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// EmptyLayerDiffID is the diff ID of a tar without entries (1024 zero
// bytes): a commit of a container without changes adds no layer, as
// dockerd's does.
const EmptyLayerDiffID digest.Digest = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

// CommitOptions describe the image Commit makes.
type CommitOptions struct {
	// Parent is the ID (or anything Resolve takes) of the image the
	// container was created from; "" makes an image without a parent.
	Parent string
	// Config is the new image's configuration (the container's, updated
	// with the commit's changes).
	Config *container.Config
	// Author and Comment go into the config and the history entry.
	Author  string
	Comment string
	// CreatedBy is the history entry's created_by (dockerd: the
	// container's command).
	CreatedBy string
	// Repo and Tag name the new image; an empty Repo leaves it untagged.
	Repo, Tag string
	// LazyDisk leaves the base disk to be built by the first BaseDisk call:
	// a build's intermediate images are mostly never run, and making an
	// ext4 disk per step would cost a full unpack each.
	LazyDisk bool
	// EmptyLayer records a step that changed no file (ENV, LABEL, ...)
	// without reading a layer; layer may then be nil.
	EmptyLayer bool
	// Platform is the new image's platform when it has no parent (nil:
	// linux/amd64); an image with a parent keeps the parent's.
	Platform *ocispec.Platform
	// KeepEmptyLayer records a layer without entries as a layer (docker
	// import does) instead of an empty_layer history entry (commit).
	KeepEmptyLayer bool
}

// Commit makes a new image whose top layer is layer (an uncompressed OCI
// layer tar: files, and ".wh." whiteouts for deletions) on top of the
// parent's layers: the layer is stored gzip-compressed in the content store,
// the config (the parent's with opts.Config, a history entry and the new
// diff ID) and an OCI manifest are written, the image's base disk is built,
// and the image is recorded and tagged. The layer is read before anything
// else is done, so the caller may release its source once Commit reads EOF.
func (s *Store) Commit(ctx context.Context, layer io.Reader, opts CommitOptions) (_ *Image, retErr error) {
	start := time.Now()
	// A failed commit takes back the blobs it stored (those no image or
	// running pull uses); this runs after the leases below are released.
	var stored []digest.Digest
	defer func() {
		if retErr != nil && len(stored) > 0 {
			s.collectBlobs(stored)
		}
	}()
	if opts.Config == nil {
		return nil, errdefs.InvalidParameter(errors.New("commit: no image config"))
	}
	if opts.Repo != "" {
		if _, err := tagReference(opts.Repo, opts.Tag); err != nil {
			return nil, err
		}
	}
	var parent *Image
	if opts.Parent != "" {
		p, err := s.Resolve(opts.Parent)
		if err != nil {
			return nil, err
		}
		parent = p
	}
	var parentBlobs []digest.Digest
	if parent != nil {
		for _, l := range parent.Layers {
			parentBlobs = append(parentBlobs, l.Digest)
		}
	}
	release := s.lease(parentBlobs...)
	defer release()

	// 1. The layer: gzip it into a temporary file, hashing both forms.
	var ldesc ocispec.Descriptor
	var layerFiles int64
	diffID := EmptyLayerDiffID
	if !opts.EmptyLayer {
		var err error
		if ldesc, diffID, layerFiles, err = s.storeLayer(ctx, layer, opts.KeepEmptyLayer); err != nil {
			return nil, err
		}
	}
	emptyLayer := diffID == EmptyLayerDiffID && !opts.KeepEmptyLayer
	if !emptyLayer {
		stored = append(stored, ldesc.Digest)
		release2 := s.lease(ldesc.Digest)
		defer release2()
	}

	// 2. The config.
	now := time.Now().UTC()
	var cfg dockerspec.DockerOCIImage
	var layers []ocispec.Descriptor
	if parent != nil {
		b, err := json.Marshal(parent.Config)
		if err != nil {
			return nil, errdefs.System(err)
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, errdefs.System(err)
		}
		layers = append(layers, parent.Layers...)
	} else {
		cfg.OS, cfg.Architecture = "linux", "amd64"
		if opts.Platform != nil {
			cfg.OS, cfg.Architecture, cfg.Variant = opts.Platform.OS, opts.Platform.Architecture, opts.Platform.Variant
		}
		cfg.RootFS.Type = "layers"
	}
	if cfg.RootFS.Type == "" {
		cfg.RootFS.Type = "layers"
	}
	cfg.Created = &now
	cfg.Author = opts.Author
	cfg.Config = fromContainerConfig(opts.Config)
	if !emptyLayer {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
		layers = append(layers, ldesc)
	}
	cfg.History = append(cfg.History, ocispec.History{
		Created:    &now,
		Author:     opts.Author,
		CreatedBy:  opts.CreatedBy,
		Comment:    opts.Comment,
		EmptyLayer: emptyLayer,
	})
	cfgBytes, err := json.Marshal(&cfg)
	if err != nil {
		return nil, errdefs.System(err)
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgBytes), Size: int64(len(cfgBytes))}
	stored = append(stored, cfgDesc.Digest)
	if err := s.writeSmallBlob(ctx, cfgDesc, cfgBytes); err != nil {
		return nil, err
	}
	id := cfgDesc.Digest

	// 3. The manifest.
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    layers,
	}
	if manifest.Layers == nil {
		manifest.Layers = []ocispec.Descriptor{}
	}
	mBytes, err := json.Marshal(&manifest)
	if err != nil {
		return nil, errdefs.System(err)
	}
	mDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mBytes), Size: int64(len(mBytes))}
	stored = append(stored, mDesc.Digest)
	if err := s.writeSmallBlob(ctx, mDesc, mBytes); err != nil {
		return nil, err
	}
	release3 := s.lease(id, mDesc.Digest)
	defer release3()

	// 4. The base disk (from all the layers, as for a pulled image).
	tDisk := time.Now()
	var size int64
	if !opts.LazyDisk {
		if size, _, err = s.ensureDisk(ctx, id, buildSpec{layers: layers, diffIDs: cfg.RootFS.DiffIDs}, false); err != nil {
			return nil, err
		}
	}
	if size == 0 {
		// Until the disk is built: the parent's files and this layer's.
		size = layerFiles
		if parent != nil {
			size += parent.Size
		}
	}
	diskTook := time.Since(tDisk)

	// 5. The record and the tag.
	s.mu.Lock()
	img := s.images[id]
	if img == nil {
		img = &Image{
			ID:               id,
			Target:           mDesc,
			Manifest:         mDesc,
			ConfigDescriptor: cfgDesc,
			Layers:           layers,
			Config:           cfg,
			Size:             size,
			Pulled:           now,
		}
		if parent != nil {
			img.Parent = parent.ID
		}
		delete(s.orphans, id)
		s.images[id] = img
	}
	err = s.saveLocked()
	out := s.copyLocked(img)
	s.mu.Unlock()
	if err != nil {
		return nil, errdefs.System(err)
	}
	if opts.Repo != "" {
		if err := s.Tag(id.String(), opts.Repo, opts.Tag); err != nil {
			return nil, err
		}
		if out, err = s.Resolve(id.String()); err != nil {
			return nil, err
		}
	}
	s.log.WithFields(logrus.Fields{
		"image":      id,
		"parent":     opts.Parent,
		"layer":      ldesc.Digest,
		"layerBytes": ldesc.Size,
		"emptyLayer": emptyLayer,
		"disk":       diskTook.Round(time.Millisecond),
		"total":      time.Since(start).Round(time.Millisecond),
	}).Info("committed image")
	return out, nil
}

// storeLayer gzips an uncompressed layer into the content store and
// returns its descriptor and diff ID.
func (s *Store) storeLayer(ctx context.Context, layer io.Reader, keepEmpty bool) (ocispec.Descriptor, digest.Digest, int64, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "commit-layer-")
	if err != nil {
		return ocispec.Descriptor{}, "", 0, errdefs.System(err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	compressed := digest.Canonical.Digester()
	counter := &countingWriter{w: io.MultiWriter(f, compressed.Hash())}
	gz := gzip.NewWriter(counter)
	uncompressed := digest.Canonical.Digester()
	// The sizes of the layer's files, read from the same stream: the
	// image's size until its base disk is built (LazyDisk).
	pr, pw := io.Pipe()
	fileBytes := make(chan int64, 1)
	go func() {
		var n int64
		tr := tar.NewReader(pr)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA {
				n += h.Size
			}
		}
		io.Copy(io.Discard, pr)
		fileBytes <- n
	}()
	_, err = io.Copy(gz, io.TeeReader(layer, io.MultiWriter(uncompressed.Hash(), pw)))
	pw.Close()
	files := <-fileBytes
	if err != nil {
		if ctx.Err() != nil {
			return ocispec.Descriptor{}, "", 0, ctx.Err()
		}
		return ocispec.Descriptor{}, "", 0, fmt.Errorf("reading the container's changes: %w", err)
	}
	if err := gz.Close(); err != nil {
		return ocispec.Descriptor{}, "", 0, errdefs.System(err)
	}
	desc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    compressed.Digest(),
		Size:      counter.n,
	}
	diffID := uncompressed.Digest()
	if diffID == EmptyLayerDiffID && !keepEmpty {
		return desc, diffID, files, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ocispec.Descriptor{}, "", 0, errdefs.System(err)
	}
	if err := content.WriteBlob(ctx, s.cs, "commit-"+desc.Digest.Encoded(), f, desc); err != nil && !isAlreadyExists(err) {
		return ocispec.Descriptor{}, "", 0, errdefs.System(fmt.Errorf("storing layer: %w", err))
	}
	return desc, diffID, files, nil
}

func (s *Store) writeSmallBlob(ctx context.Context, desc ocispec.Descriptor, b []byte) error {
	if err := content.WriteBlob(ctx, s.cs, "commit-"+desc.Digest.Encoded(), strings.NewReader(string(b)), desc); err != nil && !isAlreadyExists(err) {
		return errdefs.System(fmt.Errorf("storing %s: %w", desc.MediaType, err))
	}
	return nil
}

func isAlreadyExists(err error) bool { return cerrdefs.IsAlreadyExists(err) }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// fromContainerConfig is toContainerConfig's inverse: the image config
// fields of a container config.
func fromContainerConfig(c *container.Config) dockerspec.DockerOCIImageConfig {
	var out dockerspec.DockerOCIImageConfig
	out.User = c.User
	out.Env = cloneStrings(c.Env)
	out.Entrypoint = cloneStrings(c.Entrypoint)
	out.Cmd = cloneStrings(c.Cmd)
	out.WorkingDir = c.WorkingDir
	out.StopSignal = c.StopSignal
	out.ArgsEscaped = c.ArgsEscaped //nolint:staticcheck // part of the config
	if len(c.Labels) > 0 {
		out.Labels = make(map[string]string, len(c.Labels))
		for k, v := range c.Labels {
			out.Labels[k] = v
		}
	}
	if len(c.ExposedPorts) > 0 {
		out.ExposedPorts = make(map[string]struct{}, len(c.ExposedPorts))
		for p := range c.ExposedPorts {
			out.ExposedPorts[string(p)] = struct{}{}
		}
	}
	if len(c.Volumes) > 0 {
		out.Volumes = make(map[string]struct{}, len(c.Volumes))
		for v := range c.Volumes {
			out.Volumes[v] = struct{}{}
		}
	}
	if c.Healthcheck != nil {
		out.Healthcheck = &dockerspec.HealthcheckConfig{
			Test:          cloneStrings(c.Healthcheck.Test),
			Interval:      c.Healthcheck.Interval,
			Timeout:       c.Healthcheck.Timeout,
			StartPeriod:   c.Healthcheck.StartPeriod,
			StartInterval: c.Healthcheck.StartInterval,
			Retries:       c.Healthcheck.Retries,
		}
	}
	out.OnBuild = cloneStrings(c.OnBuild)
	out.Shell = cloneStrings(c.Shell)
	return out
}
