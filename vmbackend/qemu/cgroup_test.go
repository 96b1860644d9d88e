package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/internal/cgroups"
	"github.com/jevm/jevm/vmbackend"
)

// fakeCgroupRoot lays out a cgroup v1 root with the controllers jevm uses.
func fakeCgroupRoot(t *testing.T) string {
	root := t.TempDir()
	for c, f := range map[string]string{"cpu": "cpu.shares", "cpuacct": "cpuacct.usage", "cpuset": "cpuset.cpus", "memory": "memory.limit_in_bytes", "pids": "pids.max"} {
		if err := os.MkdirAll(filepath.Join(root, c), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, c, f), []byte("0-1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "cpuset", "cpuset.mems"), []byte("0\n"), 0o644)
	return root
}

func TestLimitsFor(t *testing.T) {
	p := &Provider{accel: vmbackend.AccelTCG}
	shape := vmbackend.Shape{MemoryMiB: 256, VCPUs: 2}
	l := p.limitsFor(shape, vmbackend.Resources{NanoCPUs: 5e8, CPUShares: 512, CpusetCpus: "1"})
	want := cgroups.Limits{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, CpusetCpus: "1", MemoryMax: (256 + qemuOverheadMiB + tcgCodeBufferMiB) << 20, PidsMax: qemuPidsBase + 2}
	if l != want {
		t.Errorf("limits %+v, want %+v", l, want)
	}
	l = p.limitsFor(shape, vmbackend.Resources{CPUQuota: 20000, CPUPeriod: 50000})
	if l.CPUQuota != 20000 || l.CPUPeriod != 50000 {
		t.Errorf("quota/period %+v", l)
	}
	if l := p.limitsFor(shape, vmbackend.Resources{CPUQuota: -1}); l.CPUQuota != -1 {
		t.Errorf("-1: %+v", l)
	}
	kvm := &Provider{accel: vmbackend.AccelKVM}
	if got := kvm.MemoryBound(shape); got != (256+qemuOverheadMiB)<<20 {
		t.Errorf("kvm bound %d", got)
	}
}

// A provider on a fake cgroupfs: the VM's cgroup is made with its limits,
// UpdateResources rewrites them, ResourceSupport reports them.
func TestProviderCgroups(t *testing.T) {
	root := fakeCgroupRoot(t)
	p := &Provider{opts: Options{CgroupRoot: root, CgroupSelf: "1:cpu:/\n"}, log: logrus.NewEntry(logrus.New()), accel: vmbackend.AccelTCG}
	p.initCgroups()
	sup := p.ResourceSupport()
	if sup.CgroupDriver != "cgroupfs" || sup.CgroupVersion != "1" || !sup.CPUShares || !sup.CPUCfs || !sup.Cpuset || !sup.MemoryBound || !sup.PidsBound {
		t.Fatalf("support %+v", sup)
	}
	spec := vmbackend.MachineSpec{ID: "abc", Shape: vmbackend.Shape{MemoryMiB: 256, VCPUs: 1}, Resources: vmbackend.Resources{CPUShares: 256}}
	g, err := p.createCgroup(spec)
	if err != nil {
		t.Fatal(err)
	}
	read := func(c, f string) string {
		b, _ := os.ReadFile(filepath.Join(root, c, "jevm", "abc", f))
		return strings.TrimSpace(string(b))
	}
	if read("cpu", "cpu.shares") != "256" || read("memory", "memory.limit_in_bytes") != "1610612736" || read("pids", "pids.max") != "257" {
		t.Fatalf("created with shares %s memory %s pids %s", read("cpu", "cpu.shares"), read("memory", "memory.limit_in_bytes"), read("pids", "pids.max"))
	}
	m := &machine{p: p, id: "abc", spec: spec, cg: g, log: p.log, exited: make(chan struct{})}
	if err := m.UpdateResources(context.Background(), vmbackend.Resources{NanoCPUs: 1e9}); err != nil {
		t.Fatal(err)
	}
	if read("cpu", "cpu.shares") != "1024" || read("cpu", "cpu.cfs_quota_us") != "100000" || m.spec.Resources.NanoCPUs != 1e9 {
		t.Errorf("after update: shares %s quota %s", read("cpu", "cpu.shares"), read("cpu", "cpu.cfs_quota_us"))
	}
	close(m.exited)
	if err := m.UpdateResources(context.Background(), vmbackend.Resources{}); err == nil {
		t.Error("update of an exited VM succeeded")
	}

	// Without cgroups: reported, and updates refused.
	none := &Provider{opts: Options{CgroupRoot: t.TempDir(), CgroupSelf: "1:cpu:/\n"}, log: p.log}
	none.initCgroups()
	if s := none.ResourceSupport(); s.CgroupDriver != "none" || s.CPUShares || s.Unsupported == "" {
		t.Errorf("no cgroups: %+v", s)
	}
	nm := &machine{p: none, id: "x", exited: make(chan struct{})}
	if err := nm.UpdateResources(context.Background(), vmbackend.Resources{CPUShares: 2}); err == nil || !strings.Contains(err.Error(), "without cgroups") {
		t.Errorf("update without cgroups: %v", err)
	}
}
