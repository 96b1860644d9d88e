package imagestore

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/containerd/containerd/images"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// The files of a docker-archive besides the blobs (dockerd's names).
const (
	archiveManifestFile = "manifest.json"
	archiveReposFile    = "repositories"
)

// archiveManifestItem is one entry of a docker-archive's manifest.json.
type archiveManifestItem struct {
	Config       string
	RepoTags     []string
	Layers       []string
	Parent       string                               `json:",omitempty"`
	LayerSources map[digest.Digest]ocispec.Descriptor `json:",omitempty"`
}

// saveEntry is one image of a save and the tags it is saved with.
type saveEntry struct {
	img  *Image
	refs []reference.NamedTagged
}

// Save writes the images named by names (references, IDs or ID prefixes;
// a repository name without tag means all its tags, as with dockerd) to out
// as a docker-archive tar in the layout dockerd 25+ writes: an OCI image
// layout (oci-layout, index.json, blobs/sha256/...) plus the classic
// manifest.json and repositories, so that both dockerd's load (graph driver
// and containerd image stores) and other OCI tools read it. The blobs are
// written as they are stored (pulled layers stay compressed, and their
// manifests keep their registry digests), as dockerd's containerd image
// store does. The tar is streamed from the content store; nothing is
// written to out before every name is resolved and every blob is found, so
// such errors can still become an HTTP status. platform, if set, must
// match each image's platform.
func (s *Store) Save(ctx context.Context, names []string, platform *ocispec.Platform, out io.Writer) ([]string, error) {
	start := time.Now()
	if len(names) == 0 {
		return nil, errdefs.InvalidParameter(errors.New("no image names given"))
	}
	entries, err := s.saveEntries(names)
	if err != nil {
		return nil, err
	}
	var blobs []digest.Digest
	for _, e := range entries {
		if platform != nil {
			if m := platforms.Only(*platform); !m.Match(e.img.Platform()) {
				return nil, errdefs.NotFound(fmt.Errorf("image %s does not provide the specified platform (%s)", e.img.ShortID(), platforms.Format(*platform)))
			}
		}
		blobs = append(blobs, e.img.ConfigDescriptor.Digest, e.img.Manifest.Digest)
		for _, l := range e.img.Layers {
			blobs = append(blobs, l.Digest)
		}
	}
	// Keep a concurrent rmi from collecting the blobs while they stream.
	release := s.lease(blobs...)
	defer release()
	sizes := map[digest.Digest]int64{}
	for _, d := range blobs {
		info, err := s.cs.Info(ctx, d)
		if err != nil {
			return nil, errdefs.System(fmt.Errorf("image blob %s is missing from the content store: %w", d, err))
		}
		sizes[d] = info.Size
	}

	tw := tar.NewWriter(out)
	epoch := time.Unix(0, 0)
	writeDir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	writeFile := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	written := map[digest.Digest]bool{}
	writeBlob := func(d digest.Digest, mtime time.Time) error {
		if written[d] {
			return nil
		}
		written[d] = true
		ra, err := s.cs.ReaderAt(ctx, ocispec.Descriptor{Digest: d, Size: sizes[d]})
		if err != nil {
			return errdefs.System(fmt.Errorf("opening blob %s: %w", d, err))
		}
		defer ra.Close()
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: blobPath(d), Mode: 0o644, Size: sizes[d], ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := io.Copy(tw, io.NewSectionReader(ra, 0, sizes[d])); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("writing blob %s: %w", d, err)
		}
		return nil
	}

	if err := writeDir(ocispec.ImageBlobsDir + "/"); err != nil {
		return nil, err
	}
	if err := writeDir(ocispec.ImageBlobsDir + "/" + string(digest.Canonical) + "/"); err != nil {
		return nil, err
	}
	var (
		manifest []archiveManifestItem
		index    []ocispec.Descriptor
		repos    = map[string]map[string]string{}
	)
	for _, e := range entries {
		img := e.img
		// dockerd stamps the config and layers with the image's creation
		// time (moby's TestSaveCheckTimes checks the config's).
		created := img.Created()
		if created.IsZero() {
			created = epoch
		}
		item := archiveManifestItem{Config: blobPath(img.ConfigDescriptor.Digest), RepoTags: []string{}, Layers: []string{}}
		for _, l := range img.Layers {
			if err := writeBlob(l.Digest, created); err != nil {
				return nil, err
			}
			item.Layers = append(item.Layers, blobPath(l.Digest))
		}
		if err := writeBlob(img.ConfigDescriptor.Digest, created); err != nil {
			return nil, err
		}
		if err := writeBlob(img.Manifest.Digest, epoch); err != nil {
			return nil, err
		}
		mdesc := ocispec.Descriptor{MediaType: img.Manifest.MediaType, Digest: img.Manifest.Digest, Size: sizes[img.Manifest.Digest]}
		if mdesc.MediaType == "" {
			mdesc.MediaType = ocispec.MediaTypeImageManifest
		}
		for _, ref := range e.refs {
			item.RepoTags = append(item.RepoTags, reference.FamiliarString(ref))
			d := mdesc
			d.Annotations = map[string]string{
				images.AnnotationImageName: ref.String(),
				ocispec.AnnotationRefName:  ref.Tag(),
			}
			index = append(index, d)
			name := reference.FamiliarName(ref)
			if repos[name] == nil {
				repos[name] = map[string]string{}
			}
			// The legacy file names the top layer (dockerd: its diff ID).
			if ids := img.Config.RootFS.DiffIDs; len(ids) > 0 {
				repos[name][ref.Tag()] = ids[len(ids)-1].Encoded()
			}
		}
		if len(e.refs) == 0 {
			index = append(index, mdesc)
		}
		manifest = append(manifest, item)
	}

	idx, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: index})
	if err != nil {
		return nil, errdefs.System(err)
	}
	if err := writeFile(ocispec.ImageIndexFile, idx); err != nil {
		return nil, err
	}
	m, err := json.Marshal(manifest)
	if err != nil {
		return nil, errdefs.System(err)
	}
	if err := writeFile(archiveManifestFile, append(m, '\n')); err != nil {
		return nil, err
	}
	if err := writeFile(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion": "`+ocispec.ImageLayoutVersion+`"}`)); err != nil {
		return nil, err
	}
	if len(repos) > 0 {
		r, err := json.Marshal(repos)
		if err != nil {
			return nil, errdefs.System(err)
		}
		if err := writeFile(archiveReposFile, append(r, '\n')); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		ids = append(ids, e.img.ID.String())
	}
	var blobBytes int64
	for d := range written {
		blobBytes += sizes[d]
	}
	s.log.WithFields(logrus.Fields{
		"names":  names,
		"images": len(entries),
		"bytes":  blobBytes,
		"took":   time.Since(start).Round(time.Millisecond),
	}).Info("saved images")
	return ids, nil
}

// saveEntries resolves the names of a save (dockerd's rules): a tagged
// reference saves the image with that tag; a repository name alone saves
// every tagged image of the repository with its tags (or, if it has none,
// is looked up as an ID prefix); an ID, an ID prefix or a digest reference
// saves the image without tags. Images come in the order they were named.
func (s *Store) saveEntries(names []string) ([]*saveEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byID := map[digest.Digest]*saveEntry{}
	var order []*saveEntry
	add := func(img *Image, ref reference.NamedTagged) {
		e := byID[img.ID]
		if e == nil {
			e = &saveEntry{img: s.copyLocked(img)}
			byID[img.ID] = e
			order = append(order, e)
		}
		if ref == nil {
			return
		}
		for _, r := range e.refs {
			if r.String() == ref.String() {
				return
			}
		}
		e.refs = append(e.refs, ref)
	}
	for _, name := range names {
		ref, err := reference.ParseAnyReference(name)
		if err != nil {
			return nil, errdefs.InvalidParameter(err)
		}
		named, isNamed := ref.(reference.Named)
		if isNamed && reference.IsNameOnly(named) && reference.FamiliarName(named) != string(digest.Canonical) {
			found := false
			for _, r := range s.sortedRefsLocked() {
				if r.Name() != named.Name() {
					continue
				}
				tagged, ok := r.(reference.NamedTagged)
				if !ok {
					continue
				}
				if _, dig := r.(reference.Canonical); dig {
					continue
				}
				add(s.images[s.refs[refKey(r)]], tagged)
				found = true
			}
			if found {
				continue
			}
		}
		img, err := s.resolveLocked(name)
		if err != nil {
			return nil, err
		}
		var tagged reference.NamedTagged
		if isNamed {
			if _, dig := named.(reference.Canonical); !dig {
				if t, ok := reference.TagNameOnly(named).(reference.NamedTagged); ok {
					if id, ok := s.refs[refKey(t)]; ok && id == img.ID {
						tagged = t
					}
				}
			}
		}
		add(img, tagged)
	}
	return order, nil
}

// sortedRefsLocked returns every stored reference, parsed, sorted by its
// string form.
func (s *Store) sortedRefsLocked() []reference.Named {
	keys := make([]string, 0, len(s.refs))
	for k := range s.refs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]reference.Named, 0, len(keys))
	for _, k := range keys {
		if named, err := reference.ParseNormalizedNamed(k); err == nil {
			out = append(out, named)
		}
	}
	return out
}

func blobPath(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

// blobFromPath returns the digest a path "blobs/<alg>/<hex>" names.
func blobFromPath(p string) (digest.Digest, bool) {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	parts := strings.Split(p, "/")
	if len(parts) != 3 || parts[0] != ocispec.ImageBlobsDir {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}
