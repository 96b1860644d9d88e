// Package fakevm is a vmbackend.Provider for tests: its machines are
// goroutines, each with a fakeagent.Guest on the other end of an
// in-memory agent channel, so that the daemon's start, stop, restart and
// health paths run in milliseconds without QEMU.
package fakevm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient/fakeagent"
)

// Provider is a fake VMM.
type Provider struct {
	// NewGuest makes the agent of each new VM; default: a
	// fakeagent.Guest with its default behaviour.
	NewGuest func(spec vmbackend.MachineSpec) *fakeagent.Guest
	// StartErr, if set, fails every Start.
	StartErr error
	// Support is what ResourceSupport answers; default: cgroups v1 with
	// every CPU bound enforced.
	Support *vmbackend.ResourceSupport
	// UpdateErr, if set, fails every Machine.UpdateResources.
	UpdateErr error

	mu       sync.Mutex
	machines map[string]*Machine
	started  []*Machine
	nextPid  int
}

// New returns a provider without machines.
func New() *Provider { return &Provider{machines: map[string]*Machine{}} }

var _ vmbackend.Provider = (*Provider)(nil)

func (p *Provider) Name() string                                          { return "fake" }
func (p *Provider) Accelerator() string                                   { return vmbackend.AccelTCG }
func (p *Provider) DiskSize() int64                                       { return 1 << 30 }
func (p *Provider) EnsureTemplate(context.Context, vmbackend.Shape) error { return nil }
func (p *Provider) Close() error                                          { return nil }

// PrePluggedShares implements vmbackend.SharePlugger, as the QEMU
// provider does.
func (p *Provider) PrePluggedShares() int { return 4 }

// ResourceSupport implements vmbackend.Provider.
func (p *Provider) ResourceSupport() vmbackend.ResourceSupport {
	if p.Support != nil {
		return *p.Support
	}
	return vmbackend.ResourceSupport{CgroupDriver: "cgroupfs", CgroupVersion: "1", CPUShares: true, CPUCfs: true, Cpuset: true, MemoryBound: true, PidsBound: true}
}

// GuestRootDevice is what the fake guest calls its root disk; a name no
// real guest has, so tests see that the daemon takes it from the backend.
const GuestRootDevice = "/dev/fakeroot"

func (p *Provider) GuestRootDevice() string { return GuestRootDevice }

// CreateRootDisk writes a small file naming base (the fake's "overlay").
func (p *Provider) CreateRootDisk(_ context.Context, base, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(rootDiskMagic + base)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// RootDiskBase reads back the base CreateRootDisk recorded.
func (p *Provider) RootDiskBase(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	base, ok := strings.CutPrefix(string(b), rootDiskMagic)
	if !ok {
		return "", fmt.Errorf("fakevm: %s is not a fake root disk", path)
	}
	return base, nil
}

const rootDiskMagic = "fakevm-root-disk\n"

// Start makes a running machine for spec. As the QEMU provider, it refuses
// a second VM for the same ID.
func (p *Provider) Start(ctx context.Context, spec vmbackend.MachineSpec) (vmbackend.Machine, error) {
	if p.StartErr != nil {
		return nil, p.StartErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.machines == nil {
		p.machines = map[string]*Machine{}
	}
	if m := p.machines[spec.ID]; m != nil && !m.Exited() {
		return nil, fmt.Errorf("fakevm: a VM for %s is running", spec.ID)
	}
	var g *fakeagent.Guest
	if p.NewGuest != nil {
		g = p.NewGuest(spec)
	}
	if g == nil {
		g = &fakeagent.Guest{}
	}
	p.nextPid++
	m := &Machine{Spec: spec, Guest: g, pid: 10000 + p.nextPid, done: make(chan struct{}), resources: spec.Resources, updateErr: p.UpdateErr}
	prev := g.PowerOff
	g.PowerOff = func() {
		if prev != nil {
			prev()
		}
		m.powerOff()
	}
	p.machines[spec.ID] = m
	p.started = append(p.started, m)
	return m, nil
}

// Adopt returns the running machine of spec.ID (a daemon restart with the
// same provider), or ErrNotRunning.
func (p *Provider) Adopt(ctx context.Context, spec vmbackend.MachineSpec) (vmbackend.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.machines[spec.ID]
	if m == nil || m.Exited() {
		return nil, vmbackend.ErrNotRunning
	}
	m.mu.Lock()
	stop := m.migratedOut && !spec.ResumeUncommittedMigration
	if m.migratedOut && !stop {
		m.migratedOut, m.paused = false, false
	}
	m.killed = m.killed || stop
	m.mu.Unlock()
	if stop { // as QEMU's adoption does with a VM in postmigrate
		m.end()
		return nil, vmbackend.ErrNotRunning
	}
	return m, nil
}

// Machine is the machine of id, the last one started (nil if none).
func (p *Provider) Machine(id string) *Machine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.machines[id]
}

// Started are the machines started so far, in order.
func (p *Provider) Started() []*Machine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Machine(nil), p.started...)
}

// Running counts the machines that have not exited.
func (p *Provider) Running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.started {
		if !m.Exited() {
			n++
		}
	}
	return n
}

// Machine is a fake VM.
type Machine struct {
	Spec  vmbackend.MachineSpec
	Guest *fakeagent.Guest

	pid      int
	done     chan struct{}
	doneOnce sync.Once

	mu        sync.Mutex
	conns     []net.Conn
	hosts     []*hostConn
	paused    bool
	killed    bool
	resources vmbackend.Resources
	updateErr error
	// disks are the hot-plugged disks (AttachDisk), by path.
	disks   map[string]string
	diskSeq int
	// checkpointErr fails the next checkpoints (SetCheckpointErr);
	// checkpointsHeld says, for each checkpoint, whether the guest's main
	// container was held still when it was made.
	checkpointErr   error
	checkpointsHeld []bool
	// migratedOut: paused as a VM whose outgoing migration completed
	// (QEMU's postmigrate; SetMigratedOut).
	migratedOut bool
}

// SetMigratedOut leaves the VM as an outgoing migration that sent
// everything does: paused, and stopped by an Adopt unless the spec says
// to resume it.
func (m *Machine) SetMigratedOut() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.migratedOut, m.paused = true, true
}

// Checkpoint (vmbackend.Checkpointer) writes nothing: it records whether
// the guest's processes were held then, fails with SetCheckpointErr's
// error, and leaves the VM paused unless leaveRunning.
func (m *Machine) Checkpoint(_ context.Context, dir string, leaveRunning bool) (vmbackend.CheckpointInfo, error) {
	held := m.Guest.MainHeld()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkpointsHeld = append(m.checkpointsHeld, held)
	if m.checkpointErr != nil {
		return vmbackend.CheckpointInfo{}, m.checkpointErr
	}
	m.paused = !leaveRunning
	return vmbackend.CheckpointInfo{Template: "fake", Shape: m.Spec.Shape, StateBytes: 1}, nil
}

// SetCheckpointErr makes the next checkpoints fail with err (nil: succeed).
func (m *Machine) SetCheckpointErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkpointErr = err
}

// CheckpointsHeld says, for each checkpoint so far, whether the guest's
// main container was held still (freeze) when it was made.
func (m *Machine) CheckpointsHeld() []bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]bool(nil), m.checkpointsHeld...)
}

// UpdateResources records r as the VM's bounds (Resources reads them).
func (m *Machine) UpdateResources(_ context.Context, r vmbackend.Resources) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.updateErr != nil {
		return m.updateErr
	}
	m.resources = r
	return nil
}

// Resources are the bounds the VM was started with or last updated to.
func (m *Machine) Resources() vmbackend.Resources {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.resources
}

var _ vmbackend.Machine = (*Machine)(nil)

func (m *Machine) ID() string { return m.Spec.ID }
func (m *Machine) Pid() int   { return m.pid }

// Agent connects to the guest agent: each call is a new connection, as a
// new connection to QEMU's agent socket.
func (m *Machine) Agent() io.ReadWriteCloser {
	h, g := net.Pipe()
	hc := &hostConn{Conn: h, eof: make(chan struct{})}
	m.mu.Lock()
	select {
	case <-m.done:
		h.Close()
		g.Close()
	default:
		m.conns = append(m.conns, g)
		m.hosts = append(m.hosts, hc)
		go m.Guest.Serve(g)
	}
	m.mu.Unlock()
	return hc
}

// hostConn notes when the host's reader saw the end of the connection: by
// then the client has handled every frame before it.
type hostConn struct {
	net.Conn
	eofOnce sync.Once
	eof     chan struct{}
}

func (c *hostConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.eofOnce.Do(func() { close(c.eof) })
	}
	return n, err
}

func (c *hostConn) Close() error {
	c.eofOnce.Do(func() { close(c.eof) })
	return c.Conn.Close()
}

func (m *Machine) Pause(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.paused = true
	return nil
}

func (m *Machine) Resume(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.paused = false
	return nil
}

// Paused reports whether the vCPUs are stopped.
func (m *Machine) Paused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused
}

// Kill ends the VM at once.
func (m *Machine) Kill(context.Context) error {
	m.mu.Lock()
	if !m.Exited() {
		m.killed = true
	}
	m.mu.Unlock()
	m.end()
	return nil
}

// Killed reports whether Kill ended the VM (rather than a power-off).
func (m *Machine) Killed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.killed
}

func (m *Machine) Done() <-chan struct{} { return m.done }

// Exited reports whether the VM is gone.
func (m *Machine) Exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

func (m *Machine) Stats() (vmbackend.MachineStats, error) {
	if m.Exited() {
		return vmbackend.MachineStats{}, errors.New("fakevm: VM exited")
	}
	return vmbackend.MachineStats{CPUTime: time.Millisecond, RSSBytes: 1 << 20, PSSBytes: 1 << 20}, nil
}

// powerOff is the guest powering off: the agent channel closes; the VM
// process ends once the host has read all the agent sent (QEMU delivers
// what the guest wrote before it exits).
func (m *Machine) powerOff() {
	m.mu.Lock()
	conns, hosts := m.conns, m.hosts
	m.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	for _, h := range hosts {
		select {
		case <-h.eof:
		case <-time.After(time.Second):
		}
	}
	m.end()
}

func (m *Machine) end() {
	m.doneOnce.Do(func() {
		m.mu.Lock()
		conns, hosts := m.conns, m.hosts
		m.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		for _, h := range hosts {
			h.Conn.Close()
		}
		close(m.done)
	})
}

var _ vmbackend.DiskAttacher = (*Machine)(nil)

// AttachDisk implements vmbackend.DiskAttacher: the disk is recorded,
// under serial "fake-disk<N>".
func (m *Machine) AttachDisk(_ context.Context, path string, _ bool) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.disks == nil {
		m.disks = map[string]string{}
	}
	if s, ok := m.disks[path]; ok {
		return s, nil
	}
	m.diskSeq++
	s := fmt.Sprintf("fake-disk%d", m.diskSeq)
	m.disks[path] = s
	return s, nil
}

// DetachDisk implements vmbackend.DiskAttacher.
func (m *Machine) DetachDisk(_ context.Context, path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.disks, path)
	return nil
}

// Disks are the paths of the disks attached now.
func (m *Machine) Disks() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for p := range m.disks {
		out = append(out, p)
	}
	return out
}
