package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/vmbackend"
)

// docker update of CPU bounds on a running container reaches its VM at
// once; memory is refused while it runs; without cgroups the CPU bounds
// are refused with the reason.
func TestUpdateResourcesLive(t *testing.T) {
	d, vms, _ := fakeDaemon(t, nil)
	c := fakeContainer(t, d, "u1")
	c.HostConfig.CPUShares = 256
	ctx := context.Background()
	if err := d.ContainerStart(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	m := vms.Machine(c.ID)
	if got := m.Resources(); got.CPUShares != 256 {
		t.Fatalf("started with %+v", got)
	}
	resp, err := d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{Resources: container.Resources{CPUShares: 512, CPUQuota: 50000, CpusetCpus: "0"}})
	if err != nil || len(resp.Warnings) != 0 {
		t.Fatalf("update: %v %v", resp, err)
	}
	want := vmbackend.Resources{CPUShares: 512, CPUQuota: 50000, CpusetCpus: "0"}
	if got := m.Resources(); got != want {
		t.Fatalf("VM has %+v, want %+v", got, want)
	}
	if c.HostConfig.CPUShares != 512 || c.HostConfig.CPUQuota != 50000 {
		t.Fatalf("host config %+v", c.HostConfig.Resources)
	}
	// --cpu-quota -1 lifts the quota.
	if _, err := d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{Resources: container.Resources{CPUQuota: -1}}); err != nil {
		t.Fatal(err)
	}
	if got := m.Resources(); got.CPUQuota != -1 || c.HostConfig.CPUQuota != -1 {
		t.Fatalf("after -1: VM %+v", got)
	}
	// dockerd's conflict: --cpus while a quota is set.
	if _, err := d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{Resources: container.Resources{CPUPeriod: 50000}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{Resources: container.Resources{NanoCPUs: 5e8}}); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "CPU Period has already been set") {
		t.Fatalf("--cpus with a period: %v", err)
	}
	// Memory of a running VM: refused, nothing changed.
	_, err = d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{Resources: container.Resources{Memory: 512 << 20}})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "cannot change the memory of a running container") || c.HostConfig.Memory != 0 {
		t.Fatalf("memory on running: %v (memory %d)", err, c.HostConfig.Memory)
	}
	// A failed cgroup write fails the update and saves nothing.
	bad := errors.New("write cpu.shares: invalid argument")
	vms.UpdateErr = bad
	// UpdateErr applies to machines started after it is set: restart.
	if err := d.ContainerStop(ctx, "u1", container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	// Stopped: memory and CPU changes are stored for the next start.
	if _, err := d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{Resources: container.Resources{Memory: 512 << 20, CPUShares: 1024}}); err != nil {
		t.Fatal(err)
	}
	if c.Shape.MemoryMiB != 512 || c.HostConfig.CPUShares != 1024 {
		t.Fatalf("stopped update: %+v %+v", c.Shape, c.HostConfig.Resources)
	}
	if err := d.ContainerStart(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	m = vms.Machine(c.ID)
	if got := m.Resources(); got.CPUShares != 1024 || got.CPUPeriod != 50000 || m.Spec.Shape.MemoryMiB != 512 {
		t.Fatalf("next start: %+v %+v", got, m.Spec.Shape)
	}
	if _, err := d.ContainerUpdate(ctx, "u1", &container.UpdateConfig{Resources: container.Resources{CPUShares: 2048}}); !errors.Is(err, bad) || c.HostConfig.CPUShares != 1024 {
		t.Fatalf("failed cgroup write: %v, shares %d", err, c.HostConfig.CPUShares)
	}
}

func TestResourcesWithoutCgroups(t *testing.T) {
	d, vms, _ := fakeDaemon(t, nil)
	vms.Support = &vmbackend.ResourceSupport{CgroupDriver: "none", MemoryBound: false, Unsupported: "cgroups unavailable: no cgroupfs"}
	c := fakeContainer(t, d, "n1")
	ctx := context.Background()
	for _, r := range []container.Resources{{CPUShares: 512}, {CPUQuota: 20000}, {CpusetCpus: "0"}, {NanoCPUs: 5e8}} {
		_, err := d.ContainerUpdate(ctx, "n1", &container.UpdateConfig{Resources: r})
		if !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "cannot be enforced on this host: cgroups unavailable: no cgroupfs") {
			t.Errorf("update %+v: %v", r, err)
		}
	}
	if c.HostConfig.CPUShares != 0 {
		t.Fatal("refused update was stored")
	}
	// Create discards with a warning, as dockerd does.
	r := container.Resources{CPUShares: 512, CPUQuota: 20000, CpusetCpus: "0"}
	warn, err := checkCPUResources(&r, vms.ResourceSupport(), false)
	if err != nil || len(warn) != 3 || r.CPUShares != 0 || r.CPUQuota != 0 || r.CpusetCpus != "" {
		t.Fatalf("create without cgroups: %v %v %+v", warn, err, r)
	}
	info := &system.Info{}
	fillResourceInfo(info, vms.ResourceSupport())
	if info.CgroupDriver != "none" || info.CPUShares || info.CPUCfsQuota || info.CPUSet || info.PidsLimit {
		t.Errorf("info without cgroups: %s %v %v %v", info.CgroupDriver, info.CPUShares, info.CPUCfsQuota, info.CPUSet)
	}
}

func TestCheckCPUResources(t *testing.T) {
	sup := vmbackend.ResourceSupport{CgroupDriver: "cgroupfs", CPUShares: true, CPUCfs: true, Cpuset: true}
	for _, tc := range []struct {
		r    container.Resources
		want string
	}{
		{container.Resources{NanoCPUs: 5e8, CPUPeriod: 50000}, "Nano CPUs and CPU Period cannot both be set"},
		{container.Resources{NanoCPUs: 5e8, CPUQuota: 50000}, "Nano CPUs and CPU Quota cannot both be set"},
		{container.Resources{NanoCPUs: 1e15}, "range of CPUs is from 0.01"},
		{container.Resources{CPUPeriod: 999}, "CPU cfs period can not be less than 1ms"},
		{container.Resources{CPUQuota: 999}, "CPU cfs quota can not be less than 1ms"},
		{container.Resources{CpusetCpus: "0-x"}, "Invalid value 0-x for cpuset cpus"},
		{container.Resources{CpusetCpus: "4096"}, "Requested CPUs are not available - requested 4096, available: "},
		{container.Resources{CpusetMems: "63"}, "Requested memory nodes are not available"},
		{container.Resources{CPUQuota: -1, CPUShares: 2, CpusetCpus: "0", CpusetMems: "0"}, ""},
	} {
		_, err := checkCPUResources(&tc.r, sup, true)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.r, err)
			}
			continue
		}
		if !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.r, err, tc.want)
		}
	}
	if got := formatCPUList(map[int]bool{0: true, 1: true, 2: true, 5: true, 7: true, 8: true}); got != "0-2,5,7-8" {
		t.Errorf("formatCPUList %q", got)
	}
}
