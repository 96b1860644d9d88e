package imagestore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
)

// startRegistry runs the distribution registry (Debian's docker-registry) on
// a free loopback port for the duration of the test and returns host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	return startRegistryConfig(t, "", nil)
}

// startRegistryConfig is startRegistry with extra configuration (written
// after the rest; files go to the registry's directory, whose path
// replaces %DIR%) and, when auth is set, 401 accepted as the answer of a
// registry that is up.
func startRegistryConfig(t *testing.T, extra string, files map[string][]byte) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("docker-registry not installed")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr) + strings.ReplaceAll(extra, "%DIR%", dir)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Dies with the test binary, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || (extra != "" && resp.StatusCode == http.StatusUnauthorized) {
				return addr
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("registry did not come up: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// push uploads img to the registry as repo:tag with plain HTTP requests.
func push(t *testing.T, host, repo, tag string, img *testImage) {
	t.Helper()
	base := "http://" + host + "/v2/" + repo
	for d, b := range img.blobs() {
		resp, err := http.Post(base+"/blobs/uploads/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start upload: %s", resp.Status)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		if !loc.IsAbs() {
			loc, _ = url.Parse("http://" + host + loc.String())
		}
		q := loc.Query()
		q.Set("digest", d.String())
		loc.RawQuery = q.Encode()
		req, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("upload %s: %s %s", d, resp.Status, body)
		}
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/manifests/"+tag, bytes.NewReader(img.manifest))
	req.Header.Set("Content-Type", img.manifestDesc.MediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest: %s %s", resp.Status, body)
	}
	if got := digest.Digest(resp.Header.Get("Docker-Content-Digest")); got != img.manifestDesc.Digest {
		t.Fatalf("registry digest %s, want %s", got, img.manifestDesc.Digest)
	}
}

func TestRealRegistryPullAndMirror(t *testing.T) {
	findToolT(t, "mke2fs")
	host := startRegistry(t)
	ctx := context.Background()

	l1 := makeLayer(t, dir("bin/", 0o755), file("bin/hello", strings.Repeat("hello\n", 100000)), symlink("bin/sh", "hello"))
	l2 := makeLayer(t, dir("etc/", 0o755), file("etc/motd", "jevm\n"))
	img := makeImage(t, []string{"/bin/hello"}, map[string]string{"org.test": "1"}, l1, l2)
	push(t, host, "test/app", "v1", img)
	push(t, host, "library/busybox", "latest", img)

	s := newTestStore(t, "")
	ref := host + "/test/app:v1"
	var out bytes.Buffer
	start := time.Now()
	got, err := s.Pull(ctx, ref, "", &out)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, out.String())
	}
	t.Logf("first pull took %v; progress:\n%s", time.Since(start), out.String())
	for _, want := range []string{`"Pulling from test/app"`, "Pulling fs layer", "Downloading", "Download complete", "Extracting", "Pull complete",
		"Digest: " + img.manifestDesc.Digest.String(), "Status: Downloaded newer image for " + ref} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, out.String())
		}
	}
	if got.ID != img.configDesc.Digest {
		t.Errorf("ID %s, want %s", got.ID, img.configDesc.Digest)
	}

	out.Reset()
	start = time.Now()
	if _, err := s.Pull(ctx, ref, "", &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("second pull took %v; progress:\n%s", time.Since(start), out.String())
	if !strings.Contains(out.String(), "Status: Image is up to date for "+ref) || strings.Contains(out.String(), "Downloading") {
		t.Errorf("second pull:\n%s", out.String())
	}

	disk, err := s.BaseDisk(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(disk); err != nil || fi.Size() != s.DiskSize() {
		t.Fatalf("base disk %s: %v %v", disk, fi, err)
	}

	_, err = s.Pull(ctx, host+"/test/app:nope", "", io.Discard)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "manifest for "+host+"/test/app:nope not found") {
		t.Errorf("missing tag: %v", err)
	}
	t.Logf("missing tag: %v", err)
	_, err = s.Pull(ctx, host+"/no/such", "", io.Discard)
	t.Logf("missing repo: %v", err)
	if !errdefs.IsNotFound(err) {
		t.Errorf("missing repo: %v", err)
	}

	// Docker Hub through the mirror.
	m := newTestStore(t, "", func(o *Options) { o.Mirrors = []string{"http://" + host} })
	out.Reset()
	bb, err := m.Pull(ctx, "busybox", "", &out)
	if err != nil {
		t.Fatalf("mirror pull: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `"Pulling from library/busybox","id":"latest"`) ||
		!strings.Contains(out.String(), "Status: Downloaded newer image for busybox:latest") {
		t.Errorf("mirror pull output:\n%s", out.String())
	}
	if len(bb.RepoTags) != 1 || bb.RepoTags[0] != "busybox:latest" || bb.RepoDigests[0] != "busybox@"+img.manifestDesc.Digest.String() {
		t.Errorf("mirror image: tags %v digests %v", bb.RepoTags, bb.RepoDigests)
	}
	if img, err := m.Get("docker.io/library/busybox:latest"); err != nil || img.ID != bb.ID {
		t.Errorf("Get by full name: %v", err)
	}
}
