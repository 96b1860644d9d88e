package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/archive"
	"github.com/jevm/jevm/hack/testimages"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const acceptManifests = "application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.oci.image.index.v1+json, " +
	"application/vnd.docker.distribution.manifest.v2+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json"

// fetch GETs url and returns the response (body already read).
func fetch(t *testing.T, url, accept string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return resp, body
}

// pulled is an image read back from the registry.
type pulled struct {
	manifest ocispec.Manifest
	config   ocispec.Image
	layers   [][]byte // compressed blobs
}

// pull reads repo:latest through the registry API and checks every digest.
// With blobs false only the manifest and config are fetched.
func pull(t *testing.T, reg *Registry, repo string, want *Image, blobs bool) *pulled {
	t.Helper()
	resp, body := fetch(t, reg.URL("/v2/"+repo+"/manifests/latest"), acceptManifests)
	if ct := resp.Header.Get("Content-Type"); ct != ocispec.MediaTypeImageManifest {
		t.Errorf("%s: manifest Content-Type %q", repo, ct)
	}
	got := digest.FromBytes(body)
	if got != want.Manifest.Digest || resp.Header.Get("Docker-Content-Digest") != want.Manifest.Digest.String() {
		t.Fatalf("%s: manifest digest %s (header %s), want %s", repo, got, resp.Header.Get("Docker-Content-Digest"), want.Manifest.Digest)
	}
	p := &pulled{}
	if err := json.Unmarshal(body, &p.manifest); err != nil {
		t.Fatal(err)
	}
	if p.manifest.SchemaVersion != 2 || p.manifest.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("%s: manifest schemaVersion %d mediaType %q", repo, p.manifest.SchemaVersion, p.manifest.MediaType)
	}
	blob := func(d ocispec.Descriptor) []byte {
		_, data := fetch(t, reg.URL("/v2/"+repo+"/blobs/"+d.Digest.String()), "")
		if digest.FromBytes(data) != d.Digest || int64(len(data)) != d.Size {
			t.Fatalf("%s: blob %s: got %d bytes with digest %s", repo, d.Digest, len(data), digest.FromBytes(data))
		}
		return data
	}
	if p.manifest.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("%s: config mediaType %q", repo, p.manifest.Config.MediaType)
	}
	if err := json.Unmarshal(blob(p.manifest.Config), &p.config); err != nil {
		t.Fatal(err)
	}
	if len(p.config.RootFS.DiffIDs) != len(p.manifest.Layers) {
		t.Fatalf("%s: %d diff_ids for %d layers", repo, len(p.config.RootFS.DiffIDs), len(p.manifest.Layers))
	}
	if !blobs {
		return p
	}
	for i, l := range p.manifest.Layers {
		if l.MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("%s: layer %d mediaType %q", repo, i, l.MediaType)
		}
		data := blob(l)
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		dg := digest.SHA256.Digester()
		if _, err := io.Copy(dg.Hash(), zr); err != nil {
			t.Fatal(err)
		}
		if dg.Digest() != p.config.RootFS.DiffIDs[i] {
			t.Errorf("%s: layer %d uncompressed digest %s, diff_id %s", repo, i, dg.Digest(), p.config.RootFS.DiffIDs[i])
		}
		p.layers = append(p.layers, data)
	}
	return p
}

type wantConfig struct {
	layers     int
	entrypoint []string
	cmd        []string
	user       string
	workdir    string
	ports      []string
	volumes    []string
}

var wantConfigs = map[string]wantConfig{
	Busybox: {layers: 1, cmd: []string{"sh"}},
	Web:     {layers: 2, cmd: []string{"httpd", "-f", "-v", "-p", "80", "-h", "/www"}, workdir: "/www", ports: []string{"80/tcp"}},
	Layers:  {layers: 3, cmd: []string{"sh"}, user: "nobody", workdir: "/data", volumes: []string{"/vol"}},
	Debian:  {layers: 1, cmd: []string{"bash"}},
	Redis: {layers: 2, entrypoint: []string{"redis-server"}, cmd: []string{"--protected-mode", "no", "--dir", "/data"},
		user: "redis", workdir: "/data", ports: []string{"6379/tcp"}, volumes: []string{"/data"}},
}

func keys(m map[string]struct{}) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func checkConfig(t *testing.T, name string, p *pulled) {
	t.Helper()
	w := wantConfigs[name]
	c := p.config
	if len(p.manifest.Layers) != w.layers {
		t.Errorf("%s: %d layers, want %d", name, len(p.manifest.Layers), w.layers)
	}
	if c.OS != "linux" || c.Architecture == "" || c.Created == nil {
		t.Errorf("%s: os %q arch %q created %v", name, c.OS, c.Architecture, c.Created)
	}
	if !reflect.DeepEqual(c.Config.Cmd, w.cmd) || !reflect.DeepEqual(c.Config.Entrypoint, w.entrypoint) {
		t.Errorf("%s: entrypoint %q cmd %q, want %q %q", name, c.Config.Entrypoint, c.Config.Cmd, w.entrypoint, w.cmd)
	}
	if c.Config.User != w.user || c.Config.WorkingDir != w.workdir {
		t.Errorf("%s: user %q workdir %q, want %q %q", name, c.Config.User, c.Config.WorkingDir, w.user, w.workdir)
	}
	if got := keys(c.Config.ExposedPorts); !reflect.DeepEqual(got, w.ports) {
		t.Errorf("%s: exposed ports %q, want %q", name, got, w.ports)
	}
	if got := keys(c.Config.Volumes); !reflect.DeepEqual(got, w.volumes) {
		t.Errorf("%s: volumes %q, want %q", name, got, w.volumes)
	}
	if len(c.Config.Env) == 0 || c.Config.Env[0] != testimages.DefaultPath {
		t.Errorf("%s: env %q", name, c.Config.Env)
	}
	if c.Config.Labels["dev.jevm.testimage"] != name {
		t.Errorf("%s: labels %v", name, c.Config.Labels)
	}
	nonEmpty := 0
	for _, h := range c.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty != w.layers {
		t.Errorf("%s: %d non-empty history entries for %d layers", name, nonEmpty, w.layers)
	}
}

func TestRegistry(t *testing.T) {
	start := time.Now()
	reg, imgs := Setup(t)
	t.Logf("images + registry %s + push of %d images x2 repos: %s", reg.Addr, len(imgs.List), time.Since(start).Round(time.Millisecond))
	if len(imgs.List) != len(ImageNames) {
		t.Fatalf("got %d images, want %d", len(imgs.List), len(ImageNames))
	}

	for _, name := range ImageNames {
		img := imgs.Get(name)
		t.Run("pull/"+name, func(t *testing.T) {
			p := pull(t, reg, name, img, true)
			checkConfig(t, name, p)
			// The Docker Hub mirror name serves the same manifest.
			pull(t, reg, "library/"+name, img, false)
		})
	}

	t.Run("catalog", func(t *testing.T) {
		_, body := fetch(t, reg.URL("/v2/_catalog"), "")
		var cat struct{ Repositories []string }
		if err := json.Unmarshal(body, &cat); err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, r := range cat.Repositories {
			have[r] = true
		}
		for _, name := range ImageNames {
			for _, repo := range testimages.Repositories(name) {
				if !have[repo] {
					t.Errorf("catalog %v lacks %s", cat.Repositories, repo)
				}
			}
		}
	})

	t.Run("layers-unpack", func(t *testing.T) {
		p := pull(t, reg, Layers, imgs.Get(Layers), true)
		root := t.TempDir()
		for i, l := range p.layers {
			zr, err := gzip.NewReader(bytes.NewReader(l))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := archive.Apply(context.Background(), root, zr); err != nil {
				t.Fatalf("apply layer %d: %v", i, err)
			}
		}
		for p, content := range map[string]string{
			"data/keep": testimages.LayersKeepContent,
			"opq/new":   testimages.LayersNewContent,
			"vol/seed":  "seed\n",
		} {
			data, err := os.ReadFile(filepath.Join(root, p))
			if err != nil || string(data) != content {
				t.Errorf("/%s: %q, %v; want %q", p, data, err, content)
			}
		}
		for _, p := range []string{"data/gone", "opq/old1", "opq/sub", "data/.wh.gone", "opq/.wh..wh..opq"} {
			if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("/%s should not exist (err %v)", p, err)
			}
		}
		if fi, err := os.Lstat(filepath.Join(root, "bin/sh")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("/bin/sh from the busybox layer: %v %v", fi, err)
		}
		if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
			t.Errorf("/tmp should be 1777: %v %v", fi, err)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(root, "vol/seed"), &st); err != nil || st.Uid != 65534 {
			t.Errorf("/vol/seed should be owned by 65534: uid %d %v", st.Uid, err)
		}
	})

	t.Run("stop", func(t *testing.T) {
		pid := reg.Pid()
		if err := reg.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("registry pid %d still exists after Stop (kill 0: %v)", pid, err)
		}
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("registry process group %d still has members (kill 0: %v)", pid, err)
		}
		client := http.Client{Timeout: time.Second}
		if resp, err := client.Get(reg.URL("/v2/")); err == nil {
			resp.Body.Close()
			t.Errorf("registry still answers after Stop")
		}
		reg.Stop() // idempotent
	})
}

func TestBusyboxSaveTarball(t *testing.T) {
	if err := CheckTools(); err != nil {
		t.Skip(err)
	}
	imgs, err := EnsureImages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bb := imgs.Get(Busybox)
	f, err := os.Open(imgs.BusyboxTar)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = data
		}
	}
	for _, n := range []string{"manifest.json", "repositories", "index.json", "oci-layout"} {
		if files[n] == nil {
			t.Errorf("tarball lacks %s", n)
		}
	}
	var m []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 {
		t.Fatalf("manifest.json: %v %s", err, files["manifest.json"])
	}
	if !reflect.DeepEqual(m[0].RepoTags, []string{"busybox:latest"}) {
		t.Errorf("RepoTags %q", m[0].RepoTags)
	}
	cfg := files[m[0].Config]
	if digest.FromBytes(cfg) != bb.ConfigDesc.Digest {
		t.Errorf("config %s does not match the image config %s", m[0].Config, bb.ConfigDesc.Digest)
	}
	if len(m[0].Layers) != len(bb.DiffIDs) {
		t.Fatalf("%d layers, want %d", len(m[0].Layers), len(bb.DiffIDs))
	}
	for i, l := range m[0].Layers {
		if digest.FromBytes(files[l]) != bb.DiffIDs[i] || !strings.HasSuffix(l, bb.DiffIDs[i].Encoded()) {
			t.Errorf("layer %s does not match diff_id %s", l, bb.DiffIDs[i])
		}
	}
	var repos map[string]map[string]string
	if err := json.Unmarshal(files["repositories"], &repos); err != nil || repos["busybox"]["latest"] == "" {
		t.Errorf("repositories: %v %s", err, files["repositories"])
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, files["index.json"])
	}
	var om ocispec.Manifest
	if err := json.Unmarshal(files["blobs/sha256/"+idx.Manifests[0].Digest.Encoded()], &om); err != nil {
		t.Fatal(err)
	}
	if om.Config.Digest != bb.ConfigDesc.Digest || len(om.Layers) != 1 || om.Layers[0].Digest != bb.DiffIDs[0] {
		t.Errorf("OCI manifest in the tarball: %+v", om)
	}
}
