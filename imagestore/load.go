package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/containerd/containerd/archive/compression"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/images"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// LoadOptions are the parameters of POST /images/load.
type LoadOptions struct {
	// Quiet suppresses the per-layer progress ("Loading layer"); the
	// "Loaded image" lines are always written, as by dockerd.
	Quiet bool
	// Platform, if set, loads only the images of that platform.
	Platform *ocispec.Platform
}

// LoadedImage is one image a Load recorded.
type LoadedImage struct {
	ID   string   // sha256:...
	Tags []string // familiar references ("busybox:latest")
}

// archiveFile is a regular file of the archive being loaded: its content
// went into the content store (or was there already).
type archiveFile struct {
	digest digest.Digest
	size   int64
}

// loadSession is the state of one Load: the archive's files, the blobs it
// added to the content store and the disks it built, so that a failure can
// take them all back.
type loadSession struct {
	s        *Store
	id       string
	files    map[string]*archiveFile // cleaned path -> content
	links    map[string]string       // cleaned path -> cleaned target
	meta     map[string][]byte       // manifest.json, index.json, repositories, oci-layout
	newBlobs []digest.Digest         // blobs this load added to the store
	disks    []digest.Digest         // base disks this load built
	releases []func()
	n        int
}

// loadImage is one image found in the archive.
type loadImage struct {
	manifestDesc ocispec.Descriptor
	configDesc   ocispec.Descriptor
	layers       []ocispec.Descriptor
	config       dockerspec.DockerOCIImage
	tags         []reference.NamedTagged
}

// maxArchiveMeta bounds the JSON files of an archive read into memory.
const maxArchiveMeta = 32 << 20

// Load reads a docker-archive (dockerd's `docker save`: manifest.json with
// Config/RepoTags/Layers, layers plain or compressed, with or without the
// OCI layout dockerd 25+ adds) or an OCI image layout archive (index.json,
// names from the io.containerd.image.name or a full
// org.opencontainers.image.ref.name annotation) from r, stores its blobs,
// builds each image's base disk and records the images and their tags.
// Progress and the "Loaded image: name:tag" (or, for an archive without
// tags, "Loaded image ID: sha256:...") lines go to out as JSON messages.
// Nothing is recorded unless the whole archive was read and every image's
// disk was built; on failure the blobs and disks the load added are
// removed again.
func (s *Store) Load(ctx context.Context, r io.Reader, opts LoadOptions, out io.Writer) (_ []LoadedImage, retErr error) {
	start := time.Now()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	ls := &loadSession{
		s:     s,
		id:    hex.EncodeToString(rnd[:]),
		files: map[string]*archiveFile{},
		links: map[string]string{},
		meta:  map[string][]byte{},
	}
	po := newProgressOut(out)
	defer func() {
		for _, rel := range ls.releases {
			rel()
		}
		if retErr != nil {
			ls.rollback()
		}
	}()

	if err := ls.readArchive(ctx, r); err != nil {
		return nil, err
	}
	imgs, err := ls.images(ctx, opts.Platform)
	if err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		if opts.Platform != nil {
			return nil, errdefs.NotFound(fmt.Errorf("no image in the archive matches the platform %s", platforms.Format(*opts.Platform)))
		}
		return nil, errdefs.InvalidParameter(errors.New("invalid archive: it holds no image"))
	}

	// Base disks: applying the layers also verifies them against the
	// configs' diff IDs.
	sizes := map[digest.Digest]int64{}
	for _, li := range imgs {
		id := li.configDesc.Digest
		spec := buildSpec{layers: li.layers, diffIDs: li.config.RootFS.DiffIDs}
		if !opts.Quiet {
			spec.progress = func(i int, cur, total int64) {
				po.progress(truncID(li.config.RootFS.DiffIDs[i].String()), "Loading layer", cur, total, time.Time{})
			}
		}
		size, built, err := s.ensureDisk(ctx, id, spec, false)
		if err != nil {
			return nil, err
		}
		if built {
			ls.disks = append(ls.disks, id)
		}
		sizes[id] = size
	}

	// Record everything at once.
	now := time.Now().UTC()
	var loaded []LoadedImage
	var msgs []string
	s.mu.Lock()
	for _, li := range imgs {
		id := li.configDesc.Digest
		img := s.images[id]
		if img == nil {
			img = &Image{
				ID:               id,
				Target:           li.manifestDesc,
				Manifest:         li.manifestDesc,
				ConfigDescriptor: li.configDesc,
				Layers:           li.layers,
				Config:           li.config,
				Size:             sizes[id],
				Pulled:           now,
			}
			if m, ok := s.orphanSize(id); ok && img.Size == 0 {
				img.Size = m
			}
			delete(s.orphans, id)
			s.images[id] = img
		} else if img.Size == 0 {
			img.Size = sizes[id]
		}
		le := LoadedImage{ID: id.String()}
		for _, t := range li.tags {
			key := refKey(t)
			if old, ok := s.refs[key]; ok && old != id {
				msgs = append(msgs, fmt.Sprintf("The image %s already exists, renaming the old one with ID %s to empty string", reference.FamiliarString(t), old))
			}
			s.refs[key] = id
			img.LastTagTime = now
			le.Tags = append(le.Tags, reference.FamiliarString(t))
			msgs = append(msgs, "Loaded image: "+reference.FamiliarString(t))
		}
		loaded = append(loaded, le)
	}
	err = s.saveLocked()
	s.mu.Unlock()
	if err != nil {
		return nil, errdefs.System(err)
	}
	ls.disks = nil // recorded: no longer ours to remove

	tagged := false
	for _, le := range loaded {
		tagged = tagged || len(le.Tags) > 0
	}
	if !tagged {
		for _, le := range loaded {
			msgs = append(msgs, "Loaded image ID: "+le.ID)
		}
	}
	for _, m := range msgs {
		po.write(&jsonmessage.JSONMessage{Stream: m + "\n"})
	}
	// Files of the archive no image uses (legacy v1 JSON, VERSION files,
	// manifests of other platforms) do not stay in the store.
	for _, rel := range ls.releases {
		rel()
	}
	ls.releases = nil
	s.collectBlobs(ls.newBlobs)
	s.log.WithFields(logrus.Fields{"images": len(loaded), "took": time.Since(start).Round(time.Millisecond)}).Info("loaded images")
	return loaded, nil
}

// rollback removes what a failed load added.
func (ls *loadSession) rollback() {
	s := ls.s
	s.mu.Lock()
	for _, id := range ls.disks {
		if _, recorded := s.images[id]; recorded {
			continue
		}
		if _, kept := s.orphans[id]; kept {
			continue
		}
		if err := os.Remove(s.diskPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.WithError(err).WithField("image", id).Warn("removing base disk of failed load")
		}
	}
	s.mu.Unlock()
	removed, _ := s.collectBlobs(ls.newBlobs)
	s.log.WithFields(logrus.Fields{"blobs": len(removed), "disks": len(ls.disks)}).Info("load failed; removed what it had added")
}

// readArchive reads the whole tar: regular files go into the content store
// (verified against their blobs/<alg>/<hex> name when they have one), the
// top-level JSON files are kept in memory, links are remembered.
func (ls *loadSession) readArchive(ctx context.Context, r io.Reader) error {
	tail := &tailReader{r: r}
	tr := tar.NewReader(tail)
	seen := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return errdefs.InvalidParameter(fmt.Errorf("invalid archive: %w", err))
		}
		seen++
		name := cleanArchivePath(h.Name)
		if name == "" {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
		case tar.TypeSymlink:
			target := h.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			ls.links[name] = cleanArchivePath(target)
		case tar.TypeLink:
			ls.links[name] = cleanArchivePath(h.Linkname)
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives
			switch name {
			case archiveManifestFile, ocispec.ImageIndexFile, archiveReposFile, ocispec.ImageLayoutFile:
				b, err := io.ReadAll(io.LimitReader(tr, maxArchiveMeta+1))
				if err != nil {
					return errdefs.InvalidParameter(fmt.Errorf("invalid archive: reading %s: %w", name, err))
				}
				if len(b) > maxArchiveMeta {
					return errdefs.InvalidParameter(fmt.Errorf("invalid archive: %s is too large", name))
				}
				ls.meta[name] = b
				continue
			}
			f, err := ls.storeFile(ctx, name, h.Size, tr)
			if err != nil {
				return err
			}
			ls.files[name] = f
		default:
			// Devices, fifos: not part of an image archive.
		}
	}
	if seen == 0 {
		return errdefs.InvalidParameter(errors.New("invalid archive: empty or not a tar file"))
	}
	// The tar reader also ends cleanly when the stream stops right after a
	// member; only the end-of-archive (zero) block tells a complete
	// archive from one cut short there.
	if !tail.endsWithZeroBlock() {
		return errdefs.InvalidParameter(errors.New("invalid archive: unexpected EOF (no end-of-archive marker)"))
	}
	return nil
}

// tailReader remembers the last tar block read through it.
type tailReader struct {
	r    io.Reader
	tail [512]byte
	n    int64
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.n += int64(n)
		if n >= len(t.tail) {
			copy(t.tail[:], p[n-len(t.tail):n])
		} else {
			copy(t.tail[:], t.tail[n:])
			copy(t.tail[len(t.tail)-n:], p[:n])
		}
	}
	return n, err
}

func (t *tailReader) endsWithZeroBlock() bool {
	if t.n < int64(len(t.tail)) {
		return false
	}
	for _, b := range t.tail {
		if b != 0 {
			return false
		}
	}
	return true
}

// storeFile streams one archive file into the content store.
func (ls *loadSession) storeFile(ctx context.Context, name string, size int64, r io.Reader) (*archiveFile, error) {
	s := ls.s
	want, named := blobFromPath(name)
	if named && want.Algorithm() != digest.Canonical {
		named = false // sha512 etc.: hash it ourselves
	}
	if named {
		if _, err := s.cs.Info(ctx, want); err == nil {
			// Already stored: the archive's copy only has to be read.
			ls.releases = append(ls.releases, s.lease(want))
			v := want.Verifier()
			n, err := io.Copy(v, r)
			if err != nil {
				return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: reading %s: %w", name, err))
			}
			if n != size || !v.Verified() {
				return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: %s does not match its digest", name))
			}
			return &archiveFile{digest: want, size: size}, nil
		}
	}
	ls.n++
	ref := fmt.Sprintf("load-%s-%d", ls.id, ls.n)
	w, err := content.OpenWriter(ctx, s.cs, content.WithRef(ref))
	if err != nil {
		return nil, errdefs.System(fmt.Errorf("opening content writer: %w", err))
	}
	defer w.Close()
	dg := digest.Canonical.Digester()
	n, err := io.Copy(io.MultiWriter(w, dg.Hash()), r)
	if err != nil || n != size {
		_ = s.cs.Abort(ctx, ref)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: reading %s: %w", name, err))
	}
	got := dg.Digest()
	if named && got != want {
		_ = s.cs.Abort(ctx, ref)
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: %s has digest %s", name, got))
	}
	ls.releases = append(ls.releases, s.lease(got))
	if err := w.Commit(ctx, size, got); err != nil {
		_ = s.cs.Abort(ctx, ref)
		if !isAlreadyExists(err) {
			return nil, errdefs.System(fmt.Errorf("storing %s: %w", name, err))
		}
	} else {
		ls.newBlobs = append(ls.newBlobs, got)
	}
	return &archiveFile{digest: got, size: size}, nil
}

// file returns the archive file at p, following links.
func (ls *loadSession) file(p string) (*archiveFile, error) {
	p = cleanArchivePath(p)
	for i := 0; i < 16; i++ {
		if f := ls.files[p]; f != nil {
			return f, nil
		}
		t, ok := ls.links[p]
		if !ok {
			break
		}
		p = t
	}
	return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: %s is missing", p))
}

// blob returns the archive file holding the blob d.
func (ls *loadSession) blob(d digest.Digest) (*archiveFile, error) {
	if err := d.Validate(); err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: %w", err))
	}
	f, err := ls.file(blobPath(d))
	if err != nil {
		return nil, err
	}
	if f.digest != d {
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: blob %s does not match its digest", d))
	}
	return f, nil
}

func (ls *loadSession) readBlob(ctx context.Context, d digest.Digest, size int64) ([]byte, error) {
	if size > maxSmallBlob {
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: %s is too large", d))
	}
	b, err := content.ReadBlob(ctx, ls.s.cs, ocispec.Descriptor{Digest: d, Size: size})
	if err != nil {
		return nil, errdefs.System(err)
	}
	return b, nil
}

// images lists the images of the archive: from manifest.json when there is
// one (dockerd's loader does the same), else from the OCI index.
func (ls *loadSession) images(ctx context.Context, plat *ocispec.Platform) ([]*loadImage, error) {
	var ociManifests []ocispec.Descriptor
	if b := ls.meta[ocispec.ImageIndexFile]; b != nil {
		var idx ocispec.Index
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: index.json: %w", err))
		}
		ociManifests = idx.Manifests
	}
	var out []*loadImage
	byID := map[digest.Digest]*loadImage{}
	add := func(li *loadImage) {
		if prev := byID[li.configDesc.Digest]; prev != nil {
			for _, t := range li.tags {
				dup := false
				for _, p := range prev.tags {
					dup = dup || p.String() == t.String()
				}
				if !dup {
					prev.tags = append(prev.tags, t)
				}
			}
			return
		}
		byID[li.configDesc.Digest] = li
		out = append(out, li)
	}

	if b := ls.meta[archiveManifestFile]; b != nil {
		var items []archiveManifestItem
		if err := json.Unmarshal(b, &items); err != nil {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: manifest.json: %w", err))
		}
		if len(items) == 0 {
			return nil, errdefs.InvalidParameter(errors.New("invalid archive: manifest.json lists no image"))
		}
		for _, it := range items {
			li, err := ls.classicImage(ctx, it, ociManifests, plat)
			if err != nil {
				return nil, err
			}
			if li != nil {
				add(li)
			}
		}
		return out, nil
	}
	if ls.meta[ocispec.ImageIndexFile] == nil {
		return nil, errdefs.InvalidParameter(errors.New("invalid archive: it has neither manifest.json nor index.json (the pre-1.10 format is not supported)"))
	}
	for _, d := range ociManifests {
		lis, err := ls.ociImages(ctx, d, plat, 0)
		if err != nil {
			return nil, err
		}
		for _, li := range lis {
			add(li)
		}
	}
	return out, nil
}

// classicImage reads one manifest.json entry.
func (ls *loadSession) classicImage(ctx context.Context, it archiveManifestItem, ociManifests []ocispec.Descriptor, plat *ocispec.Platform) (*loadImage, error) {
	cf, err := ls.file(it.Config)
	if err != nil {
		return nil, err
	}
	li := &loadImage{configDesc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cf.digest, Size: cf.size}}
	if err := ls.readConfig(ctx, li); err != nil {
		return nil, err
	}
	if !platformMatches(li.config, plat) {
		return nil, nil
	}
	if expected, actual := len(it.Layers), len(li.config.RootFS.DiffIDs); expected != actual {
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid manifest, layers length mismatch: expected %d, got %d", expected, actual))
	}
	for _, lp := range it.Layers {
		lf, err := ls.file(lp)
		if err != nil {
			return nil, err
		}
		mt, err := ls.layerMediaType(ctx, lf)
		if err != nil {
			return nil, err
		}
		li.layers = append(li.layers, ocispec.Descriptor{MediaType: mt, Digest: lf.digest, Size: lf.size})
	}
	for _, rt := range it.RepoTags {
		named, err := reference.ParseNormalizedNamed(rt)
		if err != nil {
			return nil, errdefs.InvalidParameter(err)
		}
		t, ok := named.(reference.NamedTagged)
		if !ok {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid tag %q", rt))
		}
		li.tags = append(li.tags, t)
	}
	// dockerd 25+ archives hold the image's OCI manifest as well: keep it
	// (and its digest) when it describes exactly these blobs.
	for _, d := range ociManifests {
		if d.MediaType != ocispec.MediaTypeImageManifest && d.MediaType != images.MediaTypeDockerSchema2Manifest {
			continue
		}
		f, err := ls.blob(d.Digest)
		if err != nil {
			continue
		}
		b, err := ls.readBlob(ctx, f.digest, f.size)
		if err != nil {
			return nil, err
		}
		var m ocispec.Manifest
		if json.Unmarshal(b, &m) != nil || m.Config.Digest != li.configDesc.Digest || len(m.Layers) != len(li.layers) {
			continue
		}
		same := true
		for i := range m.Layers {
			same = same && m.Layers[i].Digest == li.layers[i].Digest && m.Layers[i].Size == li.layers[i].Size
		}
		if !same {
			continue
		}
		li.manifestDesc = ocispec.Descriptor{MediaType: d.MediaType, Digest: f.digest, Size: f.size}
		li.configDesc = stripDescriptor(m.Config)
		li.layers = nil
		for _, l := range m.Layers {
			li.layers = append(li.layers, stripDescriptor(l))
		}
		return li, nil
	}
	if err := ls.writeManifest(ctx, li); err != nil {
		return nil, err
	}
	return li, nil
}

// ociImages reads the images a descriptor of an OCI index names: a
// manifest, or an index whose manifests for the platform are taken.
func (ls *loadSession) ociImages(ctx context.Context, d ocispec.Descriptor, plat *ocispec.Platform, depth int) ([]*loadImage, error) {
	if depth > 3 {
		return nil, errdefs.InvalidParameter(errors.New("invalid archive: indexes nested too deeply"))
	}
	f, err := ls.blob(d.Digest)
	if err != nil {
		return nil, err
	}
	b, err := ls.readBlob(ctx, f.digest, f.size)
	if err != nil {
		return nil, err
	}
	switch detectMediaType(d.MediaType, b) {
	case ocispec.MediaTypeImageIndex, images.MediaTypeDockerSchema2ManifestList:
		var idx ocispec.Index
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: index %s: %w", d.Digest, err))
		}
		want := ocispec.Platform{OS: "linux", Architecture: "amd64"}
		if plat != nil {
			want = *plat
		}
		m := platforms.Only(want)
		var best *ocispec.Descriptor
		for i := range idx.Manifests {
			c := idx.Manifests[i]
			if c.Platform == nil || !m.Match(*c.Platform) {
				continue
			}
			if !ls.hasImage(ctx, c) {
				continue // not in the archive (dockerd saves one platform)
			}
			if best == nil || m.Less(*c.Platform, *best.Platform) {
				best = &idx.Manifests[i]
			}
		}
		if best == nil {
			return nil, nil
		}
		sub := *best
		sub.Annotations = d.Annotations
		return ls.ociImages(ctx, sub, plat, depth+1)
	case ocispec.MediaTypeImageManifest, images.MediaTypeDockerSchema2Manifest:
	default:
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: unsupported media type %q of %s", d.MediaType, d.Digest))
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(b, &man); err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: manifest %s: %w", d.Digest, err))
	}
	cf, err := ls.blob(man.Config.Digest)
	if err != nil {
		return nil, err
	}
	mt := d.MediaType
	if mt == "" {
		mt = detectMediaType("", b)
	}
	li := &loadImage{
		manifestDesc: ocispec.Descriptor{MediaType: mt, Digest: f.digest, Size: f.size},
		configDesc:   ocispec.Descriptor{MediaType: man.Config.MediaType, Digest: cf.digest, Size: cf.size},
	}
	if err := ls.readConfig(ctx, li); err != nil {
		return nil, err
	}
	if !platformMatches(li.config, plat) {
		return nil, nil
	}
	if len(man.Layers) != len(li.config.RootFS.DiffIDs) {
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid manifest, layers length mismatch: expected %d, got %d", len(man.Layers), len(li.config.RootFS.DiffIDs)))
	}
	for _, l := range man.Layers {
		if !isLayerType(l.MediaType) {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: unsupported layer media type %q", l.MediaType))
		}
		lf, err := ls.blob(l.Digest)
		if err != nil {
			return nil, err
		}
		if lf.size != l.Size {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid archive: layer %s has %d bytes, the manifest says %d", l.Digest, lf.size, l.Size))
		}
		li.layers = append(li.layers, stripDescriptor(l))
	}
	if t := ociImageName(d.Annotations); t != nil {
		li.tags = append(li.tags, t)
	}
	return []*loadImage{li}, nil
}

// hasImage reports whether the archive holds the manifest d and the
// config and layers it names (an exported index may list platforms whose
// blobs were left out).
func (ls *loadSession) hasImage(ctx context.Context, d ocispec.Descriptor) bool {
	f, err := ls.blob(d.Digest)
	if err != nil {
		return false
	}
	b, err := ls.readBlob(ctx, f.digest, f.size)
	if err != nil {
		return false
	}
	var m struct {
		Config    ocispec.Descriptor   `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []json.RawMessage    `json:"manifests"`
	}
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	if len(m.Manifests) > 0 {
		return true // a nested index: ociImages looks inside
	}
	for _, x := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if _, err := ls.blob(x.Digest); err != nil {
			return false
		}
	}
	return true
}

// ociImageName is the name an OCI index entry gives its image: containerd's
// io.containerd.image.name, or a ref.name that is a full reference (a bare
// tag such as "latest" names no repository).
func ociImageName(ann map[string]string) reference.NamedTagged {
	for _, v := range []string{ann[images.AnnotationImageName], ann[ocispec.AnnotationRefName]} {
		if v == "" {
			continue
		}
		if v == ann[ocispec.AnnotationRefName] && !strings.ContainsAny(v, ":/") {
			continue
		}
		named, err := reference.ParseNormalizedNamed(v)
		if err != nil {
			continue
		}
		if t, ok := named.(reference.NamedTagged); ok {
			if _, dig := named.(reference.Canonical); !dig {
				return t
			}
		}
	}
	return nil
}

// readConfig reads and checks an image config.
func (ls *loadSession) readConfig(ctx context.Context, li *loadImage) error {
	b, err := ls.readBlob(ctx, li.configDesc.Digest, li.configDesc.Size)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &li.config); err != nil {
		return errdefs.InvalidParameter(fmt.Errorf("invalid archive: image config %s: %w", li.configDesc.Digest, err))
	}
	if li.config.OS != "" && !strings.EqualFold(li.config.OS, "linux") {
		return errdefs.InvalidParameter(fmt.Errorf("cannot load %s image on linux", li.config.OS))
	}
	if li.config.RootFS.Type != "" && li.config.RootFS.Type != "layers" {
		return errdefs.InvalidParameter(fmt.Errorf("invalid archive: image config %s: unsupported rootfs type %q", li.configDesc.Digest, li.config.RootFS.Type))
	}
	if li.configDesc.MediaType == "" {
		li.configDesc.MediaType = ocispec.MediaTypeImageConfig
	}
	return nil
}

func platformMatches(cfg dockerspec.DockerOCIImage, plat *ocispec.Platform) bool {
	if plat == nil {
		return true
	}
	p := ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	if p.OS == "" {
		p.OS = "linux"
	}
	return platforms.Only(*plat).Match(p)
}

// layerMediaType tells a layer's compression from its first bytes.
func (ls *loadSession) layerMediaType(ctx context.Context, f *archiveFile) (string, error) {
	ra, err := ls.s.cs.ReaderAt(ctx, ocispec.Descriptor{Digest: f.digest, Size: f.size})
	if err != nil {
		return "", errdefs.System(err)
	}
	defer ra.Close()
	head := make([]byte, 16)
	n, _ := ra.ReadAt(head, 0)
	switch compression.DetectCompression(head[:n]) {
	case compression.Gzip:
		return ocispec.MediaTypeImageLayerGzip, nil
	case compression.Zstd:
		return ocispec.MediaTypeImageLayerZstd, nil
	case compression.Uncompressed:
		return ocispec.MediaTypeImageLayer, nil
	}
	return "", errdefs.InvalidParameter(fmt.Errorf("invalid archive: layer %s is compressed in a format images do not use", f.digest))
}

// writeManifest makes an OCI manifest for an image the archive gives no
// manifest for (archives of dockerd before 25).
func (ls *loadSession) writeManifest(ctx context.Context, li *loadImage) error {
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    li.configDesc,
		Layers:    li.layers,
	}
	if m.Layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	b, err := json.Marshal(&m)
	if err != nil {
		return errdefs.System(err)
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b))}
	ls.releases = append(ls.releases, ls.s.lease(desc.Digest))
	if _, err := ls.s.cs.Info(ctx, desc.Digest); err != nil {
		if err := content.WriteBlob(ctx, ls.s.cs, "load-"+desc.Digest.Encoded(), bytes.NewReader(b), desc); err != nil && !isAlreadyExists(err) {
			return errdefs.System(fmt.Errorf("storing manifest: %w", err))
		}
		ls.newBlobs = append(ls.newBlobs, desc.Digest)
	}
	li.manifestDesc = desc
	return nil
}

// cleanArchivePath makes a tar member name relative and clean ("./a/../b/"
// -> "b"); "" for the archive root.
func cleanArchivePath(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "." {
		return ""
	}
	return p
}
