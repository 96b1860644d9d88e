package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/vmbackend"
)

func TestStoreLookup(t *testing.T) {
	s := newContainerStore()
	a := &Container{ID: "abc123" + strings.Repeat("0", 58), Name: "web"}
	b := &Container{ID: "abd456" + strings.Repeat("1", 58), Name: "db"}
	s.add(a)
	s.add(b)
	for ref, want := range map[string]*Container{a.ID: a, "web": a, "/web": a, "abc": a, "abd4": b, "db": b} {
		got, err := s.get(ref)
		if err != nil || got != want {
			t.Errorf("get(%q) = %v, %v; want %s", ref, got, err, want.Name)
		}
	}
	if _, err := s.get("ab"); !errdefs.IsInvalidParameter(err) {
		t.Errorf("ambiguous prefix: got %v, want InvalidParameter", err)
	}
	if _, err := s.get("nope"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "No such container: nope") {
		t.Errorf("missing: got %v", err)
	}
	if err := s.reserve("web", "other"); !errdefs.IsConflict(err) {
		t.Errorf("reserve taken name: got %v, want Conflict", err)
	}
	name, err := s.generateName("f" + strings.Repeat("0", 63))
	if err != nil || !strings.Contains(name, "_") {
		t.Errorf("generateName = %q, %v", name, err)
	}
}

func TestMergeImageConfig(t *testing.T) {
	img := &container.Config{
		Env:        []string{"PATH=/bin", "A=1"},
		Entrypoint: []string{"/entry"},
		Cmd:        []string{"default"},
		WorkingDir: "/app",
		User:       "app",
		Labels:     map[string]string{"from": "image", "both": "image"},
	}
	m := mergeImageConfig(&container.Config{Env: []string{"A=2", "B=3"}, Cmd: []string{"mine"}, Labels: map[string]string{"both": "ctr"}}, img)
	if strings.Join(m.Env, ",") != "PATH=/bin,A=2,B=3" {
		t.Errorf("env = %v", m.Env)
	}
	if strings.Join(m.Entrypoint, " ") != "/entry" || strings.Join(m.Cmd, " ") != "mine" {
		t.Errorf("entrypoint/cmd = %v %v", m.Entrypoint, m.Cmd)
	}
	if m.WorkingDir != "/app" || m.User != "app" || m.Labels["from"] != "image" || m.Labels["both"] != "ctr" {
		t.Errorf("merged = %+v", m)
	}
	// A user entrypoint drops the image's command, as in dockerd.
	m = mergeImageConfig(&container.Config{Entrypoint: []string{"/bin/sh"}}, img)
	if len(m.Cmd) != 0 {
		t.Errorf("cmd with user entrypoint = %v, want none", m.Cmd)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "term": syscall.SIGTERM, "KILL": syscall.SIGKILL, "10": syscall.SIGUSR1, "SIGHUP": syscall.SIGHUP} {
		got, err := parseSignal(in)
		if err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"NOPE", "0", "99", ""} {
		if _, err := parseSignal(bad); !errdefs.IsInvalidParameter(err) {
			t.Errorf("parseSignal(%q) err = %v", bad, err)
		}
	}
}

func TestShapeFor(t *testing.T) {
	d := &Daemon{cfg: Config{DefaultShape: shapeOf(256, 1), MinMemoryMiB: 128}}
	s, warn, _ := d.shapeFor(&container.HostConfig{})
	if s != shapeOf(256, 1) || len(warn) != 0 {
		t.Errorf("default = %v %v", s, warn)
	}
	s, _, _ = d.shapeFor(&container.HostConfig{Resources: container.Resources{Memory: 300 << 20, NanoCPUs: 1500000000}})
	if s != shapeOf(320, 2) {
		t.Errorf("300M 1.5cpus = %v, want 320MiB 2 vCPUs", s)
	}
	s, warn, _ = d.shapeFor(&container.HostConfig{Resources: container.Resources{Memory: 32 << 20}})
	if s.MemoryMiB != 128 || len(warn) != 1 {
		t.Errorf("32M = %v %v, want raised to 128 with a warning", s, warn)
	}
}

func TestLogWriteAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.json")
	lw, err := openLogWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lw.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	out := lw.streamWriter("stdout")
	errw := lw.streamWriter("stderr")
	out.Write([]byte("one\ntw"))
	errw.Write([]byte("oops\n"))
	out.Write([]byte("o\nthree"))
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	read := func(o logReadOptions) []string {
		ch := make(chan backend.LogMessage)
		go readLog(context.Background(), path, o, func() bool { return false }, ch)
		var got []string
		for m := range ch {
			got = append(got, m.Stream+":"+string(m.Line))
		}
		return got
	}
	all := read(logReadOptions{Stdout: true, Stderr: true, Tail: -1})
	want := []string{"stdout:one\n", "stderr:oops\n", "stdout:two\n", "stdout:three"}
	if strings.Join(all, "|") != strings.Join(want, "|") {
		t.Errorf("all = %q, want %q", all, want)
	}
	if got := read(logReadOptions{Stdout: true, Tail: 2}); strings.Join(got, "|") != "stdout:two\n|stdout:three" {
		t.Errorf("stdout tail 2 = %q", got)
	}
	since := time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC)
	if got := read(logReadOptions{Stdout: true, Stderr: true, Tail: -1, Since: since}); len(got) != 2 {
		t.Errorf("since = %q, want the last 2 entries", got)
	}
}

func TestLogFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.json")
	lw, err := openLogWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	running := make(chan struct{})
	stillRunning := func() bool {
		select {
		case <-running:
			return false
		default:
			return true
		}
	}
	ch := make(chan backend.LogMessage)
	go readLog(context.Background(), path, logReadOptions{Stdout: true, Tail: -1, Follow: true}, stillRunning, ch)
	lw.streamWriter("stdout").Write([]byte("first\n"))
	if m := <-ch; string(m.Line) != "first\n" {
		t.Fatalf("got %q", m.Line)
	}
	lw.streamWriter("stdout").Write([]byte("last\n"))
	lw.Close()
	close(running)
	var rest []string
	for m := range ch {
		rest = append(rest, string(m.Line))
	}
	if strings.Join(rest, "") != "last\n" {
		t.Errorf("after exit = %q, want the last line then the end", rest)
	}
}

func TestLastExitMarker(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	first := "boot\nJEVM-EXIT 1\nagain\nJEVM-EXIT 42\n"
	os.WriteFile(path, []byte(first), 0o600)
	if code, ok := lastExitMarker(path, 0); !ok || code != 42 {
		t.Errorf("got %d %v", code, ok)
	}
	// A later run (from offset) that wrote no marker of its own: the
	// earlier run's does not count.
	os.WriteFile(path, []byte(first+"second run\n"), 0o600)
	if code, ok := lastExitMarker(path, int64(len(first))); ok {
		t.Errorf("an earlier run's marker was taken: %d", code)
	}
	// Only the log's tail is read (the guest writes it).
	big := append([]byte("JEVM-EXIT 7\n"), make([]byte, exitMarkerWindow)...)
	os.WriteFile(path, big, 0o600)
	if code, ok := lastExitMarker(path, 0); ok {
		t.Errorf("a marker before the window was read: %d", code)
	}
	os.WriteFile(path, []byte("no marker"), 0o600)
	if _, ok := lastExitMarker(path, 0); ok {
		t.Error("found a marker in a log without one")
	}
}

func TestWaiters(t *testing.T) {
	c := &Container{State: ContainerState{ExitCode: 3}}
	next := &waiter{cond: container.WaitConditionNextExit, ch: make(chan container.WaitResponse, 1)}
	removed := &waiter{cond: container.WaitConditionRemoved, ch: make(chan container.WaitResponse, 1)}
	c.waiters = []*waiter{next, removed}
	c.notifyWaiters(waitExit)
	if r := <-next.ch; r.StatusCode != 3 {
		t.Errorf("next-exit got %d", r.StatusCode)
	}
	if len(c.waiters) != 1 || c.waiters[0] != removed {
		t.Fatalf("removed waiter answered on exit")
	}
	c.notifyWaiters(waitRemoved)
	if r := <-removed.ch; r.StatusCode != 3 {
		t.Errorf("removed got %d", r.StatusCode)
	}
}

func shapeOf(mem, cpus int) vmbackend.Shape { return vmbackend.Shape{MemoryMiB: mem, VCPUs: cpus} }

func TestCheckImagePlatform(t *testing.T) {
	img := &image.InspectResponse{Os: "linux", Architecture: "amd64"}
	for _, ok := range []ocispec.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "x86_64"}, {OS: "Linux", Architecture: "amd64"}} {
		if err := checkImagePlatform("busybox:latest", img, ok); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, bad := range []ocispec.Platform{{OS: "linuxDifferentOS", Architecture: "amd64"}, {OS: "linux", Architecture: "amd64DifferentArch"}, {OS: "linux", Architecture: "arm64"}} {
		err := checkImagePlatform("busybox:latest", img, bad)
		if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "image with reference busybox:latest was found but its platform (linux/amd64) does not match the specified platform") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// Host devices cannot reach a VM: refused, not ignored; a negative
// --shm-size is dockerd's 400.
func TestValidateHostConfigDevicesAndShm(t *testing.T) {
	for _, tc := range []struct {
		hc   container.HostConfig
		want string
	}{
		{container.HostConfig{Resources: container.Resources{Devices: []container.DeviceMapping{{PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm"}}}}, "host devices (--device /dev/fuse) are not supported by jevm"},
		{container.HostConfig{Resources: container.Resources{DeviceRequests: []container.DeviceRequest{{Count: -1, Capabilities: [][]string{{"gpu"}}}}}}, `could not select device driver "" with capabilities: [[gpu]]`},
		{container.HostConfig{ShmSize: -1}, "SHM size can not be less than 0"},
	} {
		err := validateHostConfig(&tc.hc)
		if !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want 400 %q", err, tc.want)
		}
	}
	if err := validateHostConfig(&container.HostConfig{ShmSize: 128 << 20}); err != nil {
		t.Errorf("--shm-size 128m: %v", err)
	}
}
