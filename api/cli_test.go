package api

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

// TestDockerCLI drives the server with the real docker CLI over a unix
// socket: API negotiation, hijacked attach, the early wait header, pull
// progress, error messages.
func TestDockerCLI(t *testing.T) {
	dockerBin, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker CLI not on PATH")
	}
	if testing.Short() {
		t.Skip("short mode")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "docker.sock")
	l, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	fake := newFakeBackend()
	fake.output = "hello from fake\n"
	fake.errOutput = "oops\n"
	fake.exitCode = 3
	fake.pullOutput = []string{
		`{"status":"Pulling from library/busybox","id":"latest"}`,
		`{"status":"Digest: sha256:0123456789012345678901234567890123456789012345678901234567890123"}`,
		`{"status":"Status: Downloaded newer image for busybox:latest"}`,
	}
	srv := NewServer(fake, Options{Logger: testLogger(t), ServerVersion: "0.0.1-fake"})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, []net.Listener{l}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	docker := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		cmd := exec.CommandContext(cctx, dockerBin, args...)
		cmd.Env = []string{
			"DOCKER_HOST=unix://" + sock,
			"HOME=" + dir,
			"DOCKER_CONFIG=" + filepath.Join(dir, "docker-config"),
			"PATH=" + os.Getenv("PATH"),
			"DOCKER_CLI_HINTS=false",
		}
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("docker %v: %v", args, err)
		}
		if cctx.Err() != nil {
			t.Fatalf("docker %v timed out; stdout %q stderr %q", args, out.String(), errOut.String())
		}
		return out.String(), errOut.String(), code
	}
	expect := func(wantCode int, wantOut string, args ...string) string {
		t.Helper()
		out, errOut, code := docker("", args...)
		if code != wantCode || (wantOut != "" && out != wantOut) {
			t.Fatalf("docker %s: exit %d (want %d)\nstdout %q (want %q)\nstderr %q", strings.Join(args, " "), code, wantCode, out, wantOut, errOut)
		}
		return errOut
	}

	expect(0, "0.0.1-fake 1.51 1.50 linux\n", "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} {{.Client.APIVersion}} {{.Server.Os}}")
	expect(0, "fakehost\n", "info", "--format", "{{.Name}}")
	expect(0, "", "ps", "-a", "--format", "{{.Names}}")

	// Image missing: the CLI pulls, creates, attaches, waits for
	// removal, starts; output arrives demultiplexed, exit code travels.
	out, errOut, code := docker("", "run", "--rm", "busybox")
	if code != 3 || out != "hello from fake\n" || !strings.Contains(errOut, "oops\n") ||
		!strings.Contains(errOut, "Unable to find image 'busybox:latest' locally") ||
		!strings.Contains(errOut, "Downloaded newer image for busybox:latest") {
		t.Fatalf("run --rm: exit %d stdout %q stderr %q", code, out, errOut)
	}
	expect(0, "", "ps", "-a", "-q")

	// Stdin travels through the hijacked connection.
	out, errOut, code = docker("hi there\n", "run", "-i", "--rm", "busybox")
	if code != 3 || out != "stdin: hi there\nhello from fake\n" {
		t.Fatalf("run -i: exit %d stdout %q stderr %q", code, out, errOut)
	}

	// TTY: one raw stream, no multiplexing.
	out, errOut, code = docker("", "run", "-t", "--rm", "busybox")
	if code != 3 || out != "hello from fake\noops\n" {
		t.Fatalf("run -t: exit %d stdout %q stderr %q", code, out, errOut)
	}

	out, errOut, code = docker("", "run", "--name", "web", "busybox", "echo", "hi")
	if code != 3 || out != "hello from fake\n" {
		t.Fatalf("run --name web: exit %d stdout %q stderr %q", code, out, errOut)
	}
	expect(0, "web\n", "ps", "-a", "--format", "{{.Names}}")
	expect(0, "/web 3 exited [echo hi]\n", "inspect", "--format", "{{.Name}} {{.State.ExitCode}} {{.State.Status}} {{.Config.Cmd}}", "web")
	expect(0, "web\n", "stop", "web") // 304: already stopped is success
	errOut = expect(1, "", "start", "web")
	if !strings.Contains(errOut, "fake containers run once") {
		t.Fatalf("start stderr %q", errOut)
	}
	if errOut = expect(125, "", "run", "--name", "web", "busybox"); !strings.Contains(errOut, `The container name "/web" is already in use`) {
		t.Fatalf("name conflict stderr %q", errOut)
	}
	if errOut = expect(125, "", "run", "--name", "bad name", "busybox"); !strings.Contains(errOut, "Invalid container name (bad name)") {
		t.Fatalf("bad name stderr %q", errOut)
	}

	fake.mu.Lock()
	fake.logs = []backend.LogMessage{
		{Stream: "stdout", Line: []byte("log out\n"), Timestamp: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)},
		{Stream: "stderr", Line: []byte("log err\n"), Timestamp: time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)},
	}
	fake.mu.Unlock()
	out, errOut, code = docker("", "logs", "-t", "web")
	if code != 0 || out != "2024-05-06T07:08:09.000000000Z log out\n" || errOut != "2024-05-06T07:08:10.000000000Z log err\n" {
		t.Fatalf("logs: exit %d stdout %q stderr %q", code, out, errOut)
	}

	// Detached run, then docker wait.
	out, errOut, code = docker("", "run", "-d", "--name", "bg", "busybox")
	if code != 0 || len(strings.TrimSpace(out)) != 64 {
		t.Fatalf("run -d: exit %d stdout %q stderr %q", code, out, errOut)
	}
	expect(0, "3\n", "wait", "bg")
	expect(0, "", "rename", "bg", "bg2")
	expect(0, "bg2\nweb\n", "ps", "-a", "--format", "{{.Names}}")
	expect(0, "bg2\n", "rm", "bg2")
	if errOut = expect(1, "", "rm", "nope"); !strings.Contains(errOut, "No such container: nope") {
		t.Fatalf("rm nope stderr %q", errOut)
	}

	// Images.
	expect(0, "", "tag", "busybox", "localhost:5000/x/y:1")
	out, _, _ = docker("", "images", "--format", "{{.Repository}}:{{.Tag}}")
	if lines := strings.Fields(out); len(lines) != 2 || !slices.Contains(lines, "busybox:latest") || !slices.Contains(lines, "localhost:5000/x/y:1") {
		t.Fatalf("images: %q", out)
	}
	expect(0, "[localhost:5000/x/y:1]\n", "image", "inspect", "--format", "{{.RepoTags}}", "localhost:5000/x/y:1")
	expect(0, "Untagged: localhost:5000/x/y:1\n", "rmi", "localhost:5000/x/y:1")

	fake.mu.Lock()
	fake.pullErr = errors.New("registry hiccup")
	fake.mu.Unlock()
	out, errOut, code = docker("", "pull", "alpine")
	if code != 1 || !strings.Contains(out, "Pulling from library/busybox") || !strings.Contains(errOut, "registry hiccup") {
		t.Fatalf("pull error after output: exit %d stdout %q stderr %q", code, out, errOut)
	}
	fake.mu.Lock()
	fake.errs["PullImage"] = errdefs.NotFound(errors.New("pull access denied for nope, repository does not exist"))
	fake.mu.Unlock()
	out, errOut, code = docker("", "pull", "nope")
	if code != 1 || !strings.Contains(errOut, "pull access denied for nope, repository does not exist") {
		t.Fatalf("pull error before output: exit %d stdout %q stderr %q", code, out, errOut)
	}
}
