package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jevm/jevm/integration/testenv"
)

var pushDigestRe = regexp.MustCompile(`(?m)^(\S+): digest: (sha256:[0-9a-f]{64}) size: \d+$`)

// pushedDigest returns the digest "docker push" printed for tag.
func pushedDigest(t *testing.T, out, tag string) string {
	t.Helper()
	for _, m := range pushDigestRe.FindAllStringSubmatch(out, -1) {
		if m[1] == tag {
			return m[2]
		}
	}
	t.Fatalf("push output has no digest line for %s:\n%s", tag, out)
	return ""
}

func repoDigest0(t *testing.T, ref string) string {
	t.Helper()
	return strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{index .RepoDigests 0}}", ref))
}

// A pulled image pushed to another repository of the local registry: the
// CLI shows dockerd's progress, RepoDigests gain repo@digest, and after
// rmi a pull of that tag gets the same digest back.
func TestPushThenPullBackSameDigest(t *testing.T) {
	mustDocker(t, "pull", "busybox")
	repo := env.registry.Addr + "/jevm-push/busybox"
	ref := repo + ":1"
	mustDocker(t, "tag", "busybox", ref)
	t.Cleanup(func() { docker(t, "rmi", ref) })

	out := mustDocker(t, "push", ref)
	t.Logf("docker push %s:\n%s", ref, out)
	for _, want := range []string{"The push refers to repository [" + repo + "]", "Preparing", "Pushed"} {
		if !strings.Contains(out, want) {
			t.Errorf("push output lacks %q:\n%s", want, out)
		}
	}
	dgst := pushedDigest(t, out, "1")
	if got := repoDigest0(t, ref); got != repo+"@"+dgst {
		t.Errorf("RepoDigests[0] = %q, want %s@%s", got, repo, dgst)
	}
	// --platform: the image's own works, another is refused up front.
	if out := mustDocker(t, "push", "--platform", "linux/amd64", ref); pushedDigest(t, out, "1") != dgst {
		t.Errorf("push --platform linux/amd64:\n%s", out)
	}
	r := docker(t, "push", "--platform", "linux/arm64", ref)
	if r.code == 0 || !strings.Contains(r.stderr, "does not match the specified platform (linux/arm64)") {
		t.Errorf("push --platform linux/arm64:\n%s", r)
	}
	// A second push finds everything there.
	if out := mustDocker(t, "push", ref); !strings.Contains(out, "Layer already exists") || pushedDigest(t, out, "1") != dgst {
		t.Errorf("second push:\n%s", out)
	}

	id := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.Id}}", ref))
	mustDocker(t, "rmi", ref)
	if r := docker(t, "inspect", ref); r.code == 0 {
		t.Fatalf("%s still there after rmi", ref)
	}
	out = mustDocker(t, "pull", ref)
	if !strings.Contains(out, "Digest: "+dgst) {
		t.Errorf("pull back:\n%s", out)
	}
	if got := repoDigest0(t, ref); got != repo+"@"+dgst {
		t.Errorf("after pull, RepoDigests[0] = %q, want %s@%s", got, repo, dgst)
	}
	if got := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.Id}}", ref)); got != id {
		t.Errorf("pulled back %s, pushed %s", got, id)
	}

	// dockerd's in-stream errors for what is not there.
	r = docker(t, "push", env.registry.Addr+"/jevm-push/nothing:1")
	if r.code == 0 || !strings.Contains(r.stderr+r.stdout, "An image does not exist locally with the tag: "+env.registry.Addr+"/jevm-push/nothing") {
		t.Errorf("push of an unknown image:\n%s", r)
	}
	r = docker(t, "push", repo+":nosuchtag")
	if r.code == 0 || !strings.Contains(r.stderr+r.stdout, "tag does not exist: "+repo+":nosuchtag") {
		t.Errorf("push of an unknown tag:\n%s", r)
	}
}

// An image made by docker commit is pushed (its new layer uploaded, the
// parent's found), deleted entirely and pulled back with the same ID, and
// a container of it sees the committed file.
func TestPushCommittedImage(t *testing.T) {
	mustDocker(t, "pull", "busybox")
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "--name", name, "busybox", "sh", "-c", "echo committed > /pushed.txt")
	ref := env.registry.Addr + "/jevm-push/committed:" + strings.ToLower(name)
	id := strings.TrimSpace(mustDocker(t, "commit", name, ref))
	t.Cleanup(func() { docker(t, "rmi", "-f", ref) })

	out := mustDocker(t, "push", ref)
	tag := ref[strings.LastIndex(ref, ":")+1:]
	dgst := pushedDigest(t, out, tag)
	if !strings.Contains(out, "Pushed") {
		t.Errorf("the committed layer was not pushed:\n%s", out)
	}
	mustDocker(t, "rm", name)
	if out := mustDocker(t, "rmi", ref); !strings.Contains(out, "Deleted: "+id) {
		t.Fatalf("rmi did not delete the image:\n%s", out)
	}
	out = mustDocker(t, "pull", ref)
	if !strings.Contains(out, "Digest: "+dgst) || !strings.Contains(out, "Pull complete") {
		t.Errorf("pull back:\n%s", out)
	}
	if got := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.Id}}", ref)); got != id {
		t.Errorf("pulled back %s, committed %s", got, id)
	}
	if got := strings.TrimSpace(mustDocker(t, "run", "--rm", ref, "cat", "/pushed.txt")); got != "committed" {
		t.Errorf("/pushed.txt = %q", got)
	}
}

// docker login against an htpasswd-protected registry (wrong, then right
// password), then push and pull with the stored credentials; without them
// the registry refuses. Each CLI config is a temporary directory.
func TestLoginAndPushPullWithCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg, err := testenv.StartRegistryWithAuth(ctx, t.TempDir(), map[string]string{"jevm": "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Stop() })
	cfg, anon := t.TempDir(), t.TempDir()

	r := dockerOn(t, env.sock, cfg, "wrong\n", "login", "-u", "jevm", "--password-stdin", reg.Addr)
	want := "login attempt to http://" + reg.Addr + "/v2/ failed with status: 401 Unauthorized"
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("login with a wrong password:\n%s", r)
	}
	t.Logf("login with a wrong password:\n%s", r)
	if _, err := os.Stat(filepath.Join(cfg, "config.json")); err == nil {
		if b, _ := os.ReadFile(filepath.Join(cfg, "config.json")); strings.Contains(string(b), reg.Addr) {
			t.Errorf("a failed login stored credentials: %s", b)
		}
	}
	r = dockerOn(t, env.sock, cfg, "s3cret\n", "login", "-u", "jevm", "--password-stdin", reg.Addr)
	if r.code != 0 || !strings.Contains(r.stdout, "Login Succeeded") {
		t.Fatalf("login:\n%s", r)
	}

	mustDocker(t, "pull", "busybox")
	ref := reg.Addr + "/private/busybox:1"
	mustDocker(t, "tag", "busybox", ref)
	t.Cleanup(func() { docker(t, "rmi", ref) })

	r = dockerOn(t, env.sock, anon, "", "push", ref)
	if r.code == 0 || !strings.Contains(r.stderr+r.stdout, "no basic auth credentials") {
		t.Errorf("push without credentials:\n%s", r)
	}
	t.Logf("push without credentials:\n%s", r)
	r = dockerOn(t, env.sock, cfg, "", "push", ref)
	if r.code != 0 {
		t.Fatalf("push with credentials:\n%s", r)
	}
	dgst := pushedDigest(t, r.stdout, "1")

	mustDocker(t, "rmi", ref)
	r = dockerOn(t, env.sock, anon, "", "pull", ref)
	if r.code == 0 || !strings.Contains(r.stderr, "no basic auth credentials") {
		t.Errorf("pull without credentials:\n%s", r)
	}
	r = dockerOn(t, env.sock, cfg, "", "pull", ref)
	if r.code != 0 || !strings.Contains(r.stdout, "Digest: "+dgst) {
		t.Fatalf("pull with credentials:\n%s", r)
	}
	if got := repoDigest0(t, ref); got != reg.Addr+"/private/busybox@"+dgst {
		t.Errorf("RepoDigests[0] = %q", got)
	}
	if r := dockerOn(t, env.sock, cfg, "", "logout", reg.Addr); r.code != 0 {
		t.Errorf("logout:\n%s", r)
	}
}
