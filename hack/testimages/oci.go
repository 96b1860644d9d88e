package testimages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layout is an OCI image layout directory being written.
type layout struct{ dir string }

func newLayout(dir string) (*layout, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	l := &layout{dir: dir}
	return l, os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile),
		[]byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`), 0o644)
}

func (l *layout) blobPath(d digest.Digest) string {
	return filepath.Join(l.dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// writeJSON stores v as a blob and returns its descriptor.
func (l *layout) writeJSON(mediaType string, v any) (ocispec.Descriptor, []byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	d := digest.FromBytes(data)
	if err := os.WriteFile(l.blobPath(d), data, 0o644); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, data, nil
}

// importBlob makes blob d of another image available in this layout
// (hard link when possible, copy otherwise).
func (l *layout) importBlob(from *Image, d digest.Digest) error {
	src, dst := from.BlobPath(d), l.blobPath(d)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// imageRecipe describes one image to assemble in a layout.
type imageRecipe struct {
	name      string
	base      *Image       // optional: its layers and history come first
	layers    []builtLayer // new layers, in order
	createdBy []string     // one history line per new layer
	config    ocispec.ImageConfig
	// configHistory adds empty-layer history lines after the layers (as a
	// Dockerfile's CMD/ENV/... would).
	configHistory []string
}

// platformArch returns the OCI architecture name for the running system.
func platformArch() string { return runtime.GOARCH }

// assemble writes config, manifest and index.json for r into lay.
func assemble(lay *layout, r imageRecipe) error {
	created := Epoch
	img := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: platformArch(), OS: "linux"},
		Config:   r.config,
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	var layers []ocispec.Descriptor
	if r.base != nil {
		for i, l := range r.base.Layers {
			if err := lay.importBlob(r.base, l.Digest); err != nil {
				return err
			}
			layers = append(layers, l)
			img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, r.base.DiffIDs[i])
		}
		for _, h := range r.base.Config.History {
			img.History = append(img.History, h)
		}
	}
	for i, l := range r.layers {
		layers = append(layers, l.Desc)
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, l.DiffID)
		img.History = append(img.History, ocispec.History{
			Created:   &created,
			CreatedBy: r.createdBy[i],
			Comment:   "jevm testimages",
		})
	}
	for _, c := range r.configHistory {
		img.History = append(img.History, ocispec.History{
			Created:    &created,
			CreatedBy:  c,
			Comment:    "jevm testimages",
			EmptyLayer: true,
		})
	}
	cfgDesc, _, err := lay.writeJSON(ocispec.MediaTypeImageConfig, img)
	if err != nil {
		return err
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    layers,
	}
	mDesc, _, err := lay.writeJSON(ocispec.MediaTypeImageManifest, manifest)
	if err != nil {
		return err
	}
	mDesc.Platform = &img.Platform
	mDesc.Annotations = map[string]string{
		ocispec.AnnotationRefName:  "latest",
		"io.containerd.image.name": "docker.io/library/" + r.name + ":latest",
	}
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{mDesc},
	}
	data, err := json.Marshal(index)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(lay.dir, ocispec.ImageIndexFile), data, 0o644)
}

// loadImage reads the image stored in the OCI layout dir.
func loadImage(name, dir string) (*Image, error) {
	img := &Image{Name: name, Dir: dir}
	var index ocispec.Index
	if err := readJSONFile(filepath.Join(dir, ocispec.ImageIndexFile), &index); err != nil {
		return nil, err
	}
	if len(index.Manifests) != 1 {
		return nil, fmt.Errorf("%s: expected one manifest in index.json, got %d", dir, len(index.Manifests))
	}
	img.Manifest = index.Manifests[0]
	var m ocispec.Manifest
	if err := readJSONFile(img.BlobPath(img.Manifest.Digest), &m); err != nil {
		return nil, err
	}
	img.ConfigDesc = m.Config
	img.Layers = m.Layers
	if err := readJSONFile(img.BlobPath(m.Config.Digest), &img.Config); err != nil {
		return nil, err
	}
	img.DiffIDs = img.Config.RootFS.DiffIDs
	if len(img.DiffIDs) != len(img.Layers) {
		return nil, fmt.Errorf("%s: %d layers but %d diff_ids", dir, len(img.Layers), len(img.DiffIDs))
	}
	return img, nil
}

func readJSONFile(p string, v any) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// layoutProvider serves the blobs of an OCI layout as a containerd
// content.Provider, read-only (containerd's content/local store would
// create an ingest directory inside the cache).
type layoutProvider struct{ img *Image }

func (p layoutProvider) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	f, err := os.Open(p.img.BlobPath(desc.Digest))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
		}
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fileReaderAt{File: f, size: st.Size()}, nil
}

type fileReaderAt struct {
	*os.File
	size int64
}

func (f *fileReaderAt) Size() int64 { return f.size }

// writeDockerSave writes img as a `docker save` tarball (the format Docker
// 25+ writes: manifest.json + repositories + an OCI layout with
// uncompressed layers).
func writeDockerSave(img *Image, repoTag, out string) error {
	type member struct {
		name string
		data []byte
	}
	var members []member
	add := func(name string, data []byte) { members = append(members, member{name, data}) }

	cfg, err := os.ReadFile(img.BlobPath(img.ConfigDesc.Digest))
	if err != nil {
		return err
	}
	add("blobs/sha256/"+img.ConfigDesc.Digest.Encoded(), cfg)
	var layerPaths []string
	var layerDescs []ocispec.Descriptor
	for i, l := range img.Layers {
		f, err := os.Open(img.BlobPath(l.Digest))
		if err != nil {
			return err
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return err
		}
		raw, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			return err
		}
		if digest.FromBytes(raw) != img.DiffIDs[i] {
			return fmt.Errorf("layer %d of %s does not match its diff_id", i, img.Name)
		}
		p := "blobs/sha256/" + img.DiffIDs[i].Encoded()
		add(p, raw)
		layerPaths = append(layerPaths, p)
		layerDescs = append(layerDescs, ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageLayer,
			Digest:    img.DiffIDs[i],
			Size:      int64(len(raw)),
		})
	}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    img.ConfigDesc,
		Layers:    layerDescs,
	})
	if err != nil {
		return err
	}
	mDigest := digest.FromBytes(manifest)
	add("blobs/sha256/"+mDigest.Encoded(), manifest)
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: ocispec.MediaTypeImageManifest,
			Digest:    mDigest,
			Size:      int64(len(manifest)),
			Annotations: map[string]string{
				"io.containerd.image.name": "docker.io/library/" + repoTag,
				ocispec.AnnotationRefName:  "latest",
			},
		}},
	})
	if err != nil {
		return err
	}
	add("index.json", index)
	dm, err := json.Marshal([]map[string]any{{
		"Config":   "blobs/sha256/" + img.ConfigDesc.Digest.Encoded(),
		"RepoTags": []string{repoTag},
		"Layers":   layerPaths,
	}})
	if err != nil {
		return err
	}
	add("manifest.json", dm)
	add(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`))
	repo, tag := splitRepoTag(repoTag)
	repos, err := json.Marshal(map[string]map[string]string{repo: {tag: img.ConfigDesc.Digest.Encoded()}})
	if err != nil {
		return err
	}
	add("repositories", repos)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: Epoch}); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, m := range members {
		if seen[m.name] {
			continue
		}
		seen[m.name] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: m.name, Mode: 0o644, Size: int64(len(m.data)), ModTime: Epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(m.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

func splitRepoTag(s string) (string, string) {
	for i := len(s) - 1; i >= 0 && s[i] != '/'; i-- {
		if s[i] == ':' {
			return s[:i], s[i+1:]
		}
	}
	return s, "latest"
}
