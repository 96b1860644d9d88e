package qemu

// Each VM's QEMU runs in a cgroup of its own, named after the machine ID
// (the container ID): DIR/jevm/<id> in each hierarchy, where DIR is
// jevmd's own cgroup (docs/RESOURCES.md). Its vCPU threads are the
// container's CPUs, so the CPU weight, CFS quota and cpuset of that
// cgroup are what the container's processes get; its memory and pids
// limits bound QEMU itself (the guest cannot use more than its RAM, so
// only QEMU's own overhead could grow past them).

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/internal/cgroups"
	"github.com/jevm/jevm/vmbackend"
)

// QEMU's memory beyond the guest's RAM. The cgroup bounds the process at
// the VM's size plus these, so that a guest that uses all its RAM is never
// killed by the host, while a QEMU that leaks, or is made to allocate by a
// hostile guest, is stopped at a known size.
const (
	// qemuOverheadMiB is QEMU's own memory: its binary and libraries
	// (QEMU 7.2 is about 37 MiB resident before the guest runs), device
	// and block-layer state (qcow2 caches, virtio queues, 9p buffers of up
	// to its msize per request), thread stacks and the migration stream
	// read at restore. A 256 MiB clone whose guest wrote 100 MiB peaked at
	// 229 MiB charged in all (integration TestCgroupCPUBounds logs it);
	// 256 MiB on top of the guest's RAM leaves room for I/O bursts.
	qemuOverheadMiB = 256
	// tcgCodeBufferMiB is TCG's translation cache: QEMU 7.2 maps 1 GiB for
	// it on a 64-bit host and fills it lazily as the guest runs new code,
	// flushing when full. A guest that runs a lot of distinct code (a
	// compiler, a JIT) can fill it, and its pages are anonymous memory the
	// host cannot reclaim without swap, so the bound must include it
	// (KVM has none).
	tcgCodeBufferMiB = 1024
	// qemuPidsBase bounds QEMU's threads besides one per vCPU: the main
	// loop, RCU and call-RCU threads, the block layer's worker pool (at
	// most 64 threads per AioContext) and the migration thread (QEMU
	// starts no process: -sandbox denies it).
	qemuPidsBase = 256
)

// cgroupRemoveTimeout bounds the wait for a VM's cgroup to empty after
// QEMU exited (its last threads and children go a moment later).
const cgroupRemoveTimeout = 5 * time.Second

// initCgroups detects the host's cgroups; without them VMs run unbounded
// (logged once here, and reported by ResourceSupport).
func (p *Provider) initCgroups() {
	if p.opts.NoCgroups {
		p.cgroupErr = "disabled by the provider's options"
		return
	}
	h, err := cgroups.Detect(cgroups.Options{Root: p.opts.CgroupRoot, Parent: p.opts.CgroupParent, Self: p.opts.CgroupSelf})
	if err != nil {
		p.cgroupErr = err.Error()
		p.log.WithError(err).Warn("VMs run without cgroups: CPU shares, quotas and cpusets cannot be enforced, and QEMU's memory is not bounded")
		return
	}
	p.cg = h
	log := p.log.WithFields(logrus.Fields{"version": h.Version(), "cpu": h.ParentDir(cgroups.CPU), "memory": h.ParentDir(cgroups.Memory)})
	if r := h.UnusableReason(); r != "" {
		p.cgroupErr = r
		log = log.WithField("unusable", r)
	}
	// Leftovers of VMs that ended while no daemon watched them. Only
	// cgroups without a process go: a VM still running (to be re-adopted,
	// possibly by another daemon on this host) keeps its cgroup.
	if removed := h.Sweep(nil); len(removed) > 0 {
		log = log.WithField("staleRemoved", len(removed))
	}
	log.Info("VMs get cgroups of their own")
}

// ResourceSupport implements vmbackend.Provider.
func (p *Provider) ResourceSupport() vmbackend.ResourceSupport {
	if p.cg == nil {
		return vmbackend.ResourceSupport{CgroupDriver: "none", Unsupported: "cgroups unavailable: " + p.cgroupErr}
	}
	return vmbackend.ResourceSupport{
		CgroupDriver:  "cgroupfs",
		CgroupVersion: fmt.Sprint(p.cg.Version()),
		CPUShares:     p.cg.Has(cgroups.CPU),
		CPUCfs:        p.cg.Has(cgroups.CPU),
		Cpuset:        p.cg.Has(cgroups.Cpuset),
		MemoryBound:   p.cg.Has(cgroups.Memory),
		PidsBound:     p.cg.Has(cgroups.Pids),
		Unsupported:   p.cgroupErr,
	}
}

// MemoryBound is the most memory (bytes) the cgroup lets a VM of shape use
// on this provider's accelerator.
func (p *Provider) MemoryBound(shape vmbackend.Shape) int64 {
	mib := int64(shape.MemoryMiB) + qemuOverheadMiB
	if p.accel != vmbackend.AccelKVM {
		mib += tcgCodeBufferMiB
	}
	return mib << 20
}

// limitsFor maps a VM's shape and resources onto its cgroup's limits.
func (p *Provider) limitsFor(shape vmbackend.Shape, r vmbackend.Resources) cgroups.Limits {
	l := cgroups.Limits{
		CPUShares:  r.CPUShares,
		CpusetCpus: r.CpusetCpus,
		CpusetMems: r.CpusetMems,
		MemoryMax:  p.MemoryBound(shape),
		PidsMax:    int64(qemuPidsBase + shape.VCPUs),
	}
	switch {
	case r.NanoCPUs > 0:
		// As dockerd: --cpus is a quota per the default period.
		l.CPUPeriod = cgroups.DefaultPeriod
		l.CPUQuota = r.NanoCPUs * cgroups.DefaultPeriod / 1e9
	default:
		l.CPUPeriod = r.CPUPeriod
		l.CPUQuota = r.CPUQuota // <= 0: none
	}
	return l
}

// createCgroup makes (or takes) the cgroup of spec's VM with its limits;
// nil when VMs run without cgroups.
func (p *Provider) createCgroup(spec vmbackend.MachineSpec) (*cgroups.Group, error) {
	if p.cg == nil {
		return nil, nil
	}
	g, err := p.cg.Create(spec.ID, p.limitsFor(spec.Shape, spec.Resources))
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	return g, nil
}

// joinCgroup moves pid into g. A cgroup swept meanwhile by another
// daemon's start-up (it was still empty) is made again.
func (p *Provider) joinCgroup(g *cgroups.Group, spec vmbackend.MachineSpec, pid int) error {
	if g == nil {
		return nil
	}
	err := g.Add(pid)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err = p.createCgroup(spec); err == nil {
			err = g.Add(pid)
		}
	}
	return err
}

// removeCgroup removes g once its processes are gone; failures are
// logged (a cgroup left behind is swept at the next daemon start).
func removeCgroup(g *cgroups.Group, log *logrus.Entry) {
	if g == nil {
		return
	}
	if err := g.Remove(cgroupRemoveTimeout); err != nil {
		log.WithError(err).Warn("cannot remove the VM's cgroup")
	}
}

// UpdateResources implements vmbackend.Machine: the new bounds are
// written to the VM's cgroup and hold at once.
func (m *machine) UpdateResources(ctx context.Context, r vmbackend.Resources) error {
	if m.cg == nil {
		return fmt.Errorf("qemu: update %s: %w", m.id, ErrNoCgroups)
	}
	select {
	case <-m.exited:
		return fmt.Errorf("qemu: update %s: %w", m.id, vmbackend.ErrNotRunning)
	default:
	}
	m.resMu.Lock()
	defer m.resMu.Unlock()
	if err := m.cg.Set(m.p.limitsFor(m.spec.Shape, r)); err != nil {
		// Put back what held before, so that the cgroup is not left
		// half-updated.
		_ = m.cg.Set(m.p.limitsFor(m.spec.Shape, m.spec.Resources))
		return fmt.Errorf("qemu: update %s: %w", m.id, err)
	}
	m.spec.Resources = r
	m.log.WithField("resources", fmt.Sprintf("%+v", r)).Info("resources updated")
	return nil
}

// ErrNoCgroups is returned by UpdateResources when VMs have no cgroups.
var ErrNoCgroups = errors.New("VMs run without cgroups on this host")

// throttling reads the CPU quota's counters from the VM's cgroup.
func (m *machine) throttling() vmbackend.CPUThrottling {
	if m.cg == nil {
		return vmbackend.CPUThrottling{}
	}
	s, err := m.cg.CPUStats()
	if err != nil {
		return vmbackend.CPUThrottling{}
	}
	return vmbackend.CPUThrottling{Periods: s.Periods, ThrottledPeriods: s.ThrottledPeriods, ThrottledTime: s.ThrottledTime}
}
