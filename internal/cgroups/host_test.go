package cgroups

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// On the real host (root, cgroupfs mounted): detect, create a group with
// limits, move a child process into it, read it back, remove it.
func TestRealHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	h, err := Detect(Options{Parent: "jevm-unittest"})
	if err != nil {
		t.Skipf("no usable cgroups here: %v", err)
	}
	t.Logf("cgroup v%d; unusable: %s", h.Version(), h.UnusableReason())
	name := "t" + strconv.Itoa(os.Getpid())
	g, err := h.Create(name, Limits{CPUShares: 512, CPUQuota: 50000, MemoryMax: 512 << 20, PidsMax: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove(5 * time.Second)
	p, err := os.StartProcess("/bin/sleep", []string{"sleep", "30"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Add(p.Pid); err != nil {
		p.Kill()
		p.Wait()
		t.Fatal(err)
	}
	pids, err := g.Procs()
	if err != nil || len(pids) != 1 || pids[0] != p.Pid {
		t.Errorf("procs %v %v", pids, err)
	}
	if _, err := g.CPUStats(); h.Has(CPU) && err != nil {
		t.Errorf("cpu stats: %v", err)
	}
	if err := g.Remove(0); err == nil {
		t.Error("removed a cgroup with a process in it")
	}
	p.Kill()
	p.Wait()
	if err := g.Remove(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if g.Exists() {
		t.Error("still there")
	}
	for _, c := range []string{CPU, CPUAcct, Cpuset, Memory, Pids} {
		if d := h.ParentDir(c); d != "" {
			os.Remove(d) // rmdir of the empty test parent
		}
	}
}
