//go:build linux

package guestagent_test

import (
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// joinReq is a join of the container name, whose root is the disk with
// serial.
func joinReq(name, serial string, args []string) *agentproto.StartRequest {
	r := startReq(args, "", false)
	r.RootDevice, r.RootSerial, r.Container = "", serial, name
	r.Hostname = "ignored-for-joined"
	return r
}

// waitOutput waits until b contains s.
func waitOutput(t *testing.T, ctx context.Context, b *buf, s string) {
	t.Helper()
	for !strings.Contains(b.String(), s) {
		select {
		case <-ctx.Done():
			t.Fatalf("output %q never contained %q", b.String(), s)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestE2EPod: containers that join a running VM (docs/AGENT_PROTOCOL.md,
// "Pods"). Their root disks are attached at boot here (the host
// hot-plugs them); the agent finds them by serial.
func TestE2EPod(t *testing.T) {
	env := setupE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	escape := buildChrootEscape(t)
	var disks []vmDisk
	for _, n := range []string{"a", "b"} {
		d := filepath.Join(dir, n)
		path, err := makeBusyboxDisk(d, "/bin/busybox", map[string]string{"marker": "disk-" + n + "\n", "bin/chrootescape": escape})
		if err != nil {
			t.Fatal(err)
		}
		disks = append(disks, vmDisk{path: path, serial: "jevm-pod-" + n})
	}
	vm := bootVMDisks(t, env, "", disks)
	c, _ := vm.connect(t, ctx)
	defer func() { c.Close() }()

	// Join before the main container runs is refused.
	if _, err := c.Join(ctx, joinReq("web", "jevm-pod-a", []string{"true"}), agentclient.ProcessIO{}); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("join while idle: %v", err)
	}
	var mainOut buf
	mreq := startReq([]string{"sh", "-c", "echo main-up; exec sleep 1000"}, "", false)
	mreq.Container = "main1"
	main, err := c.Start(ctx, mreq, agentclient.ProcessIO{Stdout: &mainOut, Stderr: &mainOut})
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, ctx, &mainOut, "main-up")

	exec := func(cl *agentclient.Client, args ...string) string {
		t.Helper()
		var out buf
		p, err := cl.Exec(ctx, execReq(args), agentclient.ProcessIO{Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("exec %q in %q: %v", args, cl.Container(), err)
		}
		if st := waitExited(t, ctx, p); st.Code != 0 {
			t.Errorf("exec %q in %q: %+v, output %q", args, cl.Container(), st, out.String())
		}
		return out.String()
	}
	nsOf := func(cl *agentclient.Client) map[string]string {
		t.Helper()
		out := exec(cl, "sh", "-c", "for n in net uts ipc pid mnt; do echo $n $(readlink /proc/self/ns/$n); done")
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, _ := strings.Cut(l, " ")
			m[k] = v
		}
		return m
	}

	// A joined container with namespaces of its own.
	var webOut buf
	t0 := time.Now()
	web, err := c.Join(ctx, joinReq("web", "jevm-pod-a", []string{"sh", "-c", "cat /marker; echo pid=$$; hostname; exec sleep 2000"}),
		agentclient.ProcessIO{Stdout: &webOut, Stderr: &webOut})
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, ctx, &webOut, "e2ebox\n") // the hostname: the last line
	t.Logf("join: %v, output %q", time.Since(t0).Round(time.Millisecond), webOut.String())
	if got := webOut.String(); !strings.HasPrefix(got, "disk-a\npid=1\ne2ebox\n") {
		t.Errorf("joined container's output %q: want its own root (disk-a), PID 1, the VM's hostname", got)
	}
	// Refusals: a second "web", the main container's name, unknown names.
	if _, err := c.Join(ctx, joinReq("web", "jevm-pod-b", []string{"true"}), agentclient.ProcessIO{}); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second web: %v", err)
	}
	if _, err := c.Join(ctx, joinReq("main1", "jevm-pod-b", []string{"true"}), agentclient.ProcessIO{}); err == nil || !strings.Contains(err.Error(), "main container") {
		t.Errorf("join as main1: %v", err)
	}
	if _, err := c.For("nope").Exec(ctx, execReq([]string{"true"}), agentclient.ProcessIO{}); err == nil || !strings.Contains(err.Error(), "no such container in this VM: nope") {
		t.Errorf("exec in nope: %v", err)
	}

	cw := c.For("web")
	if out := exec(cw, "cat", "/marker"); out != "disk-a\n" {
		t.Errorf("exec in web sees %q", out)
	}
	if out := exec(c, "sh", "-c", "cat /marker 2>&1; true"); strings.Contains(out, "disk-") {
		t.Errorf("main container sees %q", out)
	}
	mainNS, webNS := nsOf(c), nsOf(cw)
	t.Logf("namespaces: main %v web %v", mainNS, webNS)
	if mainNS["net"] == "" || mainNS["net"] != webNS["net"] || mainNS["uts"] != webNS["uts"] {
		t.Errorf("web does not share the VM's network and UTS namespaces: main %v web %v", mainNS, webNS)
	}
	if mainNS["pid"] == webNS["pid"] || mainNS["ipc"] == webNS["ipc"] || mainNS["mnt"] == webNS["mnt"] {
		t.Errorf("web shares the main container's PID, IPC or mount namespace: main %v web %v", mainNS, webNS)
	}
	// Its execs are in its process's mount namespace (web's is PID 1).
	if out := exec(cw, "readlink", "/proc/1/ns/mnt"); strings.TrimSpace(out) != webNS["mnt"] {
		t.Errorf("web's process is in mount namespace %q, its exec in %q", strings.TrimSpace(out), webNS["mnt"])
	}
	if out := exec(cw, "ps", "-o", "pid,args"); !strings.Contains(out, "1 sleep 2000") || strings.Contains(out, "sleep 1000") {
		t.Errorf("ps in web:\n%s", out)
	}

	// Top: each lists only its own processes.
	hasCmd := func(top *agentproto.TopResult, cmd string) bool {
		for _, p := range top.Processes {
			if p[len(p)-1] == cmd {
				return true
			}
		}
		return false
	}
	if top, err := c.Top(ctx, ""); err != nil || !hasCmd(top, "sleep 1000") || hasCmd(top, "sleep 2000") {
		t.Errorf("main's top: %+v %v", top, err)
	}
	if top, err := cw.Top(ctx, ""); err != nil || hasCmd(top, "sleep 1000") || !hasCmd(top, "sleep 2000") || len(top.Processes) != 1 {
		t.Errorf("web's top: %+v %v", top, err)
	}
	s, err := cw.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("web's stats: cpu %d/%d pids %d memory total %d available %d", s.CPUBusy, s.CPUTotal, s.Pids, s.Memory["MemTotal"], s.Memory["MemAvailable"])
	if s.Pids != 1 || s.Memory["MemTotal"] == 0 || s.Memory["MemTotal"] <= s.Memory["MemAvailable"] || s.CPUBusy == 0 || s.CPUBusy >= s.CPUTotal {
		t.Errorf("web's stats %+v", *s)
	}
	if ms, err := c.Stats(ctx); err != nil || ms.Pids != 1 {
		t.Errorf("main's stats: pids %d (want 1: web's are not main's) %v", ms.Pids, err)
	}
	// File operations in web's root.
	if st, err := cw.StatPath(ctx, "/marker"); err != nil || st.Size != 7 {
		t.Errorf("stat /marker in web: %+v %v", st, err)
	}
	if err := cw.CheckUser(ctx, "nobody"); err != nil {
		t.Errorf("check-user nobody in web: %v", err)
	}

	// Freeze and thaw.
	events := "/sys/fs/cgroup/jevm-pod-web/cgroup.events"
	if err := cw.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if out := exec(c, "cat", events); !strings.Contains(out, "frozen 1") {
		t.Errorf("after freeze: %q", out)
	}
	if _, err := cw.Exec(ctx, execReq([]string{"true"}), agentclient.ProcessIO{}); err == nil || !strings.Contains(err.Error(), "paused") {
		t.Errorf("exec in frozen web: %v", err)
	}
	if err := cw.Thaw(ctx); err != nil {
		t.Fatal(err)
	}
	if out := exec(c, "cat", events); !strings.Contains(out, "frozen 0") {
		t.Errorf("after thaw: %q", out)
	}
	// The main container's freeze is a checkpoint's hold of its own
	// processes: web's run on.
	if err := c.Freeze(ctx); err != nil {
		t.Fatalf("hold of the main container: %v", err)
	}
	if out := exec(cw, "echo", "web-runs"); out != "web-runs\n" {
		t.Errorf("exec in web while the main container is held: %q", out)
	}
	if err := c.Thaw(ctx); err != nil {
		t.Fatal(err)
	}

	// A second joined container in the main one's PID and IPC namespaces.
	var dbOut buf
	dreq := joinReq("db", "jevm-pod-b", []string{"sh", "-c", "echo pid=$$; ps -o pid,args; exec sleep 3000"})
	dreq.PIDContainer, dreq.IPCContainer = "main1", "main1"
	db, err := c.Join(ctx, dreq, agentclient.ProcessIO{Stdout: &dbOut, Stderr: &dbOut})
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, ctx, &dbOut, "sleep 1000")
	if strings.Contains(dbOut.String(), "pid=1\n") {
		t.Errorf("db is PID 1 with --pid container:main1: %q", dbOut.String())
	}
	if dbNS := nsOf(c.For("db")); dbNS["pid"] != mainNS["pid"] || dbNS["ipc"] != mainNS["ipc"] || dbNS["net"] != mainNS["net"] {
		t.Errorf("db's namespaces %v, main's %v", dbNS, mainNS)
	}
	// A chroot escape from web (CAP_SYS_CHROOT is in Docker's default set)
	// reaches neither db's root nor its own as the agent mounted it: its
	// root is mounted over its namespace's /, so the climb out comes back
	// down into it (its own /marker), and nothing else is mounted there.
	out := exec(cw, "chrootescape", "/mnt/pods/db/root/marker", "/mnt/pods/web/root/marker", "/marker")
	t.Logf("chroot escape from web: %q", out)
	if strings.Contains(out, "disk-b") || strings.Count(out, "no such file or directory") != 2 || !strings.HasSuffix(out, "/marker: disk-a\n") {
		t.Errorf("a chroot escape from web: %q", out)
	}
	if top, err := c.Top(ctx, ""); err != nil || hasCmd(top, "sleep 3000") {
		t.Errorf("main's top lists db's process: %+v %v", top, err)
	}

	// web's end: its exit comes after its teardown; the VM goes on.
	if err := web.Signal(ctx, 9); err != nil {
		t.Fatal(err)
	}
	if st := waitExited(t, ctx, web); st.Code != 137 || st.Signal != 9 {
		t.Errorf("web's exit %+v", st)
	}
	if out := exec(c, "echo", "still-up"); out != "still-up\n" {
		t.Errorf("main after web's exit: %q", out)
	}
	if out := exec(c, "sh", "-c", "test -e /sys/fs/cgroup/jevm-pod-web && echo left || echo gone"); out != "gone\n" {
		t.Errorf("web's cgroup after its exit: %q", out)
	}
	if _, err := cw.Top(ctx, ""); err == nil {
		t.Errorf("top of exited web accepted")
	}

	// A reconnecting host learns of both from Hello.
	c.Close()
	c, hello := vm.connect(t, ctx)
	t.Logf("hello after reconnect: joined %+v", hello.Joined)
	if len(hello.Joined) != 2 || hello.Joined[0].Container != "db" || hello.Joined[0].Exit != nil || hello.Joined[0].Pid != db.Pid() ||
		hello.Joined[1].Container != "web" || hello.Joined[1].Exit == nil || hello.Joined[1].Exit.Code != 137 {
		t.Errorf("hello's joined %+v", hello.Joined)
	}
	main = c.Reattach(agentclient.ProcessIO{})
	db, ok := c.ReattachJoined("db", agentclient.ProcessIO{})
	if !ok {
		t.Fatal("db not reattached")
	}

	// web joins again (same disk, unmounted at its exit) and exits 0.
	var web2Out buf
	web2, err := c.Join(ctx, joinReq("web", "jevm-pod-a", []string{"cat", "/marker"}), agentclient.ProcessIO{Stdout: &web2Out})
	if err != nil {
		t.Fatal(err)
	}
	if st := waitExited(t, ctx, web2); st.Code != 0 || web2Out.String() != "disk-a\n" {
		t.Errorf("web again: %+v %q", st, web2Out.String())
	}

	// The main container's end kills db (137), reported before main's.
	if err := main.Signal(ctx, 9); err != nil {
		t.Fatal(err)
	}
	mst := waitExited(t, ctx, main)
	select {
	case <-db.Exited(): // handled before main's: sent first
	default:
		t.Errorf("main's exit came before db's")
	}
	dst := waitExited(t, ctx, db)
	if dst.Code != 137 || mst.Code != 137 {
		t.Errorf("db %+v main %+v", dst, mst)
	}
	vm.waitExit(t, 30*time.Second)
}

// TestE2EPodConfinedShutdown: a joined container with a terminal, a
// read-only root, a tmpfs mount and a masked path; then a shutdown kills
// it (137) before the main process.
func TestE2EPodConfinedShutdown(t *testing.T) {
	env := setupE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	path, err := makeBusyboxDisk(t.TempDir(), "/bin/busybox", map[string]string{"marker": "disk-ro\n"})
	if err != nil {
		t.Fatal(err)
	}
	vm := bootVMDisks(t, env, "", []vmDisk{{path: path, serial: "jevm-pod-ro"}})
	c, _ := vm.connect(t, ctx)
	defer c.Close()
	mreq := startReq([]string{"sleep", "1000"}, "", false)
	mreq.Container = "main1"
	main, err := c.Start(ctx, mreq, agentclient.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	var out buf
	r := joinReq("ro", "jevm-pod-ro", []string{"sh", "-c", "touch /x; touch /scratch/y && echo tmpfs-ok; wc -c < /proc/kcore; tty; read x; echo got=$x done; exec sleep 1000"})
	r.ReadOnly = true
	r.Mounts = []agentproto.MountRequest{{Type: "tmpfs", Target: "/scratch"}}
	r.MaskedPaths = []string{"/proc/kcore"}
	r.Process.TTY, r.Process.Stdin = true, true
	ro, err := c.Join(ctx, r, agentclient.ProcessIO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	// The whole line: input written before tty's newline reaches the
	// terminal is echoed in the middle of it.
	waitOutput(t, ctx, &out, "/dev/pts/0\r\n")
	if _, err := ro.Stdin().Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	// The whole line again: "done" and its newline may come apart.
	waitOutput(t, ctx, &out, "done\r\n")
	got := strings.ReplaceAll(out.String(), "\r", "")
	t.Logf("output: %q", got)
	for _, want := range []string{"Read-only file system", "tmpfs-ok\n0\n/dev/pts/0\n", "got=hi done\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mst := waitExited(t, ctx, main)
	select {
	case <-ro.Exited():
	default:
		t.Errorf("main's exit came before ro's")
	}
	if st := waitExited(t, ctx, ro); st.Code != 137 || mst.Code != 137 {
		t.Errorf("ro %+v main %+v", st, mst)
	}
	vm.waitExit(t, 30*time.Second)
}

// buildChrootEscape builds testdata/chrootescape, static, and returns the
// binary.
func buildChrootEscape(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "chrootescape")
	cmd := osexec.Command("go", "build", "-o", bin, "./testdata/chrootescape")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build chrootescape: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
