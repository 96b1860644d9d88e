package integration

import (
	"strings"
	"testing"
	"time"
)

// A daemon restart loses no container: running VMs are re-adopted and keep
// logging; stopped containers keep their state.
func TestDaemonRestartKeepsContainers(t *testing.T) {
	running := uniqueName(t, "running")
	stopped := uniqueName(t, "stopped")
	rmOnCleanup(t, running, stopped)
	if r := docker(t, "run", "--name", stopped, "busybox", "sh", "-c", "echo bye; exit 4"); r.code != 4 {
		t.Fatalf("run: %s", r)
	}
	mustDocker(t, "run", "-d", "--name", running, "busybox", "sh", "-c", `i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.3; done`)
	waitFor(t, 30*time.Second, "output before the restart", func() bool { return strings.Contains(mustDocker(t, "logs", running), "tick 1\n") })
	pid := inspectField(t, running, "{{.State.Pid}}")

	restartDaemon(t)

	if st := inspectField(t, running, "{{.State.Status}} {{.State.Pid}}"); st != "running "+pid {
		t.Fatalf("after restart: %q, want running with the same VM (pid %s)", st, pid)
	}
	if st := inspectField(t, stopped, "{{.State.Status}} {{.State.ExitCode}}"); st != "exited 4" {
		t.Fatalf("stopped container after restart: %q", st)
	}
	if logs := mustDocker(t, "logs", stopped); logs != "bye\n" {
		t.Fatalf("logs of the stopped container after restart: %q", logs)
	}
	before := strings.Count(mustDocker(t, "logs", running), "tick")
	waitFor(t, 30*time.Second, "output after the restart", func() bool {
		return strings.Count(mustDocker(t, "logs", running), "tick") > before+2
	})
	// The shell is PID 1 of its PID namespace, without a TERM trap: the
	// SIGKILL after the timeout ends it.
	mustDocker(t, "stop", "-t", "1", running)
	if code := inspectField(t, running, "{{.State.ExitCode}}"); code != "137" {
		t.Fatalf("exit code of the re-adopted container = %s, want 137", code)
	}
}
