package imagestore

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/images"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// entry is one tar entry of a test layer.
type entry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
	link     string
	major    int64
	minor    int64
	xattrs   map[string]string
}

func dir(name string, mode int64) entry { return entry{name: name, typ: tar.TypeDir, mode: mode} }
func file(name, body string) entry {
	return entry{name: name, typ: tar.TypeReg, mode: 0o644, body: body}
}
func symlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}
func whiteout(dirName, name string) entry {
	return file(strings.TrimSuffix(dirName, "/")+"/.wh."+name, "")
}

// testLayer is a gzip-compressed layer tar.
type testLayer struct {
	blob   []byte
	desc   ocispec.Descriptor
	diffID digest.Digest
}

func makeLayer(t testing.TB, entries ...entry) testLayer {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			Linkname: e.link,
			ModTime:  mtime,
			Devmajor: e.major,
			Devminor: e.minor,
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if len(e.xattrs) > 0 {
			hdr.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				hdr.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	return testLayer{
		blob:   gz.Bytes(),
		diffID: digest.FromBytes(raw.Bytes()),
		desc: ocispec.Descriptor{
			MediaType: images.MediaTypeDockerSchema2LayerGzip,
			Digest:    digest.FromBytes(gz.Bytes()),
			Size:      int64(gz.Len()),
		},
	}
}

// testImage is an image made of blobs, ready to serve or push.
type testImage struct {
	layers       []testLayer
	config       []byte
	configDesc   ocispec.Descriptor
	manifest     []byte
	manifestDesc ocispec.Descriptor
}

func makeImage(t testing.TB, cmd []string, labels map[string]string, layers ...testLayer) *testImage {
	t.Helper()
	created := time.Now().UTC().Truncate(time.Second)
	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      created.Format(time.RFC3339Nano),
		"config": map[string]any{
			"Env":          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "FOO=bar"},
			"Cmd":          cmd,
			"WorkingDir":   "/home/user",
			"User":         "1000:1000",
			"Labels":       labels,
			"ExposedPorts": map[string]any{"8080/tcp": map[string]any{}},
			"Volumes":      map[string]any{"/data": map[string]any{}},
			"StopSignal":   "SIGINT",
			"Healthcheck":  map[string]any{"Test": []string{"CMD", "true"}, "Interval": int64(time.Second)},
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": diffIDs(layers)},
		"history": []map[string]any{{"created_by": "test", "comment": "made by the test"}},
	}
	cb, _ := json.Marshal(cfg)
	img := &testImage{layers: layers, config: cb}
	img.configDesc = ocispec.Descriptor{MediaType: mediaTypeDockerConfig, Digest: digest.FromBytes(cb), Size: int64(len(cb))}
	var lds []ocispec.Descriptor
	for _, l := range layers {
		lds = append(lds, l.desc)
	}
	man := map[string]any{
		"schemaVersion": 2,
		"mediaType":     images.MediaTypeDockerSchema2Manifest,
		"config":        img.configDesc,
		"layers":        lds,
	}
	img.manifest, _ = json.Marshal(man)
	img.manifestDesc = ocispec.Descriptor{MediaType: images.MediaTypeDockerSchema2Manifest, Digest: digest.FromBytes(img.manifest), Size: int64(len(img.manifest))}
	return img
}

func diffIDs(ls []testLayer) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.diffID.String())
	}
	return out
}

func (img *testImage) blobs() map[digest.Digest][]byte {
	m := map[digest.Digest][]byte{img.configDesc.Digest: img.config}
	for _, l := range img.layers {
		m[l.desc.Digest] = l.blob
	}
	return m
}

// fakeRegistry is a minimal in-process registry (pull side only).
type fakeRegistry struct {
	*httptest.Server
	mu          sync.Mutex
	manifests   map[string]map[string][]byte // repo -> tag or digest -> body
	mtypes      map[digest.Digest]string
	blobs       map[digest.Digest][]byte
	blobGets    map[digest.Digest]int
	requireAuth bool
}

var pathRe = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs)/([^/]+)$`)

func newFakeRegistry(t testing.TB) *fakeRegistry {
	r := &fakeRegistry{
		manifests: map[string]map[string][]byte{},
		mtypes:    map[digest.Digest]string{},
		blobs:     map[digest.Digest][]byte{},
		blobGets:  map[digest.Digest]int{},
	}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *fakeRegistry) host() string { return strings.TrimPrefix(r.URL, "http://") }

func (r *fakeRegistry) add(repo, tag string, img *testImage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.manifests[repo] == nil {
		r.manifests[repo] = map[string][]byte{}
	}
	r.manifests[repo][tag] = img.manifest
	r.manifests[repo][img.manifestDesc.Digest.String()] = img.manifest
	r.mtypes[img.manifestDesc.Digest] = img.manifestDesc.MediaType
	for d, b := range img.blobs() {
		r.blobs[d] = b
	}
}

func (r *fakeRegistry) gets(d digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[d]
}

func (r *fakeRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.requireAuth {
		w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	if req.URL.Path == "/v2/" {
		w.WriteHeader(http.StatusOK)
		return
	}
	m := pathRe.FindStringSubmatch(req.URL.Path)
	if m == nil {
		http.NotFound(w, req)
		return
	}
	repo, kind, ref := m[1], m[2], m[3]
	var body []byte
	var mt string
	switch kind {
	case "manifests":
		body = r.manifests[repo][ref]
		if body != nil {
			mt = r.mtypes[digest.FromBytes(body)]
		}
	case "blobs":
		body = r.blobs[digest.Digest(ref)]
		mt = "application/octet-stream"
		if body != nil && req.Method == http.MethodGet {
			r.blobGets[digest.Digest(ref)]++
		}
	}
	if body == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`)
		return
	}
	w.Header().Set("Content-Type", mt)
	w.Header().Set("Docker-Content-Digest", digest.FromBytes(body).String())
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if req.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

// newTestStore makes a store with small base disks.
func newTestStore(t testing.TB, root string, opts ...func(*Options)) *Store {
	t.Helper()
	if root == "" {
		root = t.TempDir()
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	o := Options{Root: root, DiskSize: 64 << 20, Logger: log}
	for _, f := range opts {
		f(&o)
	}
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// parseProgress decodes the JSON lines a pull wrote.
func parseProgress(t testing.TB, b []byte) []jsonmessage.JSONMessage {
	t.Helper()
	var out []jsonmessage.JSONMessage
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var m jsonmessage.JSONMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad progress line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// statuses returns the statuses per id, consecutive duplicates collapsed.
func statuses(msgs []jsonmessage.JSONMessage) map[string][]string {
	out := map[string][]string{}
	for _, m := range msgs {
		l := out[m.ID]
		if len(l) > 0 && l[len(l)-1] == m.Status {
			continue
		}
		out[m.ID] = append(l, m.Status)
	}
	return out
}

// putBlobs writes blobs straight into the store's content store.
func putBlobs(t testing.TB, s *Store, img *testImage) {
	t.Helper()
	ctx := context.Background()
	write := func(desc ocispec.Descriptor, b []byte) {
		if err := content.WriteBlob(ctx, s.cs, "test-"+desc.Digest.String(), bytes.NewReader(b), desc); err != nil {
			t.Fatal(err)
		}
	}
	write(img.manifestDesc, img.manifest)
	write(img.configDesc, img.config)
	for _, l := range img.layers {
		write(l.desc, l.blob)
	}
}

// debugfs runs a debugfs request against an ext4 image.
func debugfs(t testing.TB, disk, req string) string {
	t.Helper()
	out, err := exec.Command(findToolT(t, "debugfs"), "-R", req, disk).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %q: %v: %s", req, err, out)
	}
	return string(out)
}

func findToolT(t testing.TB, name string) string {
	t.Helper()
	p, err := findTool(name)
	if err != nil {
		t.Skip(err)
	}
	return p
}
