package integration

import (
	"strings"
	"testing"
)

func TestPullShowsProgressAndSecondPullIsNoop(t *testing.T) {
	docker(t, "rmi", "-f", "layers") // from an earlier run of this test, if any
	out := mustDocker(t, "pull", "layers")
	for _, want := range []string{"Pulling from library/layers", "Pull complete", "Digest: sha256:", "Status: Downloaded newer image for layers:latest"} {
		if !strings.Contains(out, want) {
			t.Errorf("first pull output lacks %q:\n%s", want, out)
		}
	}
	out = mustDocker(t, "pull", "layers")
	if !strings.Contains(out, "Status: Image is up to date for layers:latest") || strings.Contains(out, "Pull complete") {
		t.Errorf("second pull was not a no-op:\n%s", out)
	}
	if list := mustDocker(t, "images", "--format", "{{.Repository}}:{{.Tag}}", "layers"); strings.TrimSpace(list) != "layers:latest" {
		t.Errorf("images = %q", list)
	}
}

// The layers image deletes a file (whiteout) and replaces a directory
// (opaque) in its top layer; the container must see the result.
func TestWhiteoutsAreHonouredInTheContainer(t *testing.T) {
	out := mustDocker(t, "run", "--rm", "layers", "sh", "-c", "ls -a /data /opq | sort | tr '\\n' ' '")
	for _, want := range []string{"keep", "new"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in %q", want, out)
		}
	}
	for _, gone := range []string{"gone", "old1", "sub", ".wh."} {
		if strings.Contains(out, gone) {
			t.Errorf("%q should have been deleted by the upper layer: %q", gone, out)
		}
	}
}

func TestRmiOfImageInUseConflicts(t *testing.T) {
	mustDocker(t, "pull", "busybox")
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "create", "--name", name, "busybox", "true")
	r := docker(t, "rmi", "busybox")
	if r.code == 0 || !strings.Contains(r.stderr, "conflict") || !strings.Contains(r.stderr, "is using its referenced image") {
		t.Fatalf("rmi of an image in use:\n%s", r)
	}
	// A second tag can be removed: that only untags.
	mustDocker(t, "tag", "busybox", "mybox:extra")
	if out := mustDocker(t, "rmi", "mybox:extra"); !strings.Contains(out, "Untagged: mybox:extra") {
		t.Fatalf("rmi of an extra tag = %q", out)
	}
	if r := docker(t, "image", "inspect", "mybox:extra"); r.code == 0 {
		t.Fatal("the removed tag still resolves")
	}
}

func TestUnknownImageIsPulledThenFails(t *testing.T) {
	ref := env.registry.Addr + "/no-such-image"
	r := docker(t, "run", "--rm", ref)
	if r.code != 125 {
		t.Fatalf("exit code %d, want 125\n%s", r.code, r)
	}
	if !strings.Contains(r.stderr, "Unable to find image '"+ref+":latest' locally") {
		t.Fatalf("the CLI did not try to pull:\n%s", r)
	}
	if !strings.Contains(r.stderr, "Error response from daemon") {
		t.Fatalf("no pull error shown:\n%s", r)
	}
}

func TestRunPullsMissingImageWithProgress(t *testing.T) {
	docker(t, "rmi", "-f", "web")
	r := docker(t, "run", "--rm", "web", "cat", "/www/index.html")
	if r.code != 0 {
		t.Fatalf("run of an image not yet pulled:\n%s", r)
	}
	if !strings.Contains(r.stderr, "Unable to find image 'web:latest' locally") || !strings.Contains(r.stderr, "Pull complete") {
		t.Fatalf("no pull progress on stderr:\n%s", r)
	}
	if r.stdout == "" {
		t.Fatal("empty index.html")
	}
}

// With only a mirror reachable (as on these machines), a name the mirror
// does not have gets dockerd's 404 answer, not Docker Hub's connection
// error; a missing tag gets dockerd's manifest message; a digest pull works.
func TestPullMissingAndByDigest(t *testing.T) {
	r := docker(t, "pull", "no-such-repo-for-jevm")
	if r.code == 0 || !strings.Contains(r.stderr, "pull access denied for no-such-repo-for-jevm, repository does not exist or may require 'docker login'") {
		t.Fatalf("pull of a missing repository:\n%s", r)
	}
	r = docker(t, "pull", "busybox:no-such-tag")
	if r.code == 0 || !strings.Contains(r.stderr, "manifest for busybox:no-such-tag not found: manifest unknown") {
		t.Fatalf("pull of a missing tag:\n%s", r)
	}
	mustDocker(t, "pull", "busybox")
	dig := strings.TrimSpace(mustDocker(t, "image", "inspect", "--format", "{{index .RepoDigests 0}}", "busybox"))
	if out := mustDocker(t, "pull", dig); !strings.Contains(out, "Digest: ") {
		t.Fatalf("pull by digest %s: %q", dig, out)
	}
}
