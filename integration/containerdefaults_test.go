package integration

import (
	"strconv"
	"strings"
	"testing"
)

// --ulimit reaches the container's process before it runs, soft and hard.
func TestUlimitInContainer(t *testing.T) {
	out := mustDocker(t, "run", "--rm", "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=300", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u")
	if got := strings.Fields(out); strings.Join(got, " ") != "1024 2048 300" {
		t.Fatalf("ulimits in the container = %q, want 1024 2048 300", out)
	}
	r := docker(t, "run", "--rm", "--ulimit", "nofile=2048:1024", "busybox", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "soft limit must be less than or equal to hard limit") {
		t.Fatalf("soft above hard accepted:\n%s", r)
	}
}

// --log-driver none stores nothing and `docker logs` says so, as dockerd;
// drivers jevm lacks are refused at create with a clear message.
func TestLogDriverNoneAndUnsupported(t *testing.T) {
	name := uniqueName(t, "quiet")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "--name", name, "--log-driver", "none", "busybox", "echo", "lost")
	if got := strings.TrimSpace(mustDocker(t, "inspect", "--format", "{{.HostConfig.LogConfig.Type}}", name)); got != "none" {
		t.Fatalf("LogConfig.Type = %q", got)
	}
	r := docker(t, "logs", name)
	if r.code == 0 || !strings.Contains(r.stderr, "configured logging driver does not support reading") {
		t.Fatalf("docker logs with driver none:\n%s", r)
	}
	r = docker(t, "create", "--log-driver", "syslog", "busybox", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "syslog") {
		t.Fatalf("--log-driver syslog accepted:\n%s", r)
	}
}

// json-file with max-size and max-file rotates; `docker logs` reads what
// is kept, oldest first, ending with the last line written.
func TestLogRotation(t *testing.T) {
	name := uniqueName(t, "rot")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "--name", name, "--log-opt", "max-size=4k", "--log-opt", "max-file=2", "busybox", "seq", "1", "3000")
	lines := strings.Fields(mustDocker(t, "logs", name))
	if len(lines) == 0 || lines[len(lines)-1] != "3000" {
		t.Fatalf("last logged line is not 3000 (%d lines)", len(lines))
	}
	if len(lines) >= 3000 {
		t.Fatalf("all %d lines kept: nothing was rotated away with max-size=4k max-file=2", len(lines))
	}
	// What is kept is contiguous: two files of about 4 KiB of JSON entries.
	first, _ := strconv.Atoi(lines[0])
	for i, l := range lines {
		if n, _ := strconv.Atoi(l); n != first+i {
			t.Fatalf("line %d is %q, want %d: rotated files read out of order", i, l, first+i)
		}
	}
}
