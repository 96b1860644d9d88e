package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const tickCmd = `i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done`

func tickCount(t *testing.T, name string) int {
	t.Helper()
	return strings.Count(mustDocker(t, "logs", name), "tick ")
}

// psStatus is `docker ps -a`'s STATUS of one container.
func psStatus(t *testing.T, name string) string {
	t.Helper()
	return strings.TrimSpace(mustDocker(t, "ps", "-a", "--filter", "name=^"+name+"$", "--format", "{{.Status}}"))
}

// eventsSince lists the actions of name's events from since until now.
func eventsSince(t *testing.T, name string, since time.Time) string {
	t.Helper()
	return mustDocker(t, "events", "--since", strconv.FormatInt(since.Unix(), 10), "--until", strconv.FormatInt(time.Now().Unix()+1, 10),
		"--filter", "container="+name, "--format", "{{.Action}}")
}

// qemuOf lists the QEMU processes of a container (their command line
// carries its ID).
func qemuOf(id string) []string {
	var found []string
	for _, pid := range qemuProcessesUnder(env.root) {
		b, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if strings.Contains(string(b), id) {
			found = append(found, pid)
		}
	}
	return found
}

// Pause stops the guest: a ticking container's log stops growing, and
// grows again after unpause.
func TestPauseUnpause(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	begin := time.Now()
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sh", "-c", tickCmd)
	waitFor(t, 60*time.Second, "ticks", func() bool { return tickCount(t, name) >= 3 })

	mustDocker(t, "pause", name)
	if st := inspectField(t, name, "{{.State.Status}} {{.State.Running}} {{.State.Paused}}"); st != "paused true true" {
		t.Fatalf("after pause: %q", st)
	}
	if st := psStatus(t, name); !strings.HasPrefix(st, "Up ") || !strings.HasSuffix(st, "(Paused)") {
		t.Fatalf("ps status %q, want Up ... (Paused)", st)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(mustDocker(t, "info", "--format", "{{.ContainersPaused}}"))); n < 1 {
		t.Fatalf("docker info counts %d paused containers", n)
	}
	time.Sleep(500 * time.Millisecond) // output already on its way
	n1 := tickCount(t, name)
	time.Sleep(2 * time.Second)
	if n2 := tickCount(t, name); n2 != n1 {
		t.Fatalf("the log grew while paused: %d -> %d ticks", n1, n2)
	}
	r := docker(t, "pause", name)
	if r.code == 0 || !strings.Contains(r.stderr, "is already paused") {
		t.Fatalf("second pause: %s", r)
	}
	r = docker(t, "start", name)
	if r.code == 0 || !strings.Contains(r.stderr, "cannot start a paused container") {
		t.Fatalf("start of a paused container: %s", r)
	}

	mustDocker(t, "unpause", name)
	if st := inspectField(t, name, "{{.State.Status}} {{.State.Paused}}"); st != "running false" {
		t.Fatalf("after unpause: %q", st)
	}
	waitFor(t, 30*time.Second, "ticks after unpause", func() bool { return tickCount(t, name) > n1+3 })
	r = docker(t, "unpause", name)
	if r.code == 0 || !strings.Contains(r.stderr, "is not paused") {
		t.Fatalf("unpause of a running container: %s", r)
	}
	ev := eventsSince(t, name, begin)
	if !strings.Contains(ev, "pause\n") || !strings.Contains(ev, "unpause\n") {
		t.Errorf("events %q lack pause/unpause", ev)
	}

	// docker stop of a paused container stops it (it is resumed, then
	// signalled; the shell, PID 1 without a TERM trap, ends by the SIGKILL
	// after the timeout).
	mustDocker(t, "pause", name)
	mustDocker(t, "stop", "-t", "1", name)
	if st := inspectField(t, name, "{{.State.Status}} {{.State.ExitCode}}"); st != "exited 137" {
		t.Fatalf("stop of a paused container: %q, want exited 137", st)
	}
	r = docker(t, "pause", name)
	if r.code == 0 || !strings.Contains(r.stderr, "is not running") {
		t.Fatalf("pause of a stopped container: %s", r)
	}
}

// kill and rm -f work on a paused VM, and leave no QEMU behind.
func TestPauseKillAndRemove(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	id := strings.TrimSpace(mustDocker(t, "run", "-d", "--name", name, "busybox", "sleep", "300"))
	mustDocker(t, "pause", name)
	mustDocker(t, "kill", name)
	if st := inspectField(t, name, "{{.State.Status}} {{.State.ExitCode}}"); st != "exited 137" {
		t.Fatalf("kill of a paused container: %q", st)
	}
	mustDocker(t, "start", name)
	mustDocker(t, "pause", name)
	pid := vmPidOf(t, name)
	mustDocker(t, "rm", "-f", name)
	if _, err := os.Stat("/proc/" + pid); err == nil {
		t.Fatalf("QEMU %s left behind by rm -f of a paused container", pid)
	}
	if left := qemuOf(id); len(left) != 0 {
		t.Fatalf("QEMU left behind by rm -f of a paused container: %v", left)
	}
}

// vmPidOf is the running container name's State.Pid, checked to be a QEMU
// of this test's daemon: the one its template was cloned for (its ID on
// the command line) or a warm pool's blank it claimed.
func vmPidOf(t *testing.T, name string) string {
	t.Helper()
	pid := inspectField(t, name, "{{.State.Pid}}")
	id := inspectField(t, name, "{{.Id}}")
	b, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
	cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
	if err != nil || !strings.Contains(cmd, "qemu-system") || !strings.Contains(cmd, env.root) ||
		!(strings.Contains(cmd, "-name jevm-"+id) || strings.Contains(cmd, "-name jevm-pool")) {
		t.Fatalf("State.Pid %s of %s is not its VM's QEMU: %v %q", pid, name, err, cmd)
	}
	return pid
}

// A paused container stays paused across a daemon restart.
func TestPauseSurvivesDaemonRestart(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sh", "-c", tickCmd)
	waitFor(t, 60*time.Second, "ticks", func() bool { return tickCount(t, name) >= 2 })
	mustDocker(t, "pause", name)
	pid := inspectField(t, name, "{{.State.Pid}}")

	restartDaemon(t)

	if st := inspectField(t, name, "{{.State.Status}} {{.State.Paused}} {{.State.Pid}}"); st != "paused true "+pid {
		t.Fatalf("after daemon restart: %q, want paused with VM pid %s", st, pid)
	}
	time.Sleep(500 * time.Millisecond)
	n1 := tickCount(t, name)
	time.Sleep(2 * time.Second)
	if n2 := tickCount(t, name); n2 != n1 {
		t.Fatalf("log grew while paused after the daemon restart: %d -> %d", n1, n2)
	}
	mustDocker(t, "unpause", name)
	waitFor(t, 30*time.Second, "ticks after unpause", func() bool { return tickCount(t, name) > n1+2 })
}

// on-failure:2 restarts a failing container twice, then leaves it exited.
func TestRestartPolicyOnFailure(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3")
	waitFor(t, 2*time.Minute, "two restarts and the final exit", func() bool {
		return inspectField(t, name, "{{.State.Status}} {{.RestartCount}}") == "exited 2"
	})
	time.Sleep(2 * time.Second)
	if st := inspectField(t, name, "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"); st != "exited 3 2 on-failure:2" {
		t.Fatalf("final state %q", st)
	}
	if n := strings.Count(mustDocker(t, "logs", name), "run\n"); n != 3 {
		t.Fatalf("ran %d times, want 3", n)
	}
	// on-failure does not restart a success.
	ok := uniqueName(t, "ok")
	rmOnCleanup(t, ok)
	mustDocker(t, "run", "-d", "--name", ok, "--restart", "on-failure", "busybox", "true")
	waitFor(t, time.Minute, "exit", func() bool { return inspectField(t, ok, "{{.State.Status}}") == "exited" })
	time.Sleep(time.Second)
	if st := inspectField(t, ok, "{{.State.Status}} {{.RestartCount}}"); st != "exited 0" {
		t.Fatalf("on-failure after exit 0: %q", st)
	}
}

// always restarts a container that exits 0; docker stop ends that.
func TestRestartPolicyAlwaysAndStop(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "--restart", "always", "busybox", "sh", "-c", "echo run; sleep 1")
	// RestartCount counts restarts decided; the log shows runs made.
	waitFor(t, 2*time.Minute, "restarts", func() bool {
		n, _ := strconv.Atoi(inspectField(t, name, "{{.RestartCount}}"))
		return n >= 2 && strings.Count(mustDocker(t, "logs", name), "run\n") >= 3
	})
	mustDocker(t, "stop", name)
	st := inspectField(t, name, "{{.State.Status}} {{.RestartCount}}")
	if !strings.HasPrefix(st, "exited ") {
		t.Fatalf("after stop: %q", st)
	}
	time.Sleep(3 * time.Second)
	if again := inspectField(t, name, "{{.State.Status}} {{.RestartCount}}"); again != st {
		t.Fatalf("restarted after docker stop: %q -> %q", st, again)
	}
	// An explicit start resets the count, as in dockerd.
	mustDocker(t, "start", name)
	if n := inspectField(t, name, "{{.RestartCount}}"); n != "0" {
		t.Fatalf("RestartCount after docker start = %s, want 0", n)
	}
	mustDocker(t, "rm", "-f", name)
}

// A daemon restart starts "always" containers whose VM went away while
// the daemon was down, and not those without a policy.
func TestRestartPolicyAlwaysAfterDaemonRestart(t *testing.T) {
	always := uniqueName(t, "always")
	never := uniqueName(t, "never")
	rmOnCleanup(t, always, never)
	mustDocker(t, "run", "-d", "--name", always, "--restart", "always", "busybox", "sh", "-c", tickCmd)
	mustDocker(t, "run", "-d", "--name", never, "busybox", "sh", "-c", tickCmd)
	started := inspectField(t, always, "{{.State.StartedAt}}")
	var pids []int
	for _, n := range []string{always, never} {
		pid, err := strconv.Atoi(inspectField(t, n, "{{.State.Pid}}"))
		if err != nil || pid <= 0 {
			t.Fatalf("pid of %s: %v", n, err)
		}
		pids = append(pids, pid)
	}

	if err := stopDaemon(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := startDaemon(); err != nil {
		t.Fatal(err)
	}

	waitFor(t, time.Minute, "the always container running again", func() bool {
		return inspectField(t, always, "{{.State.Status}}") == "running" && inspectField(t, always, "{{.State.StartedAt}}") != started
	})
	if st := inspectField(t, never, "{{.State.Status}}"); st != "exited" {
		t.Fatalf("container without a policy after the daemon restart: %q", st)
	}
	before := tickCount(t, always)
	waitFor(t, 30*time.Second, "output of the restarted container", func() bool { return tickCount(t, always) > before+2 })
}

// docker update changes the restart policy of a running container.
func TestUpdateRestartPolicy(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sh", "-c", "sleep 3; exit 1")
	mustDocker(t, "update", "--restart", "on-failure:1", name)
	if p := inspectField(t, name, "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"); p != "on-failure:1" {
		t.Fatalf("policy after update: %q", p)
	}
	waitFor(t, 2*time.Minute, "one restart then the final exit", func() bool {
		return inspectField(t, name, "{{.State.Status}} {{.RestartCount}}") == "exited 1"
	})
	mustDocker(t, "update", "--restart", "always", name)
	if p := inspectField(t, name, "{{.HostConfig.RestartPolicy.Name}}"); p != "always" {
		t.Fatalf("policy after second update: %q", p)
	}
}

// docker update -m on a running container is refused (a running VM's RAM
// is fixed); on the stopped container it is stored, and the next start
// has a VM of the new size.
func TestUpdateMemory(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sh", "-c", "grep MemTotal /proc/meminfo; sleep 300")
	waitFor(t, 30*time.Second, "MemTotal", func() bool { return strings.Contains(mustDocker(t, "logs", name), "MemTotal") })
	before := inspectField(t, name, "{{index .GraphDriver.Data \"VMMemoryMiB\"}}")

	r := docker(t, "update", "-m", "512m", name)
	if r.code == 0 || !strings.Contains(r.stderr, "cannot change the memory of a running container") {
		t.Fatalf("update -m of a running container: %s", r)
	}
	if m := inspectField(t, name, "{{.HostConfig.Memory}} {{index .GraphDriver.Data \"VMMemoryMiB\"}}"); m != "0 "+before {
		t.Fatalf("after the refused update: %q", m)
	}
	mustDocker(t, "stop", "-t", "0", name)
	mustDocker(t, "update", "-m", "512m", name)
	if m := inspectField(t, name, "{{.HostConfig.Memory}}"); m != "536870912" {
		t.Fatalf("after update of the stopped container: %q", m)
	}

	mustDocker(t, "start", name)
	if m := inspectField(t, name, "{{index .GraphDriver.Data \"VMMemoryMiB\"}}"); m != "512" {
		t.Fatalf("VMMemoryMiB after the restart = %s, want 512", m)
	}
	waitFor(t, 30*time.Second, "MemTotal of the new VM", func() bool {
		return strings.Count(mustDocker(t, "logs", name), "MemTotal") == 2
	})
	var kb []int
	for _, line := range strings.Split(mustDocker(t, "logs", name), "\n") {
		var n int
		if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &n); err == nil {
			kb = append(kb, n)
		}
	}
	if len(kb) != 2 || kb[1] < 400*1024 || kb[1] > 512*1024 || kb[1] < kb[0]+128*1024 {
		t.Fatalf("guest MemTotal before/after = %v kB, want a 512 MiB VM after the restart", kb)
	}
}

// A health check goes starting -> healthy once its test passes.
func TestHealthcheckHealthy(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	begin := time.Now()
	mustDocker(t, "run", "-d", "--name", name, "--health-cmd", "test -f /tmp/ok", "--health-interval", "1s", "--health-retries", "2",
		"busybox", "sh", "-c", "sleep 3; touch /tmp/ok; sleep 300")
	if st := inspectField(t, name, "{{.State.Health.Status}}"); st != "starting" {
		t.Fatalf("health right after start: %q", st)
	}
	if st := psStatus(t, name); !strings.HasSuffix(st, "(health: starting)") {
		t.Errorf("ps status while starting: %q", st)
	}
	waitFor(t, 90*time.Second, "healthy", func() bool { return inspectField(t, name, "{{.State.Health.Status}}") == "healthy" })
	if st := psStatus(t, name); !strings.HasPrefix(st, "Up ") || !strings.HasSuffix(st, "(healthy)") {
		t.Fatalf("ps status %q, want Up ... (healthy)", st)
	}
	if got := strings.TrimSpace(mustDocker(t, "ps", "-q", "--no-trunc", "--filter", "health=healthy", "--filter", "name=^"+name+"$")); got == "" {
		t.Errorf("ps --filter health=healthy does not list it")
	}
	logs := inspectField(t, name, "{{range .State.Health.Log}}{{.ExitCode}} {{end}}")
	if !strings.HasSuffix(logs, "0") || len(strings.Fields(logs)) > 5 {
		t.Fatalf("health log exit codes %q", logs)
	}
	if ev := eventsSince(t, name, begin); !strings.Contains(ev, "health_status: healthy") {
		t.Errorf("events %q lack health_status: healthy", ev)
	}
}

// A failing health check makes the container unhealthy.
func TestHealthcheckUnhealthy(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "--health-cmd", "echo sick; exit 1", "--health-interval", "1s", "--health-retries", "2",
		"busybox", "sleep", "300")
	waitFor(t, 90*time.Second, "unhealthy", func() bool { return inspectField(t, name, "{{.State.Health.Status}}") == "unhealthy" })
	st := inspectField(t, name, "{{.State.Health.FailingStreak}} {{range .State.Health.Log}}{{.ExitCode}}:{{.Output}}{{end}}")
	streak, _ := strconv.Atoi(strings.Fields(st)[0])
	if streak < 2 || !strings.Contains(st, "1:sick") {
		t.Fatalf("health after failures: %q", st)
	}
	if st := psStatus(t, name); !strings.HasSuffix(st, "(unhealthy)") {
		t.Fatalf("ps status %q", st)
	}
	// --no-healthcheck: no health state at all.
	none := uniqueName(t, "none")
	rmOnCleanup(t, none)
	mustDocker(t, "create", "--name", none, "--no-healthcheck", "busybox", "true")
	if h := inspectField(t, none, "{{.State.Health}}"); h != "<nil>" {
		t.Fatalf("--no-healthcheck: health %q", h)
	}
}
