package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRunEchoHello(t *testing.T) {
	out := mustDocker(t, "run", "--rm", "busybox", "echo", "hello")
	if out != "hello\n" {
		t.Fatalf("stdout = %q, want %q", out, "hello\n")
	}
}

func TestRunExitCodeAndStderr(t *testing.T) {
	r := docker(t, "run", "--rm", "busybox", "sh", "-c", "echo to-out; echo to-err >&2; exit 3")
	if r.code != 3 {
		t.Fatalf("exit code %d, want 3\n%s", r.code, r)
	}
	if r.stdout != "to-out\n" || !strings.Contains(r.stderr, "to-err") {
		t.Fatalf("streams mixed up:\n%s", r)
	}
}

func TestRunEnvWorkdirNameHostname(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	out := mustDocker(t, "run", "--name", name, "-e", "FOO=bar baz", "-w", "/srv/work", "--hostname", "myhost",
		"busybox", "sh", "-c", `echo "$FOO"; pwd; hostname; cat /etc/hostname; echo "$HOSTNAME"`)
	want := "bar baz\n/srv/work\nmyhost\nmyhost\nmyhost\n"
	if out != want {
		t.Fatalf("stdout = %q, want %q", out, want)
	}
	var st []struct {
		Name   string
		Config struct {
			Hostname   string
			WorkingDir string
			Env        []string
		}
	}
	if err := json.Unmarshal([]byte(mustDocker(t, "inspect", name)), &st); err != nil || len(st) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	if st[0].Name != "/"+name || st[0].Config.Hostname != "myhost" || st[0].Config.WorkingDir != "/srv/work" {
		t.Fatalf("inspect = %+v", st[0])
	}
	if !contains(st[0].Config.Env, "FOO=bar baz") || !hasPrefix(st[0].Config.Env, "PATH=") {
		t.Fatalf("env %v lacks FOO or the image's PATH", st[0].Config.Env)
	}
}

func TestRunUserFromFlag(t *testing.T) {
	out := mustDocker(t, "run", "--rm", "-u", "nobody", "busybox", "id", "-u")
	if strings.TrimSpace(out) != "65534" {
		t.Fatalf("id -u = %q, want 65534", out)
	}
}

func TestDetachedLogsFollowAndStop(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sh", "-c", `i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.2; done`)

	// logs -f streams lines as they come.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "logs", "-f", name)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+env.sock)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for i := 0; i < 5; i++ {
		if !sc.Scan() {
			t.Fatalf("logs -f ended after %d lines: %v", i, sc.Err())
		}
		if want := "line " + itoa(i); sc.Text() != want {
			t.Fatalf("line %d = %q, want %q", i, sc.Text(), want)
		}
	}

	// stop: sh, PID 1 of the container's PID namespace without a TERM
	// trap, does not get the SIGTERM; the SIGKILL after the timeout ends
	// it (dockerd reports 128+9).
	mustDocker(t, "stop", "-t", "1", name)
	// The follower ends when the container stops.
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, stdout); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("logs -f did not end when the container stopped")
	}
	cmd.Wait()
	if code := inspectField(t, name, "{{.State.ExitCode}}"); code != "137" {
		t.Fatalf("exit code after stop = %s, want 137 (SIGKILL after the timeout)", code)
	}
	if st := inspectField(t, name, "{{.State.Status}}"); st != "exited" {
		t.Fatalf("status = %s", st)
	}

	// Logs outlive the VM; tail and timestamps work.
	all := mustDocker(t, "logs", name)
	if !strings.HasPrefix(all, "line 0\nline 1\n") {
		t.Fatalf("logs after exit = %q", all)
	}
	tail := strings.Split(strings.TrimSpace(mustDocker(t, "logs", "--tail", "2", name)), "\n")
	if len(tail) != 2 {
		t.Fatalf("--tail 2 gave %d lines", len(tail))
	}
	ts := strings.SplitN(mustDocker(t, "logs", "--timestamps", "--tail", "1", name), " ", 2)
	if _, err := time.Parse(time.RFC3339Nano, ts[0]); err != nil {
		t.Fatalf("--timestamps prefix %q: %v", ts[0], err)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sh", "-c", `trap "echo got TERM" TERM; echo ready; while true; do sleep 0.1; done`)
	waitFor(t, 60*time.Second, "the shell to install its trap", func() bool { return strings.Contains(mustDocker(t, "logs", name), "ready") })
	begin := time.Now()
	mustDocker(t, "stop", "-t", "2", name)
	if took := time.Since(begin); took < 2*time.Second {
		t.Fatalf("stop returned after %s, before the 2 s grace period", took)
	}
	if code := inspectField(t, name, "{{.State.ExitCode}}"); code != "137" {
		t.Fatalf("exit code = %s, want 137 (SIGKILL after the timeout)", code)
	}
	if logs := mustDocker(t, "logs", name); !strings.Contains(logs, "got TERM") {
		t.Fatalf("the process never saw SIGTERM; logs: %q", logs)
	}
}

func TestKillWithSignal(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sh", "-c", `trap "echo got USR1; exit 7" USR1; echo ready; while true; do sleep 0.1; done`)
	waitFor(t, 60*time.Second, "the shell to install its trap", func() bool { return strings.Contains(mustDocker(t, "logs", name), "ready") })
	mustDocker(t, "kill", "-s", "USR1", name)
	code := strings.TrimSpace(mustDocker(t, "wait", name))
	if code != "7" {
		t.Fatalf("docker wait = %s, want 7", code)
	}
	if r := docker(t, "kill", name); r.code == 0 || !strings.Contains(r.stderr, "is not running") {
		t.Fatalf("kill of a stopped container:\n%s", r)
	}
}

func TestPsAndInspectFields(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	id := strings.TrimSpace(mustDocker(t, "create", "--name", name, "--label", "team=vm", "busybox", "sh", "-c", "exit 5"))
	if len(id) != 64 {
		t.Fatalf("create printed %q, want a 64-hex ID", id)
	}
	row := mustDocker(t, "ps", "-a", "--filter", "name="+name, "--format", "{{.ID}}|{{.Image}}|{{.Command}}|{{.Status}}|{{.Names}}|{{.Label \"team\"}}")
	if want := id[:12] + `|busybox|"sh -c 'exit 5'"|Created|` + name + "|vm\n"; row != want {
		t.Fatalf("ps row = %q, want %q", row, want)
	}
	if st := inspectField(t, name, "{{.State.Status}} {{.State.Running}} {{.State.StartedAt}}"); st != "created false 0001-01-01T00:00:00Z" {
		t.Fatalf("created state = %q", st)
	}
	if img := inspectField(t, name, "{{.Image}}"); !strings.HasPrefix(img, "sha256:") {
		t.Fatalf(".Image = %q, want the image ID", img)
	}
	r := docker(t, "start", "-a", name)
	if r.code != 5 {
		t.Fatalf("start -a exit code %d, want 5\n%s", r.code, r)
	}
	got := inspectField(t, name, "{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}} {{.RestartCount}} {{json .Mounts}} {{len .NetworkSettings.Networks}}{{.NetworkSettings.Networks.bridge.IPAddress}}")
	if got != "exited 5 0 0 [] 1" { // the bridge network, no address while stopped
		t.Fatalf("exited state = %q", got)
	}
	started, _ := time.Parse(time.RFC3339Nano, inspectField(t, name, "{{.State.StartedAt}}"))
	finished, _ := time.Parse(time.RFC3339Nano, inspectField(t, name, "{{.State.FinishedAt}}"))
	if started.IsZero() || finished.Before(started) {
		t.Fatalf("StartedAt %v FinishedAt %v", started, finished)
	}
	// Filters the CLI offers.
	for _, f := range []string{"status=exited", "exited=5", "label=team=vm", "ancestor=busybox", "id=" + id[:10]} {
		if out := mustDocker(t, "ps", "-aq", "--no-trunc", "--filter", f, "--filter", "name="+name); strings.TrimSpace(out) != id {
			t.Errorf("ps --filter %s = %q", f, out)
		}
	}
	if out := mustDocker(t, "ps", "-q", "--filter", "name="+name); out != "" {
		t.Errorf("ps without -a lists a stopped container: %q", out)
	}
	if out := mustDocker(t, "ps", "-aq", "--filter", "status=running", "--filter", "name="+name); out != "" {
		t.Errorf("status=running matched an exited container: %q", out)
	}
}

func TestRmForceRunningLeavesNothing(t *testing.T) {
	name := uniqueName(t, "c")
	id := strings.TrimSpace(mustDocker(t, "run", "-d", "--name", name, "busybox", "sleep", "300"))
	waitFor(t, 30*time.Second, "the container to run", func() bool { return inspectField(t, name, "{{.State.Running}}") == "true" })
	pid := inspectField(t, name, "{{.State.Pid}}")
	if r := docker(t, "rm", name); r.code == 0 || !strings.Contains(r.stderr, "container is running") {
		t.Fatalf("rm of a running container without -f:\n%s", r)
	}
	mustDocker(t, "rm", "-f", name)
	if _, err := os.Stat("/proc/" + pid); err == nil {
		t.Fatalf("the VM process %s outlived its container", pid)
	}
	if procs := qemuProcessesUnder(id[:12]); len(procs) > 0 {
		t.Fatalf("QEMU processes left: %v", procs)
	}
	if _, err := os.Stat(filepath.Join(env.root, "data", "containers", id)); !os.IsNotExist(err) {
		t.Fatalf("container directory (with its disk) left behind: %v", err)
	}
	if r := docker(t, "inspect", name); r.code == 0 || !strings.Contains(r.stderr, "No such") {
		t.Fatalf("inspect after rm:\n%s", r)
	}
}

func TestConcurrentContainersAreIsolated(t *testing.T) {
	names := []string{uniqueName(t, "a"), uniqueName(t, "b")}
	rmOnCleanup(t, names...)
	var wg sync.WaitGroup
	outs := make([]result, 2)
	for i, n := range names {
		wg.Add(1)
		go func(i int, n string) {
			defer wg.Done()
			// Each writes its own file, waits for the other to have written
			// its own, then lists the root.
			outs[i] = docker(t, "run", "--name", n, "busybox", "sh", "-c", "echo "+n+" > /mine-"+n+"; sleep 3; ls /; cat /mine-*")
		}(i, n)
	}
	wg.Wait()
	for i, n := range names {
		other := names[1-i]
		if outs[i].code != 0 {
			t.Fatalf("%s failed:\n%s", n, outs[i])
		}
		if !strings.Contains(outs[i].stdout, "mine-"+n) || strings.Contains(outs[i].stdout, "mine-"+other) {
			t.Fatalf("%s sees:\n%s", n, outs[i].stdout)
		}
	}
	// The disk is the container's own and outlives the VM: a second start
	// sees the file of the first run.
	out := mustDocker(t, "start", "-a", names[0])
	if !strings.Contains(out, names[0]+"\n") {
		t.Fatalf("second run of %s lost its file: %q", names[0], out)
	}
}

func TestRestartAndRename(t *testing.T) {
	name := uniqueName(t, "c")
	renamed := uniqueName(t, "renamed")
	rmOnCleanup(t, name, renamed)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sh", "-c", "echo start; sleep 300")
	waitFor(t, 30*time.Second, "the first run's output", func() bool { return mustDocker(t, "logs", name) == "start\n" })
	firstPid := inspectField(t, name, "{{.State.Pid}}")
	mustDocker(t, "restart", "-t", "1", name)
	if inspectField(t, name, "{{.State.Running}}") != "true" || inspectField(t, name, "{{.State.Pid}}") == firstPid {
		t.Fatal("restart did not give the container a new running VM")
	}
	waitFor(t, 30*time.Second, "the second run's output", func() bool { return strings.Count(mustDocker(t, "logs", name), "start\n") == 2 })
	mustDocker(t, "rename", name, renamed)
	if n := inspectField(t, renamed, "{{.Name}}"); n != "/"+renamed {
		t.Fatalf("name after rename = %s", n)
	}
	if r := docker(t, "inspect", name); r.code == 0 {
		t.Fatal("the old name still resolves")
	}
	mustDocker(t, "rm", "-f", renamed)
}

// TestRestartAutoRemove: `docker restart` of a --rm container keeps it
// (dockerd's TestContainerWithAutoRemoveCanBeRestarted) with its disk as
// it was (a --rm container's VM is killed at once when it exits for good,
// daemon/runtime.go, but not when it restarts); a stop then removes it.
func TestRestartAutoRemove(t *testing.T) {
	name := uniqueName(t, "rm")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--rm", "--name", name, "busybox", "sh", "-c",
		`trap "exit 0" TERM; if [ -f /marker ]; then echo "again $(cat /marker)"; fi; echo written > /marker; sleep 300 & wait`)
	waitFor(t, 30*time.Second, "the marker written", func() bool {
		return docker(t, "exec", name, "cat", "/marker").stdout == "written\n"
	})
	mustDocker(t, "restart", "-t", "5", name)
	if inspectField(t, name, "{{.State.Running}}") != "true" {
		t.Fatal("the --rm container is not running after restart")
	}
	waitFor(t, 30*time.Second, "the second run to see the first run's file", func() bool {
		return strings.Contains(mustDocker(t, "logs", name), "again written\n")
	})
	mustDocker(t, "stop", "-t", "5", name)
	waitFor(t, 30*time.Second, "the --rm container removed after stop", func() bool {
		return docker(t, "inspect", name).code != 0
	})
}

func TestNameConflict(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "create", "--name", name, "busybox", "true")
	r := docker(t, "create", "--name", name, "busybox", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "is already in use") {
		t.Fatalf("second create with the same name:\n%s", r)
	}
}

func TestContainerPrune(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	id := strings.TrimSpace(mustDocker(t, "create", "--name", name, "--label", "prune-me=yes", "busybox", "true"))
	out := mustDocker(t, "container", "prune", "-f", "--filter", "label=prune-me=yes")
	if !strings.Contains(out, id) {
		t.Fatalf("prune output %q lacks %s", out, id)
	}
	if r := docker(t, "inspect", name); r.code == 0 {
		t.Fatal("pruned container still exists")
	}
}

func TestUnknownCommandExitCode(t *testing.T) {
	r := docker(t, "run", "--rm", "busybox", "no-such-command")
	if r.code != 127 || !strings.Contains(r.stderr, "executable file not found") {
		t.Fatalf("run of a missing command:\n%s", r)
	}
}

func TestBadJSONCreateIs400(t *testing.T) {
	resp, err := unixHTTPClient().Post("http://jevm/v1.45/containers/create", "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Message string }
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusBadRequest || body.Message == "" {
		t.Fatalf("status %d message %q, want 400 with a message", resp.StatusCode, body.Message)
	}
	resp, err = unixHTTPClient().Get("http://jevm/v1.45/containers/no-such-container/json")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body.Message, "No such container") {
		t.Fatalf("status %d message %q, want 404 No such container", resp.StatusCode, body.Message)
	}
}

func TestVersionAndInfo(t *testing.T) {
	v := mustDocker(t, "version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}")
	if !strings.HasPrefix(v, "1.") || !strings.Contains(v, "linux") {
		t.Fatalf("version = %q", v)
	}
	var info struct {
		NCPU              int
		MemTotal          int64
		Containers        int
		ContainersRunning int
		ServerVersion     string
		DockerRootDir     string
		Labels            []string
	}
	if err := json.Unmarshal([]byte(mustDocker(t, "info", "--format", "{{json .}}")), &info); err != nil {
		t.Fatal(err)
	}
	if info.NCPU < 1 || info.MemTotal <= 0 || info.ServerVersion == "" || info.DockerRootDir != filepath.Join(env.root, "data") {
		t.Fatalf("info = %+v", info)
	}
	accel := ""
	for _, l := range info.Labels {
		if v, ok := strings.CutPrefix(l, "com.jevm.accelerator="); ok {
			accel = v
		}
	}
	if accel != "kvm" && accel != "tcg" {
		t.Fatalf("info does not say which accelerator the VMs use: %v", info.Labels)
	}
}

func TestTCPListener(t *testing.T) {
	cmd := exec.Command("docker", "-H", "tcp://"+env.tcpAddr, "version", "--format", "{{.Server.Os}}")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(env.root, "docker-config"))
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "linux" {
		t.Fatalf("docker -H tcp://%s version: %v\n%s", env.tcpAddr, err, out)
	}
}

// -m and --cpus size the container's VM (a template of that shape is
// booted once and kept).
func TestMemoryAndCPUsSizeTheVM(t *testing.T) {
	out := mustDocker(t, "run", "--rm", "-m", "384m", "--cpus", "2", "busybox", "sh", "-c", "grep MemTotal /proc/meminfo; nproc")
	var memKB, cpus int
	if _, err := fmt.Sscanf(out, "MemTotal: %d kB\n%d", &memKB, &cpus); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if memKB > 384*1024 || memKB < 300*1024 || cpus != 2 {
		t.Fatalf("guest has %d kB and %d CPUs, want a 384 MiB VM with 2 vCPUs", memKB, cpus)
	}
}

func inspectField(t *testing.T, name, format string) string {
	t.Helper()
	return strings.TrimSpace(mustDocker(t, "inspect", "--format", format, name))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasPrefix(list []string, p string) bool {
	for _, x := range list {
		if strings.HasPrefix(x, p) {
			return true
		}
	}
	return false
}

func itoa(i int) string { return strconv.Itoa(i) }
