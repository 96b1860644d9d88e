package integration

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/registry"

	"github.com/jevm/jevm/integration/testenv"
)

// save from jevm, rmi, load back into jevm, run it; history of the loaded
// image as dockerd shows it.
func TestSaveLoadRunHistory(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "--name", name, "busybox", "sh", "-c", "echo saved-by-jevm > /marker")
	mustDocker(t, "commit", "-m", "the marker", name, "ioimg:1")
	mustDocker(t, "tag", "ioimg:1", "ioimg:2")
	mustDocker(t, "rm", name)
	id := strings.TrimSpace(mustDocker(t, "image", "inspect", "-f", "{{.ID}}", "ioimg:1"))
	t.Cleanup(func() { docker(t, "rmi", "-f", "ioimg:1", "ioimg:2") })

	tarball := filepath.Join(t.TempDir(), "ioimg.tar")
	mustDocker(t, "save", "-o", tarball, "ioimg")
	if st, err := os.Stat(tarball); err != nil || st.Size() < 1024 {
		t.Fatalf("saved tarball: %v", err)
	}
	mustDocker(t, "rmi", "ioimg:1", "ioimg:2")
	if r := docker(t, "image", "inspect", id); r.code == 0 {
		t.Fatal("the image is still there after rmi")
	}

	out := mustDocker(t, "load", "-i", tarball)
	if !strings.Contains(out, "Loaded image: ioimg:1") || !strings.Contains(out, "Loaded image: ioimg:2") {
		t.Fatalf("load output:\n%s", out)
	}
	if got := strings.TrimSpace(mustDocker(t, "image", "inspect", "-f", "{{.ID}}", "ioimg:2")); got != id {
		t.Fatalf("loaded image %s, saved %s", got, id)
	}
	if out := mustDocker(t, "run", "--rm", "ioimg:1", "cat", "/marker"); strings.TrimSpace(out) != "saved-by-jevm" {
		t.Fatalf("run of the loaded image printed %q", out)
	}

	// history: the top entry is the image, the rest <missing> (a loaded
	// image has no parent); the commit's comment and layer size show.
	lines := strings.Split(strings.TrimSpace(mustDocker(t, "history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}", "ioimg:1")), "\n")
	if len(lines) < 2 {
		t.Fatalf("history:\n%s", strings.Join(lines, "\n"))
	}
	top := strings.Split(lines[0], "|")
	if top[0] != id || !strings.Contains(top[1], "echo saved-by-jevm") || top[2] == "0B" || top[3] != "the marker" {
		t.Errorf("top history entry %q", lines[0])
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "<missing>|") {
			t.Errorf("lower history entry %q", l)
		}
	}
}

// The test-images tool's `docker save` tarball (dockerd 25+ layout with
// uncompressed layers) loads and runs.
func TestLoadTestImagesTarball(t *testing.T) {
	imgs, err := testenv.EnsureImages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Make the load do the work: no busybox left in the store.
	docker(t, "rmi", "-f", "busybox")
	out := mustDocker(t, "load", "-i", imgs.BusyboxTar)
	if !strings.Contains(out, "Loaded image: busybox:latest") {
		t.Fatalf("load output:\n%s", out)
	}
	if out := mustDocker(t, "run", "--rm", "busybox", "echo", "loaded"); strings.TrimSpace(out) != "loaded" {
		t.Fatalf("run printed %q", out)
	}
	// A cut tarball is an error and leaves no image.
	b, err := os.ReadFile(imgs.BusyboxTar)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.tar")
	if err := os.WriteFile(cut, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	before := mustDocker(t, "images", "-q", "--no-trunc")
	if r := docker(t, "load", "-i", cut); r.code == 0 || !strings.Contains(r.stderr, "invalid archive") {
		t.Fatalf("load of a cut tarball:\n%s", r)
	}
	if after := mustDocker(t, "images", "-q", "--no-trunc"); after != before {
		t.Errorf("images changed by a failed load:\n%s\n%s", before, after)
	}
}

// docker export of a container, docker import of the tar (from a file and
// from a URL the daemon fetches), run the result.
func TestImportExportedRootfs(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "create", "--name", name, "busybox", "true")
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs.tar")
	mustDocker(t, "export", "-o", rootfs, name)
	t.Cleanup(func() { docker(t, "rmi", "-f", "ioimport:1", "ioimport:url") })

	out := mustDocker(t, "import", "-c", `CMD ["/bin/sh", "-c", "echo imported $FOO"]`, "-c", "ENV FOO=bar", "-m", "from a test", rootfs, "ioimport:1")
	id := strings.TrimSpace(out)
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("import printed %q", out)
	}
	if got := strings.TrimSpace(mustDocker(t, "image", "inspect", "-f", "{{.ID}} {{.Comment}} {{.Os}}/{{.Architecture}} {{len .RootFS.Layers}}", "ioimport:1")); got != id+" from a test linux/amd64 1" {
		t.Errorf("inspect = %q", got)
	}
	if out := mustDocker(t, "run", "--rm", "ioimport:1"); strings.TrimSpace(out) != "imported bar" {
		t.Fatalf("run of the imported image printed %q", out)
	}
	hist := strings.TrimSpace(mustDocker(t, "history", "--no-trunc", "--format", "{{.ID}}|{{.Comment}}", "ioimport:1"))
	if hist != id+"|from a test" {
		t.Errorf("history = %q", hist)
	}

	// fromSrc=URL: the daemon downloads the tar.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	out = mustDocker(t, "import", "http://"+l.Addr().String()+"/rootfs.tar", "ioimport:url")
	if got := strings.TrimSpace(mustDocker(t, "image", "inspect", "-f", "{{.Comment}} {{len .RootFS.Layers}}", "ioimport:url")); got != "Imported from http://"+l.Addr().String()+"/rootfs.tar 1" {
		t.Errorf("URL import: %q (output %q)", got, out)
	}
	if r := docker(t, "import", "http://"+l.Addr().String()+"/nosuch.tar"); r.code == 0 || !strings.Contains(r.stderr, "404") {
		t.Errorf("import of a missing URL:\n%s", r)
	}
}

// GET /distribution/{name}/json against the test registry, directly and
// through the Docker Hub mirror.
func TestDistributionInspect(t *testing.T) {
	c := unixHTTPClient()
	for _, ref := range []string{"busybox", env.registry.Addr + "/library/busybox:latest"} {
		resp, err := c.Get("http://jevm/v1.47/distribution/" + ref + "/json")
		if err != nil {
			t.Fatal(err)
		}
		var di registry.DistributionInspect
		err = json.NewDecoder(resp.Body).Decode(&di)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || di.Descriptor.Digest == "" || di.Descriptor.Size == 0 || len(di.Platforms) == 0 || di.Platforms[0].OS != "linux" {
			t.Errorf("%s: %d %v %+v", ref, resp.StatusCode, err, di)
		}
	}
	resp, err := c.Get("http://jevm/v1.47/distribution/nosuchimage/json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("unknown image: %d", resp.StatusCode)
	}
}
