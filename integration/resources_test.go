package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The VM's QEMU runs in a cgroup of its own that carries the container's
// CPU bounds (docs/RESOURCES.md). These tests read that cgroup on the host
// through the QEMU pid that inspect reports as State.Pid.

// cgroupFile is the path of a control file of pid's cgroup: v1 by the
// controller's hierarchy, v2 in the unified one.
func cgroupFile(t *testing.T, pid int, controller, v1file, v2file string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" && v2file != "" {
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
				return filepath.Join("/sys/fs/cgroup", parts[2], v2file)
			}
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				return filepath.Join("/sys/fs/cgroup", controller, parts[2], v1file)
			}
		}
	}
	t.Fatalf("pid %d has no %s cgroup: %s", pid, controller, b)
	return ""
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func cgroupsV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

func requireCgroups(t *testing.T) {
	t.Helper()
	if d := strings.TrimSpace(mustDocker(t, "info", "--format", "{{.CgroupDriver}}")); d != "cgroupfs" {
		t.Skipf("the daemon runs its VMs without cgroups (CgroupDriver %q)", d)
	}
}

// run --cpus 0.5 puts QEMU in a cgroup with a 50 ms quota per 100 ms and
// its memory bound; update --cpu-shares on the running container reaches
// the cgroup at once and shows in inspect; the cgroup goes with the VM.
func TestCgroupCPUBounds(t *testing.T) {
	requireCgroups(t)
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "--cpus", "0.5", "-m", "256m", "busybox", "sleep", "300")
	id := inspectField(t, name, "{{.Id}}")
	pid, err := strconv.Atoi(vmPidOf(t, name))
	if err != nil {
		t.Fatal(err)
	}
	quota := cgroupFile(t, pid, "cpu", "cpu.cfs_quota_us", "cpu.max")
	if !strings.Contains(quota, id) {
		t.Fatalf("QEMU's cpu cgroup %s is not the container's own", quota)
	}
	want := "50000"
	if cgroupsV2() {
		want = "50000 100000"
	}
	if got := readTrimmed(t, quota); got != want {
		t.Errorf("%s = %q, want %q", quota, got, want)
	}
	// Memory: the VM's 256 MiB plus QEMU's overhead (vmbackend/qemu/cgroup.go).
	mem := cgroupFile(t, pid, "memory", "memory.limit_in_bytes", "memory.max")
	limit, err := strconv.ParseInt(readTrimmed(t, mem), 10, 64)
	if err != nil || limit <= 256<<20 || limit > (256+256+1024)<<20 {
		t.Errorf("%s = %d (%v), want the VM's 256 MiB plus QEMU's overhead", mem, limit, err)
	}
	// Make the guest touch memory and run code, then log what QEMU uses
	// beyond the guest's RAM (how the overhead was sized).
	mustDocker(t, "exec", name, "sh", "-c", "dd if=/dev/zero of=/dev/shm/f bs=1M count=100 2>/dev/null; ls -R / >/dev/null 2>&1; rm /dev/shm/f")
	peak := cgroupFile(t, pid, "memory", "memory.max_usage_in_bytes", "memory.peak")
	if b, err := os.ReadFile(peak); err == nil {
		t.Logf("QEMU's memory: peak %s bytes, now %s, bound %d", strings.TrimSpace(string(b)),
			readTrimmed(t, cgroupFile(t, pid, "memory", "memory.usage_in_bytes", "memory.current")), limit)
	}
	if pids := readTrimmed(t, cgroupFile(t, pid, "pids", "pids.max", "pids.max")); pids == "max" {
		t.Errorf("pids.max unbounded")
	}

	mustDocker(t, "update", "--cpu-shares", "512", name)
	if s := inspectField(t, name, "{{.HostConfig.CpuShares}}"); s != "512" {
		t.Errorf("inspect CpuShares after update = %s", s)
	}
	shares, wantShares := cgroupFile(t, pid, "cpu", "cpu.shares", "cpu.weight"), "512"
	if cgroupsV2() {
		wantShares = "20" // 512 shares as a v2 weight
	}
	if got := readTrimmed(t, shares); got != wantShares {
		t.Errorf("%s = %q after update, want %q", shares, got, wantShares)
	}
	// --cpus 1 lifts the quota to 100 ms per 100 ms, live.
	mustDocker(t, "update", "--cpus", "1", name)
	if got := readTrimmed(t, quota); !strings.HasPrefix(got, "100000") {
		t.Errorf("%s = %q after --cpus 1", quota, got)
	}
	// dockerd's conflict: a quota while --cpus is set.
	if r := docker(t, "update", "--cpu-quota", "20000", name); r.code == 0 || !strings.Contains(r.stderr, "CPU Quota cannot be updated as NanoCPUs has already been set") {
		t.Errorf("update --cpu-quota with --cpus set: %s", r)
	}
	if s := inspectField(t, name, "{{.HostConfig.NanoCpus}} {{.State.Status}}"); s != "1000000000 running" {
		t.Errorf("after the updates: %q", s)
	}

	dir := filepath.Dir(quota)
	mustDocker(t, "rm", "-f", name)
	waitFor(t, 10*time.Second, "the VM's cgroup to go", func() bool {
		_, err := os.Stat(dir)
		return os.IsNotExist(err)
	})
}

// --cpu-quota/--cpu-period and --cpuset-cpus at create, and --cpu-quota -1
// (no quota) by update, as moby's TestUpdateCPUQuota does it.
func TestCgroupCPUQuotaAndCpuset(t *testing.T) {
	requireCgroups(t)
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "--cpu-quota", "15000", "--cpu-period", "50000", "--cpuset-cpus", "0", "busybox", "sleep", "300")
	pid, err := strconv.Atoi(inspectField(t, name, "{{.State.Pid}}"))
	if err != nil {
		t.Fatal(err)
	}
	if cgroupsV2() {
		if got := readTrimmed(t, cgroupFile(t, pid, "cpu", "", "cpu.max")); got != "15000 50000" {
			t.Errorf("cpu.max = %q", got)
		}
	} else {
		q, p := cgroupFile(t, pid, "cpu", "cpu.cfs_quota_us", ""), cgroupFile(t, pid, "cpu", "cpu.cfs_period_us", "")
		if got := readTrimmed(t, q) + "/" + readTrimmed(t, p); got != "15000/50000" {
			t.Errorf("quota/period = %s", got)
		}
	}
	if got := readTrimmed(t, cgroupFile(t, pid, "cpuset", "cpuset.cpus", "cpuset.cpus")); got != "0" {
		t.Errorf("cpuset.cpus = %q", got)
	}
	// Every QEMU thread (the vCPUs among them) runs on CPU 0 only.
	status := readTrimmed(t, fmt.Sprintf("/proc/%d/status", pid))
	if !strings.Contains(status, "Cpus_allowed_list:\t0\n") {
		t.Errorf("QEMU's Cpus_allowed_list is not 0:\n%s", status)
	}
	mustDocker(t, "update", "--cpu-quota", "-1", name)
	if s := inspectField(t, name, "{{.HostConfig.CpuQuota}}"); s != "-1" {
		t.Errorf("inspect CpuQuota = %s", s)
	}
	if cgroupsV2() {
		if got := readTrimmed(t, cgroupFile(t, pid, "cpu", "", "cpu.max")); !strings.HasPrefix(got, "max ") {
			t.Errorf("cpu.max after -1 = %q", got)
		}
	} else if got := readTrimmed(t, cgroupFile(t, pid, "cpu", "cpu.cfs_quota_us", "")); got != "-1" {
		t.Errorf("cfs_quota_us after -1 = %q", got)
	}
	// The guest still runs.
	if out := mustDocker(t, "exec", name, "echo", "ok"); strings.TrimSpace(out) != "ok" {
		t.Errorf("exec: %q", out)
	}
}

// A daemon restart re-adopts the VM with its cgroup (same QEMU, same
// bounds, live updates still work) and removes cgroups whose VMs are gone.
func TestCgroupSurvivesDaemonRestart(t *testing.T) {
	requireCgroups(t)
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "--cpu-shares", "300", "busybox", "sleep", "300")
	pid, err := strconv.Atoi(inspectField(t, name, "{{.State.Pid}}"))
	if err != nil {
		t.Fatal(err)
	}
	shares := cgroupFile(t, pid, "cpu", "cpu.shares", "cpu.weight")
	want := "300"
	if cgroupsV2() {
		want = "12"
	}
	// A cgroup left by a VM that ended while no daemon ran.
	stale := filepath.Join(filepath.Dir(filepath.Dir(shares)), "stale"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(stale) })

	restartDaemon(t)

	if got := inspectField(t, name, "{{.State.Status}} {{.State.Pid}}"); got != "running "+strconv.Itoa(pid) {
		t.Fatalf("after the restart: %q, want the same VM (pid %d)", got, pid)
	}
	if got := cgroupFile(t, pid, "cpu", "cpu.shares", "cpu.weight"); got != shares {
		t.Errorf("QEMU's cgroup is %s after the restart, was %s", got, shares)
	}
	if got := readTrimmed(t, shares); got != want {
		t.Errorf("%s = %q after the restart, want %q", shares, got, want)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale cgroup %s not removed at the daemon's start (%v)", stale, err)
	}
	mustDocker(t, "update", "--cpu-shares", "600", name)
	want = "600"
	if cgroupsV2() {
		want = "23"
	}
	if got := readTrimmed(t, shares); got != want {
		t.Errorf("%s = %q after an update of the re-adopted VM, want %q", shares, got, want)
	}
	mustDocker(t, "rm", "-f", name)
	waitFor(t, 10*time.Second, "the VM's cgroup to go", func() bool {
		_, err := os.Stat(filepath.Dir(shares))
		return os.IsNotExist(err)
	})
}
