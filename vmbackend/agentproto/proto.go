// Package agentproto is the wire protocol between jevmd and the guest agent
// (PID 1 in every jeVM), spoken over one virtio-serial port. It is
// documented in docs/AGENT_PROTOCOL.md; bump Version on any incompatible
// change, since templates snapshot an agent mid-conversation.
//
// The stream is a sequence of frames. Each frame is a 16-byte header
// followed by Length bytes of payload:
//
//	offset size field
//	0      4    magic "JVM1"
//	4      1    type (FrameMsg, FrameStdin, ...)
//	5      1    flags (0)
//	6      2    reserved (0)
//	8      4    stream, big endian: 0 for the session, else a process ID
//	             chosen by the host (1 is the container's main process)
//	12     4    payload length, big endian, at most MaxPayload
//
// The magic lets a reconnecting host resynchronise after a partial frame
// (see Resync).
package agentproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Version is the protocol version. The agent announces it in Hello; the host
// refuses an agent of another version (and rebuilds the template).
const Version = 1

// PortName is the virtio-serial port name the agent opens.
const PortName = "org.jevm.agent.0"

// Lines the agent writes on the serial console (the VM's console log) for
// a host that was not connected to the agent channel at the time.
const (
	// ConsoleExitMarker starts the line "JEVM-EXIT <code>" written when the
	// main process exited, just before the VM powers off.
	ConsoleExitMarker = "JEVM-EXIT"
	// ConsoleProbeOK is written by an agent booted with jevm.probe=1 (a
	// test boot of the accelerator) before it powers off.
	ConsoleProbeOK = "JEVM-PROBE-OK"
)

// Magic opens every frame.
var Magic = [4]byte{'J', 'V', 'M', '1'}

// HeaderSize is the size of a frame header.
const HeaderSize = 16

// MaxPayload bounds one frame's payload; larger data is split.
const MaxPayload = 1 << 20

// MainStream is the stream of the container's main process.
const MainStream uint32 = 1

// Frame types.
const (
	FrameMsg    byte = 1 // JSON-encoded Msg
	FrameStdin  byte = 2 // host -> guest data for the process's stdin
	FrameStdout byte = 3 // guest -> host stdout (or the TTY's output)
	FrameStderr byte = 4 // guest -> host stderr
	FrameEOF    byte = 5 // host -> guest: close the process's stdin
)

// Frame is one decoded frame.
type Frame struct {
	Type    byte
	Stream  uint32
	Payload []byte
}

// Message types carried in FrameMsg frames.
const (
	// guest -> host
	MsgHello   = "hello"   // agent is up and idle (sent at boot, and in reply to a host Hello)
	MsgStarted = "started" // a process started (reply to Start/Exec)
	MsgExit    = "exit"    // a process exited; for the main stream the VM powers off after
	MsgError   = "error"   // a request failed
	MsgOK      = "ok"      // a request without other reply succeeded
	MsgLog     = "log"     // agent diagnostics worth showing in the daemon's log

	// host -> guest
	MsgHostHello = "host-hello" // (re)connection; the agent answers with Hello echoing Nonce
	MsgStart     = "start"      // set up the root filesystem and run the main process
	MsgExec      = "exec"       // run another process in the running container
	MsgSignal    = "signal"     // send a signal to a process
	MsgResize    = "resize"     // set a process's TTY size
	MsgShutdown  = "shutdown"   // kill everything, unmount, power off
	MsgTop       = "top"        // list the container's processes (reply: ok with Top)
	MsgStats     = "stats"      // sample the guest's resource usage (reply: ok with Stats)
	// MsgInterfaceUp configures one more network interface (a NIC the
	// host just hot-plugged for `docker network connect`): Interface.
	MsgInterfaceUp = "interface-up"
	// MsgCheckUser resolves Process.User against the container's
	// /etc/passwd and /etc/group as an exec would (reply: ok, or error
	// with runc's message): dockerd checks an exec's user when the exec is
	// created. Agents that predate it answer "unknown request".
	MsgCheckUser = "check-user"

	// Pods: more containers in one VM (docs/AGENT_PROTOCOL.md, "Pods").
	//
	// MsgJoin starts a container that joins this VM (`docker run
	// --network container:X`): Container names it, Start describes it
	// (RootSerial, not RootDevice: its root disk was hot-plugged). It
	// runs on the request's stream, which the host chose as for an exec
	// (reply: started with Pid; then stdio frames and, when its process
	// has exited and its root is unmounted, exit on that stream).
	MsgJoin = "join"
	// MsgFreeze and MsgThaw freeze and thaw the processes of the joined
	// container Container (its guest cgroup's cgroup.freeze): `docker
	// pause` of one container of a pod (reply: ok).
	MsgFreeze = "freeze"
	MsgThaw   = "thaw"
	// MsgRestored tells the agent of a VM restored from a checkpoint
	// what changed while it was saved: Restored (reply: ok).
	MsgRestored = "restored"
)

// RestoredRequest is what a guest restored from a checkpoint takes on:
// the time, fresh entropy, and for a fork (another container started
// from the checkpoint) that container's identity.
type RestoredRequest struct {
	TimeUnixNano int64  `json:"time"`
	Entropy      []byte `json:"entropy"`
	// Fork: the new hostname and /etc files (empty: unchanged), and the
	// interfaces again by name (eth0...), with new MACs and addresses:
	// the old addresses go.
	Hostname   string            `json:"hostname,omitempty"`
	Hosts      string            `json:"hosts,omitempty"`
	ResolvConf string            `json:"resolvConf,omitempty"`
	Interfaces []InterfaceConfig `json:"interfaces,omitempty"`
}

// Error kinds in Msg.ErrCode: why a start or exec could not run its
// command. dockerd reports the first with exit code 127, the second with
// 126.
const (
	// ErrCommandNotFound: args[0] is not in PATH, or the file (or its
	// interpreter) does not exist (ENOENT).
	ErrCommandNotFound = "command-not-found"
	// ErrCommandNotExecutable: args[0] exists but may not be executed
	// (EACCES: no execute permission, a noexec mount).
	ErrCommandNotExecutable = "permission-denied"
	// ErrProcessesHeld: an exec into the main container while its
	// processes are held still for a checkpoint (docs/AGENT_PROTOCOL.md,
	// "Checkpoint hold"); it may be tried again once the hold is released.
	ErrProcessesHeld = "processes-held"
)

// Msg is the JSON body of a FrameMsg frame. Type selects which fields are
// meaningful; unknown fields are ignored by both sides.
type Msg struct {
	Type string `json:"type"`
	// ID correlates a request with its reply (the host picks it).
	ID uint64 `json:"id,omitempty"`

	// Hello / HostHello
	Version int    `json:"version,omitempty"`
	Nonce   string `json:"nonce,omitempty"`
	Agent   string `json:"agent,omitempty"`  // agent build identifier
	Kernel  string `json:"kernel,omitempty"` // guest kernel release
	// Phase in Hello: "idle" (never started anything), "running" (main
	// process runs), "exited" (main process exited, VM about to power off).
	Phase string `json:"phase,omitempty"`
	// Exit in a Hello whose Phase is "exited".
	Exit *ExitStatus `json:"exit,omitempty"`

	// Start / Exec
	Start   *StartRequest   `json:"start,omitempty"`
	Process *ProcessRequest `json:"process,omitempty"`

	// Started
	Pid int `json:"pid,omitempty"`
	// Timings in Started (of a start): how long each phase of the
	// agent's set-up took, in ms by name ("clock", "root-mount",
	// "interfaces", "spawn", ...), for the host's start trace. Optional.
	Timings map[string]float64 `json:"timings,omitempty"`
	// StdinWindow in Started (of a process with stdin), and in Hello for
	// the running main process: how many bytes of stdin the host may send
	// on the process's stream before the agent grants more (MsgCredit on
	// that stream, File.Credit: that many more bytes were written to the
	// process or dropped). A process that does not read its stdin then
	// holds up only its own stdin, never the frames of the connection.
	// 0: no window (an agent that predates it; the host sends freely).
	StdinWindow int64 `json:"stdinWindow,omitempty"`

	// Exit (stream in the frame header names the process)
	Status *ExitStatus `json:"status,omitempty"`

	// Signal
	Signal int `json:"signal,omitempty"`

	// Resize
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`

	// Error / Log
	Message string `json:"message,omitempty"`
	// ErrCode classifies an error reply to start or exec (ErrCommand...;
	// empty: any other failure). File operations have their own
	// (FileOp.ErrCode). An optional field: agents that predate it send
	// none, and the host falls back on the message's text.
	ErrCode string `json:"errCode,omitempty"`

	// File operations (files.go): parameters, results, credit.
	File *FileOp `json:"file,omitempty"`

	// Top: the request's ps arguments, and the reply's table.
	PsArgs string     `json:"psArgs,omitempty"`
	Top    *TopResult `json:"top,omitempty"`
	// Stats reply.
	Stats *GuestStats `json:"stats,omitempty"`

	// InterfaceUp: the interface to configure.
	Interface *InterfaceConfig `json:"interface,omitempty"`

	// Restored: a restore's news.
	Restored *RestoredRequest `json:"restored,omitempty"`

	// Container names the container of the VM a request is about (join,
	// exec, check-user, top, stats, freeze, thaw and the file
	// operations): empty, or the ID the main container was started with
	// (StartRequest.Container), is the VM's main container; anything else
	// is a container that joined the VM (MsgJoin). An agent that predates
	// pods ignores it, so the host sends it only for joined containers.
	Container string `json:"container,omitempty"`
	// Joined in Hello: the containers that joined this VM, running or
	// exited since (until one of the same name joins again), so that a
	// reconnecting host can re-attach to their streams.
	Joined []JoinedState `json:"joined,omitempty"`
}

// JoinedState is one joined container as Hello reports it.
type JoinedState struct {
	Container string `json:"container"`
	// Stream is the stream its process runs on (the join's).
	Stream uint32 `json:"stream"`
	Pid    int    `json:"pid,omitempty"`
	// Exit is set once its process has exited (and its root is
	// unmounted); nil while it runs.
	Exit *ExitStatus `json:"exit,omitempty"`
	// StdinWindow is its stdin's free window while it runs (Msg.StdinWindow).
	StdinWindow int64 `json:"stdinWindow,omitempty"`
}

// StartRequest prepares the clone and starts the main process on
// MainStream. It carries everything that makes the clone its own machine.
type StartRequest struct {
	// RootDevice is the block device holding the container's root
	// filesystem (ext4), e.g. "/dev/vda".
	RootDevice string `json:"rootDevice"`
	// RootFSType defaults to "ext4".
	RootFSType string `json:"rootFsType,omitempty"`
	ReadOnly   bool   `json:"readOnly,omitempty"`
	Hostname   string `json:"hostname"`
	// Hosts and ResolvConf are the contents of /etc/hosts and
	// /etc/resolv.conf as the container should see them; empty leaves the
	// image's files alone.
	Hosts      string `json:"hosts,omitempty"`
	ResolvConf string `json:"resolvConf,omitempty"`
	// Entropy (32+ random bytes from the host) is mixed into the guest RNG
	// before anything runs: clones share the template's RNG state.
	Entropy []byte `json:"entropy"`
	// TimeUnixNano is the host's wall clock; the clone's clock is the
	// template's until set.
	TimeUnixNano int64 `json:"timeUnixNano"`
	// Process is the main process.
	Process ProcessRequest `json:"process"`
	// Interfaces configures the guest's NICs (eth0, eth1, ... in order);
	// empty leaves only loopback up.
	Interfaces []InterfaceConfig `json:"interfaces,omitempty"`
	// Mounts are mounted inside the container's root, in order, before the
	// process starts (9p shares, tmpfs).
	Mounts []MountRequest `json:"mounts,omitempty"`
	// Privileged (`docker run --privileged`): /sys is writable and the
	// guest's devices are in the container's /dev (all but the agent's
	// channel and the serial console). Capabilities are the process's.
	Privileged bool `json:"privileged,omitempty"`
	// Domainname is the guest's NIS domain name (`docker run --domainname`).
	Domainname string `json:"domainname,omitempty"`
	// Sysctls are written under /proc/sys before the process starts, in
	// key order ("net.ipv4.ping_group_range" → net/ipv4/ping_group_range):
	// `docker run --sysctl` merged over dockerd's defaults. The guest's
	// kernel is the container's own, so any key may be set.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// HostPID (`docker run --pid host`) keeps the main process in the
	// guest's PID namespace, where the agent is PID 1. Without it the main
	// process is PID 1 of a PID namespace of its own, with its own /proc,
	// as in a runc container, and execs join that namespace.
	HostPID bool `json:"hostPid,omitempty"`
	// HoldAfterExit keeps the VM up after the main process exited (its
	// Exit sent, every other process killed, the container's file system
	// still mounted) until the host sends Shutdown: a build step's changes
	// are then read (DiffLayer) from the same VM instead of a maintenance
	// clone. An agent that predates it powers off as usual; the host then
	// reads the changes from a maintenance clone.
	HoldAfterExit bool `json:"holdAfterExit,omitempty"`
	// ShmSize is the size in bytes of the container's /dev/shm (`docker
	// run --shm-size`, compose's shm_size); 0 is dockerd's default, 64 MiB.
	ShmSize int64 `json:"shmSize,omitempty"`
	// MaskedPaths are made unreadable in the container (an empty read-only
	// tmpfs over a directory, /dev/null over a file) and ReadonlyPaths are
	// bind-mounted read-only over themselves, after the container's /proc
	// and /sys are mounted (dockerd's HostConfig fields of the same names;
	// paths that do not exist are skipped).
	MaskedPaths   []string `json:"maskedPaths,omitempty"`
	ReadonlyPaths []string `json:"readonlyPaths,omitempty"`
	// WritableCgroups mounts the container's /sys/fs/cgroup (the guest's
	// cgroup2 hierarchy) read-write; it is read-only otherwise, as in a
	// runc container. --privileged or --security-opt writable-cgroups.
	WritableCgroups bool `json:"writableCgroups,omitempty"`

	// Files are files of the container's that exist only in memory:
	// swarm secrets and configs. The agent writes each in its own tmpfs
	// (guest RAM) and binds it read-only at Target, creating the missing
	// directories, before the read-only remount. The host never writes
	// them to its disk. Their data counts against MaxPayload.
	Files []FileRequest `json:"files,omitempty"`

	// Pods (MsgJoin). Container is the container's ID: sent with the main
	// container's start too, so that joined containers can name it in
	// PIDContainer and IPCContainer. Names are 1 to 128 of [A-Za-z0-9_.-].
	Container string `json:"container,omitempty"`
	// RootSerial (join) is the virtio serial of the joined container's
	// root disk (hot-plugged; /sys/block/vdX/serial), instead of
	// RootDevice.
	RootSerial string `json:"rootSerial,omitempty"`
	// PIDContainer (join) makes the process join the PID namespace of
	// that container of this VM (`--pid container:X`); empty: a PID
	// namespace of its own (or the guest's with HostPID).
	PIDContainer string `json:"pidContainer,omitempty"`
	// IPCContainer (join) shares that container's IPC namespace (`--ipc
	// container:X`); empty: an IPC namespace of its own. The main
	// container has the VM's.
	IPCContainer string `json:"ipcContainer,omitempty"`
}

// FileRequest is one in-memory file of StartRequest.Files.
type FileRequest struct {
	// Target is the absolute path in the container.
	Target string `json:"target"`
	Data   []byte `json:"data"`
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	Mode   uint32 `json:"mode"` // permission bits
}

// InterfaceConfig is one guest network interface.
type InterfaceConfig struct {
	// Name is the guest's name for it ("eth0"); MAC identifies it and is
	// set on it.
	Name string `json:"name"`
	MAC  string `json:"mac"`
	// Addresses in CIDR form ("172.18.0.2/16", "fd00:1::2/64"); IPv6
	// ones are added without duplicate address detection.
	Addresses []string `json:"addresses,omitempty"`
	// Gateway is the IPv4 default route through this interface, if any;
	// Gateway6 the IPv6 one (an IPv6 network's gateway). Each replaces an
	// existing default route of its family, so that a configuration sent
	// again (interface-up) can move the default route to this interface.
	Gateway  string `json:"gateway,omitempty"`
	Gateway6 string `json:"gateway6,omitempty"`
	MTU      int    `json:"mtu,omitempty"`
}

// MountRequest is one mount in the container's root.
type MountRequest struct {
	// Type is "9p" (Source is the share's tag), "tmpfs", or "nfs" or
	// "nfs4": a network filesystem volume the guest kernel mounts itself
	// (Source is the device, "server:/export"; Options the mount
	// options, with addr= an IP address), which moves with the VM.
	Type   string `json:"type"`
	Source string `json:"source,omitempty"`
	// Target is the path inside the container's root; created if missing
	// (as a file when IsFile, e.g. a bind-mounted host file).
	Target   string   `json:"target"`
	IsFile   bool     `json:"isFile,omitempty"`
	ReadOnly bool     `json:"readOnly,omitempty"`
	Options  []string `json:"options,omitempty"` // e.g. tmpfs size=64m,mode=1777
	// SubPath (9p) is the path inside the share to mount at Target
	// instead of the share's root, e.g. the file's name when the host
	// exported the directory holding a bind-mounted file.
	SubPath string `json:"subPath,omitempty"`
	// CopyUp (9p) asks the agent to copy the container's own content at
	// Target (the image's files) into the share first, if the share (at
	// SubPath) is empty: dockerd's filling of a new volume.
	CopyUp bool `json:"copyUp,omitempty"`
	// PodShare (9p, a joined container's mount): Source is the VM's pod
	// share, which holds the mounts of every container that joined the
	// VM, each under an entry of its own (SubPath starts with it). The
	// agent mounts the pod share once and keeps it (a 9p device serves one
	// mount at a time), and binds SubPath from it.
	PodShare bool `json:"podShare,omitempty"`
}

// ProcessRequest describes a process to run inside the container's root.
type ProcessRequest struct {
	// Args is the final argv (entrypoint + cmd merged by the daemon).
	// Args[0] is looked up in PATH from Env inside the container's root.
	Args []string `json:"args"`
	Env  []string `json:"env"`
	// Cwd defaults to "/" and is created if missing (as dockerd does).
	Cwd string `json:"cwd,omitempty"`
	// User is "", "name", "uid", "name:group" or "uid:gid", resolved in the
	// container's /etc/passwd and /etc/group.
	User  string `json:"user,omitempty"`
	TTY   bool   `json:"tty,omitempty"`
	Stdin bool   `json:"stdin,omitempty"`
	Rows  uint16 `json:"rows,omitempty"`
	Cols  uint16 `json:"cols,omitempty"`
	// Rlimits are set on the process before its program runs (as root,
	// before the switch to User), in order: the container's ulimits
	// (`docker run --ulimit` merged with the daemon's default-ulimits).
	// Empty leaves the agent's defaults. An optional field: an agent that
	// predates it ignores it (see docs/AGENT_PROTOCOL.md).
	Rlimits []Rlimit `json:"rlimits,omitempty"`
	// AdditionalGroups are supplementary groups added to User's (`docker
	// run --group-add`): group names, resolved in the container's
	// /etc/group, or numeric IDs. An optional field: an agent that
	// predates it ignores it.
	AdditionalGroups []string `json:"additionalGroups,omitempty"`
	// Capabilities is the process's capability bounding set, by name
	// ("CAP_CHOWN", CapabilityNumbers): what root in the container may
	// have. Absent (nil): every capability (--privileged, and what an
	// agent that predates the field gives); empty: none.
	Capabilities *[]string `json:"capabilities,omitempty"`
	// Seccomp is the process's seccomp filter, installed by the agent
	// right before the execve (docs/AGENT_PROTOCOL.md, "Seccomp"); nil:
	// none (--privileged, seccomp=unconfined). An optional field: an agent
	// that predates it runs the process unconfined.
	Seccomp *SeccompFilter `json:"seccomp,omitempty"`
	// NoNewPrivileges sets PR_SET_NO_NEW_PRIVS on the process
	// (--security-opt no-new-privileges).
	NoNewPrivileges bool `json:"noNewPrivileges,omitempty"`
}

// SeccompFilter is a compiled seccomp filter for the guest (x86_64).
type SeccompFilter struct {
	// Program is the classic BPF program, struct sock_filter after struct
	// sock_filter (8 bytes each: code u16, jt u8, jf u8, k u32,
	// little-endian), as seccomp(SECCOMP_SET_MODE_FILTER) takes it.
	Program []byte `json:"program"`
	// Flags are seccomp(2)'s SECCOMP_FILTER_FLAG_* bits.
	Flags uint32 `json:"flags,omitempty"`
}

// CapabilityNumbers are Linux's capabilities (linux/capability.h) by the
// names docker uses.
var CapabilityNumbers = map[string]int{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
	"CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
	"CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
	"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
	"CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
	"CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
	"CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
	"CAP_CHECKPOINT_RESTORE": 40,
}

// Rlimit is one resource limit (setrlimit(2)) of a process.
type Rlimit struct {
	// Name is docker's name of the limit, RLIMIT_<NAME> in lower case
	// without the prefix: core, cpu, data, fsize, locks, memlock,
	// msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending,
	// stack (RlimitNames).
	Name string `json:"name"`
	// Soft and Hard are the limits; RlimitInfinity is unlimited (docker's
	// -1).
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
}

// RlimitInfinity is RLIM_INFINITY, "unlimited".
const RlimitInfinity = ^uint64(0)

// RlimitNames are the limits a Rlimit may name (go-units' table, which
// docker's --ulimit accepts).
var RlimitNames = []string{"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
	"nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code follows the shell convention dockerd reports: the exit code, or
	// 128+signal when the process was killed by a signal.
	Code   int `json:"code"`
	Signal int `json:"signal,omitempty"`
	// OOMKilled is set when the guest kernel's OOM killer killed it.
	OOMKilled bool `json:"oomKilled,omitempty"`
}

// ErrBadMagic is returned by ReadFrame when the stream is not at a frame
// boundary.
var ErrBadMagic = errors.New("agentproto: bad frame magic")

// ErrTooLarge is wrapped by the error ReadFrame returns for a header whose
// length exceeds MaxPayload (garbage that happened to start with the magic,
// when resynchronising).
var ErrTooLarge = errors.New("agentproto: frame payload too large")

// Writer writes frames; it is safe for concurrent use.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a frame writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteFrame writes one frame, splitting payloads above MaxPayload.
func (fw *Writer) WriteFrame(typ byte, stream uint32, payload []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for {
		n := len(payload)
		if n > MaxPayload {
			n = MaxPayload
		}
		buf := make([]byte, HeaderSize+n)
		copy(buf[0:4], Magic[:])
		buf[4] = typ
		binary.BigEndian.PutUint32(buf[8:12], stream)
		binary.BigEndian.PutUint32(buf[12:16], uint32(n))
		copy(buf[HeaderSize:], payload[:n])
		if _, err := fw.w.Write(buf); err != nil {
			return err
		}
		payload = payload[n:]
		if len(payload) == 0 {
			return nil
		}
	}
}

// WriteMsg writes m as a FrameMsg frame on stream.
func (fw *Writer) WriteMsg(stream uint32, m *Msg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("agentproto: encode %s: %w", m.Type, err)
	}
	if len(b) > MaxPayload {
		return fmt.Errorf("agentproto: %s message of %d bytes is too large", m.Type, len(b))
	}
	return fw.WriteFrame(FrameMsg, stream, b)
}

// Reader reads frames.
type Reader struct {
	r *bufio.Reader
}

// NewReader returns a frame reader on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

// ReadFrame reads the next frame. It returns ErrBadMagic if the stream is
// not at a frame boundary; call Resync then.
func (fr *Reader) ReadFrame() (*Frame, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return nil, err
	}
	if !bytes.Equal(hdr[0:4], Magic[:]) {
		return nil, ErrBadMagic
	}
	n := binary.BigEndian.Uint32(hdr[12:16])
	if n > MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrTooLarge, n, MaxPayload)
	}
	f := &Frame{Type: hdr[4], Stream: binary.BigEndian.Uint32(hdr[8:12]), Payload: make([]byte, n)}
	if _, err := io.ReadFull(fr.r, f.Payload); err != nil {
		return nil, err
	}
	return f, nil
}

// Resync discards input until the next frame magic, so that the following
// ReadFrame starts at a frame boundary. A host that reconnects to a running
// agent may find the tail of a frame the previous connection did not read.
//
// The magic is found with Peek and left in the buffer, so the reader stays
// the same one: a guest may write garbage any number of times, and each
// resync costs only the bytes it skips (wrapping the reader anew each time
// let a guest grow the host's memory by 64 KiB per 32 bytes written).
func (fr *Reader) Resync() error {
	for {
		b, err := fr.r.Peek(len(Magic))
		if err != nil {
			return err // the stream ended (or failed) before a magic
		}
		if bytes.Equal(b, Magic[:]) {
			return nil
		}
		// Skip to the next magic among the buffered bytes, or past all
		// but the last len(Magic)-1 of them (a magic may straddle the
		// end of the buffer).
		buf, _ := fr.r.Peek(fr.r.Buffered())
		skip := len(buf) - (len(Magic) - 1)
		if i := bytes.Index(buf[1:], Magic[:]); i >= 0 {
			skip = i + 1
		}
		if _, err := fr.r.Discard(skip); err != nil {
			return err
		}
	}
}

// DecodeMsg decodes a FrameMsg frame's payload.
func DecodeMsg(f *Frame) (*Msg, error) {
	if f.Type != FrameMsg {
		return nil, fmt.Errorf("agentproto: frame type %d is not a message", f.Type)
	}
	m := new(Msg)
	if err := json.Unmarshal(f.Payload, m); err != nil {
		return nil, fmt.Errorf("agentproto: decode message: %w", err)
	}
	return m, nil
}
