package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// kill -9 of a container's QEMU: the container exits 137 with a die
// event, as a SIGKILLed runc container does, and its restart policy
// applies. Its first run exited 3 by itself (an exit marker on its
// console): that earlier run's code must not stand for the killed one.
func TestKillQEMUExitsAndRestarts(t *testing.T) {
	name := uniqueName(t, "killvm")
	rmOnCleanup(t, name)
	since := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)
	mustDocker(t, "run", "-d", "--name", name, "--restart", "on-failure:2", "busybox",
		"sh", "-c", "test -f /ran || { touch /ran; exit 3; }; echo second-run; exec sleep 1000")
	waitFor(t, 90*time.Second, name+"'s second run", func() bool {
		return strings.Contains(mustDocker(t, "logs", name), "second-run") && inspectField(t, name, "{{.State.Status}}") == "running"
	})
	pid, err := strconv.Atoi(inspectField(t, name, "{{.State.Pid}}"))
	if err != nil || pid <= 0 {
		t.Fatalf("State.Pid %d %v", pid, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, name+" restarted after its VM was killed", func() bool {
		return inspectField(t, name, "{{.RestartCount}} {{.State.Status}}") == "2 running"
	})
	if p := inspectField(t, name, "{{.State.Pid}}"); p == strconv.Itoa(pid) {
		t.Fatalf("still the killed VM's pid %s", p)
	}
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	dies := mustDocker(t, "events", "--since", since, "--until", until, "--filter", "container="+name,
		"--filter", "event=die", "--format", "{{.Actor.Attributes.exitCode}}")
	if got := strings.Fields(dies); len(got) != 2 || got[0] != "3" || got[1] != "137" {
		t.Fatalf("die events' exit codes %q, want 3 then 137", got)
	}
}

// kill -9 of jevmd with ten containers running, then a new jevmd: each is
// re-adopted in its VM (same pid), its log goes on, its published port
// and the network's DNS answer again; removing the container and the
// network afterwards leaves no tap, bridge or NAT rule.
func TestDaemonKill9KeepsContainers(t *testing.T) {
	netName := uniqueName(t, "k9net")
	mustDocker(t, "network", "create", netName)
	bridge := bridgeOf(t, netName)
	web, ticker := uniqueName(t, "k9web"), uniqueName(t, "k9tick")
	rmOnCleanup(t, web, ticker)
	port := freePort(t)
	mustDocker(t, "run", "-d", "--name", web, "--network", netName, "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "web")
	mustDocker(t, "run", "-d", "--name", ticker, "--network", netName, "busybox", "sh", "-c", `i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.3; done`)
	waitFor(t, 30*time.Second, "ticks", func() bool { return strings.Contains(mustDocker(t, "logs", ticker), "tick 1\n") })
	httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	// Eight more, for ten running in all when the daemon dies.
	var more []string
	for i := 0; i < 8; i++ {
		n := uniqueName(t, fmt.Sprintf("k9idle%d", i))
		rmOnCleanup(t, n)
		mustDocker(t, "run", "-d", "--name", n, "--network", netName, "busybox", "sleep", "600")
		more = append(more, n)
	}
	allPids := func() string {
		out := inspectField(t, web, "{{.State.Pid}}") + " " + inspectField(t, ticker, "{{.State.Pid}}")
		for _, n := range more {
			out += " " + inspectField(t, n, "{{.State.Status}}:{{.State.Pid}}")
		}
		return out
	}
	pids := allPids()
	taps := linksOn(t, bridge)
	// The ticker runs on a claimed blank of the warm pool (the web
	// container may too): re-adoption finds it by what the claim
	// recorded, not by the ID on its command line.
	if _, ok := blankPids()[vmPidOf(t, ticker)]; !ok {
		t.Fatalf("%s does not run on a blank of the warm pool", ticker)
	}
	// The idle blanks die with the daemon's successor's start.
	waitPoolFull(t)
	idle := idleBlankPids(t)

	if err := env.daemon.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := stopDaemon(); err != nil { // waits for it to be gone
		t.Fatal(err)
	}
	if err := startDaemon(); err != nil {
		t.Fatal(err)
	}

	if got := allPids(); got != pids {
		t.Fatalf("pids after kill -9 and restart %q, want the same VMs %q", got, pids)
	}
	for _, n := range more {
		if out := mustDocker(t, "exec", n, "echo", "adopted"); out != "adopted\n" {
			t.Fatalf("exec into %s after kill -9 and restart: %q", n, out)
		}
	}
	for _, pid := range idle {
		if !processGone(pid) {
			t.Fatalf("idle blank %s of the killed daemon still runs", pid)
		}
	}
	// The adopted QEMUs keep their ids (vmbackend/qemu/vmids.go): a
	// container started now and the new pool's blanks get others.
	fresh := uniqueName(t, "k9fresh")
	rmOnCleanup(t, fresh)
	mustDocker(t, "run", "-d", "--name", fresh, "busybox", "sleep", "600")
	owner := map[string]string{}
	qemus := strings.Fields(inspectField(t, web, "{{.State.Pid}}") + " " + inspectField(t, ticker, "{{.State.Pid}}") + " " + inspectField(t, fresh, "{{.State.Pid}}"))
	for _, n := range more {
		qemus = append(qemus, inspectField(t, n, "{{.State.Pid}}"))
	}
	for pid := range blankPids() {
		qemus = append(qemus, pid)
	}
	for _, pid := range qemus {
		uid := procUID(t, pid)
		if other, ok := owner[uid]; ok && other != pid {
			t.Fatalf("QEMUs %s and %s both run as uid %s after the restart", other, pid, uid)
		}
		owner[uid] = pid
	}
	mustDocker(t, "rm", "-f", fresh)

	before := strings.Count(mustDocker(t, "logs", ticker), "tick")
	waitFor(t, 30*time.Second, "ticks after the restart", func() bool {
		return strings.Count(mustDocker(t, "logs", ticker), "tick") > before+2
	})
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); !strings.Contains(body, webIndex) {
		t.Fatalf("published port after kill -9 and restart: %q", body)
	}
	if out := mustDocker(t, "exec", ticker, "wget", "-qO-", "http://"+web); !strings.Contains(out, webIndex) {
		t.Fatalf("DNS after kill -9 and restart: %q", out)
	}

	mustDocker(t, append([]string{"rm", "-f", web, ticker}, more...)...)
	checkNetworkLeavesNothing(t, netName, bridge, port, taps)
}

// procUID is the real uid of process pid.
func procUID(t *testing.T, pid string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\nUid:")
	if !ok {
		t.Fatalf("no Uid in /proc/%s/status", pid)
	}
	return strings.Fields(rest)[0]
}

// zeroReader never ends: a client that keeps writing.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A container that never reads its stdin while the client keeps writing
// (more than the agent queues) holds up only its stdin: `docker stop`'s
// SIGTERM still reaches it, and its trap's exit code is the container's
// (before the stdin window, the agent's reader stalled behind the full
// queue and the stop ended in a kill: 137).
func TestStdinBackpressureKeepsControl(t *testing.T) {
	name := uniqueName(t, "nostdin")
	rmOnCleanup(t, name)
	cmd := exec.Command("docker", "run", "-i", "--name", name, "busybox",
		"sh", "-c", `trap "exit 7" TERM; echo ready; while true; do sleep 0.2; done`)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+env.sock, "DOCKER_CONFIG="+dockerConfig())
	cmd.Stdin = zeroReader{}
	var out syncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, 90*time.Second, name+" to run", func() bool { return strings.Contains(out.String(), "ready") })
	// Long enough under TCG for far more than the agent's 4 MiB queue.
	time.Sleep(5 * time.Second)
	mustDocker(t, "stop", "-t", "30", name)
	if code := inspectField(t, name, "{{.State.ExitCode}}"); code != "7" {
		t.Fatalf("exit code %s after docker stop, want the TERM trap's 7", code)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A guest that never answers (its QEMU stopped with SIGSTOP: nothing the
// host sends is read, nothing comes back) costs only its own container:
// another container starts and answers meanwhile, `docker stop -t 2`
// ends it within its grace periods (killed: 137), and an exec that was
// waiting on it fails then. (An exec alone fails after
// agentclient.RequestTimeout, 60 s: TestRequestTimeout.)
func TestGuestNeverAnswers(t *testing.T) {
	hung, other := uniqueName(t, "hung"), uniqueName(t, "other")
	rmOnCleanup(t, hung, other)
	mustDocker(t, "run", "-d", "--name", hung, "busybox", "sleep", "1000")
	pid, err := strconv.Atoi(inspectField(t, hung, "{{.State.Pid}}"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)

	execDone := make(chan result, 1)
	go func() { execDone <- docker(t, "exec", hung, "true") }()
	if out := mustDocker(t, "run", "--rm", "--name", other, "busybox", "echo", "alive"); out != "alive\n" {
		t.Fatalf("another container while one VM hangs: %q", out)
	}
	select {
	case r := <-execDone:
		t.Fatalf("the exec into the hung guest ended before its stop: %s", r)
	default:
	}
	start := time.Now()
	mustDocker(t, "stop", "-t", "2", hung)
	t.Logf("docker stop -t 2 of the hung guest took %s", time.Since(start).Round(time.Millisecond))
	if st := inspectField(t, hung, "{{.State.Status}} {{.State.ExitCode}}"); st != "exited 137" {
		t.Fatalf("after stop of a hung guest: %q", st)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Fatalf("the hung VM's QEMU (pid %d) still exists", pid)
	}
	select {
	case r := <-execDone:
		if r.code == 0 {
			t.Fatalf("exec into a hung guest succeeded: %s", r)
		}
		t.Logf("the waiting exec failed %s after the stop began: %s", time.Since(start).Round(time.Millisecond), r)
	case <-time.After(30 * time.Second):
		t.Fatal("the exec into the hung guest still waits after its VM was killed")
	}
}

// A container that floods its stdout makes jevmd write its log as fast as
// it can, nothing more: jevmd's memory stays bounded, another container
// starts meanwhile, and `docker stop` ends the flood.
func TestStdoutFlood(t *testing.T) {
	flood := uniqueName(t, "flood")
	rmOnCleanup(t, flood)
	before := jevmdRSS(t)
	mustDocker(t, "run", "-d", "--name", flood, "--log-opt", "max-size=2m", "--log-opt", "max-file=2", "busybox", "yes", "flood-flood-flood")
	time.Sleep(5 * time.Second)
	if out := mustDocker(t, "run", "--rm", "busybox", "echo", "alive"); out != "alive\n" {
		t.Fatalf("another container during the flood: %q", out)
	}
	during := jevmdRSS(t)
	mustDocker(t, "stop", "-t", "2", flood)
	logs := docker(t, "logs", "--tail", "5", flood)
	t.Logf("jevmd RSS %d MiB before, %d MiB during the flood; last lines %q", before, during, logs.stdout)
	if during > before+256 {
		t.Fatalf("jevmd grew from %d to %d MiB during a stdout flood", before, during)
	}
	if !strings.Contains(logs.stdout, "flood-flood-flood") {
		t.Fatalf("the flood's log: %s", logs)
	}
}

// The data root's disk full during a pull and during a create: a clear
// error (ENOSPC's words), no half-written image or container, and the same
// pull and create work once there is room again. A private jevmd on a
// 96 MiB tmpfs (its default template cannot even be built there: that
// fails too, and leaves nothing).
func TestDataRootFull(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", data, "tmpfs", 0, "size=96m"); err != nil {
		t.Skipf("tmpfs for the data root: %v", err)
	}
	defer syscall.Unmount(data, syscall.MNT_DETACH)
	sock := filepath.Join(dir, "api.sock")
	startPrivateDaemon(t, dir, "-H", "unix://"+sock, "--config-file", "/dev/null",
		"--data-root", data, "--exec-root", filepath.Join(dir, "run"),
		"--guest-dir", env.guest, "--agent", filepath.Join(env.bin, "jevm-agent"),
		"--registry-mirror", "http://"+env.registry.Addr, "--insecure-registry", env.registry.Addr,
		"--bridge", "none", "--iptables=false", "--ip-forward=false")
	cfg := dockerConfig()
	d := func(args ...string) result { return dockerOn(t, sock, cfg, "", args...) }
	waitFor(t, 2*time.Minute, "the private jevmd", func() bool { return d("version").code == 0 })
	// Its default template's build fails (no room for its memory) and
	// frees what it wrote: wait for that before filling the disk.
	waitFor(t, 2*time.Minute, "the default template's build to end", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "jevmd.log"))
		return strings.Contains(string(b), "default VM template")
	})

	// fill leaves the file system (almost) no room; free gives it back.
	filler := filepath.Join(data, "filler")
	fill := func() {
		f, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 1<<20)
		for {
			if _, err := f.Write(buf); err != nil {
				break // ENOSPC
			}
		}
	}
	free := func() { os.Remove(filler) }

	fill()
	r := d("pull", "busybox")
	if r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "no space left on device") {
		t.Fatalf("pull onto a full disk: %s", r)
	}
	if out := d("images", "-q"); out.stdout != "" {
		t.Fatalf("images after a pull that failed: %q", out.stdout)
	}
	free()
	if r := d("pull", "busybox"); r.code != 0 {
		t.Fatalf("pull once there is room: %s", r)
	}

	fill()
	r = d("create", "--name", "full", "busybox", "true")
	if r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "no space left on device") {
		t.Fatalf("create onto a full disk: %s", r)
	}
	if out := d("ps", "-aq"); out.stdout != "" {
		t.Fatalf("containers after a create that failed: %q", out.stdout)
	}
	if ents, _ := os.ReadDir(filepath.Join(data, "containers")); len(ents) != 0 {
		t.Fatalf("container directories left: %v", ents)
	}
	free()
	if r := d("create", "--name", "full", "busybox", "true"); r.code != 0 {
		t.Fatalf("create once there is room: %s", r)
	}
	d("rm", "full")
}

// jevmdRSS is the test daemon's resident memory in MiB.
func jevmdRSS(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", env.daemon.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n / 1024
		}
	}
	return 0
}

// A guest that writes garbage to the host: root in a --privileged
// container with the VM's PID namespace takes the guest agent's channel
// to jevmd (testdata/hostile) and writes random bytes, frame headers far
// beyond the protocol's bound, a frame that never ends and well-formed
// frames that are not the protocol for 10 s. It may break its own
// container; jevmd stays up with its memory bounded, another container
// runs and execs meanwhile, and `docker rm -f` removes the hostile one
// with its VM.
func TestHostileGuestGarbage(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "hostile"), "./testdata/hostile")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the hostile guest program: %v\n%s", err, out)
	}
	victim, hostile := uniqueName(t, "victim"), uniqueName(t, "hostile")
	rmOnCleanup(t, victim, hostile)
	mustDocker(t, "run", "-d", "--name", victim, "busybox", "sleep", "600")
	before := jevmdRSS(t)
	mustDocker(t, "run", "-d", "--name", hostile, "--privileged", "--pid", "host", "-v", bin+":/h:ro", "busybox", "/h/hostile", "10s")
	hostilePid := inspectField(t, hostile, "{{.State.Pid}}")
	time.Sleep(3 * time.Second)
	// Meanwhile: the daemon answers, the other container works.
	if out := mustDocker(t, "exec", victim, "echo", "still here"); out != "still here\n" {
		t.Fatalf("exec into another container during the garbage: %q", out)
	}
	if out := mustDocker(t, "run", "--rm", "busybox", "echo", "alive"); out != "alive\n" {
		t.Fatalf("a new container during the garbage: %q", out)
	}
	// What the host does with it: the garbage's first oversized header
	// ends the agent connection (a guest that is not speaking the
	// protocol), so the container is taken for a VM that failed.
	waitFor(t, 60*time.Second, "the hostile container stopped", func() bool {
		return inspectField(t, hostile, "{{.State.Running}}") == "false"
	})
	during := jevmdRSS(t)
	state := inspectField(t, hostile, "{{.State.ExitCode}} {{.State.Error}}")
	logs := docker(t, "logs", hostile)
	t.Logf("hostile container: %s; its output: %q %q; jevmd RSS %d MiB before, %d MiB after", state, logs.stdout, logs.stderr, before, during)
	if !strings.HasPrefix(state, "137 ") || !strings.Contains(state, "agent connection") {
		t.Fatalf("the hostile container ended with %q, want 137 and the agent connection's error", state)
	}
	if during > before+128 {
		t.Fatalf("jevmd grew from %d to %d MiB on a guest's garbage", before, during)
	}
	mustDocker(t, "rm", "-f", hostile)
	waitFor(t, 30*time.Second, "the hostile container's QEMU gone", func() bool {
		_, err := os.Stat("/proc/" + hostilePid)
		return err != nil
	})
	if out := mustDocker(t, "exec", victim, "echo", "still here"); out != "still here\n" {
		t.Fatalf("exec into another container after the garbage: %q", out)
	}
	if r := docker(t, "info", "--format", "{{.ContainersRunning}}"); r.code != 0 {
		t.Fatalf("docker info after the garbage: %s", r)
	}
}
