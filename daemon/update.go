package daemon

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/vmbackend"
)

// `docker update` on a jeVM (docs/RESOURCES.md).
//
//   - --restart takes effect at once (the next exit follows the new policy).
//   - --cpu-shares, --cpus, --cpu-quota/--cpu-period and
//     --cpuset-cpus/--cpuset-mems bound the VM's QEMU through its cgroup:
//     on a running container they are written to the cgroup at once; on
//     a stopped one they apply at the next start. Where the host gives
//     VMs no cgroup they are refused with a message that says so.
//   - --cpus also sizes the VM (its vCPU count, rounded up): a running VM
//     keeps its vCPUs until the next start (its quota changes at once),
//     and the response warns when the count will change.
//   - -m/--memory is the VM's RAM. A running VM's RAM cannot be changed
//     (no memory hot-plug, and shrinking with a balloon would leave the
//     guest's MemTotal and the container's limit disagreeing with what
//     inspect shows), so a change of -m on a running container is refused
//     with 409; on a stopped container it applies at the next start.
//   - --memory-swap and --memory-reservation are stored (inspect shows
//     them) but mean nothing to a VM, which has a fixed amount of memory and
//     no host swap: accepted with a warning.
//   - the knobs with no honest meaning for a VM (--cpu-rt-*,
//     --blkio-weight, --kernel-memory, --pids-limit: the guest's processes
//     are not host tasks) are refused with 400 and a message naming them.

// updateVCPUWarning is returned when a running container's vCPU count
// changes.
const updateVCPUWarning = "jevm: the VM keeps its vCPU count until the container next starts (its VM is re-created); the CPU quota applies now"

// ContainerUpdate changes a container's restart policy and resources.
func (d *Daemon) ContainerUpdate(ctx context.Context, ref string, uc *container.UpdateConfig) (container.UpdateResponse, error) {
	resp := container.UpdateResponse{Warnings: []string{}}
	c, err := d.containers.get(ref)
	if err != nil {
		return resp, err
	}
	if uc == nil {
		return resp, nil
	}
	if err := checkVMResources(&uc.Resources); err != nil {
		return resp, err
	}
	if uc.RestartPolicy.Name != "" {
		if err := container.ValidateRestartPolicy(uc.RestartPolicy); err != nil {
			return resp, errdefs.InvalidParameter(err)
		}
	}
	r := uc.Resources
	if r.Memory != 0 && r.Memory < 6*1024*1024 {
		return resp, errdefs.InvalidParameter(fmt.Errorf("Minimum memory limit allowed is 6MB"))
	}
	if r.CPUShares < 0 {
		return resp, errdefs.InvalidParameter(fmt.Errorf("invalid CPU shares (%d): value must be a positive integer", r.CPUShares))
	}
	sup := d.vms.ResourceSupport()
	if _, err := checkCPUResources(&r, sup, true); err != nil {
		return resp, err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	cannot := func(err error) error {
		return fmt.Errorf("Cannot update container %s: %w", c.ID, err)
	}
	if c.removing || c.State.Status == container.StateDead {
		return resp, errdefs.Conflict(cannot(fmt.Errorf(`container is marked for removal and cannot be "update"`)))
	}
	hc := *c.HostConfig
	// As dockerd: --cpus and --cpu-period/--cpu-quota are two ways to set
	// the same quota, so one cannot be updated while the other is set.
	cur := &c.HostConfig.Resources
	switch {
	case r.NanoCPUs > 0 && cur.CPUPeriod > 0:
		return resp, errdefs.Conflict(cannot(fmt.Errorf("Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set")))
	case r.NanoCPUs > 0 && cur.CPUQuota > 0:
		return resp, errdefs.Conflict(cannot(fmt.Errorf("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set")))
	case r.CPUPeriod > 0 && cur.NanoCPUs > 0:
		return resp, errdefs.Conflict(cannot(fmt.Errorf("Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set")))
	case r.CPUQuota > 0 && cur.NanoCPUs > 0:
		return resp, errdefs.Conflict(cannot(fmt.Errorf("Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")))
	}
	live := c.running() || c.State.Status == container.StateRestarting
	if r.Memory != 0 && r.Memory != hc.Memory && live {
		return resp, errdefs.Conflict(cannot(fmt.Errorf("jevm cannot change the memory of a running container: -m is its VM's RAM, fixed while the VM runs. Stop the container, update it, and start it again")))
	}
	if uc.RestartPolicy.Name != "" {
		if hc.AutoRemove && !uc.RestartPolicy.IsNone() {
			return resp, errdefs.Conflict(cannot(fmt.Errorf("Restart policy cannot be updated because AutoRemove is enabled for the container")))
		}
		hc.RestartPolicy = uc.RestartPolicy
	}
	if r.Memory != 0 {
		hc.Memory = r.Memory
	}
	if r.NanoCPUs != 0 {
		hc.NanoCPUs = r.NanoCPUs
	}
	if r.CPUShares != 0 {
		hc.CPUShares = r.CPUShares
	}
	if r.CPUPeriod != 0 {
		hc.CPUPeriod = r.CPUPeriod
	}
	if r.CPUQuota != 0 {
		hc.CPUQuota = r.CPUQuota
	}
	if r.CpusetCpus != "" {
		hc.CpusetCpus = r.CpusetCpus
	}
	if r.CpusetMems != "" {
		hc.CpusetMems = r.CpusetMems
	}
	if r.MemorySwap != 0 {
		hc.MemorySwap = r.MemorySwap
		resp.Warnings = append(resp.Warnings, "jevm: --memory-swap has no effect: a jeVM has a fixed amount of memory and no host swap")
	}
	if r.MemoryReservation != 0 {
		hc.MemoryReservation = r.MemoryReservation
		resp.Warnings = append(resp.Warnings, "jevm: --memory-reservation has no effect: a jeVM has a fixed amount of memory")
	}
	shape, warnings, err := d.shapeFor(&hc)
	if err != nil {
		return resp, err
	}
	resp.Warnings = append(resp.Warnings, warnings...)
	if shape != c.Shape {
		if live {
			// Only the vCPU count can differ here (memory was refused).
			resp.Warnings = append(resp.Warnings, updateVCPUWarning)
		} else {
			c.Shape = shape
		}
	}
	// A running VM gets its new CPU bounds now; if that fails nothing is
	// saved, and if the save fails the old bounds are put back.
	var m vmbackend.Machine
	oldRes, newRes := resourcesFor(c.HostConfig), resourcesFor(&hc)
	if live && c.run != nil && c.run.machine != nil && newRes != oldRes {
		m = c.run.machine
		if err := m.UpdateResources(ctx, newRes); err != nil {
			return resp, errdefs.System(cannot(err))
		}
	}
	old := c.HostConfig
	c.HostConfig = &hc
	if err := c.save(); err != nil {
		c.HostConfig = old
		if m != nil {
			if rerr := m.UpdateResources(context.WithoutCancel(ctx), oldRes); rerr != nil {
				d.log.WithError(rerr).WithField("container", c.ID[:12]).Warn("cannot restore the VM's CPU bounds after a failed update")
			}
		}
		return resp, cannot(err)
	}
	d.containerEvent(c, events.ActionUpdate, nil)
	return resp, nil
}

// checkVMResources refuses the settings that have no honest meaning for a
// VM. --pids-limit would bound the processes in the container, which are
// the guest's, not host tasks; the VM's cgroup bounds QEMU's own threads
// at a fixed number instead.
func checkVMResources(r *container.Resources) error {
	var bad []string
	add := func(set bool, flag string) {
		if set {
			bad = append(bad, flag)
		}
	}
	add(r.CPURealtimePeriod != 0, "--cpu-rt-period")
	add(r.CPURealtimeRuntime != 0, "--cpu-rt-runtime")
	add(r.BlkioWeight != 0, "--blkio-weight")
	add(r.KernelMemory != 0, "--kernel-memory")
	add(r.PidsLimit != nil && *r.PidsLimit != 0, "--pids-limit")
	if len(bad) == 0 {
		return nil
	}
	return errdefs.InvalidParameter(fmt.Errorf("jevm: %s cannot be applied to a jeVM (the container's processes are the guest's, not host tasks)", strings.Join(bad, ", ")))
}

// refreshShape derives the VM shape from the host config at start, so
// that `docker update -m/--cpus` takes effect on the next start. Callers
// hold c.mu.
func (d *Daemon) refreshShape(c *Container) {
	shape, _, err := d.shapeFor(c.HostConfig)
	if err != nil || shape == c.Shape {
		return
	}
	d.log.WithFields(map[string]any{"container": c.ID[:12], "from": c.Shape, "to": shape}).Info("VM shape changed by update")
	c.Shape = shape
}
