package builder

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeFile is one entry of a fake image's file system.
type fakeFile struct {
	mode     fs.FileMode
	uid, gid int
	content  string
	link     string
}

type fakeImage struct {
	id        string
	parent    string
	config    *container.Config
	files     map[string]fakeFile // absolute paths
	createdBy string
	author    string
}

// fakeEngine implements ImageBackend and ContainerBackend in memory. A
// RUN's effect is given by runHook: its output, exit code and the files
// it writes.
type fakeEngine struct {
	mu         sync.Mutex
	seq        int
	images     map[string]*fakeImage
	tags       map[string]string // "name:tag" -> ID
	pullable   map[string]*fakeImage
	containers map[string]*fakeContainer
	removed    []string
	created    []*container.Config
	hosts      []*container.HostConfig
	prepared   []string
	runHook    func(cfg *container.Config) (stdout string, exit int, writes map[string]fakeFile)
}

type fakeContainer struct {
	id     string
	cfg    *container.Config
	writes map[string]fakeFile
}

func newFakeEngine() *fakeEngine {
	f := &fakeEngine{images: map[string]*fakeImage{}, tags: map[string]string{}, pullable: map[string]*fakeImage{}, containers: map[string]*fakeContainer{}}
	busybox := &fakeImage{
		id:     "sha256:" + strings.Repeat("b", 64),
		config: &container.Config{Env: []string{"PATH=/usr/bin:/bin"}, Cmd: []string{"sh"}},
		files: map[string]fakeFile{
			"/bin":        {mode: fs.ModeDir | 0o755},
			"/bin/sh":     {mode: 0o755, content: "#!busybox"},
			"/etc":        {mode: fs.ModeDir | 0o755},
			"/etc/passwd": {mode: 0o644, content: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"},
			"/etc/group":  {mode: 0o644, content: "root:x:0:\napp:x:1002:\n"},
			"/tmp":        {mode: fs.ModeDir | 0o1777},
		},
	}
	f.pullable["busybox:latest"] = busybox
	return f
}

func normRef(ref string) string {
	ref = strings.TrimPrefix(ref, "docker.io/library/")
	if !strings.Contains(ref, ":") {
		ref += ":latest"
	}
	return ref
}

func (f *fakeEngine) GetImage(ctx context.Context, ref string) (*Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img := f.images[ref]
	if img == nil {
		img = f.images[f.tags[normRef(ref)]]
	}
	if img == nil {
		return nil, errdefs.NotFound(fmt.Errorf("No such image: %s", ref))
	}
	return &Image{ID: img.id, Config: cloneConfig(img.config), OS: "linux"}, nil
}

func (f *fakeEngine) PullImage(ctx context.Context, ref, platform string, auth *registry.AuthConfig, out io.Writer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	img := f.pullable[normRef(ref)]
	if img == nil {
		return errdefs.NotFound(fmt.Errorf("pull access denied for %s, repository does not exist or may require 'docker login'", ref))
	}
	fmt.Fprintf(out, "{\"status\":\"Pulled %s\"}\r\n", ref)
	f.images[img.id] = img
	f.tags[normRef(ref)] = img.id
	return nil
}

func (f *fakeEngine) newImage(parent string, cfg *container.Config, createdBy, author string) *fakeImage {
	f.seq++
	img := &fakeImage{id: fmt.Sprintf("sha256:%012x%052d", f.seq, 0), parent: parent, config: cloneConfig(cfg), files: map[string]fakeFile{}, createdBy: createdBy, author: author}
	if p := f.images[parent]; p != nil {
		for k, v := range p.files {
			img.files[k] = v
		}
	}
	f.images[img.id] = img
	return img
}

func (f *fakeEngine) CommitLayer(ctx context.Context, req LayerCommit) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Parent != "" && f.images[req.Parent] == nil {
		return "", errdefs.NotFound(errors.New("no parent " + req.Parent))
	}
	img := f.newImage(req.Parent, req.Config, req.CreatedBy, req.Author)
	if req.Layer != nil {
		tr := tar.NewReader(req.Layer)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return "", err
			}
			b, _ := io.ReadAll(tr)
			p := path.Clean("/" + h.Name)
			img.files[p] = fakeFile{mode: h.FileInfo().Mode(), uid: h.Uid, gid: h.Gid, content: string(b), link: h.Linkname}
		}
	}
	return img.id, nil
}

func (f *fakeEngine) UnpackImage(ctx context.Context, id, dir string) error {
	f.mu.Lock()
	img := f.images[id]
	f.mu.Unlock()
	if img == nil {
		return errdefs.NotFound(errors.New("no image " + id))
	}
	for p, ff := range img.files {
		target := filepath.Join(dir, p)
		switch {
		case ff.mode.IsDir():
			os.MkdirAll(target, ff.mode.Perm())
		case ff.mode&fs.ModeSymlink != 0:
			os.MkdirAll(filepath.Dir(target), 0o755)
			os.Symlink(ff.link, target)
		default:
			os.MkdirAll(filepath.Dir(target), 0o755)
			if err := os.WriteFile(target, []byte(ff.content), ff.mode.Perm()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fakeEngine) StatImagePaths(ctx context.Context, id string, paths []string) (map[string]fs.FileMode, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img := f.images[id]
	if img == nil {
		return nil, errdefs.NotFound(errors.New("no image " + id))
	}
	out := map[string]fs.FileMode{}
	for _, p := range paths {
		if ff, ok := img.files[path.Clean(p)]; ok {
			out[p] = ff.mode
		}
	}
	return out, nil
}

func (f *fakeEngine) ReadImageFile(ctx context.Context, id, p string, max int64) ([]byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img := f.images[id]
	if img == nil {
		return nil, false, errdefs.NotFound(errors.New("no image " + id))
	}
	ff, ok := img.files[p]
	return []byte(ff.content), ok, nil
}

func (f *fakeEngine) TagImage(ctx context.Context, id, repo, tag string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tags[repo+":"+tag] = id
	return nil
}

func (f *fakeEngine) PrepareImage(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prepared = append(f.prepared, id)
	return nil
}

func (f *fakeEngine) ContainerCreate(ctx context.Context, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig, _ *ocispec.Platform) (container.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.images[cfg.Image] == nil {
		return container.CreateResponse{}, errdefs.NotFound(errors.New("No such image: " + cfg.Image))
	}
	f.seq++
	id := fmt.Sprintf("c%011x%052d", f.seq, 0)
	f.containers[id] = &fakeContainer{id: id, cfg: cloneConfig(cfg)}
	f.created = append(f.created, cloneConfig(cfg))
	f.hosts = append(f.hosts, hostCfg)
	return container.CreateResponse{ID: id}, nil
}

func (f *fakeEngine) RunBuildContainer(ctx context.Context, id string, stdout, stderr io.Writer) (int, error) {
	f.mu.Lock()
	c := f.containers[id]
	hook := f.runHook
	f.mu.Unlock()
	if c == nil {
		return 0, errdefs.NotFound(errors.New("no container"))
	}
	if hook == nil {
		return 0, nil
	}
	out, exit, writes := hook(c.cfg)
	io.WriteString(stdout, out)
	f.mu.Lock()
	c.writes = writes
	f.mu.Unlock()
	return exit, nil
}

func (f *fakeEngine) CommitBuildContainer(ctx context.Context, id string, cfg *container.Config, createdBy string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	if c == nil {
		return "", errdefs.NotFound(errors.New("no container"))
	}
	img := f.newImage(c.cfg.Image, cfg, createdBy, "")
	for p, ff := range c.writes {
		img.files[p] = ff
	}
	return img.id, nil
}

func (f *fakeEngine) ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.containers[id] == nil {
		return errdefs.NotFound(errors.New("no container"))
	}
	delete(f.containers, id)
	f.removed = append(f.removed, id)
	return nil
}
