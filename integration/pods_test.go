package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Pods: the pause-container pattern (Kubernetes', Nomad's): a container
// that sleeps holds the VM and its network; two more join it with
// --network container:pause. Each has its own root file system, PID
// namespace, logs and lifecycle; they share the VM's network (localhost,
// the address), and --pid container: shares the process table.
func TestPodPauseContainerPattern(t *testing.T) {
	pause, web, side := uniqueName(t, "pause"), uniqueName(t, "web"), uniqueName(t, "side")
	rmOnCleanup(t, pause)
	rmOnCleanup(t, web, side) // runs first: members before their VM's container

	mustDocker(t, "run", "-d", "--name", pause, "busybox", "sleep", "infinity")
	pauseID := inspectField(t, pause, "{{.Id}}")
	mustDocker(t, "run", "-d", "--name", web, "--network", "container:"+pause, "busybox",
		"sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && echo ready && exec httpd -f -p 8080 -h /www")
	waitFor(t, 90*time.Second, web+" to serve", func() bool { return strings.Contains(mustDocker(t, "logs", web), "ready") })

	// As dockerd: the mode names the container by ID, and the member has
	// no networks of its own.
	if nm := inspectField(t, web, "{{.HostConfig.NetworkMode}}"); nm != "container:"+pauseID {
		t.Fatalf("NetworkMode = %q, want container:%s", nm, pauseID)
	}
	if nets := inspectField(t, web, "{{len .NetworkSettings.Networks}}"); nets != "0" {
		t.Fatalf("a member lists %s networks, want none", nets)
	}
	if h, want := inspectField(t, web, "{{.Config.Hostname}}"), inspectField(t, pause, "{{.Config.Hostname}}"); h != want {
		t.Fatalf("member hostname %q, want its VM's %q", h, want)
	}

	// localhost of the VM reaches web, from a third container that joins
	// with --rm, and the addresses are the same.
	if out := mustDocker(t, "run", "--rm", "--network", "container:"+pause, "busybox", "wget", "-qO-", "http://localhost:8080/"); out != "hello-from-web\n" {
		t.Fatalf("wget localhost:8080 from a third member: %q", out)
	}
	addrs := func(name string) string {
		return mustDocker(t, "exec", name, "sh", "-c", "ip -o -4 addr show | awk '{print $2, $4}' | sort")
	}
	if a, b := addrs(pause), addrs(web); a != b || !strings.Contains(a, "eth0") {
		t.Fatalf("addresses differ or no eth0:\npause: %s\nweb: %s", a, b)
	}

	// Its own root file system and PID namespace.
	if r := docker(t, "exec", pause, "test", "-e", "/www/index.html"); r.code == 0 {
		t.Fatalf("web's file is visible in pause's root")
	}
	if got := mustDocker(t, "exec", web, "cat", "/www/index.html"); got != "hello-from-web\n" {
		t.Fatalf("exec in the member: %q", got)
	}
	ps := mustDocker(t, "exec", web, "ps", "-o", "pid,args")
	if !strings.Contains(ps, "1 httpd -f -p 8080") || strings.Contains(ps, "sleep infinity") {
		t.Fatalf("the member's PID namespace:\n%s", ps)
	}
	if top := mustDocker(t, "top", web); !strings.Contains(top, "httpd") || strings.Contains(top, "sleep infinity") {
		t.Fatalf("docker top of the member:\n%s", top)
	}
	if top := mustDocker(t, "top", pause); !strings.Contains(top, "sleep infinity") || strings.Contains(top, "httpd") {
		t.Fatalf("docker top of the VM's container lists a member's process:\n%s", top)
	}
	// --pid container:pause shares pause's process table.
	if out := mustDocker(t, "run", "--rm", "--network", "container:"+pause, "--pid", "container:"+pause, "busybox", "ps", "-o", "args"); !strings.Contains(out, "sleep infinity") {
		t.Fatalf("--pid container: does not see pause's process:\n%s", out)
	}

	// cp and stats on the member.
	dir := t.TempDir()
	mustDocker(t, "cp", web+":/www/index.html", dir)
	if b, err := os.ReadFile(filepath.Join(dir, "index.html")); err != nil || string(b) != "hello-from-web\n" {
		t.Fatalf("docker cp from the member: %q %v", b, err)
	}
	mustDocker(t, "cp", filepath.Join(dir, "index.html"), web+":/www/copy.html")
	if out := mustDocker(t, "run", "--rm", "--network", "container:"+pause, "busybox", "wget", "-qO-", "http://localhost:8080/copy.html"); out != "hello-from-web\n" {
		t.Fatalf("file copied into the member not served: %q", out)
	}
	if out := mustDocker(t, "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", web); !strings.HasPrefix(out, web+" ") {
		t.Fatalf("stats of the member: %q", out)
	}

	// pause and unpause the member alone.
	mustDocker(t, "pause", web)
	if st := inspectField(t, pause, "{{.State.Status}}"); st != "running" {
		t.Fatalf("pausing a member changed its VM's container to %s", st)
	}
	mustDocker(t, "unpause", web)

	// A member stops and starts on its own; the VM runs on.
	mustDocker(t, "run", "-d", "--name", side, "--network", "container:"+pause, "busybox", "sleep", "infinity")
	mustDocker(t, "stop", "-t", "1", web)
	if st := inspectField(t, pause, "{{.State.Status}}"); st != "running" {
		t.Fatalf("stopping a member stopped its VM's container: %s", st)
	}
	mustDocker(t, "start", web)
	waitFor(t, 90*time.Second, web+" to serve again", func() bool {
		r := docker(t, "exec", side, "wget", "-qO-", "http://localhost:8080/")
		return r.code == 0 && r.stdout == "hello-from-web\n"
	})

	// Removing the VM's container is refused while members run.
	r := docker(t, "rm", "-f", pause)
	if r.code == 0 || !strings.Contains(r.stderr, "runs in its VM") {
		t.Fatalf("rm -f of a pod's VM container with members running: %s", r)
	}
	if st := inspectField(t, pause, "{{.State.Status}}"); st != "running" {
		t.Fatalf("the refused rm left pause %s", st)
	}

	// Stopping it stops the members first.
	mustDocker(t, "stop", "-t", "1", pause)
	for _, n := range []string{web, side} {
		if st := inspectField(t, n, "{{.State.Status}}"); st != "exited" {
			t.Fatalf("member %s is %s after its VM's container stopped", n, st)
		}
	}
	// A member cannot start without its VM (dockerd's 409 and words).
	r = docker(t, "start", web)
	if r.code == 0 || !strings.Contains(r.stderr, "cannot join network namespace of a non running container") {
		t.Fatalf("start of a member whose VM's container is stopped: %s", r)
	}
	mustDocker(t, "rm", web, side)
	mustDocker(t, "rm", pause)
}

// Bad input at create, with dockerd's words.
func TestPodCreateConflicts(t *testing.T) {
	other := uniqueName(t, "other")
	rmOnCleanup(t, other)
	mustDocker(t, "create", "--name", other, "busybox", "true")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--network", "container:x", "--hostname", "h"}, "conflicting options: hostname and the network mode"},
		{[]string{"--network", "container:x", "-p", "80:80"}, "conflicting options: port publishing and the container type network mode"},
		{[]string{"--pid", "container:" + other}, "need --network container: too"},
		// dockerd's (moby's TestPIDModeContainer).
		{[]string{"--pid", "container:nosuchcontainer"}, "No such container: nosuchcontainer"},
		{[]string{"--network", "container:" + other, "--ipc", "container:nosuchcontainer"}, "No such container: nosuchcontainer"},
	} {
		args := append(append([]string{"create"}, tc.args...), "busybox", "true")
		r := docker(t, args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("docker %v: %s, want %q", args, r, tc.want)
		}
	}
}

// A member's volumes and bind mounts reach it through its VM's pod share
// (daemon/podshare.go): a named volume shared with a second member, a
// bind-mounted directory and a read-only bind-mounted file. The host
// container does not see them, and a member's stop takes its entries out
// of the pod share; the host's stop removes the pod share.
func TestPodMemberMounts(t *testing.T) {
	host, m1, m2 := uniqueName(t, "podhost"), uniqueName(t, "m1"), uniqueName(t, "m2")
	vol := uniqueName(t, "podvol")
	rmOnCleanup(t, host)
	rmOnCleanup(t, m1, m2)
	rmVolumesOnCleanup(t, vol)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "from-host"), []byte("host-data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "conf.txt")
	if err := os.WriteFile(file, []byte("conf-v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	mustDocker(t, "run", "-d", "--name", host, "busybox", "sleep", "infinity")
	hostID := inspectField(t, host, "{{.Id}}")
	podBase := filepath.Join(env.root, "run", "pods", hostID[:12])
	mustDocker(t, "run", "-d", "--name", m1, "--network", "container:"+host,
		"-v", vol+":/data", "-v", dir+":/hostdir", "-v", file+":/etc/conf.txt:ro",
		"busybox", "sh", "-c", "echo from-m1 > /data/x && echo ready && exec sleep infinity")
	waitFor(t, 90*time.Second, m1+" to start", func() bool { return strings.Contains(mustDocker(t, "logs", m1), "ready") })

	if got := mustDocker(t, "exec", m1, "cat", "/hostdir/from-host", "/etc/conf.txt"); got != "host-data\nconf-v1\n" {
		t.Fatalf("bind mounts in the member: %q", got)
	}
	mustDocker(t, "exec", m1, "sh", "-c", "echo from-guest > /hostdir/new")
	if b, err := os.ReadFile(filepath.Join(dir, "new")); err != nil || string(b) != "from-guest\n" {
		t.Fatalf("a member's write to its bind mount, on the host: %q %v", b, err)
	}
	if r := docker(t, "exec", m1, "sh", "-c", "echo x > /etc/conf.txt"); r.code == 0 || !strings.Contains(r.stderr, "Read-only file system") {
		t.Fatalf("write to a read-only bind-mounted file: %s", r)
	}
	// The host container has none of it.
	if r := docker(t, "exec", host, "sh", "-c", "cat /data/x /hostdir/from-host"); r.code == 0 {
		t.Fatalf("the member's mounts are visible in its VM's container: %s", r)
	}

	// A second member shares the volume, read-only.
	mustDocker(t, "run", "-d", "--name", m2, "--network", "container:"+host, "-v", vol+":/v:ro", "busybox", "sleep", "infinity")
	if got := mustDocker(t, "exec", m2, "cat", "/v/x"); got != "from-m1\n" {
		t.Fatalf("the volume in a second member: %q", got)
	}
	if r := docker(t, "exec", m2, "touch", "/v/y"); r.code == 0 {
		t.Fatalf("a read-only volume was written: %s", r)
	}
	if ms := mustDocker(t, "inspect", "-f", "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}};{{end}}", m2); ms != "volume "+vol+" /v false;\n" {
		t.Fatalf("inspect Mounts of m2: %q", ms)
	}

	entries := func() []string {
		ents, _ := os.ReadDir(filepath.Join(podBase, "points"))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	if got := entries(); len(got) != 4 {
		t.Fatalf("pod share entries with both members running: %v, want m1's 3 and m2's 1", got)
	}
	// m1's stop takes its entries out; m2 keeps reading.
	mustDocker(t, "stop", "-t", "1", m1)
	if got := entries(); len(got) != 1 || !strings.HasPrefix(got[0], inspectField(t, m2, "{{.Id}}")[:12]+".") {
		t.Fatalf("pod share entries after m1's stop: %v", got)
	}
	if got := mustDocker(t, "exec", m2, "cat", "/v/x"); got != "from-m1\n" {
		t.Fatalf("m2 after m1's stop: %q", got)
	}
	// m1 starts again with its mounts (the file's new content too).
	if err := os.WriteFile(file, []byte("conf-v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustDocker(t, "start", m1)
	if got := mustDocker(t, "exec", m1, "cat", "/data/x", "/etc/conf.txt"); got != "from-m1\nconf-v2\n" {
		t.Fatalf("m1 after its restart: %q", got)
	}

	// With its members stopped, the host's VM can be checkpointed: the
	// guest let go of the pod share (a mounted 9p share would keep QEMU
	// from saving the VM). A member started again mounts it again.
	mustDocker(t, "stop", "-t", "1", m1, m2)
	mustDocker(t, "checkpoint", "create", "--leave-running", host, "afterpod")
	mustDocker(t, "checkpoint", "rm", host, "afterpod")
	mustDocker(t, "start", m2)
	if got := mustDocker(t, "exec", m2, "cat", "/v/x"); got != "from-m1\n" {
		t.Fatalf("m2 started again after the checkpoint: %q", got)
	}

	// The host's stop stops the member and removes the pod share.
	mustDocker(t, "stop", "-t", "1", host)
	if _, err := os.Lstat(podBase); err == nil {
		t.Fatalf("pod share %s left after its VM stopped: %v", podBase, entries())
	}
	if b, err := os.ReadFile(filepath.Join(dir, "from-host")); err != nil || string(b) != "host-data\n" {
		t.Fatalf("the bind source after the pod's stop: %q %v", b, err)
	}
}
