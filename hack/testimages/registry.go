package testimages

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
)

// RegistryBinary is Debian's build of the CNCF distribution registry
// (package docker-registry).
const RegistryBinary = "/usr/bin/docker-registry"

// Tag is the tag every image is pushed under.
const Tag = "latest"

// Repositories returns the repositories an image is pushed to: NAME (pull
// as localhost:PORT/NAME) and library/NAME (so the registry can serve as a
// Docker Hub mirror for a plain "NAME").
func Repositories(name string) []string { return []string{name, "library/" + name} }

// Registry is a docker-registry process serving from a directory.
type Registry struct {
	Addr string // host:port, 127.0.0.1:PORT unless another address was asked for
	Dir  string // holds config.yml, registry.log and storage/ (and htpasswd)
	// Users are the accounts of a registry started with
	// StartRegistryWithAuth (user name -> password); nil without auth.
	Users map[string]string

	cmd      *exec.Cmd
	exited   chan struct{}
	stopOnce sync.Once
}

// registryConfig is written instead of Debian's /etc/docker/registry/config.yml,
// which turns on htpasswd authentication.
const registryConfig = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
  fields:
    service: jevm-test-registry
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  headers:
    X-Content-Type-Options: [nosniff]
`

// registryAuthConfig is appended to registryConfig for a registry with
// accounts: the htpasswd file's path.
const registryAuthConfig = `auth:
  htpasswd:
    realm: jevm-test-registry
    path: %s
`

// writeHtpasswd writes an htpasswd file with bcrypt hashes, the only kind
// docker-registry accepts.
func writeHtpasswd(path string, users map[string]string) error {
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, u := range names {
		h, err := bcrypt.GenerateFromPassword([]byte(users[u]), bcrypt.MinCost)
		if err != nil {
			return fmt.Errorf("testimages: htpasswd for %s: %w", u, err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// StartRegistry starts docker-registry with its storage under dir,
// listening on addr, or on a free 127.0.0.1 port if addr is empty, without
// authentication and with deletes enabled. It returns once GET /v2/
// answers. ctx bounds the start only; the registry runs until Stop.
func StartRegistry(ctx context.Context, dir, addr string) (*Registry, error) {
	return StartRegistryWithAuth(ctx, dir, addr, nil)
}

// StartRegistryWithAuth is StartRegistry with htpasswd (HTTP basic)
// authentication for users (name -> password) when users is not empty:
// docker-registry then answers 401 to every request without valid
// credentials, as Debian's packaged configuration does.
func StartRegistryWithAuth(ctx context.Context, dir, addr string, users map[string]string) (*Registry, error) {
	if _, err := os.Stat(RegistryBinary); err != nil {
		return nil, fmt.Errorf("testimages: %s not found (apt-get install docker-registry): %w", RegistryBinary, err)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		a := addr
		if a == "" {
			if a, err = freeAddr(); err != nil {
				return nil, err
			}
		}
		r, err := startRegistry(ctx, dir, a, users)
		if err == nil {
			return r, nil
		}
		lastErr = err
		if addr != "" || ctx.Err() != nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startRegistry(ctx context.Context, dir, addr string, users map[string]string) (*Registry, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("testimages: registry address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("testimages: registry address %q: %w", addr, err)
	}
	cfg := filepath.Join(dir, "config.yml")
	config := fmt.Sprintf(registryConfig, filepath.Join(dir, "storage"), addr)
	if len(users) > 0 {
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := writeHtpasswd(htpasswd, users); err != nil {
			return nil, err
		}
		config += fmt.Sprintf(registryAuthConfig, htpasswd)
	}
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(RegistryBinary, "serve", cfg)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group, so Stop can kill everything it started; killed
	// too if this process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &Registry{Addr: addr, Dir: dir, Users: users, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(r.exited)
	}()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-r.exited:
			return nil, fmt.Errorf("testimages: docker-registry exited during start: %s", readTail(logPath))
		default:
		}
		// Only trust an answer once our process holds the listening socket
		// (someone else may be on the port).
		if listening(cmd.Process.Pid, port) {
			if resp, err := client.Get("http://" + addr + "/v2/"); err == nil {
				resp.Body.Close()
				ready := resp.StatusCode == http.StatusOK || (len(users) > 0 && resp.StatusCode == http.StatusUnauthorized)
				if ready && resp.Header.Get("Docker-Distribution-Api-Version") != "" {
					return r, nil
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.Stop()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("testimages: docker-registry on %s did not answer GET /v2/: %s", addr, readTail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listening reports whether process pid has a TCP socket listening on
// port, from /proc/PID/fd and /proc/net/tcp{,6}.
func listening(pid, port int) bool {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	wantPort := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fs := strings.Fields(line)
			// sl local_address rem_address st ... inode (field 9)
			if len(fs) > 9 && fs[3] == "0A" && strings.HasSuffix(fs[1], wantPort) && inodes[fs[9]] {
				return true
			}
		}
	}
	return false
}

func readTail(p string) string {
	data, _ := os.ReadFile(p)
	return strings.TrimSpace(tail(data, 2000))
}

// Pid returns the registry's process id.
func (r *Registry) Pid() int { return r.cmd.Process.Pid }

// Done is closed when the registry process has exited.
func (r *Registry) Done() <-chan struct{} { return r.exited }

// URL returns "http://ADDR" + path.
func (r *Registry) URL(path string) string { return "http://" + r.Addr + path }

// Ref returns the reference of image name in this registry,
// "ADDR/NAME:latest".
func (r *Registry) Ref(name string) string { return r.Addr + "/" + name + ":" + Tag }

// Stop terminates the registry's process group (SIGTERM, then SIGKILL
// after 5s) and waits for it. It is safe to call more than once.
func (r *Registry) Stop() error {
	r.stopOnce.Do(func() {
		pgid := r.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-r.exited
		}
		// Anything else left in the group (there should be nothing).
		syscall.Kill(-pgid, syscall.SIGKILL)
	})
	return nil
}

// PushAll pushes every image to the registry under all its Repositories.
func (r *Registry) PushAll(ctx context.Context, imgs *Images) error {
	return PushAll(ctx, r.Addr, imgs)
}

// PushAll pushes every image to the registry at addr (plain HTTP) under
// all its Repositories, tag latest.
func PushAll(ctx context.Context, addr string, imgs *Images) error {
	for _, img := range imgs.List {
		repos := Repositories(img.Name)
		for i, repo := range repos {
			if i > 0 {
				// Cross-repository mounts save uploading the blobs again;
				// the pusher then finds them present.
				mountBlobs(ctx, addr, repos[0], repo, img)
			}
			if err := Push(ctx, addr, img, repo); err != nil {
				return err
			}
		}
	}
	return nil
}

// mountBlobs asks the registry to mount img's config and layers from
// repository from into repository to. Failures are ignored: the push then
// uploads the blobs.
func mountBlobs(ctx context.Context, addr, from, to string, img *Image) {
	client := &http.Client{Timeout: 30 * time.Second}
	for _, d := range append([]ocispec.Descriptor{img.ConfigDesc}, img.Layers...) {
		u := fmt.Sprintf("http://%s/v2/%s/blobs/uploads/?mount=%s&from=%s", addr, to, d.Digest, from)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
		if err != nil {
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			return
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			// Not mounted: an upload session was opened instead; cancel it.
			if loc := resp.Header.Get("Location"); loc != "" {
				if !strings.HasPrefix(loc, "http") {
					loc = "http://" + addr + loc
				}
				if req, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc, nil); err == nil {
					if resp, err := client.Do(req); err == nil {
						resp.Body.Close()
					}
				}
			}
		}
	}
}

// Push uploads img to addr/repo:latest with containerd's docker pusher:
// blobs first (skipped when the registry has them), then the manifest.
func Push(ctx context.Context, addr string, img *Image, repo string) error {
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(
			docker.WithPlainHTTP(docker.MatchAllHosts),
			docker.WithClient(&http.Client{Timeout: 5 * time.Minute}),
		),
	})
	ref := addr + "/" + repo + ":" + Tag
	pusher, err := resolver.Pusher(ctx, ref)
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	err = remotes.PushContent(ctx, pusher, img.Manifest, layoutProvider{img}, nil, platforms.All, nil)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return err
}
