// Package testimages builds the OCI images that jevm's tests, benchmarks and
// demo pull, from Debian packages and without a container engine, caches
// them on disk and pushes them to a local registry (Debian's docker-registry).
//
// Every image is an OCI image layout directory (oci-layout, index.json,
// blobs/sha256/...) holding one image manifest with gzip-compressed layers.
// Layer tars are written in Go with fixed mtimes, sorted entries and the
// original uid/gid, so rebuilding from the same package versions yields the
// same blobs.
package testimages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image names. Each is pushed as NAME:latest and library/NAME:latest.
const (
	Busybox = "busybox" // busybox-static + applet symlinks, Cmd ["sh"]
	Debian  = "debian"  // debootstrap --variant=minbase bookworm, Cmd ["bash"]
	Web     = "web"     // busybox + /www/index.html, busybox httpd on port 80
	Redis   = "redis"   // debian + redis-server, port 6379, volume /data
	Layers  = "layers"  // busybox + two layers exercising whiteouts and opaque dirs
)

// Names returns every image name, bases before the images built on them.
func Names() []string { return []string{Busybox, Web, Layers, Debian, Redis} }

// DefaultCacheDir is used when neither Options.CacheDir nor
// $JEVM_TESTIMAGES_CACHE is set.
const DefaultCacheDir = "/var/cache/jevm/testimages"

// CacheEnv names the environment variable that overrides DefaultCacheDir.
const CacheEnv = "JEVM_TESTIMAGES_CACHE"

// MirrorEnv names the environment variable that overrides the Debian mirror
// (default: the first http(s) Debian URI in the host's apt sources).
const MirrorEnv = "JEVM_TESTIMAGES_MIRROR"

// builderVersion is part of every cache key; bump it whenever a recipe
// changes what goes into an image.
const builderVersion = "1"

// Suite is the Debian release the images are built from.
const Suite = "bookworm"

// BusyboxSaveTar is the file name of the `docker save` tarball of busybox,
// stored in the busybox image directory.
const BusyboxSaveTar = "busybox.tar"

// keyFile records the cache key inputs inside each image directory.
const keyFile = "jevm-testimage-key.txt"

// Image is one built image.
type Image struct {
	Name       string             // one of the constants above
	Dir        string             // OCI image layout directory
	Key        string             // cache key (hex)
	Manifest   ocispec.Descriptor // image manifest (application/vnd.oci.image.manifest.v1+json)
	ConfigDesc ocispec.Descriptor
	Config     ocispec.Image
	Layers     []ocispec.Descriptor // gzip layers, base first
	DiffIDs    []digest.Digest
}

// BlobPath returns the path of blob d in the image's layout.
func (i *Image) BlobPath(d digest.Digest) string {
	return filepath.Join(i.Dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// Images is the set returned by Ensure.
type Images struct {
	CacheDir string
	List     []*Image // in Names() order, restricted to what was asked for
	// BusyboxTar is a `docker save` tarball of busybox (tag busybox:latest),
	// empty when busybox was not asked for.
	BusyboxTar string
}

// Get returns the image called name, or nil.
func (s *Images) Get(name string) *Image {
	for _, i := range s.List {
		if i.Name == name {
			return i
		}
	}
	return nil
}

// Options configure Ensure. The zero value builds everything into the
// default cache.
type Options struct {
	CacheDir string   // default $JEVM_TESTIMAGES_CACHE, then DefaultCacheDir
	Names    []string // default Names(); dependencies are built as needed
	Mirror   string   // Debian mirror; default $JEVM_TESTIMAGES_MIRROR, then the host's apt sources
	Logf     func(format string, args ...any)
}

// CacheDirFromEnv returns $JEVM_TESTIMAGES_CACHE or DefaultCacheDir.
func CacheDirFromEnv() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	return DefaultCacheDir
}

// ErrNeedRoot is returned when an image must be built and the process is
// not root (debootstrap, chroot and mounts need it).
var ErrNeedRoot = errors.New("testimages: building the debian-based images needs root")

// Ensure returns the requested images, building those missing from the
// cache. A warm call only runs `apt-cache policy` and reads a few small
// files. Concurrent calls (from any process) serialize on a lock file in the
// cache directory; images are built in temporary directories and renamed
// into place, so readers never see a partial image.
func Ensure(ctx context.Context, opts Options) (*Images, error) {
	if opts.CacheDir == "" {
		opts.CacheDir = CacheDirFromEnv()
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	want := map[string]bool{}
	names := opts.Names
	if len(names) == 0 {
		names = Names()
	}
	for _, n := range names {
		switch n {
		case Busybox, Debian, Web, Redis, Layers:
			want[n] = true
		default:
			return nil, fmt.Errorf("testimages: unknown image %q", n)
		}
	}
	needDebian := want[Debian] || want[Redis]
	needBusybox := want[Busybox] || want[Web] || want[Layers]

	keys, err := computeKeys(ctx, needBusybox, needDebian)
	if err != nil {
		return nil, err
	}

	b := &builder{opts: opts, keys: keys, built: map[string]*Image{}}
	// Fast path: everything cached, no lock (directories only ever appear
	// complete, by rename).
	if set, err := b.collect(want); err == nil {
		return set, nil
	}

	if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, filepath.Join(opts.CacheDir, ".lock"), opts.Logf)
	if err != nil {
		return nil, err
	}
	defer unlock()
	b.cleanStale()

	order := []string{}
	if needBusybox {
		order = append(order, Busybox)
	}
	if want[Web] {
		order = append(order, Web)
	}
	if want[Layers] {
		order = append(order, Layers)
	}
	if needDebian {
		order = append(order, Debian)
	}
	if want[Redis] {
		order = append(order, Redis)
	}
	for _, name := range order {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, err := b.ensure(ctx, name); err != nil {
			return nil, fmt.Errorf("testimages: %s: %w", name, err)
		}
	}
	return b.collect(want)
}

// imageKey is the cache key of one image: its inputs as text and their hash.
type imageKey struct {
	text string
	hash string
}

func newKey(parts ...string) imageKey {
	text := strings.Join(parts, "\n") + "\n"
	sum := sha256.Sum256([]byte(text))
	return imageKey{text: text, hash: hex.EncodeToString(sum[:])}
}

// computeKeys derives every image's cache key from the candidate versions of
// the Debian packages that go into it.
func computeKeys(ctx context.Context, busybox, debian bool) (map[string]imageKey, error) {
	var pkgs []string
	if busybox {
		pkgs = append(pkgs, "busybox-static")
	}
	if debian {
		pkgs = append(pkgs, debianKeyPackages...)
		pkgs = append(pkgs, "redis-server")
	}
	versions, err := aptCandidates(ctx, pkgs...)
	if err != nil {
		return nil, err
	}
	arch, err := dpkgArch(ctx)
	if err != nil {
		return nil, err
	}
	common := func(extra ...string) []string {
		return append([]string{"jevm-testimages builder v" + builderVersion, "arch=" + arch, "suite=" + Suite}, extra...)
	}
	pv := func(p string) string { return p + "=" + versions[p] }
	keys := map[string]imageKey{}
	if busybox {
		bb := newKey(common("image=busybox", pv("busybox-static"))...)
		keys[Busybox] = bb
		keys[Web] = newKey(common("image=web", "base="+bb.hash)...)
		keys[Layers] = newKey(common("image=layers", "base="+bb.hash)...)
	}
	if debian {
		parts := common("image=debian")
		if v, err := dpkgInstalledVersion(ctx, "debootstrap"); err == nil {
			parts = append(parts, "debootstrap="+v)
		}
		for _, p := range debianKeyPackages {
			parts = append(parts, pv(p))
		}
		deb := newKey(parts...)
		keys[Debian] = deb
		keys[Redis] = newKey(common("image=redis", "base="+deb.hash, pv("redis-server"))...)
	}
	return keys, nil
}

// debianKeyPackages are the core packages whose versions key the debian
// image.
var debianKeyPackages = []string{"base-files", "libc6", "bash", "dpkg", "apt", "coreutils", "debian-archive-keyring"}

type builder struct {
	opts  Options
	keys  map[string]imageKey
	built map[string]*Image
}

func (b *builder) dirFor(name string) string {
	return filepath.Join(b.opts.CacheDir, name+"-"+b.keys[name].hash[:16])
}

// cached loads name from the cache, or returns an error.
func (b *builder) cached(name string) (*Image, error) {
	if img := b.built[name]; img != nil {
		return img, nil
	}
	dir := b.dirFor(name)
	key, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, err
	}
	if string(key) != b.keys[name].text {
		return nil, fmt.Errorf("%s: cache key mismatch", dir)
	}
	img, err := loadImage(name, dir)
	if err != nil {
		return nil, err
	}
	img.Key = b.keys[name].hash
	b.built[name] = img
	return img, nil
}

func (b *builder) collect(want map[string]bool) (*Images, error) {
	set := &Images{CacheDir: b.opts.CacheDir}
	for _, n := range Names() {
		if !want[n] {
			continue
		}
		img, err := b.cached(n)
		if err != nil {
			return nil, err
		}
		set.List = append(set.List, img)
		if n == Busybox {
			set.BusyboxTar = filepath.Join(img.Dir, BusyboxSaveTar)
		}
	}
	return set, nil
}

// ensure returns name from the cache or builds it.
func (b *builder) ensure(ctx context.Context, name string) (*Image, error) {
	if img, err := b.cached(name); err == nil {
		return img, nil
	}
	if (name == Debian || name == Redis) && os.Geteuid() != 0 {
		return nil, ErrNeedRoot
	}
	start := time.Now()
	b.opts.Logf("building image %s (key %s)", name, b.keys[name].hash[:16])
	tmp, err := os.MkdirTemp(b.opts.CacheDir, ".build-"+name+"-")
	if err != nil {
		return nil, err
	}
	defer safeRemoveAll(tmp)
	out := filepath.Join(tmp, "image")
	lay, err := newLayout(out)
	if err != nil {
		return nil, err
	}
	work := filepath.Join(tmp, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		return nil, err
	}
	if err := b.recipe(ctx, name, lay, work); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(out, keyFile), []byte(b.keys[name].text), 0o644); err != nil {
		return nil, err
	}
	img, err := loadImage(name, out)
	if err != nil {
		return nil, err
	}
	if name == Busybox {
		if err := writeDockerSave(img, "busybox:latest", filepath.Join(out, BusyboxSaveTar)); err != nil {
			return nil, err
		}
	}
	if err := syncTree(out); err != nil {
		return nil, err
	}
	final := b.dirFor(name)
	if err := safeRemoveAll(final); err != nil { // a broken leftover
		return nil, err
	}
	if err := os.Rename(out, final); err != nil {
		return nil, err
	}
	b.opts.Logf("built image %s in %s", name, time.Since(start).Round(100*time.Millisecond))
	return b.cached(name)
}

// cleanStale removes leftovers of interrupted builds. Called with the lock
// held, so no other build is running.
func (b *builder) cleanStale() {
	ents, err := os.ReadDir(b.opts.CacheDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".build-") {
			if err := safeRemoveAll(filepath.Join(b.opts.CacheDir, e.Name())); err != nil {
				b.opts.Logf("cannot remove stale %s: %v", e.Name(), err)
			}
		}
	}
}

// lockFile takes an exclusive flock on p, polling so ctx can cancel.
func lockFile(ctx context.Context, p string, logf func(string, ...any)) (func(), error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		if !logged {
			logf("waiting for another build holding %s", p)
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func syncTree(dir string) error {
	return filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}
