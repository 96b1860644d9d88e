// Package vmbackend hides the virtual machine monitor behind a small
// interface. A Provider turns a MachineSpec into a running Machine by cloning
// a booted template VM of the same Shape; the QEMU implementation lives in
// vmbackend/qemu, and another VMM (Firecracker, Cloud Hypervisor) can slot in
// by implementing the same two interfaces.
//
// The provider knows nothing about containers: the daemon talks to the guest
// through the agent channel (see vmbackend/agentproto and agentclient).
package vmbackend

import (
	"context"
	"io"
	"strconv"
	"time"
)

// Shape is what a template is keyed by besides the guest kernel and agent:
// every VM of one shape is cloned from the same template.
type Shape struct {
	MemoryMiB int `json:"memoryMiB"`
	VCPUs     int `json:"vcpus"`
}

// Accelerator names, as reported by `docker info`.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// MachineSpec describes one container VM.
type MachineSpec struct {
	// ID names the VM (the container ID); it appears in the VMM's process
	// name so that a restarted daemon can recognise its own VMs.
	ID    string
	Shape Shape
	// RootDisk is the container's own disk (a qcow2 overlay on the image's
	// base disk). Its virtual size must be Provider.DiskSize(). Empty
	// starts a blank machine for a warm pool (Claimer): its disk is a
	// placeholder until Claim swaps the container's in.
	RootDisk string
	// StateDir holds the sockets, pid file and console log of this VM. It
	// must be short enough for unix socket paths (< 100 bytes with names).
	StateDir string
	// ConsoleLog receives the guest's serial console (kernel and agent
	// diagnostics), appended to across restarts.
	ConsoleLog string
	// NICs are the VM's network interfaces in guest order (eth0, eth1, ...).
	// The first takes the place of the template's placeholder NIC; more
	// are hot-plugged after the restore. Empty: the placeholder NIC is
	// connected to nothing (--network none).
	NICs []NICSpec
	// Shares are host directories exported to the guest over virtio-9p,
	// hot-plugged after the restore (bind mounts, volumes).
	Shares []ShareSpec
	// Resources bound the VM's CPU use on the host (docs/RESOURCES.md).
	Resources Resources
	// ResumeUncommittedMigration is for Adopt: a VM whose outgoing live
	// migration had sent everything, but which the daemon that died
	// never handed over (the target was not told to run it), is resumed
	// where it is instead of being stopped as a half-made VM.
	ResumeUncommittedMigration bool
}

// Resources are the host-side CPU bounds of a VM, in dockerd's units: the
// provider applies them to the VMM process, whose threads include the
// vCPUs the container's processes run on. Zero fields are "no limit".
// Memory is not here: the VM's memory is its Shape, and the provider
// bounds the VMM at that plus its own overhead.
type Resources struct {
	CPUShares  int64  // relative weight (dockerd --cpu-shares)
	NanoCPUs   int64  // CPUs in 1e-9 units (--cpus); a quota per DefaultPeriod
	CPUQuota   int64  // µs per CPUPeriod (--cpu-quota); -1 or 0: none
	CPUPeriod  int64  // µs (--cpu-period); 0: 100000
	CpusetCpus string // host CPUs the VM may run on (--cpuset-cpus)
	CpusetMems string // host memory nodes (--cpuset-mems)
}

// ResourceSupport says which Resources a provider enforces, for /info and
// for refusing what it cannot.
type ResourceSupport struct {
	// CgroupDriver is "cgroupfs" when VMs get cgroups of their own,
	// "none" otherwise; CgroupVersion is "1" or "2" ("" with none).
	CgroupDriver  string
	CgroupVersion string
	CPUShares     bool // CPUShares is enforced
	CPUCfs        bool // NanoCPUs, CPUQuota and CPUPeriod are enforced
	Cpuset        bool // CpusetCpus and CpusetMems are enforced
	// MemoryBound and PidsBound: the VMM process's memory and threads are
	// bounded (a fixed bound derived from the shape, not a user setting).
	MemoryBound bool
	PidsBound   bool
	// Unsupported says why what is false is (for messages).
	Unsupported string
}

// NICSpec is one network interface of a VM.
type NICSpec struct {
	// TapName is the host tap device the NIC is connected to; the caller
	// creates it (and enslaves it to its bridge) before Start.
	TapName string
	// MAC is the interface's address; the agent sets it in the guest,
	// since clones share the template's.
	MAC string
}

// ShareSpec is one host directory exported to a VM.
type ShareSpec struct {
	// Tag is the 9p mount tag the guest mounts it by: ShareTag(i) for the
	// i-th share (providers may snapshot templates with devices that
	// already carry these tags).
	Tag      string
	HostPath string
	ReadOnly bool
}

// MaxShares bounds len(MachineSpec.Shares).
const MaxShares = 16

// ShareTag is the mount tag of a VM's i-th share.
func ShareTag(i int) string { return "jv" + strconv.Itoa(i) }

// TemplateCollector is implemented by providers that keep templates on
// disk (the QEMU provider: each holds a memory file of the shape's size).
// The daemon calls CollectTemplates with the shapes its containers use;
// templates of other shapes, and of the same shapes made by another
// kernel, agent or QEMU (a jevm upgrade), are removed. Running VMs are not
// affected.
type TemplateCollector interface {
	CollectTemplates(keep []Shape) error
}

// TemplateChecker is implemented by providers whose templates live on
// disk, where they can be damaged: after a start of shape failed,
// CheckTemplate verifies the template and removes it if its files are
// not those it was built with (removed true); the next start builds it
// again.
type TemplateChecker interface {
	CheckTemplate(ctx context.Context, shape Shape) (removed bool, err error)
}

// SharePlugger is implemented by providers whose VMs start with share
// devices already in place (the QEMU provider's templates carry them):
// the first PrePluggedShares() shares of a machine cost no hot-plug. The
// daemon gives a VM with a spare one a pod share (daemon/podshare.go).
type SharePlugger interface {
	PrePluggedShares() int
}

// Claimer is implemented by providers that can start a machine before
// the container it is for exists (a blank: MachineSpec.RootDisk empty)
// and bind it to the container later, so that a warm pool of resumed
// clones can serve starts (daemon/pool.go). Binding costs no
// guest-visible hot-plug: the blank's disk device has a placeholder
// backend that Claim replaces before the guest ever reads it.
type Claimer interface {
	// Claim makes the blank m spec's machine: spec.RootDisk becomes its
	// disk, it is known as spec.ID (Adopt finds it by that spec after a
	// daemon restart), its state files move to spec.StateDir, it gets
	// spec.Resources, and NICs after the first are hot-plugged. The
	// first NIC and the shares stay those the blank was started with:
	// the caller re-points them (a tap renamed, entries bound under a
	// share). spec.Shape must be the blank's. It fails with
	// ErrTemplateChanged if the template m was cloned from is not the
	// one a start would use now; on any failure the caller kills m.
	Claim(ctx context.Context, m Machine, spec MachineSpec) error
}

// ErrTemplateChanged is returned by Claim for a blank cloned from a
// template that has since been replaced.
var ErrTemplateChanged = errTemplateChanged{}

type errTemplateChanged struct{}

func (errTemplateChanged) Error() string { return "the template the VM was cloned from has changed" }

// Provider is one VMM with its templates.
type Provider interface {
	// Name is the VMM, e.g. "qemu".
	Name() string
	// Accelerator is AccelKVM or AccelTCG, decided when the provider was made.
	Accelerator() string
	// DiskSize is the virtual size in bytes every root disk must have: the
	// template's placeholder disk has it, and clones inherit the guest's view.
	DiskSize() int64
	// EnsureTemplate boots, snapshots and stores the template for shape if
	// it is missing or stale. It is safe to call concurrently.
	EnsureTemplate(ctx context.Context, shape Shape) error
	// Start clones the template of spec.Shape into a new running VM whose
	// agent channel is connected and whose guest has not yet been told to
	// run anything.
	Start(ctx context.Context, spec MachineSpec) (Machine, error)
	// Adopt reconnects to a VM that a previous daemon process started with
	// the same spec. It fails with ErrNotRunning if that VM is gone.
	Adopt(ctx context.Context, spec MachineSpec) (Machine, error)
	// Close releases the provider's resources; running machines keep running.
	Close() error
	// ResourceSupport says which Resources the provider enforces.
	ResourceSupport() ResourceSupport
	RootDisks
}

// RootDisks makes containers' root disks in the provider's own format: the
// image store builds an image's base disk (a raw ext4 file system of
// DiskSize bytes), and each container gets a copy-on-write disk over it.
type RootDisks interface {
	// CreateRootDisk makes a container's own disk at path, layered over
	// base; it fails if path exists, and leaves nothing on failure.
	CreateRootDisk(ctx context.Context, base, path string) error
	// RootDiskBase returns the base disk a root disk is layered over.
	RootDiskBase(path string) (string, error)
	// GuestRootDevice is the device the guest sees the root disk as
	// (what the agent mounts), e.g. "/dev/vda".
	GuestRootDevice() string
}

// Machine is one running VM.
type Machine interface {
	ID() string
	// Pid is the VMM process ID on the host.
	Pid() int
	// Agent is the byte stream to the guest agent (virtio-serial). Speak
	// agentproto on it, e.g. through agentclient.
	Agent() io.ReadWriteCloser
	// Pause and Resume stop and continue the guest's vCPUs.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Kill stops the VM at once (QMP quit, then SIGKILL) and waits for the
	// VMM process to go.
	Kill(ctx context.Context) error
	// Done is closed when the VMM process has exited.
	Done() <-chan struct{}
	// Stats reports host-side resource use of the VMM process.
	Stats() (MachineStats, error)
	// UpdateResources applies new CPU bounds to the running VM at once.
	UpdateResources(ctx context.Context, r Resources) error
}

// Checkpointer is implemented by machines that can save their running
// state (docker checkpoint create): the guest's memory and device state,
// and the root disk as it is at that instant.
type Checkpointer interface {
	// Checkpoint pauses the VM, writes its memory and device state and a
	// copy of its root disk into dir (which exists and is empty), and
	// resumes it if leaveRunning; otherwise the VM stays stopped, and
	// the caller kills it. On error the VM runs on as it was.
	Checkpoint(ctx context.Context, dir string, leaveRunning bool) (CheckpointInfo, error)
}

// CheckpointInfo describes a machine checkpoint: what a restore must
// match.
type CheckpointInfo struct {
	// Template names what the state was made with (the provider's
	// template key: VMM, guest kernel and agent, device layout, shape).
	Template string `json:"template"`
	Shape    Shape  `json:"shape"`
	// NICs is how many network interfaces the VM had (the devices the
	// state describes).
	NICs int `json:"nics"`
	// StateBytes is the size of the memory and device state.
	StateBytes int64 `json:"stateBytes"`
}

// Restorer is implemented by providers that start machines from
// checkpoints.
type Restorer interface {
	// Restore starts a VM from the checkpoint in dir, for spec (whose
	// RootDisk the caller made from the checkpoint's disk, whose Shape and
	// number of NICs are the checkpoint's): the guest resumes where it
	// was, its agent channel connected. It fails with
	// ErrCheckpointIncompatible when the checkpoint was made by another
	// template (another VMM, kernel or agent).
	Restore(ctx context.Context, spec MachineSpec, dir string) (Machine, error)
	// CheckpointDisk is the checkpoint's root disk file in dir.
	CheckpointDisk(dir string) string
}

// ErrCheckpointIncompatible is Restore's error for a checkpoint this
// provider cannot restore.
var ErrCheckpointIncompatible = errCheckpointIncompatible{}

type errCheckpointIncompatible struct{}

func (errCheckpointIncompatible) Error() string {
	return "the checkpoint was made by another VM template (another QEMU, guest kernel or agent)"
}

// MachineStats is measured on the host for the VMM process.
type MachineStats struct {
	CPUTime  time.Duration
	RSSBytes uint64
	PSSBytes uint64
	// Throttling is the CPU quota's effect, from the VM's cgroup (zero
	// without a quota or a cgroup).
	Throttling CPUThrottling
}

// CPUThrottling counts CFS periods in which the VM ran out of CPU quota.
type CPUThrottling struct {
	Periods          uint64
	ThrottledPeriods uint64
	ThrottledTime    time.Duration
}

// ErrNotRunning is returned by Adopt when the VM to adopt has exited.
var ErrNotRunning = errNotRunning{}

type errNotRunning struct{}

func (errNotRunning) Error() string { return "vm is not running" }

// Migrator is implemented by machines that can move to another host while
// they run (live migration, docs/MIGRATION.md): their memory is copied
// while the guest runs, then the guest pauses for the rest and its device state; the root disk's own blocks travel in the same stream (the base
// disk under them is the target's business).
type Migrator interface {
	// MigrationInfo describes the machine as a target must start it to
	// receive it, and fails if the machine cannot be migrated (a disk
	// attached, a share the guest mounted).
	MigrationInfo(ctx context.Context) (MigrationInfo, error)
	// MigrateTo sends the running machine into w until the target has
	// all of it, calling progress now and then. On success the machine
	// is paused and its guest belongs to the target: the caller kills it,
	// or, if the target could not take over, Resume runs it again here.
	// On error the machine runs on as it was.
	MigrateTo(ctx context.Context, w io.Writer, progress func(MigrationProgress)) (MigrationStats, error)
}

// MigrationInfo is what a target must match to receive a machine.
type MigrationInfo struct {
	// Template, Shape and NICs as in CheckpointInfo.
	Template string `json:"template"`
	Shape    Shape  `json:"shape"`
	NICs     int    `json:"nics"`
	// HotNICs are the NICs plugged in after the start, where they are
	// (provider-specific slots): the target plugs them in the same place
	// before the state arrives.
	HotNICs []HotNIC `json:"hotNICs,omitempty"`
}

// HotNIC is a hot-plugged NIC: its slot and MAC.
type HotNIC struct {
	Slot int    `json:"slot"`
	MAC  string `json:"mac"`
}

// MigrationProgress is what a migration has sent so far.
type MigrationProgress struct {
	// Sent is the bytes sent (memory and disk), Remaining the memory and
	// disk still to send in this pass, Total the memory's and disk's size.
	Sent, Remaining, Total int64
	// Passes is how many times the dirty memory was synchronised.
	Passes int
}

// MigrationStats describes a completed migration.
type MigrationStats struct {
	Total time.Duration // from the start of the copy to its end
	// Downtime is how long the guest was paused here: the last pass and
	// the device state, as the VMM measured it (the target's resume
	// follows).
	Downtime time.Duration
	RAMBytes int64 // memory sent (pages sent again included)
	Passes   int   // dirty memory synchronisations
}

// IncomingMigrator is implemented by providers that receive migrations.
type IncomingMigrator interface {
	// CanReceive says whether a machine described by info can be
	// started here (ErrCheckpointIncompatible if not: another template).
	CanReceive(info MigrationInfo) error
	// StartIncoming starts a machine for spec that loads a migration
	// from r (another host's MigrateTo): spec's RootDisk is a new disk
	// over a base with the source's contents, its Shape and NICs are
	// info's. It returns once all has arrived and r has returned io.EOF
	// (so the caller may read what follows on r's connection), with the
	// machine paused and its agent channel connected: Resume runs the
	// guest, Kill drops it. On failure it may still be reading r until
	// the caller closes what r reads from. It fails with
	// ErrCheckpointIncompatible for a machine of another template.
	StartIncoming(ctx context.Context, spec MachineSpec, info MigrationInfo, r io.Reader) (Machine, error)
}
