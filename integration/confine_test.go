package integration

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A container's processes are confined in their VM as runc confines them
// (docs/API.md, "Seccomp, masked paths, --security-opt").

// dockerd's default seccomp profile confines the main process and execs
// (/proc/self/status's Seccomp: 2, filter mode); seccomp=unconfined and
// --privileged run without a filter. What the default profile allows and
// denies is tested in a real kernel by guestagent's
// TestSeccompFilterInKernel: busybox has no applet making a call that the
// profile denies and the container's capabilities allow (`unshare -U`
// fails in a jeVM in any case: the container is chrooted, and the kernel
// refuses a user namespace to a chrooted process).
func TestSeccompDefaultProfile(t *testing.T) {
	mode := func(args ...string) string {
		t.Helper()
		run := append(append([]string{"run", "--rm"}, args...), "busybox", "grep", "^Seccomp:", "/proc/self/status")
		return strings.Join(strings.Fields(mustDocker(t, run...)), " ")
	}
	if got := mode(); got != "Seccomp: 2" {
		t.Fatalf("default: %q", got)
	}
	if got := mode("--security-opt", "seccomp=unconfined"); got != "Seccomp: 0" {
		t.Fatalf("seccomp=unconfined: %q", got)
	}
	if got := mode("--privileged"); got != "Seccomp: 0" {
		t.Fatalf("--privileged: %q", got)
	}

	name := uniqueName(t, "seccomp")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sleep", "300")
	if out := mustDocker(t, "exec", name, "grep", "^Seccomp:", "/proc/self/status"); strings.Join(strings.Fields(out), " ") != "Seccomp: 2" {
		t.Fatalf("exec's Seccomp mode: %q", out)
	}
}

// A custom profile (the CLI sends the file's content) applies, also with
// --privileged; a bad option is refused with dockerd's message.
func TestSeccompCustomProfile(t *testing.T) {
	const confined = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chown", "chown32", "fchownat"], "action": "SCMP_ACT_ERRNO"}]}`
	profile := filepath.Join(t.TempDir(), "confined.json")
	if err := os.WriteFile(profile, []byte(confined), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, priv := range []bool{false, true} {
		args := []string{"run", "--rm", "--security-opt", "seccomp=" + profile}
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
		`exec 2>&1; wc -c < /proc/kcore; ls /proc/acpi | wc -l; echo 1 > /proc/sys/kernel/domainname; mkdir /sys/fs/cgroup/x; stat -f -c %t /sys/fs/cgroup`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || strings.TrimSpace(lines[0]) != "0" || strings.TrimSpace(lines[1]) != "0" ||
		!strings.Contains(lines[2], "Read-only file system") || !strings.Contains(lines[3], "Read-only file system") ||
		lines[4] != "63677270" { // CGROUP2_SUPER_MAGIC

		t.Fatalf("default container:\n%s", out)
	}
	out = mustDocker(t, "run", "--rm", "--security-opt", "writable-cgroups=true", "busybox", "sh", "-c", `mkdir /sys/fs/cgroup/x && rmdir /sys/fs/cgroup/x && echo ok`)
	if strings.TrimSpace(out) != "ok" {
		t.Fatalf("writable-cgroups: %q", out)
	}
	// --privileged: nothing masked, /proc/sys writable.
	out = mustDocker(t, "run", "--rm", "--privileged", "busybox", "sh", "-c", `echo jevm > /proc/sys/kernel/domainname && cat /proc/sys/kernel/domainname`)
	if strings.TrimSpace(out) != "jevm" {
		t.Fatalf("privileged /proc/sys: %q", out)
	}
}

// TestQEMUConfined checks the host side of a container: its QEMU runs as
// the unprivileged VM user (vmbackend/qemu/user.go) with only the
// capabilities its 9p server needs, under two seccomp filters (jevmd's
// host filter and QEMU's -sandbox), read from /proc/PID/status; and the
// 9p server still gives files the owners the guest asked for in a bind
// mount that only root may enter on the host.
func TestQEMUConfined(t *testing.T) {
	vmUser, err := user.Lookup("jevm-vm")
	if err != nil {
		t.Fatalf("the VM user: %v", err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	name := uniqueName(t, "confined")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "-v", dir+":/b", "busybox", "sh", "-c",
		"echo x > /b/root-file && echo y > /b/user-file && chown 1234:2345 /b/user-file && chmod 4755 /b/user-file; sleep 300")
	pid := inspectField(t, name, "{{.State.Pid}}")
	status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	field := func(key string) string {
		for _, l := range strings.Split(string(status), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && k == key {
				return strings.Join(strings.Fields(v), " ")
			}
		}
		t.Fatalf("no %s in /proc/%s/status", key, pid)
		return ""
	}
	u := vmUser.Uid
	if got, want := field("Uid"), strings.Repeat(u+" ", 3)+u; got != want {
		t.Errorf("QEMU's Uid: %q, want %q (the VM user)", got, want)
	}
	if got, want := field("Gid"), strings.Repeat(vmUser.Gid+" ", 3)+vmUser.Gid; got != want {
		t.Errorf("QEMU's Gid: %q, want %q", got, want)
	}
	// CAP_CHOWN (0), CAP_DAC_OVERRIDE (1), CAP_FOWNER (3), CAP_FSETID (4).
	const want = "000000000000001b"
	for _, k := range []string{"CapEff", "CapPrm", "CapAmb"} {
		if got := field(k); got != want {
			t.Errorf("QEMU's %s: %s, want %s", k, got, want)
		}
	}
	if got := field("Seccomp"); got != "2" {
		t.Errorf("QEMU's Seccomp: %s, want 2 (filter)", got)
	}
	if n, err := strconv.Atoi(field("Seccomp_filters")); err != nil || n < 2 {
		t.Errorf("QEMU's Seccomp_filters: %d (%v), want jevmd's and QEMU's own", n, err)
	}
	if got := field("NoNewPrivs"); got != "1" {
		t.Errorf("QEMU's NoNewPrivs: %s", got)
	}
	// The guest's root made both files; the host sees the owners it
	// asked for, and the host filter dropped the setuid bit.
	waitFor(t, 60*time.Second, "the container's files in the bind mount", func() bool {
		_, err := os.Stat(filepath.Join(dir, "user-file"))
		return err == nil
	})
	owner := func(f string) string {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		s := st.Sys().(*syscall.Stat_t)
		return fmt.Sprintf("%d:%d %v", s.Uid, s.Gid, st.Mode())
	}
	if got := owner("root-file"); !strings.HasPrefix(got, "0:0 ") {
		t.Errorf("root-file on the host: %s, want root's", got)
	}
	waitFor(t, 30*time.Second, "user-file chowned", func() bool { return strings.HasPrefix(owner("user-file"), "1234:2345 ") })
	if st, err := os.Stat(filepath.Join(dir, "user-file")); err != nil || st.Mode()&os.ModeSetuid != 0 {
		t.Errorf("user-file on the host: %v, %v (setuid must be refused)", st.Mode(), err)
	}
}
