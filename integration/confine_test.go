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
	// Ids of its own, from the VM user's subordinate ranges
	// (vmbackend/qemu/vmids.go).
	subRange := func(file string) (uint64, uint64) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Split(l, ":"); len(f) == 3 && f[0] == vmUser.Username {
				start, _ := strconv.ParseUint(f[1], 10, 32)
				count, _ := strconv.ParseUint(f[2], 10, 32)
				return start, count
			}
		}
		t.Fatalf("no range of %s in %s", vmUser.Username, file)
		return 0, 0
	}
	for _, c := range []struct{ key, file string }{{"Uid", "/etc/subuid"}, {"Gid", "/etc/subgid"}} {
		ids := strings.Fields(field(c.key))
		start, count := subRange(c.file)
		id, err := strconv.ParseUint(ids[0], 10, 32)
		if err != nil || len(ids) != 4 || id < start || id >= start+count || strings.Count(field(c.key), ids[0]) != 4 {
			t.Errorf("QEMU's %s: %q, want one id of the VM user's range %d+%d", c.key, field(c.key), start, count)
		}
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

// TestQEMUJailed checks QEMU's jail (vmbackend/qemu/jail.go): a mount
// namespace of its own whose root holds only that VM's files. Another
// container's files (its disk, its pod share) and the daemon's data root
// do not exist there, nor the host's /etc or /proc; the container's own
// bind mount does, and a pod member's volume, bound after QEMU started,
// reaches the jail and leaves it with the member.
func TestQEMUJailed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("bound\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := uniqueName(t, "jail-a"), uniqueName(t, "jail-b")
	rmOnCleanup(t, a)
	rmOnCleanup(t, b)
	mustDocker(t, "run", "-d", "--name", a, "-v", dir+":/b", "busybox", "sleep", "300")
	mustDocker(t, "run", "-d", "--name", b, "busybox", "sleep", "300")
	pidA, idB := inspectField(t, a, "{{.State.Pid}}"), inspectField(t, b, "{{.Id}}")
	jail := filepath.Join("/proc", pidA, "root")
	// Each QEMU has ids of its own: one cannot signal or trace another.
	if ua, ub := procUID(t, pidA), procUID(t, inspectField(t, b, "{{.State.Pid}}")); ua == ub {
		t.Errorf("both QEMUs run as uid %s", ua)
	}

	own, err1 := os.Readlink("/proc/self/ns/mnt")
	qemus, err2 := os.Readlink(filepath.Join("/proc", pidA, "ns", "mnt"))
	if err1 != nil || err2 != nil || own == qemus {
		t.Fatalf("QEMU's mount namespace %q (%v), the test's %q (%v): want its own", qemus, err2, own, err1)
	}
	mounts, err := os.ReadFile(filepath.Join("/proc", pidA, "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), idB[:12]) {
		t.Errorf("the other container's files are mounted in QEMU's jail:\n%s", mounts)
	}
	if n := strings.Count(string(mounts), "\n"); n > 40 {
		t.Errorf("%d mounts in QEMU's jail, want only its own files:\n%s", n, mounts)
	}
	for _, gone := range []string{"/etc/passwd", "/etc/shadow", "/sys/kernel", "/root", "/home", "/proc/sys", "/proc/kcore",
		filepath.Join(env.root, "data", "containers", idB), filepath.Join(env.root, "run", "pods", idB[:12])} {
		if _, err := os.Lstat(filepath.Join(jail, gone)); !os.IsNotExist(err) {
			t.Errorf("%s in QEMU's jail: %v, want it not to exist", gone, err)
		}
	}
	if !strings.Contains(string(mounts), " /proc ") || !strings.Contains(string(mounts), "hidepid=invisible") || !strings.Contains(string(mounts), "subset=pid") {
		t.Errorf("the jail's /proc is not one of processes only, hidden from other users:\n%s", mounts)
	}
	// The bind mount is there: at its own path (a VM started for the
	// container) or on an entry of the pod share of the pool's blank.
	found, _ := filepath.Glob(filepath.Join(jail, env.root, "run", "pods", "*", "share", "*", "f"))
	found = append(found, filepath.Join(jail, dir, "f"))
	ok := false
	for _, f := range found {
		if got, err := os.ReadFile(f); err == nil && string(got) == "bound\n" {
			ok = true
		}
	}
	if !ok {
		t.Errorf("the container's bind mount is not in its jail (looked at %v)", found)
	}

	// A member joins a's VM with a volume: its entry in a's pod share
	// is mounted after QEMU started, and must reach the jail.
	vol := uniqueName(t, "jail-vol")
	rmVolumesOnCleanup(t, vol)
	mustDocker(t, "volume", "create", vol)
	m := uniqueName(t, "jail-member")
	rmOnCleanup(t, m)
	out := mustDocker(t, "run", "--name", m, "--network", "container:"+a, "-v", vol+":/v", "busybox", "sh", "-c", "echo member > /v/g && cat /v/g")
	if strings.TrimSpace(out) != "member" {
		t.Fatalf("pod member writing its volume: %q", out)
	}
	mp := strings.TrimSpace(mustDocker(t, "volume", "inspect", "-f", "{{.Mountpoint}}", vol))
	if got, err := os.ReadFile(filepath.Join(mp, "g")); err != nil || string(got) != "member\n" {
		t.Errorf("the member's file on the host: %q, %v", got, err)
	}
	mustDocker(t, "rm", m)
	waitFor(t, 30*time.Second, "the member's entry to leave the jail", func() bool {
		b, err := os.ReadFile(filepath.Join("/proc", pidA, "mountinfo"))
		return err == nil && strings.Count(string(b), "\n") == strings.Count(string(mounts), "\n")
	})
}
