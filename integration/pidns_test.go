package integration

import (
	"strings"
	"testing"
	"time"
)

// The entrypoint is PID 1 of the container's PID namespace, as in a runc
// container: `ps` and /proc in the container (exec'd processes join the
// namespace) see it as PID 1, and the kernel does not deliver it a signal
// it has no handler for, so `docker stop` of a shell without a trap ends
// with the SIGKILL after the timeout (137), while a trap runs (42).
func TestEntrypointIsPID1(t *testing.T) {
	plain, trapped := uniqueName(t, "plain"), uniqueName(t, "trap")
	rmOnCleanup(t, plain, trapped)
	const loop = `echo ready; while true; do sleep 1; done`
	mustDocker(t, "run", "-d", "--name", plain, "busybox", "sh", "-c", loop)
	mustDocker(t, "run", "-d", "--name", trapped, "busybox", "sh", "-c", `trap "exit 42" TERM; `+loop)
	for _, n := range []string{plain, trapped} {
		waitFor(t, 60*time.Second, n+" to start its loop", func() bool { return strings.Contains(mustDocker(t, "logs", n), "ready") })
	}

	ps := mustDocker(t, "exec", plain, "ps", "-o", "pid,args")
	pid1 := ""
	for _, l := range strings.Split(ps, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "1" {
			pid1 = strings.Join(f[1:], " ")
		}
	}
	if pid1 != "sh -c "+loop {
		t.Fatalf("PID 1 in the container is %q, want the entrypoint; ps:\n%s", pid1, ps)
	}
	// /proc/self (and so /dev/stdout) resolves in an exec'd shell, which
	// is in the namespace: its PID is its PID there.
	out := mustDocker(t, "exec", plain, "sh", "-c", `echo x > /dev/stdout; read self rest < /proc/self/stat; [ "$self" = "$$" ] && echo same-pid`)
	if out != "x\nsame-pid\n" {
		t.Fatalf("exec with /dev/stdout and /proc/self: %q", out)
	}
	if top := mustDocker(t, "top", plain); !strings.Contains(top, "sh -c "+loop) {
		t.Fatalf("docker top lacks the entrypoint:\n%s", top)
	}

	begin := time.Now()
	mustDocker(t, "stop", "-t", "1", plain)
	if took := time.Since(begin); took < time.Second {
		t.Fatalf("stop of a shell without a trap returned after %v, before the timeout", took)
	}
	if code := inspectField(t, plain, "{{.State.ExitCode}}"); code != "137" {
		t.Fatalf("exit code after stop = %s, want 137 (SIGTERM not delivered to PID 1, SIGKILL after the timeout)", code)
	}
	mustDocker(t, "stop", "-t", "30", trapped)
	if code := inspectField(t, trapped, "{{.State.ExitCode}}"); code != "42" {
		t.Fatalf("exit code after stop = %s, want 42 (the trap's)", code)
	}
}

// With --pid host the container shares the guest's PID namespace: the
// guest agent is PID 1 there, the entrypoint is not.
func TestPIDModeHost(t *testing.T) {
	out := mustDocker(t, "run", "--rm", "--pid", "host", "busybox", "sh", "-c", `echo $$; tr '\0' ' ' < /proc/1/cmdline`)
	f := strings.Fields(out)
	if len(f) < 2 || f[0] == "1" || strings.HasPrefix(f[1], "sh") {
		t.Fatalf("--pid host: %q, want the shell not PID 1 and PID 1 the guest's", out)
	}
}

// With --init the guest agent is the container's init, as docker-init is
// dockerd's: the entrypoint is an ordinary process, so a shell without a
// trap dies of docker stop's SIGTERM (143) at once.
func TestInitFlag(t *testing.T) {
	name := uniqueName(t, "init")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--init", "--name", name, "busybox", "sh", "-c", `echo $$; while true; do sleep 1; done`)
	waitFor(t, 60*time.Second, "the shell to start", func() bool { return mustDocker(t, "logs", name) != "" })
	if pid := strings.TrimSpace(mustDocker(t, "logs", name)); pid == "1" {
		t.Fatalf("with --init the entrypoint is PID %s", pid)
	}
	begin := time.Now()
	mustDocker(t, "stop", "-t", "20", name)
	if took := time.Since(begin); took > 15*time.Second {
		t.Fatalf("stop took %v: the SIGTERM did not end the shell", took)
	}
	if code := inspectField(t, name, "{{.State.ExitCode}}"); code != "143" {
		t.Fatalf("exit code after stop = %s, want 143", code)
	}
}
