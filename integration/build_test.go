package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeContext writes a build context directory from name -> content.
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// containerIDs lists every container's ID (docker ps -aq).
func containerIDs(t *testing.T) string {
	return strings.TrimSpace(mustDocker(t, "ps", "-aq", "--no-trunc"))
}

// TestBuild drives `docker build` (the classic builder, as the CLI uses it
// without buildx) through a multi-stage Dockerfile with build args,
// .dockerignore, WORKDIR, COPY --from and RUN steps in jeVMs; then a
// rebuild from cache, and the image runs.
func TestBuild(t *testing.T) {
	t.Setenv("DOCKER_BUILDKIT", "0")
	img := uniqueName(t, "img") + ":v1"
	t.Cleanup(func() { docker(t, "rmi", "-f", img) })
	dir := writeContext(t, map[string]string{
		"Dockerfile": `ARG BASE=busybox
FROM $BASE AS builder
ARG GREETING=hello
WORKDIR /src
COPY greet.txt ./
RUN echo "$GREETING from a build step" > out.txt && cat greet.txt >> out.txt
FROM busybox
LABEL org.example.test=yes
ENV APP_HOME=/app
COPY --from=builder /src/out.txt /app/
COPY data/ /app/data/
WORKDIR $APP_HOME
CMD ["cat", "out.txt"]
`,
		"greet.txt":       "greetings from the context\n",
		"data/keep.txt":   "kept\n",
		"data/secret.txt": "must not be copied\n",
		".dockerignore":   "data/secret.txt\n",
	})
	before := containerIDs(t)

	r := docker(t, "build", "-t", img, "--build-arg", "GREETING=hi", dir)
	if r.code != 0 {
		t.Fatalf("build:\n%s", r)
	}
	for _, want := range []string{"Step 1/13 : ARG BASE=busybox", "Step 2/13 : FROM $BASE AS builder", " ---> Running in ", "Successfully built ", "Successfully tagged " + img} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("build output lacks %q:\n%s", want, r.stdout)
		}
	}
	if after := containerIDs(t); after != before {
		t.Errorf("build left containers behind: before %q, after %q", before, after)
	}

	out := mustDocker(t, "run", "--rm", img)
	if out != "hi from a build step\ngreetings from the context\n" {
		t.Errorf("built image's CMD printed %q", out)
	}
	out = mustDocker(t, "run", "--rm", img, "sh", "-c", "pwd; ls /app/data; echo $APP_HOME")
	if out != "/app\nkeep.txt\n/app\n" {
		t.Errorf("built image's files and env: %q", out)
	}
	labels := mustDocker(t, "image", "inspect", "-f", `{{index .Config.Labels "org.example.test"}} {{.Config.WorkingDir}} {{.Config.Cmd}}`, img)
	if strings.TrimSpace(labels) != "yes /app [cat out.txt]" {
		t.Errorf("image config: %q", labels)
	}

	// Nothing changed: every step from the cache, no VM.
	r = docker(t, "build", "-t", img, "--build-arg", "GREETING=hi", dir)
	if r.code != 0 {
		t.Fatalf("rebuild:\n%s", r)
	}
	if strings.Contains(r.stdout, "Running in") || strings.Count(r.stdout, "Using cache") < 8 {
		t.Errorf("rebuild was not served from the cache:\n%s", r.stdout)
	}
	// A changed build arg reruns the RUN step.
	r = docker(t, "build", "-q", "--build-arg", "GREETING=bye", dir)
	if r.code != 0 || !strings.HasPrefix(strings.TrimSpace(r.stdout), "sha256:") {
		t.Fatalf("quiet rebuild with another arg:\n%s", r)
	}
	id := strings.TrimSpace(r.stdout)
	t.Cleanup(func() { docker(t, "rmi", "-f", id) })
	if out := mustDocker(t, "run", "--rm", id); !strings.HasPrefix(out, "bye from a build step\n") {
		t.Errorf("build arg change not rebuilt: %q", out)
	}
}

// TestBuildErrors: a syntax error is refused before anything runs; a
// failing RUN stops the build with its exit code and leaves no container.
func TestBuildErrors(t *testing.T) {
	t.Setenv("DOCKER_BUILDKIT", "0")
	before := containerIDs(t)

	r := docker(t, "build", writeContext(t, map[string]string{"Dockerfile": "FRM busybox\n"}))
	if r.code == 0 || !strings.Contains(r.stderr, "unknown instruction") {
		t.Errorf("syntax error:\n%s", r)
	}

	r = docker(t, "build", "--force-rm", writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo about to fail; exit 3\n"}))
	if r.code == 0 || !strings.Contains(r.stderr, "The command '/bin/sh -c echo about to fail; exit 3' returned a non-zero code: 3") ||
		!strings.Contains(r.stdout, "about to fail") {
		t.Errorf("failing RUN:\n%s", r)
	}

	r = docker(t, "build", writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY missing.txt /\n"}))
	if r.code == 0 || !strings.Contains(r.stderr, "missing.txt") {
		t.Errorf("missing COPY source:\n%s", r)
	}
	if after := containerIDs(t); after != before {
		t.Errorf("failed builds left containers behind: before %q, after %q", before, after)
	}

	// Without --force-rm the failed step's container stays (stopped), as
	// with dockerd, for a look at what went wrong.
	r = docker(t, "build", writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo left > /f; exit 4\n"}))
	if r.code == 0 || !strings.Contains(r.stderr, "returned a non-zero code: 4") {
		t.Fatalf("failing RUN without --force-rm:\n%s", r)
	}
	after := strings.Fields(containerIDs(t))
	if len(after) != len(strings.Fields(before))+1 {
		t.Fatalf("want the failed step's container kept: before %q, after %q", before, after)
	}
	kept := after[0] // newest first
	t.Cleanup(func() { docker(t, "rm", "-f", kept) })
	if out := mustDocker(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", kept); strings.TrimSpace(out) != "exited 4" {
		t.Errorf("kept container: %q", out)
	}
}
