package qemu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// DeviceLayoutVersion is part of every template key. Bump it whenever
// devices() or anything else in the guest-visible machine changes (device
// set, PCI addresses, machine type, memory backend, kernel command line
// defaults): a clone must be started with exactly the devices its template
// was snapshotted with.
//
// 2: virtio-net-pci NIC "nic0" in slot 5 on netdev "net0" (nics.go).
// 3: four virtio-9p-pci shares in slots 0x1f-0x1c (shares.go).
// 4: RAM 8 KiB beyond the shape's (ramPad: live migration under TCG).
const DeviceLayoutVersion = 4

// Device IDs shared by templates and clones. The block backend id must be
// the same in both, so the clone's own disk takes the placeholder's place.
const (
	rootDriveID  = "root"
	agentCharID  = "agent"
	qmpCharID    = "qmp"
	consoleChrID = "console"
	memBackendID = "mem"
	// blankDiskNode is a blank's placeholder disk node (pool.go).
	blankDiskNode = "blank"
)

// File names inside a template directory and a machine's StateDir. Keep
// them short: unix socket paths are limited to 107 bytes.
const (
	qmpSockName   = "qmp.sock"
	agentSockName = "agent.sock"
	pidFileName   = "qemu.pid"
	qemuLogName   = "qemu.log"

	tplMemoryName  = "memory"
	tplStateName   = "state"
	tplDiskName    = "disk.raw"
	tplMetaName    = "meta.json"
	tplConsoleName = "console.log"
)

// vmConfig is everything that goes on one QEMU command line.
type vmConfig struct {
	Name       string // -name, "jevm-<ID>" for clones
	Accel      string // vmbackend.AccelKVM or AccelTCG
	Shape      vmbackend.Shape
	Kernel     string
	Initrd     string
	Append     string // kernel command line
	MemPath    string // template memory file
	MemShared  bool   // share=on (template) or off (clone: private CoW mapping)
	Disk       string // file behind drive id "root"; empty: a blank's (pool.go)
	DiskFormat string // "raw" or "qcow2"
	DiskSize   int64  // the placeholder's size (blanks only)
	VMGenID    string // vmgenid GUID, new for every clone
	QMPSock    string
	AgentSock  string
	Console    string // serial console file, appended to
	Incoming   bool   // clone: -incoming defer, restored over QMP
	TBSizeMiB  int    // TCG's translated-code buffer (0: QEMU's default)
	// NICTap is the host tap behind the NIC in slot 5 (nics.go); empty
	// connects it to nothing (templates, --network none). NICMAC is its
	// MAC address property (empty: the template's, templateMAC).
	NICTap string
	NICMAC string
	// Shares are the clone's 9p shares (shares.go): the first ones take
	// the template's pre-plugged devices, the others are hot-plugged
	// after the restore.
	Shares []vmbackend.ShareSpec
}

// baseKernelArgs are always on the guest kernel command line (and so part
// of the template key through DeviceLayoutVersion / the extra args).
//
// nowatchdog and tsc=reliable drop the guest's two periodic timers that
// wake an idle VM (the soft-lockup watchdog, every 4 s, and the
// clocksource watchdog, every 0.5 s): under TCG every wake-up is host CPU.
// Measured 2026-12-05, 5 idle clones over 20 s: 0.60% of a core per VM
// before, 0.36% after. A VM cannot lock up unseen (the daemon sees its
// agent), and its TSC is QEMU's, which does not drift from itself.
const baseKernelArgs = "console=ttyS0 quiet panic=-1 nowatchdog tsc=reliable"

// kernelCmdline joins the base arguments with the provider's extras.
func kernelCmdline(extra string) string {
	extra = strings.TrimSpace(extra)
	if extra == "" {
		return baseKernelArgs
	}
	return baseKernelArgs + " " + extra
}

// accelArgs are the accelerator and CPU model arguments; tbSizeMiB > 0
// sizes TCG's translated-code buffer (Options.TCGTBSizeMiB).
func accelArgs(accel string, tbSizeMiB int) []string {
	if accel == vmbackend.AccelKVM {
		return []string{"-accel", "kvm", "-cpu", "host"}
	}
	tcg := "tcg,thread=multi"
	if tbSizeMiB > 0 {
		tcg += ",tb-size=" + strconv.Itoa(tbSizeMiB)
	}
	return []string{"-accel", tcg, "-cpu", "max"}
}

// machineArgs builds the full QEMU argument list (without argv[0]).
func machineArgs(c vmConfig) []string {
	share := "off"
	if c.MemShared {
		share = "on"
	}
	args := []string{
		"-name", c.Name,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-M", "pc,memory-backend=" + memBackendID,
		// QEMU's seccomp filter (docs/SECURITY.md): beyond the obsolete
		// system calls, no set*id, no fork or exec (the snapshot's state
		// file is handed over as a descriptor: qmp.go), no scheduling or
		// resource changes (the daemon sets the VM's cgroup from outside).
		"-sandbox", sandboxOpts,
	}
	args = append(args, accelArgs(c.Accel, c.TBSizeMiB)...)
	args = append(args,
		"-m", strconv.FormatInt(guestRAMBytes(c.Shape)>>10, 10)+"k",
		"-smp", strconv.Itoa(c.Shape.VCPUs),
		"-object", fmt.Sprintf("memory-backend-file,id=%s,size=%dK,mem-path=%s,share=%s",
			memBackendID, guestRAMBytes(c.Shape)>>10, qemuOptEscape(c.MemPath), share),
		"-kernel", c.Kernel,
		"-initrd", c.Initrd,
		"-append", c.Append,
		"-chardev", fmt.Sprintf("socket,id=%s,path=%s,server=on,wait=off", qmpCharID, qemuOptEscape(c.QMPSock)),
		"-mon", "chardev="+qmpCharID+",mode=control",
		"-chardev", fmt.Sprintf("file,id=%s,path=%s,append=on", consoleChrID, qemuOptEscape(c.Console)),
		"-serial", "chardev:"+consoleChrID,
	)
	args = append(args, devices(c)...)
	args = append(args, shareArgs(c.Shares)...)
	if c.Incoming {
		// -S: stay paused after the restore even if the snapshot said
		// running; Start resumes with cont once the agent socket is
		// connected.
		args = append(args, "-S", "-incoming", "defer")
	}
	return args
}

// devices is the guest-visible device list, identical for a template and
// its clones apart from the backing files. PCI slots are pinned so that
// adding a device later cannot shift the others; bump DeviceLayoutVersion
// on any change here. Slot 5 is the NIC (virtio-net-pci, nics.go);
// hot-plugged NICs take slots 6 to 0xb.
func devices(c vmConfig) []string {
	args := []string{
		// Agent channel: one virtio-serial port on a unix socket.
		"-device", "virtio-serial-pci,id=vser0,addr=0x3",
		"-chardev", fmt.Sprintf("socket,id=%s,path=%s,server=on,wait=off", agentCharID, qemuOptEscape(c.AgentSock)),
		"-device", fmt.Sprintf("virtserialport,bus=vser0.0,nr=1,chardev=%s,name=%s", agentCharID, agentproto.PortName),
	}
	args = append(args, rootDiskArgs(c)...)
	args = append(args,
		"-device", fmt.Sprintf("virtio-blk-pci,drive=%s,id=rootdisk,addr=0x4", rootDriveID),
		// VM generation ID: a new GUID per clone tells the guest kernel
		// it was cloned (it reseeds its RNG).
		"-device", "vmgenid,id=vmgenid0,guid="+c.VMGenID,
		// The NIC (nics.go): a placeholder backend in the template, the
		// container's tap in a clone (same netdev id).
		"-netdev", nicNetdevArg(c.NICTap),
		"-device", nicDeviceArg(c.NICMAC),
	)
	// Pre-plugged 9p shares in slots 0x1f downwards (shares.go).
	return append(args, shareDevices(c)...)
}

// rootDiskArgs is the backend of the root disk device: a sparse
// placeholder in the template, the container's qcow2 overlay in a clone
// (same drive id), or in a blank (Disk empty, pool.go) a raw node named
// like the drive over a null-co placeholder of the same size, whose file
// child Claim swaps for the container's disk (blockdev-reopen). The device
// sees the same size either way, and the guest has not read the disk when
// the swap happens: the agent flushes the device's buffers before it
// mounts the root.
func rootDiskArgs(c vmConfig) []string {
	if c.Disk == "" {
		return []string{
			"-blockdev", fmt.Sprintf("driver=null-co,node-name=%s,size=%d,read-zeroes=on", blankDiskNode, c.DiskSize),
			"-blockdev", fmt.Sprintf("driver=raw,node-name=%s,file=%s,discard=unmap", rootDriveID, blankDiskNode),
		}
	}
	return []string{"-drive", fmt.Sprintf("file=%s,if=none,id=%s,format=%s,discard=unmap", qemuOptEscape(c.Disk), rootDriveID, c.DiskFormat)}
}

// qemuOptEscape escapes a value for QEMU's key=value option syntax, where a
// comma must be doubled.
func qemuOptEscape(s string) string {
	return strings.ReplaceAll(s, ",", ",,")
}

// sandboxOpts turns on QEMU's seccomp filter with every group denied.
const sandboxOpts = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// ramPad is added to every VM's RAM. QEMU 7.2's dirty-bitmap sync takes a
// fast path for a RAM block whose size is a multiple of 64 pages, and
// under TCG that path does not reset the vCPUs' TLB entries, so writes
// after a sync go unrecorded and a live migration sends stale pages
// (later QEMUs reset them there too). 8 KiB more (QEMU rounds RAM to 8
// KiB) sends every sync down the page-by-page path, which resets them.
const ramPad = 8 << 10

// guestRAMBytes is the RAM of a VM of shape s.
func guestRAMBytes(s vmbackend.Shape) int64 { return int64(s.MemoryMiB)<<20 + ramPad }
