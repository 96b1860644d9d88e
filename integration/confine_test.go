package integration

import (
	"strings"
	"testing"
)

// A container's processes are confined in their VM as runc confines them
// (docs/API.md, "Seccomp, masked paths, --security-opt").

// dockerd's default seccomp profile: a new user namespace is refused
// (EPERM) without CAP_SYS_ADMIN; seccomp=unconfined lifts it; so do
// --privileged and --cap-add SYS_ADMIN (the profile's includes.caps). Execs
// get the container's filter.
func TestSeccompDefaultProfile(t *testing.T) {
	r := docker(t, "run", "--rm", "busybox", "unshare", "-U", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Fatalf("unshare -U under the default profile:\n%s", r)
	}
	for _, args := range [][]string{
		{"--security-opt", "seccomp=unconfined"},
		{"--privileged"},
	} {
		run := append(append([]string{"run", "--rm"}, args...), "busybox", "unshare", "-U", "true")
		mustDocker(t, run...)
	}

	name := uniqueName(t, "seccomp")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sleep", "300")
	r = docker(t, "exec", name, "unshare", "-U", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Fatalf("exec unshare -U under the default profile:\n%s", r)
	}
	// /proc/self/status reports the filter.
	if out := mustDocker(t, "exec", name, "grep", "^Seccomp:", "/proc/self/status"); !strings.Contains(out, "2") {
		t.Fatalf("exec's Seccomp mode: %q", out)
	}
}

// A custom profile (the CLI sends the file's content) applies, also with
// --privileged; a bad option is refused with dockerd's message.
func TestSeccompCustomProfile(t *testing.T) {
	const confined = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chown", "chown32", "fchownat"], "action": "SCMP_ACT_ERRNO"}]}`
	for _, priv := range []bool{false, true} {
		args := []string{"run", "--rm", "--security-opt", "seccomp=" + confined}
		if priv {
			args = append(args, "--privileged")
		}
		r := docker(t, append(args, "busybox", "chown", "42", "/bin/true")...)
		if r.code != 1 || !strings.Contains(r.stderr, "Operation not permitted") {
			t.Fatalf("chown under a profile denying it (privileged %v):\n%s", priv, r)
		}
	}
	r := docker(t, "create", "--security-opt", "writeable-cgroups=true", "busybox", "true")
	if r.code == 0 || !strings.Contains(r.stderr, `invalid --security-opt 2: "writeable-cgroups=true"`) {
		t.Fatalf("misspelt option:\n%s", r)
	}
}

// Masked and read-only paths, and /sys/fs/cgroup.
func TestMaskedAndReadonlyPaths(t *testing.T) {
	out := mustDocker(t, "run", "--rm", "busybox", "sh", "-c",
		`wc -c < /proc/kcore; ls /proc/acpi 2>/dev/null | wc -l; echo 1 > /proc/sys/kernel/domainname 2>&1 || true; mkdir /sys/fs/cgroup/x 2>&1 || true; stat -f -c %T /sys/fs/cgroup`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || strings.TrimSpace(lines[0]) != "0" || strings.TrimSpace(lines[1]) != "0" ||
		!strings.Contains(lines[2], "Read-only file system") || !strings.Contains(lines[3], "Read-only file system") ||
		lines[4] != "cgroup2fs" {
		t.Fatalf("default container:\n%s", out)
	}
	out = mustDocker(t, "run", "--rm", "--security-opt", "writable-cgroups", "busybox", "sh", "-c", `mkdir /sys/fs/cgroup/x && rmdir /sys/fs/cgroup/x && echo ok`)
	if strings.TrimSpace(out) != "ok" {
		t.Fatalf("writable-cgroups: %q", out)
	}
	// --privileged: nothing masked, /proc/sys writable.
	out = mustDocker(t, "run", "--rm", "--privileged", "busybox", "sh", "-c", `echo jevm > /proc/sys/kernel/domainname && cat /proc/sys/kernel/domainname`)
	if strings.TrimSpace(out) != "jevm" {
		t.Fatalf("privileged /proc/sys: %q", out)
	}
}
