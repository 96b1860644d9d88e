package daemon

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"
)

// `docker update` on a jeVM.
//
//   - --restart takes effect at once (the next exit follows the new policy).
//   - -m/--memory and --cpus change the VM's shape. A running VM cannot be
//     resized without memory/CPU hotplug, so the new shape is stored and
//     used when the container next starts (its VM is cloned anew then); the
//     response carries a warning saying so when the container is running.
//   - --memory-swap and --memory-reservation are stored (inspect shows
//     them) but mean nothing to a VM, which has a fixed amount of memory and
//     no host swap: accepted with a warning.
//   - the cgroup-only knobs (--cpu-shares, --cpu-period, --cpu-quota,
//     --cpu-rt-*, --cpuset-cpus, --cpuset-mems, --blkio-weight,
//     --kernel-memory, --pids-limit) have no meaning for a VM: refused
//     with 400 and a message naming them, rather than silently ignored.

// updateShapeWarning is returned when a running container's VM shape
// changes.
const updateShapeWarning = "jevm: memory/CPU limits take effect when the container next starts (its VM is re-created)"

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
	if r.NanoCPUs < 0 {
		return resp, errdefs.InvalidParameter(fmt.Errorf("invalid CPU value"))
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
	live := c.running() || c.State.Status == container.StateRestarting
	if shape != c.Shape {
		if live {
			resp.Warnings = append(resp.Warnings, updateShapeWarning)
		} else {
			c.Shape = shape
		}
	}
	old := c.HostConfig
	c.HostConfig = &hc
	if err := c.save(); err != nil {
		c.HostConfig = old
		return resp, cannot(err)
	}
	d.containerEvent(c, events.ActionUpdate, nil)
	return resp, nil
}

// checkVMResources refuses the cgroup-only resource settings.
func checkVMResources(r *container.Resources) error {
	var bad []string
	add := func(set bool, flag string) {
		if set {
			bad = append(bad, flag)
		}
	}
	add(r.CPUShares != 0, "--cpu-shares")
	add(r.CPUPeriod != 0, "--cpu-period")
	add(r.CPUQuota != 0, "--cpu-quota")
	add(r.CPURealtimePeriod != 0, "--cpu-rt-period")
	add(r.CPURealtimeRuntime != 0, "--cpu-rt-runtime")
	add(r.CpusetCpus != "", "--cpuset-cpus")
	add(r.CpusetMems != "", "--cpuset-mems")
	add(r.BlkioWeight != 0, "--blkio-weight")
	add(r.KernelMemory != 0, "--kernel-memory")
	add(r.PidsLimit != nil && *r.PidsLimit != 0, "--pids-limit")
	if len(bad) == 0 {
		return nil
	}
	return errdefs.InvalidParameter(fmt.Errorf("jevm: %s cannot be applied to a jeVM (it has no cgroup of its own); use -m/--memory and --cpus, which size the VM", strings.Join(bad, ", ")))
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
