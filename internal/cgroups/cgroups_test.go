package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeV1 lays out a cgroup v1 root as this project's hosts have it: one
// mount per controller, the daemon in /svc for memory and at the root of
// the others.
func fakeV1(t *testing.T) (root, self string) {
	root = t.TempDir()
	for c, f := range probeFile {
		must(t, os.MkdirAll(filepath.Join(root, c), 0o755))
		must(t, os.WriteFile(filepath.Join(root, c, f), []byte("0\n"), 0o644))
	}
	must(t, os.WriteFile(filepath.Join(root, "cpuset", "cpuset.cpus"), []byte("0-3\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "cpuset", "cpuset.mems"), []byte("0\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "memory", "svc"), 0o755))
	self = "9:name=systemd:/\n8:pids:/\n4:memory:/svc\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"
	return root, self
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func fakeHost(t *testing.T, root, self string) *Host {
	t.Helper()
	h, err := Detect(Options{Root: root, Self: self})
	if err != nil {
		t.Fatal(err)
	}
	h.rmdir = os.RemoveAll // a fake cgroup directory holds real files
	return h
}

func TestV1CreateSetRemove(t *testing.T) {
	root, self := fakeV1(t)
	h := fakeHost(t, root, self)
	if h.Version() != 1 || !h.Has(CPU) || !h.Has(Memory) || !h.Has(Pids) || !h.Has(Cpuset) || !h.Has(CPUAcct) {
		t.Fatalf("detect: v%d %v unusable=%v", h.Version(), h.dirs, h.unusable)
	}
	// Nested under the daemon's own cgroup in each hierarchy.
	if got, want := h.ParentDir(Memory), filepath.Join(root, "memory", "svc", "jevm"); got != want {
		t.Errorf("memory parent %s, want %s", got, want)
	}
	if got, want := h.ParentDir(CPU), filepath.Join(root, "cpu", "jevm"); got != want {
		t.Errorf("cpu parent %s, want %s", got, want)
	}
	// The parent cpuset inherits the root's CPUs and nodes.
	if got := read(t, filepath.Join(root, "cpuset", "jevm", "cpuset.cpus")); got != "0-3" {
		t.Errorf("parent cpuset.cpus %q", got)
	}

	g, err := h.Create("c1", Limits{CPUShares: 512, CPUQuota: 50000, MemoryMax: 300 << 20, PidsMax: 257})
	if err != nil {
		t.Fatal(err)
	}
	cpu := filepath.Join(root, "cpu", "jevm", "c1")
	for f, want := range map[string]string{
		filepath.Join(cpu, "cpu.shares"):                                            "512",
		filepath.Join(cpu, "cpu.cfs_period_us"):                                     "100000",
		filepath.Join(cpu, "cpu.cfs_quota_us"):                                      "50000",
		filepath.Join(root, "cpuset", "jevm", "c1", "cpuset.cpus"):                  "0-3",
		filepath.Join(root, "cpuset", "jevm", "c1", "cpuset.mems"):                  "0",
		filepath.Join(root, "memory", "svc", "jevm", "c1", "memory.limit_in_bytes"): "314572800",
		filepath.Join(root, "pids", "jevm", "c1", "pids.max"):                       "257",
	} {
		if got := read(t, f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	if err := g.Add(4242); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(cpu, "cgroup.procs")); got != "4242" {
		t.Errorf("cgroup.procs %q", got)
	}
	// Set writes everything: a cleared field goes back to no limit.
	must(t, g.Set(Limits{CpusetCpus: "1", MemoryMax: 300 << 20}))
	for f, want := range map[string]string{
		filepath.Join(cpu, "cpu.shares"):                           "1024",
		filepath.Join(cpu, "cpu.cfs_quota_us"):                     "-1",
		filepath.Join(root, "cpuset", "jevm", "c1", "cpuset.cpus"): "1",
		filepath.Join(root, "pids", "jevm", "c1", "pids.max"):      "max",
	} {
		if got := read(t, f); got != want {
			t.Errorf("after Set: %s = %q, want %q", f, got, want)
		}
	}
	must(t, os.WriteFile(filepath.Join(cpu, "cpu.stat"), []byte("nr_periods 10\nnr_throttled 4\nthrottled_time 5000000\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "cpuacct", "jevm", "c1", "cpuacct.usage"), []byte("123456789\n"), 0o644))
	st, err := g.CPUStats()
	if err != nil || st.Periods != 10 || st.ThrottledPeriods != 4 || st.ThrottledTime != 5*time.Millisecond || st.Usage != 123456789 {
		t.Errorf("cpu stats %+v %v", st, err)
	}
	must(t, g.Remove(time.Second))
	if g.Exists() {
		t.Fatal("group still there after Remove")
	}
	if err := g.Remove(time.Second); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestV1CreateFailureLeavesNothing(t *testing.T) {
	root, self := fakeV1(t)
	h := fakeHost(t, root, self)
	// A control file that cannot be written (a directory in its place)
	// fails the create, and the directories made are gone.
	must(t, os.MkdirAll(filepath.Join(root, "pids", "jevm", "bad", "pids.max"), 0o755))
	if _, err := h.Create("bad", Limits{PidsMax: 10}); err == nil {
		t.Fatal("create succeeded")
	}
	for _, c := range []string{"cpu", "cpuacct", "cpuset"} {
		if _, err := os.Stat(filepath.Join(root, c, "jevm", "bad")); err == nil {
			t.Errorf("%s cgroup left behind", c)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", ".hidden"} {
		if _, err := h.Create(bad, Limits{}); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

func TestSweepRemovesOnlyEmpty(t *testing.T) {
	root, self := fakeV1(t)
	h := fakeHost(t, root, self)
	busy, err := h.Create("busy", Limits{})
	must(t, err)
	must(t, busy.Add(77))
	idle, err := h.Create("idle", Limits{})
	must(t, err)
	// An empty procs file in every hierarchy (as cgroupfs shows it).
	for _, d := range idle.dirs {
		must(t, os.WriteFile(filepath.Join(d, "cgroup.procs"), nil, 0o644))
	}
	kept, err := h.Create("kept", Limits{})
	must(t, err)
	for _, d := range kept.dirs {
		must(t, os.WriteFile(filepath.Join(d, "cgroup.procs"), nil, 0o644))
	}
	removed := h.Sweep(func(name string) bool { return name == "kept" })
	if len(removed) != 1 || removed[0] != "idle" {
		t.Fatalf("swept %v", removed)
	}
	if !busy.Exists() || !kept.Exists() || idle.Exists() {
		t.Errorf("busy %v kept %v idle %v", busy.Exists(), kept.Exists(), idle.Exists())
	}
}

func TestV2(t *testing.T) {
	root := t.TempDir()
	must(t, os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644))
	// The fake does not propagate subtree_control, so write what the
	// kernel would show in jevm/ after enabling.
	must(t, os.MkdirAll(filepath.Join(root, "jevm"), 0o755))
	h := fakeHost(t, root, "0::/\n")
	if h.Version() != 2 || !h.Has(CPU) || h.Has(CPUAcct) || !h.Has(Memory) || !h.Has(Pids) || !h.Has(Cpuset) {
		t.Fatalf("detect: v%d %v unusable=%v", h.Version(), h.dirs, h.unusable)
	}
	if got := read(t, filepath.Join(root, "cgroup.subtree_control")); !strings.Contains(got, "+cpu") {
		t.Errorf("root subtree_control %q", got)
	}
	g, err := h.Create("c2", Limits{CPUShares: 512, CPUQuota: 20000, CPUPeriod: 50000, MemoryMax: 1 << 30})
	must(t, err)
	dir := filepath.Join(root, "jevm", "c2")
	for f, want := range map[string]string{
		"cpu.weight":  "20",
		"cpu.max":     "20000 50000",
		"memory.max":  "1073741824",
		"pids.max":    "max",
		"cpuset.cpus": "",
	} {
		if got := read(t, filepath.Join(dir, f)); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	must(t, g.Set(Limits{}))
	if got := read(t, filepath.Join(dir, "cpu.max")); got != "max 100000" {
		t.Errorf("cpu.max after clear %q", got)
	}
	if got := read(t, filepath.Join(dir, "cpu.weight")); got != "100" {
		t.Errorf("cpu.weight after clear %q", got)
	}
	must(t, os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("usage_usec 2000\nnr_periods 3\nnr_throttled 1\nthrottled_usec 7\n"), 0o644))
	st, err := g.CPUStats()
	if err != nil || st.Usage != 2*time.Millisecond || st.ThrottledPeriods != 1 || st.ThrottledTime != 7*time.Microsecond {
		t.Errorf("v2 cpu stats %+v %v", st, err)
	}
}

func TestUnavailable(t *testing.T) {
	if _, err := Detect(Options{Root: t.TempDir(), Self: "1:cpu:/\n"}); err == nil {
		t.Fatal("an empty root was taken for cgroupfs")
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[int64]int64{0: 100, 2: 1, 1024: 39, 262144: 10000, 1 << 30: 10000} {
		if got := SharesToWeight(shares); got != want {
			t.Errorf("SharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestParseSelf(t *testing.T) {
	m := parseSelf("4:memory:/a/b\n2:cpu,cpuacct:/x\n0::/u\n")
	if m[Memory] != "/a/b" || m[CPU] != "/x" || m[CPUAcct] != "/x" || m[""] != "/u" {
		t.Errorf("%v", m)
	}
}
