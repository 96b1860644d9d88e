package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// docker top and docker stats ask the container's agent, which reads the
// guest's /proc: the VM is the container, so its CPU, memory, disk and
// network counters are the container's.

// agentQueryTimeout bounds one top or stats request to the agent.
const agentQueryTimeout = 10 * time.Second

// statsInterval is the period of streamed stats (dockerd's collector's).
const statsInterval = time.Second

// runningRun returns the container's run if it is running and not paused.
func (d *Daemon) runningRun(c *Container) (r *runtime, paused bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running() || c.run == nil {
		return nil, false
	}
	return c.run, c.State.Status == container.StatePaused
}

// ContainerTop lists the container's processes.
func (d *Daemon) ContainerTop(ctx context.Context, ref string, psArgs string) (*container.TopResponse, error) {
	c, err := d.containers.get(ref)
	if err != nil {
		return nil, err
	}
	r, paused := d.runningRun(c)
	switch {
	case r == nil:
		return nil, errContainerNotRunning(c)
	case paused:
		// The paused VM's agent cannot answer.
		return nil, errdefs.Conflict(fmt.Errorf("container %s is paused, unpause the container to list its processes", c.ID))
	}
	ctx, cancel := context.WithTimeout(ctx, agentQueryTimeout)
	defer cancel()
	top, err := r.agent.Top(ctx, psArgs)
	if err != nil {
		var ae *agentclient.AgentError
		if errors.As(err, &ae) {
			if strings.Contains(ae.Message, "unsupported ps arguments") {
				return nil, errdefs.InvalidParameter(err)
			}
			if strings.Contains(ae.Message, "not running") {
				return nil, errContainerNotRunning(c)
			}
		}
		return nil, errdefs.System(fmt.Errorf("top: %w", err))
	}
	return &container.TopResponse{Titles: top.Titles, Processes: top.Processes}, nil
}

// ContainerStats samples the container's resource usage, once or every
// second.
func (d *Daemon) ContainerStats(ctx context.Context, ref string, cfg *backend.StatsConfig) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	name, id := "/"+c.Name, c.ID
	c.mu.Unlock()
	empty := func() *container.StatsResponse { return &container.StatsResponse{Name: name, ID: id} }

	r, _ := d.runningRun(c)
	if r == nil && !cfg.Stream {
		// As dockerd does: a container that does not run has empty stats.
		return cfg.Send(empty())
	}

	// sample returns the current stats; nil when the container no longer
	// runs this run. A paused VM cannot answer: its last sample stands.
	var last *agentproto.GuestStats
	sample := func() (*agentproto.GuestStats, error) {
		cur, paused := d.runningRun(c)
		if cur == nil || (r != nil && cur != r) {
			return nil, nil
		}
		r = cur
		if paused {
			if last == nil {
				// Nothing known yet: zeros until it is unpaused.
				return &agentproto.GuestStats{}, nil
			}
			return last, nil
		}
		qctx, cancel := context.WithTimeout(ctx, agentQueryTimeout)
		defer cancel()
		gs, err := cur.agent.Stats(qctx)
		if err != nil {
			if again, _ := d.runningRun(c); again != cur {
				return nil, nil // it stopped meanwhile
			}
			return nil, err
		}
		last = gs
		return gs, nil
	}
	wait := func() bool {
		t := time.NewTimer(statsInterval)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}

	if !cfg.Stream {
		first, err := sample()
		if err != nil {
			return err
		}
		if first == nil {
			return cfg.Send(empty())
		}
		firstRead := time.Now()
		if cfg.OneShot {
			return cfg.Send(withThrottling(toStatsResponse(name, id, first, firstRead, nil, time.Time{}), r))
		}
		// As dockerd does: precpu comes from a sample a second earlier,
		// so that the CPU percentage means something.
		if !wait() {
			return ctx.Err()
		}
		second, err := sample()
		if err != nil {
			return err
		}
		if second == nil {
			return cfg.Send(empty())
		}
		return cfg.Send(withThrottling(toStatsResponse(name, id, second, time.Now(), first, firstRead), r))
	}

	if r == nil {
		// Streaming a container that does not run: empty stats every
		// second (dockerd's collector publishes those) until the client
		// goes.
		for {
			if err := cfg.Send(empty()); err != nil {
				return err
			}
			if !wait() {
				return nil
			}
		}
	}
	var prev *agentproto.GuestStats
	var prevRead time.Time
	for {
		gs, err := sample()
		if err != nil {
			return err
		}
		if gs == nil {
			// The container stopped: one last empty sample, then the end.
			return cfg.Send(empty())
		}
		now := time.Now()
		if err := cfg.Send(withThrottling(toStatsResponse(name, id, gs, now, prev, prevRead), r)); err != nil {
			return err
		}
		prev, prevRead = gs, now
		if !wait() {
			return nil
		}
	}
}

// toStatsResponse converts the agent's sample (and the previous one for
// precpu) to dockerd's stats document.
func toStatsResponse(name, id string, gs *agentproto.GuestStats, read time.Time, prev *agentproto.GuestStats, prevRead time.Time) *container.StatsResponse {
	s := &container.StatsResponse{
		Name:      name,
		ID:        id,
		Read:      read.UTC(),
		PreRead:   prevRead.UTC(),
		CPUStats:  cpuStats(gs),
		PidsStats: container.PidsStats{Current: uint64(gs.Pids)},
	}
	if prev != nil {
		s.PreCPUStats = cpuStats(prev)
	}
	if prevRead.IsZero() {
		s.PreRead = time.Time{}
	}
	// Memory: what the guest cannot reclaim, out of what it has.
	mem := gs.Memory
	total, avail := mem["MemTotal"], mem["MemAvailable"]
	s.MemoryStats.Limit = total
	if avail <= total {
		s.MemoryStats.Usage = total - avail
	}
	s.MemoryStats.Stats = map[string]uint64{}
	for k, v := range map[string]string{
		"cache": "Cached", "rss": "AnonPages", "mapped_file": "Mapped", "shmem": "Shmem",
		"active_anon": "Active(anon)", "inactive_anon": "Inactive(anon)", "active_file": "Active(file)",
		"unevictable": "Unevictable", "dirty": "Dirty", "writeback": "Writeback",
		"slab": "Slab", "kernel_stack": "KernelStack", "pagetables": "PageTables", "free": "MemFree",
	} {
		// Not inactive_file: the CLI subtracts it from usage, which
		// MemAvailable already leaves out.
		if x, ok := mem[v]; ok {
			s.MemoryStats.Stats[k] = x
		}
	}
	for _, dk := range gs.Disks {
		s.BlkioStats.IoServiceBytesRecursive = append(s.BlkioStats.IoServiceBytesRecursive,
			container.BlkioStatEntry{Major: dk.Major, Minor: dk.Minor, Op: "read", Value: dk.ReadBytes},
			container.BlkioStatEntry{Major: dk.Major, Minor: dk.Minor, Op: "write", Value: dk.WriteBytes})
		s.BlkioStats.IoServicedRecursive = append(s.BlkioStats.IoServicedRecursive,
			container.BlkioStatEntry{Major: dk.Major, Minor: dk.Minor, Op: "read", Value: dk.Reads},
			container.BlkioStatEntry{Major: dk.Major, Minor: dk.Minor, Op: "write", Value: dk.Writes})
	}
	if len(gs.Networks) > 0 {
		s.Networks = map[string]container.NetworkStats{}
		for _, n := range gs.Networks {
			s.Networks[n.Name] = container.NetworkStats{
				RxBytes: n.RxBytes, RxPackets: n.RxPackets, RxErrors: n.RxErrors, RxDropped: n.RxDropped,
				TxBytes: n.TxBytes, TxPackets: n.TxPackets, TxErrors: n.TxErrors, TxDropped: n.TxDropped,
			}
		}
	}
	return s
}

// cpuStats: the container's usage is the guest's busy time, the system's
// the guest's total time (all CPUs, idle included), so that the CLI's
// delta(usage)/delta(system)*online_cpus*100 is the VM's CPU use in
// percent of one CPU.
func cpuStats(gs *agentproto.GuestStats) container.CPUStats {
	return container.CPUStats{
		CPUUsage: container.CPUUsage{
			TotalUsage:        gs.CPUBusy,
			PercpuUsage:       append([]uint64(nil), gs.PerCPUBusy...),
			UsageInKernelmode: gs.CPUSystem,
			UsageInUsermode:   gs.CPUUser,
		},
		SystemUsage: gs.CPUTotal,
		OnlineCPUs:  uint32(gs.OnlineCPUs),
	}
}

// withThrottling adds the CPU quota's effect, which only the host sees:
// the periods in which the VM's cgroup ran out of quota (zero without a
// quota or a cgroup). The usage figures stay the guest's, which count what
// the container's processes ran rather than QEMU's emulation work.
func withThrottling(s *container.StatsResponse, r *runtime) *container.StatsResponse {
	if r == nil || r.machine == nil {
		return s
	}
	ms, err := r.machine.Stats()
	if err != nil {
		return s
	}
	s.CPUStats.ThrottlingData = container.ThrottlingData{
		Periods:          ms.Throttling.Periods,
		ThrottledPeriods: ms.Throttling.ThrottledPeriods,
		ThrottledTime:    uint64(ms.Throttling.ThrottledTime),
	}
	return s
}
