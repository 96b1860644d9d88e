//go:build linux

package guestagent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

func (a *agent) handleStart(stream uint32, m *agentproto.Msg) {
	fail := func(err error) {
		a.logf("start: %v", err)
		a.reply(stream, m, err)
	}
	if stream != agentproto.MainStream {
		fail(fmt.Errorf("start must use stream %d", agentproto.MainStream))
		return
	}
	req := m.Start
	if req == nil {
		fail(errors.New("start request without parameters"))
		return
	}
	a.mu.Lock()
	phase := a.phase
	a.mu.Unlock()
	if phase != phaseIdle {
		fail(fmt.Errorf("container already started (phase %s)", phase))
		return
	}

	ph := newPhases()
	// A clone's clock and RNG are the template's: fix both first.
	if req.TimeUnixNano != 0 {
		ts := unix.NsecToTimespec(req.TimeUnixNano)
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
			a.logf("set clock: %v", err)
		}
	}
	ph.mark("clock")
	if len(req.Entropy) > 0 {
		if err := addEntropy(req.Entropy); err != nil {
			a.logf("add entropy: %v", err)
		}
	}
	ph.mark("entropy")

	// Network interfaces (network_linux.go), before the root's mounts:
	// the guest mounts NFS volumes itself, over them.
	if err := a.setupInterfaces(req.Interfaces); err != nil {
		fail(err)
		return
	}
	ph.mark("interfaces")
	if err := a.setupRoot(req, ph); err != nil {
		fail(err)
		return
	}
	// After the interfaces: per-interface keys (net.ipv4.conf.eth0.*).
	if err := writeSysctls(req.Sysctls); err != nil {
		fail(err)
		return
	}
	ph.mark("sysctls")

	a.mu.Lock()
	a.hold = req.HoldAfterExit
	a.mu.Unlock()
	a.mu.Lock()
	a.mainName = req.Container
	a.mu.Unlock()
	z := a.takeZygote() // zygote_linux.go
	if req.HostPID {
		z.discard() // it is PID 1 of a namespace of its own
		z = nil
	}
	p, err := a.spawn(stream, &req.Process, spawnContext{root: containerRoot, init: true, newPIDNS: !req.HostPID, newMountNS: true,
		paths: pathConfinement{Masked: req.MaskedPaths, Readonly: req.ReadonlyPaths}, ph: ph, zygote: z})
	if err != nil {
		fail(err)
		return
	}
	ph.mark("spawn")
	a.send(stream, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: p.pid, Timings: ph.ms, StdinWindow: p.stdinGrant()})
	close(p.started)
	a.debugf("started pid %d: %q", p.pid, req.Process.Args)
}

// phases times the parts of a start for the host's start trace
// (Msg.Timings): each mark closes the phase since the previous one.
type phases struct {
	last time.Time
	ms   map[string]float64
}

func newPhases() *phases { return &phases{last: time.Now(), ms: map[string]float64{}} }

// mark records the time since the last mark as the phase name (nil-safe).
func (p *phases) mark(name string) {
	if p == nil {
		return
	}
	now := time.Now()
	p.ms[name] += float64(now.Sub(p.last).Microseconds()) / 1000
	p.last = now
}

// addEntropy mixes host-provided randomness into the kernel RNG and
// credits it (RNDADDENTROPY); plain writes to /dev/urandom mix without
// crediting and are the fallback. Then it reseeds the kernel's CRNG from
// the pool at once (RNDRESEEDCRNG): once the CRNG is ready, what is mixed
// into the pool reaches its output only at the next reseed (up to a
// minute later), and a clone or fork starts with the very CRNG state of
// its template or checkpoint. The VM generation ID's change makes the
// kernel reseed too, but on an ACPI notification handled asynchronously;
// this reseed is done before the container's processes run (a fork's
// are held until `restored` has done it).
func addEntropy(e []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 8+len(e))
	binary.NativeEndian.PutUint32(buf[0:], uint32(len(e)*8)) // entropy_count (bits)
	binary.NativeEndian.PutUint32(buf[4:], uint32(len(e)))   // buf_size (bytes)
	copy(buf[8:], e)
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr, rerr error
	sc.Control(func(fd uintptr) {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0])))
		if errno != 0 {
			ierr = errno
			return
		}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.RNDRESEEDCRNG, 0); errno != 0 {
			rerr = fmt.Errorf("reseed the kernel's RNG: %w", errno)
		}
	})
	if ierr != nil {
		_, err = f.Write(e)
		return err
	}
	return rerr
}

func waitForFile(p string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := os.Stat(p)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// flushBlockDevice drops the device's buffer cache: a clone's kernel still
// caches the template's placeholder disk.
func flushBlockDevice(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKFLSBUF, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// setupRoot mounts the container's root disk and its API filesystems and
// writes the files that make the clone its own machine.
func (a *agent) setupRoot(req *agentproto.StartRequest, ph *phases) error {
	root := containerRoot
	a.mu.Lock()
	mounted := a.rootMounted
	a.mu.Unlock()
	if !mounted {
		dev := req.RootDevice
		if dev == "" {
			return errors.New("no root device given")
		}
		if err := waitForFile(dev, 5*time.Second); err != nil {
			return fmt.Errorf("root device: %w", err)
		}
		if err := flushBlockDevice(dev); err != nil {
			a.logf("BLKFLSBUF %s: %v", dev, err)
		}
		fstype := req.RootFSType
		if fstype == "" {
			fstype = "ext4"
		}
		data := ""
		if fstype == "ext4" {
			data = "noinit_itable"
		}
		// Mounted read-write even for a read-only container: mount points
		// and bind targets may have to be created first (remounted
		// read-only at the end). The disk is the container's own.
		ph.mark("root-device")
		if err := unix.Mount(dev, root, fstype, 0, data); err != nil {
			return fmt.Errorf("mount root device %s (%s): %w", dev, fstype, err)
		}
		ph.mark("root-mount")
		a.mu.Lock()
		a.rootMounted = true
		a.mu.Unlock()

		if err := a.mountAPIFS(root, apiFS{privileged: req.Privileged, hostPID: req.HostPID,
			writableCgroups: req.WritableCgroups, shmSize: req.ShmSize, mqueue: true}); err != nil {
			return err
		}
		ph.mark("api-fs")
	}

	hostname := req.Hostname
	if hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			a.logf("sethostname: %v", err)
		}
	}
	if req.Domainname != "" {
		if err := unix.Setdomainname([]byte(req.Domainname)); err != nil {
			return fmt.Errorf("setdomainname: %w", err)
		}
	}

	files := []struct{ name, content string }{
		{"hostname", hostname + "\n"},
		{"hosts", req.Hosts},
		{"resolv.conf", req.ResolvConf},
	}
	for _, f := range files {
		if f.content == "" || f.content == "\n" {
			continue
		}
		if err := bindFile(root, "/etc/"+f.name, filepath.Join(runDir, f.name), f.content); err != nil {
			a.logf("/etc/%s: %v", f.name, err)
		}
	}
	ph.mark("etc-files")
	// Volumes, bind mounts and tmpfs mounts (mounts_linux.go): before the
	// read-only remount, which would forbid creating their targets.
	if err := a.setupMounts(root, req.Mounts); err != nil {
		return err
	}
	ph.mark("mounts")
	if err := writeMemFiles(root, req.Files); err != nil {
		return err
	}
	if req.ReadOnly {
		if err := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount root read-only: %w", err)
		}
	}
	return nil
}

type mountSpec struct {
	src, target, fstype string
	flags               uintptr
	data                string
	optional            bool
}

// procMountFlags are the container's /proc's.
const procMountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// apiFS says how mountAPIFS mounts a container's API file systems.
type apiFS struct {
	privileged, hostPID, writableCgroups bool
	shmSize                              int64
	// mqueue mounts the guest's mqueue at /dev/mqueue: for a container in
	// the VM's IPC namespace (the main one; a joined container with an
	// IPC namespace of its own has its exec helper mount its own).
	mqueue bool
}

// mountAPIFS mounts the container's /proc, /sys and /dev. With hostPID
// the container's /proc is the guest's; otherwise only its mount point is
// made here: the main process, the first of its PID namespace, mounts a
// proc of that namespace there as it starts (pidns_linux.go). The guest's
// cgroup2 hierarchy is mounted at /sys/fs/cgroup, read-only unless
// writableCgroups, as runc mounts the container's cgroup.
func (a *agent) mountAPIFS(root string, o apiFS) error {
	const common = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	privileged, hostPID := o.privileged, o.hostPID
	sysFlags := uintptr(common | unix.MS_RDONLY)
	if privileged {
		sysFlags = common // as runc: /sys is writable for --privileged
	}
	cgroupFlags := uintptr(common | unix.MS_RDONLY)
	if o.writableCgroups {
		cgroupFlags = common
	}
	mounts := []mountSpec{
		{"sysfs", "/sys", "sysfs", sysFlags, "", false},
		{cgroupDir, "/sys/fs/cgroup", "", 0, "", true}, // bindCgroup
		{"tmpfs", "/dev", "tmpfs", unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k", false},
	}
	if hostPID {
		mounts = append([]mountSpec{{"proc", "/proc", "proc", procMountFlags, "", false}}, mounts...)
	} else if err := mkdirAllInRoot(root, "/proc", 0o555); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	for _, m := range mounts {
		var err error
		if m.src == cgroupDir {
			err = a.bindCgroup(root, cgroupFlags)
		} else {
			err = mountIn(root, m)
		}
		if err != nil {
			if m.optional { // a kernel without cgroups
				a.logf("%v", err)
				continue
			}
			return err
		}
	}
	dev := root + "/dev"
	nodes := []struct {
		name         string
		major, minor uint32
	}{
		{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
		{"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
	}
	for _, n := range nodes {
		p := filepath.Join(dev, n.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod /dev/%s: %w", n.name, err)
		}
		os.Chmod(p, 0o666) // umask
	}
	links := [][2]string{
		{"pts/ptmx", "ptmx"},
		{"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"},
		{"/proc/kcore", "core"},
	}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return fmt.Errorf("symlink /dev/%s: %w", l[1], err)
		}
	}
	if privileged {
		if err := copyGuestDevices("/dev", dev); err != nil {
			return err
		}
	}
	more := []mountSpec{
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", false},
		{"shm", "/dev/shm", "tmpfs", common, shmOptions(o.shmSize), false},
	}
	if o.mqueue {
		more = append(more, mountSpec{"mqueue", "/dev/mqueue", "mqueue", common, "", true})
	} else if err := mkdirAllInRoot(root, "/dev/mqueue", 0o755); err != nil {
		return fmt.Errorf("mount /dev/mqueue: %w", err)
	}
	for _, m := range more {
		if err := mountIn(root, m); err != nil {
			if m.optional {
				a.debugf("%v", err)
				continue
			}
			return err
		}
	}
	return nil
}

// bindCgroup mounts the guest's cgroup2 hierarchy at the container's
// /sys/fs/cgroup: a bind mount of the agent's (cgroupRoot), made
// read-only per mount unless flags say otherwise.
func (a *agent) bindCgroup(root string, flags uintptr) error {
	if err := a.cgroupRoot(); err != nil {
		return err
	}
	if err := mkdirAllInRoot(root, "/sys/fs/cgroup", 0o755); err != nil {
		return fmt.Errorf("mount /sys/fs/cgroup: %w", err)
	}
	hp, err := resolveInRoot(root, "/sys/fs/cgroup")
	if err != nil {
		return fmt.Errorf("mount /sys/fs/cgroup: %w", err)
	}
	if err := unix.Mount(cgroupDir, hp, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("mount cgroup2 on /sys/fs/cgroup: %w", err)
	}
	if err := unix.Mount("", hp, "", unix.MS_BIND|unix.MS_REMOUNT|flags, ""); err != nil {
		unix.Unmount(hp, unix.MNT_DETACH)
		return fmt.Errorf("remount /sys/fs/cgroup: %w", err)
	}
	return nil
}

// shmOptions are /dev/shm's tmpfs options: dockerd's mode and size, the
// container's --shm-size or dockerd's default of 64 MiB.
func shmOptions(size int64) string {
	if size <= 0 {
		size = 64 << 20
	}
	return fmt.Sprintf("mode=1777,size=%dk", (size+1023)/1024)
}

func mountIn(root string, m mountSpec) error {
	if err := mkdirAllInRoot(root, m.target, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", m.target, err)
	}
	hp, err := resolveInRoot(root, m.target)
	if err != nil {
		return fmt.Errorf("mount %s: %w", m.target, err)
	}
	if err := unix.Mount(m.src, hp, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// bindFile writes content to hostFile and bind-mounts it over the
// container's file target (creating an empty target if missing), as dockerd
// does for /etc/hostname, /etc/hosts and /etc/resolv.conf.
// An empty content leaves hostFile as it is (written by the caller).
func bindFile(root, target, hostFile, content string) error {
	if content != "" {
		if err := os.WriteFile(hostFile, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := mkdirAllInRoot(root, path.Dir(target), 0o755); err != nil {
		return err
	}
	hp, err := resolveInRoot(root, target)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(hp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f, err := os.OpenFile(hp, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", target)
	}
	return unix.Mount(hostFile, hp, "", unix.MS_BIND, "")
}

// memFileSeq names the tmpfs files of writeMemFiles (containers of a pod
// share the agent's run directory).
var memFileSeq atomic.Uint64

// writeMemFiles writes the start request's in-memory files (swarm secrets
// and configs) to the agent's tmpfs, with their owner and mode, and binds
// each read-only at its target in root.
func writeMemFiles(root string, files []agentproto.FileRequest) error {
	if len(files) == 0 {
		return nil
	}
	dir := filepath.Join(runDir, "files")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range files {
		if !path.IsAbs(f.Target) || path.Clean(f.Target) == "/" {
			return fmt.Errorf("file target %q: not an absolute file path", f.Target)
		}
		src := filepath.Join(dir, strconv.FormatUint(memFileSeq.Add(1), 10))
		if err := os.WriteFile(src, f.Data, 0o600); err != nil {
			return fmt.Errorf("file %s: %w", f.Target, err)
		}
		if err := os.Chown(src, int(f.UID), int(f.GID)); err != nil {
			return fmt.Errorf("file %s: %w", f.Target, err)
		}
		if err := os.Chmod(src, fs.FileMode(f.Mode&0o7777)); err != nil {
			return fmt.Errorf("file %s: %w", f.Target, err)
		}
		if err := bindFile(root, path.Clean(f.Target), src, ""); err != nil {
			return fmt.Errorf("file %s: %w", f.Target, err)
		}
		hp, err := resolveInRoot(root, path.Clean(f.Target))
		if err != nil {
			return err
		}
		if err := unix.Mount("", hp, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("file %s: read-only: %w", f.Target, err)
		}
	}
	return nil
}

// spawnContext is where spawn starts a process: which container's root,
// namespaces and cgroup.
type spawnContext struct {
	root string
	// init: the container's own process (start, join), not an exec.
	init bool
	// newPIDNS makes the process PID 1 of a new PID namespace, which
	// later execs join (pidns_linux.go); else joinPIDNS, if set, is the
	// PID namespace it joins (nil: the guest's).
	newPIDNS  bool
	joinPIDNS *os.File
	// newIPCNS gives the process an IPC namespace of its own (a joined
	// container), with its own /dev/mqueue; else joinIPCNS, if set, is
	// the one it joins (nil: the VM's).
	newIPCNS  bool
	joinIPCNS *os.File
	// cgroup, if set, is the directory of the guest cgroup the process
	// starts in (CLONE_INTO_CGROUP): a joined container's (pods_linux.go).
	cgroup *os.File
	// paths (a container's own process only) are masked and made
	// read-only before it starts (confine_linux.go).
	paths pathConfinement
	// newMountNS (a joined container's own process) gives the process a
	// mount namespace of its own, where its root is the only file system
	// left (isolateRoot); else joinMountNS, if set, is the one it joins
	// (an exec in a joined container), and root is only read, never
	// chrooted into: the namespace's root is the container's.
	newMountNS  bool
	joinMountNS *os.File
	// pod is the joined container the process belongs to; nil: the main
	// one.
	pod *podCtr
	// ph, if set, times the spawn's parts (a start's Timings).
	ph *phases
	// zygote, if set, is the helper forked at boot, to use instead of a
	// fresh one (the main process in a PID namespace of its own).
	zygote *zygote
}

// spawn starts a process of a container on stream, as sc says.
func (a *agent) spawn(stream uint32, req *agentproto.ProcessRequest, sc spawnContext) (*proc, error) {
	root := sc.root
	newPIDNS, paths := sc.newPIDNS, sc.paths
	if len(req.Args) == 0 {
		return nil, errors.New("no command given")
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/"
	}
	cwd = path.Clean("/" + cwd)
	if err := mkdirAllInRoot(root, cwd, 0o755); err != nil {
		return nil, fmt.Errorf("chdir to cwd (%q) set in config.json failed: %w", cwd, unwrapPathErr(err))
	}
	user, err := resolveUser(root, req.User)
	if err != nil {
		return nil, err
	}
	extra, err := additionalGroups(root, req.AdditionalGroups) // --group-add
	if err != nil {
		return nil, err
	}
	env := append([]string(nil), req.Env...)
	if _, ok := envValue(env, "HOME"); !ok {
		env = append(env, "HOME="+user.Home)
	}
	pathEnv, ok := envValue(env, "PATH")
	if !ok {
		pathEnv = defaultPath
	}
	argv0, err := lookPath(root, req.Args[0], pathEnv, cwd)
	if err != nil {
		return nil, err
	}
	rlimits, err := convertRlimits(req.Rlimits) // rlimit_linux.go
	if err != nil {
		return nil, err
	}
	procDir, mqueueDir := "", ""
	if sc.newIPCNS || (sc.init && sc.joinIPCNS != nil) {
		// Mounted by the helper, in the namespace: an mqueue shows the
		// queues of the IPC namespace of whoever mounts it.
		if mqueueDir, err = resolveInRoot(root, "/dev/mqueue"); err != nil {
			return nil, fmt.Errorf("mount /dev/mqueue: %w", err)
		}
	}
	if newPIDNS || (sc.init && sc.joinPIDNS != nil) {
		// Where the main process mounts its namespace's proc (made by
		// mountAPIFS; resolved here, as the helper must not follow the
		// image's symlinks out of the root).
		if procDir, err = resolveInRoot(root, "/proc"); err != nil {
			return nil, fmt.Errorf("mount /proc: %w", err)
		}
	}

	p := newProc(a, stream, req)
	p.pod, p.init, p.nsInit = sc.pod, sc.init, sc.init && newPIDNS
	files, err := p.setupStdio(root, req)
	if err != nil {
		return nil, err
	}
	// As dockerd (since the fix for GHSA-hmfx-3pcx-653p): the primary
	// group is also a supplementary group, then the user's groups from
	// /etc/group, then --group-add.
	groups := make([]uint32, 0, 1+len(user.Sgids)+len(extra))
	seen := map[int]bool{}
	for _, g := range append(append([]int{user.Gid}, user.Sgids...), extra...) {
		if !seen[g] {
			seen[g] = true
			groups = append(groups, uint32(g))
		}
	}
	attr := &os.ProcAttr{
		Dir:   cwd,
		Env:   env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Chroot:     root,
			Setsid:     true,
			Setctty:    req.TTY,
			Ctty:       0,
			Credential: &syscall.Credential{Uid: uint32(user.Uid), Gid: uint32(user.Gid), Groups: groups},
		},
	}
	if sc.cgroup != nil {
		attr.Sys.UseCgroupFD, attr.Sys.CgroupFD = true, int(sc.cgroup.Fd())
	}
	oom := oomKills()
	sc.ph.mark("spawn-prepare") // user, PATH, stdio

	// Hold mu from fork until the pid is registered: the reaper takes it
	// too, so it cannot reap this process before it is known.
	a.mu.Lock()
	var prep []func() error
	if sc.joinPIDNS != nil {
		prep = append(prep, joinPIDNamespace(sc.joinPIDNS))
	}
	if sc.joinIPCNS != nil {
		prep = append(prep, joinIPCNamespace(sc.joinIPCNS))
	}
	var cloneflags uintptr
	if newPIDNS {
		cloneflags |= unix.CLONE_NEWPID
	}
	if sc.newIPCNS {
		cloneflags |= unix.CLONE_NEWIPC
	}
	cgfd := -1
	if sc.cgroup != nil {
		cgfd = int(sc.cgroup.Fd())
	}
	var op *os.Process
	zygotePid := 0             // the process, when the zygote ran it (no os.Process)
	var helperFiles []*os.File // the helper's fds from helperStatusFd+1 on
	if len(rlimits) > 0 || newPIDNS || !paths.empty() || req.Seccomp != nil || req.NoNewPrivileges || procDir != "" || mqueueDir != "" ||
		sc.newMountNS {
		// Through the exec helper (rlimit_linux.go), which mounts the new
		// namespace's proc, chroots, sets the limits and switches to the
		// user itself before the execve.
		spec := execHelperSpec{Root: root, Dir: cwd, Path: argv0, Rlimits: rlimits, Capabilities: req.Capabilities,
			Credential: true, UID: uint32(user.Uid), GID: uint32(user.Gid), Groups: groups, MountProc: procDir,
			Paths: paths, NoNewPrivs: req.NoNewPrivileges, MountMqueue: mqueueDir, IsolateRoot: sc.newMountNS}
		if sc.joinMountNS != nil {
			// The helper joins it: started from the agent's namespace, it
			// is found there (/proc/self/exe).
			helperFiles = append(helperFiles, sc.joinMountNS)
			spec.Root, spec.JoinMountNSFd = "", helperStatusFd+len(helperFiles)
		}
		if req.Seccomp != nil {
			spec.Seccomp, spec.SeccompFlags = req.Seccomp.Program, req.Seccomp.Flags
		}
		sys := &syscall.SysProcAttr{Setsid: true, Setctty: req.TTY, Ctty: 0, Cloneflags: cloneflags,
			UseCgroupFD: cgfd >= 0, CgroupFD: cgfd}
		zygoteTook := false
		if z := sc.zygote; z != nil {
			if cloneflags == unix.CLONE_NEWPID && cgfd < 0 && len(prep) == 0 {
				zygotePid, zygoteTook, err = z.start(spec, req.Args, env, files, req.TTY)
			} else {
				z.discard()
			}
		}
		if !zygoteTook {
			op, err = startOnThread(func() (*os.Process, error) {
				return startWithHelper(agentHelper(), spec, req.Args, env, files, sys, helperFiles...)
			}, prep...)
		}
		if err != nil && op != nil {
			op.Release() // the failed helper exits; the reaper reaps it
		}
		var he *helperError
		if errors.As(err, &he) && he.exec {
			err = &execError{he.msg, execveErrCode(he.errno)}
		}
	} else {
		if sc.joinMountNS != nil {
			// The forking thread's root becomes the container's.
			prep = append(prep, joinMountNamespacePrep(sc.joinMountNS))
			attr.Sys.Chroot = ""
		}
		if req.Capabilities != nil {
			// After the setns, which needs CAP_SYS_ADMIN (caps_linux.go).
			prep = append(prep, dropCapabilitiesPrep(*req.Capabilities))
		}
		var pe *os.PathError
		op, err = startOnThread(func() (*os.Process, error) {
			return os.StartProcess(argv0, req.Args, attr)
		}, prep...)
		if errors.As(err, &pe) {
			err = &execError{fmt.Sprintf("exec %s: %v", argv0, pe.Err), execveErrCode(pe.Err)}
		}
	}
	if err != nil {
		a.mu.Unlock()
		p.closeChildFiles()
		p.closeAll()
		return nil, err
	}
	sc.ph.mark("spawn-exec") // fork, helper, execve
	if op != nil {
		p.pid = op.Pid
	} else {
		p.pid = zygotePid
	}
	p.startedAt = time.Now()
	p.oomBefore = oom
	if newPIDNS && sc.pod == nil {
		// Opened while the main process cannot have been reaped (mu).
		if ns, err := openPIDNamespace(p.pid); err != nil {
			a.logf("open the PID namespace of pid %d: %v; execs will run outside it", p.pid, err)
		} else {
			a.pidns = ns
		}
	}
	if sc.newMountNS && sc.pod == nil {
		a.mntns = a.openMountNamespace(p.pid)
	}
	if sc.pod != nil && sc.init {
		// A joined container's namespaces, for its execs and for the
		// containers that share them (pods_linux.go).
		sc.pod.pid = p.pid
		if sc.newPIDNS || sc.joinPIDNS != nil {
			if ns, err := openPIDNamespace(p.pid); err != nil {
				a.logf("open the PID namespace of pid %d: %v; execs will run outside it", p.pid, err)
			} else {
				sc.pod.pidns = ns
			}
		}
		if ns, err := openNamespace(p.pid, "ipc"); err != nil {
			a.logf("open the IPC namespace of pid %d: %v", p.pid, err)
		} else {
			sc.pod.ipcns = ns
		}
		if sc.newMountNS {
			sc.pod.mntns = a.openMountNamespace(p.pid)
		}
	}
	a.byPid[p.pid] = p
	a.procs[stream] = p
	if stream == agentproto.MainStream {
		a.phase = phaseRunning
	}
	a.mu.Unlock()
	if op != nil {
		op.Release()
	}
	p.closeChildFiles()
	p.startIO()
	return p, nil
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// oomKills reads the kernel's count of OOM kills.
func oomKills() int64 {
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	return -1
}

// writeSysctls sets the container's sysctls in the guest, in key order.
// A key that names no file under /proc/sys, or a value the kernel
// refuses, fails the start with runc's wording.
func writeSysctls(sysctls map[string]string) error {
	keys := make([]string, 0, len(sysctls))
	for k := range sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rel := strings.ReplaceAll(k, ".", "/")
		if k == "" || strings.Contains(k, "..") || strings.HasPrefix(rel, "/") {
			return fmt.Errorf("invalid sysctl %q", k)
		}
		if err := os.WriteFile("/proc/sys/"+rel, []byte(sysctls[k]), 0); err != nil {
			return fmt.Errorf("write sysctl key %s: %w", k, err)
		}
	}
	return nil
}
