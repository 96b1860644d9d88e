// Package imagestore is jevm's image store: it pulls images from registries
// (with dockerd's reference normalisation, registry mirrors and insecure
// registries), keeps their blobs in a content-addressed store, records the
// images and their references, and turns every image into one ext4 "base
// disk" that all containers of the image share read-only underneath their own
// qcow2 overlays. The image API operations return docker API types so the
// daemon can pass them straight through.
//
// On-disk layout under Options.Root (see docs/IMAGESTORE.md):
//
//	content/            containerd local content store (blobs/sha256/<hex>, ingest/)
//	disks/<hex>.ext4    base disk of image sha256:<hex> (sparse, DiskSize bytes)
//	tmp/                unpack directories and disks being built (wiped by New)
//	images.json         image records and references (atomically replaced)
package imagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jevm/jevm/internal/atomicfile"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/content/local"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// DefaultDiskSize is the virtual size of a base disk when Options.DiskSize
// is zero.
const DefaultDiskSize int64 = 8 << 30

// minDiskSize is the smallest base disk mke2fs is asked to make.
const minDiskSize int64 = 16 << 20

const stateFile = "images.json"

// Options configures a Store.
type Options struct {
	// Root is the directory the store owns (e.g. DATA_ROOT/image).
	Root string
	// Mirrors are registry mirror URLs (e.g. "http://127.0.0.1:5000"),
	// used for Docker Hub (docker.io) pulls only and tried in order before
	// docker.io itself, as dockerd's registry-mirrors.
	Mirrors []string
	// InsecureRegistries are "host[:port]" names or CIDRs for which plain
	// HTTP (and unverified TLS) is allowed. Localhost and 127.0.0.0/8 are
	// always insecure, as in dockerd.
	InsecureRegistries []string
	// DiskSize is the virtual size in bytes of every base disk; 0 means
	// DefaultDiskSize.
	DiskSize int64
	// MaxConcurrentDownloads bounds the layers one pull downloads at once
	// (dockerd's --max-concurrent-downloads); 0 means
	// DefaultMaxConcurrentDownloads.
	MaxConcurrentDownloads int
	// Logger defaults to logrus.StandardLogger().
	Logger logrus.FieldLogger
}

// Image is the store's record of one image. Values returned by the Store
// are copies; modifying them does not change the store.
type Image struct {
	// ID is the digest of the image config ("sha256:<hex>").
	ID digest.Digest `json:"id"`
	// RepoTags and RepoDigests are the references pointing at the image,
	// in familiar form ("busybox:latest", "busybox@sha256:..."). They are
	// filled in when the record is handed out.
	RepoTags    []string `json:"-"`
	RepoDigests []string `json:"-"`
	// Target is what the reference resolved to on the registry (a manifest
	// list / index, or a manifest); its digest is the one in RepoDigests.
	Target ocispec.Descriptor `json:"target"`
	// Manifest is the platform-specific image manifest.
	Manifest ocispec.Descriptor `json:"manifest"`
	// ConfigDescriptor is the image config blob (its digest is ID).
	ConfigDescriptor ocispec.Descriptor `json:"configDescriptor"`
	// Layers are the manifest's layer blobs, bottom first.
	Layers []ocispec.Descriptor `json:"layers"`
	// Config is the parsed image config (OCI image plus Docker's
	// extensions: Healthcheck, OnBuild, Shell). Config.Config holds
	// Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Volumes,
	// Labels and StopSignal.
	Config dockerspec.DockerOCIImage `json:"config"`
	// Size is the size of the image's files (sum over the layers of the
	// file sizes in each layer), as dockerd reports it.
	Size int64 `json:"size"`
	// Pulled is when the image was first recorded.
	Pulled time.Time `json:"pulled"`
	// LastTagTime is when a reference was last added to the image.
	LastTagTime time.Time `json:"lastTagTime,omitempty"`
	// Parent is the image a commit or build step started from ("" for
	// pulled, loaded and imported images); history names its entries by
	// it, as dockerd.
	Parent digest.Digest `json:"parent,omitempty"`
}

// ShortID returns the 12 hex digits docker shows for the image.
func (img *Image) ShortID() string { return shortID(img.ID) }

// Created returns the image's creation time (zero when the config has none).
func (img *Image) Created() time.Time {
	if img.Config.Created == nil {
		return time.Time{}
	}
	return *img.Config.Created
}

// Platform returns the image's platform as its config states it.
func (img *Image) Platform() ocispec.Platform {
	return ocispec.Platform{
		OS:           img.Config.OS,
		Architecture: img.Config.Architecture,
		Variant:      img.Config.Variant,
		OSVersion:    img.Config.OSVersion,
	}
}

// DiffIDs returns the uncompressed layer digests from the image config.
func (img *Image) DiffIDs() []digest.Digest {
	return append([]digest.Digest(nil), img.Config.RootFS.DiffIDs...)
}

// ContainerConfig converts the image config into the container.Config the
// docker API uses (and the daemon merges into new containers).
func (img *Image) ContainerConfig() *container.Config {
	return toContainerConfig(&img.Config.Config)
}

func toContainerConfig(c *dockerspec.DockerOCIImageConfig) *container.Config {
	cfg := &container.Config{
		User:        c.User,
		Env:         cloneStrings(c.Env),
		Cmd:         cloneStrings(c.Cmd),
		Entrypoint:  cloneStrings(c.Entrypoint),
		WorkingDir:  c.WorkingDir,
		StopSignal:  c.StopSignal,
		OnBuild:     cloneStrings(c.OnBuild),
		Shell:       cloneStrings(c.Shell),
		ArgsEscaped: c.ArgsEscaped, //nolint:staticcheck // part of the config
	}
	if len(c.Labels) > 0 {
		cfg.Labels = make(map[string]string, len(c.Labels))
		for k, v := range c.Labels {
			cfg.Labels[k] = v
		}
	}
	if len(c.ExposedPorts) > 0 {
		cfg.ExposedPorts = make(nat.PortSet, len(c.ExposedPorts))
		for p := range c.ExposedPorts {
			cfg.ExposedPorts[nat.Port(p)] = struct{}{}
		}
	}
	if len(c.Volumes) > 0 {
		cfg.Volumes = make(map[string]struct{}, len(c.Volumes))
		for v := range c.Volumes {
			cfg.Volumes[v] = struct{}{}
		}
	}
	if c.Healthcheck != nil {
		hc := *c.Healthcheck
		hc.Test = cloneStrings(hc.Test)
		cfg.Healthcheck = &hc
	}
	return cfg
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

// state is what images.json holds.
type state struct {
	Version int                      `json:"version"`
	Images  map[digest.Digest]*Image `json:"images"`
	Refs    map[string]digest.Digest `json:"refs"` // full reference string -> image ID
	// Orphans are base disks of deleted images that containers still
	// used when the image was deleted (image ID -> image size).
	Orphans map[digest.Digest]int64 `json:"orphans,omitempty"`
}

// Store is the image store. All methods are safe for concurrent use.
type Store struct {
	root     string
	diskSize int64
	log      logrus.FieldLogger
	cs       content.Store
	// maxDownloads bounds the layers one pull downloads at once.
	maxDownloads int

	mirrors  []*url.URL
	insecure []string     // host[:port] names
	insecNet []*net.IPNet // CIDRs

	clientsMu sync.Mutex
	clients   map[string]*http.Client

	mu      sync.Mutex // guards images, refs, leases, builds, the state file
	images  map[digest.Digest]*Image
	refs    map[string]digest.Digest
	leases  map[digest.Digest]int        // blobs in use by running pulls
	builds  map[digest.Digest]*diskBuild // base disks being built
	orphans map[digest.Digest]int64      // disks kept for containers of deleted images
	// layerSizes caches the file sizes of layers (history).
	layerSizes map[digest.Digest]int64

	pruneRunning atomic.Bool
	buildCount   atomic.Int64 // base disks built (for tests and logs)
}

// New opens (or creates) the store under opts.Root and reloads its records.
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("imagestore: Root is required")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("imagestore: %w", err)
	}
	if opts.DiskSize == 0 {
		opts.DiskSize = DefaultDiskSize
	}
	if opts.MaxConcurrentDownloads <= 0 {
		opts.MaxConcurrentDownloads = DefaultMaxConcurrentDownloads
	}
	if opts.DiskSize < minDiskSize {
		return nil, fmt.Errorf("imagestore: disk size %d is smaller than the minimum %d", opts.DiskSize, minDiskSize)
	}
	log := opts.Logger
	if log == nil {
		log = logrus.StandardLogger()
	}
	log = log.WithField("module", "imagestore")

	for _, d := range []string{root, filepath.Join(root, "content"), filepath.Join(root, "disks")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("imagestore: %w", err)
		}
	}
	// Leftovers of builds interrupted by a crash.
	if err := os.RemoveAll(filepath.Join(root, "tmp")); err != nil {
		return nil, fmt.Errorf("imagestore: cleaning tmp: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("imagestore: %w", err)
	}

	cs, err := local.NewStore(filepath.Join(root, "content"))
	if err != nil {
		return nil, fmt.Errorf("imagestore: opening content store: %w", err)
	}

	s := &Store{
		root:         root,
		diskSize:     opts.DiskSize,
		log:          log,
		maxDownloads: opts.MaxConcurrentDownloads,
		cs:           cs,
		clients:      map[string]*http.Client{},
		images:       map[digest.Digest]*Image{},
		refs:         map[string]digest.Digest{},
		leases:       map[digest.Digest]int{},
		builds:       map[digest.Digest]*diskBuild{},
		orphans:      map[digest.Digest]int64{},
	}
	for _, m := range opts.Mirrors {
		u, err := parseMirror(m)
		if err != nil {
			return nil, fmt.Errorf("imagestore: %w", err)
		}
		s.mirrors = append(s.mirrors, u)
	}
	for _, r := range opts.InsecureRegistries {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if _, n, err := net.ParseCIDR(r); err == nil {
			s.insecNet = append(s.insecNet, n)
			continue
		}
		if strings.Contains(r, "://") {
			return nil, fmt.Errorf("imagestore: insecure registry %s should not contain '://'", r)
		}
		s.insecure = append(s.insecure, strings.TrimSuffix(r, "/"))
	}

	if err := s.load(); err != nil {
		return nil, err
	}
	s.cleanDisks()
	_ = ctx
	s.log.WithFields(logrus.Fields{"root": root, "images": len(s.images), "diskSize": s.diskSize}).Info("image store ready")
	return s, nil
}

func parseMirror(m string) (*url.URL, error) {
	m = strings.TrimSpace(m)
	if !strings.Contains(m, "://") {
		return nil, fmt.Errorf("invalid mirror: %q: no scheme (http:// or https://)", m)
	}
	u, err := url.Parse(m)
	if err != nil {
		return nil, fmt.Errorf("invalid mirror: %q: %w", m, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("invalid mirror: unsupported scheme %q in %q", u.Scheme, m)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("invalid mirror: no host in %q", m)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.Path = strings.TrimSuffix(u.Path, "/v2")
	return u, nil
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

// DiskSize returns the virtual size of the base disks.
func (s *Store) DiskSize() int64 { return s.diskSize }

// Content returns the content store holding the image blobs.
func (s *Store) Content() content.Store { return s.cs }

// Count returns the number of images (for docker info).
func (s *Store) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.images)
}

// Get returns the image named by nameOrID (see Resolve).
func (s *Store) Get(nameOrID string) (*Image, error) {
	return s.Resolve(nameOrID)
}

// Images returns copies of all image records, newest first.
func (s *Store) Images() []*Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, s.copyLocked(img))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created().After(out[j].Created()) })
	return out
}

// load reads images.json.
func (s *Store) load() error {
	b, err := os.ReadFile(filepath.Join(s.root, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("imagestore: reading state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("imagestore: parsing %s: %w", stateFile, err)
	}
	for id, img := range st.Images {
		if img == nil || img.ID != id {
			s.log.WithField("id", id).Warn("dropping inconsistent image record")
			continue
		}
		s.images[id] = img
	}
	for ref, id := range st.Refs {
		if _, ok := s.images[id]; !ok {
			s.log.WithFields(logrus.Fields{"ref": ref, "id": id}).Warn("dropping reference to unknown image")
			continue
		}
		if _, err := reference.ParseNormalizedNamed(ref); err != nil {
			s.log.WithField("ref", ref).Warn("dropping unparsable reference")
			continue
		}
		s.refs[ref] = id
	}
	for id, size := range st.Orphans {
		s.orphans[id] = size
	}
	return nil
}

func (s *Store) orphanSize(id digest.Digest) (int64, bool) {
	n, ok := s.orphans[id]
	return n, ok
}

// saveLocked atomically replaces images.json. s.mu must be held.
func (s *Store) saveLocked() error {
	st := state{Version: 1, Images: s.images, Refs: s.refs, Orphans: s.orphans}
	b, err := json.MarshalIndent(&st, "", "  ")
	if err != nil {
		return fmt.Errorf("imagestore: encoding state: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(s.root, stateFile), b, 0o600)
}

// copyLocked returns a deep copy of img with RepoTags/RepoDigests filled.
func (s *Store) copyLocked(img *Image) *Image {
	b, err := json.Marshal(img)
	if err != nil {
		panic(fmt.Sprintf("imagestore: encoding image record: %v", err))
	}
	out := &Image{}
	if err := json.Unmarshal(b, out); err != nil {
		panic(fmt.Sprintf("imagestore: decoding image record: %v", err))
	}
	out.RepoTags, out.RepoDigests = s.refsOfLocked(img.ID)
	return out
}

// refsOfLocked returns the familiar tags and digests pointing at id, sorted.
func (s *Store) refsOfLocked(id digest.Digest) (tags, digests []string) {
	tags, digests = []string{}, []string{}
	for _, named := range s.namedRefsLocked(id) {
		switch named.(type) {
		case reference.Canonical:
			digests = append(digests, reference.FamiliarString(named))
		case reference.NamedTagged:
			tags = append(tags, reference.FamiliarString(named))
		}
	}
	return tags, digests
}

// namedRefsLocked returns the parsed references pointing at id, sorted by
// their string form.
func (s *Store) namedRefsLocked(id digest.Digest) []reference.Named {
	var keys []string
	for k, v := range s.refs {
		if v == id {
			keys = append(keys, k)
		}
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

// lease marks blobs as in use by a pull so that a concurrent delete does not
// collect them; the returned func releases them.
func (s *Store) lease(dgsts ...digest.Digest) func() {
	s.mu.Lock()
	for _, d := range dgsts {
		s.leases[d]++
	}
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			for _, d := range dgsts {
				if s.leases[d]--; s.leases[d] <= 0 {
					delete(s.leases, d)
				}
			}
			s.mu.Unlock()
		})
	}
}

func shortID(d digest.Digest) string {
	h := d.Encoded()
	if h == "" {
		h = strings.TrimPrefix(string(d), "sha256:")
	}
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

func truncID(id string) string {
	if i := strings.IndexRune(id, ':'); i >= 0 {
		id = id[i+1:]
	}
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
