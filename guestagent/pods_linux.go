//go:build linux

package guestagent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Pods (docs/AGENT_PROTOCOL.md, "Pods"): more containers in one VM, for
// `docker run --network container:X`. A joined container has its own root
// file system (a disk the host hot-plugged, found by its serial and
// mounted under podsDir), its own /proc, /sys, /dev, its own PID namespace
// (or another container's, --pid container:X), its own IPC namespace (or
// another's, --ipc container:X) and a guest cgroup of its own, through
// which the agent lists, measures, freezes and kills its processes. The
// VM's network stack, hostname, kernel and sysctls are shared: the main
// container owns them. A joined container's process has a mount namespace
// of its own in which its root is the only file system (mountns_linux.go),
// and its execs join it; the agent mounts its root, API file systems and
// mounts in the agent's namespace first, where the file operations (docker
// cp) find them.
//
// A joined container's process runs on the join's stream. When it exits,
// what is left of the container is killed, its output drained, its root
// unmounted and its cgroup removed; only then is its Exit sent, so that
// the host may hot-unplug the disk. The VM keeps running. When the main
// container ends, every joined one is killed (exit 137) and reported
// before the main one.

const (
	// podsDir holds a directory per joined container: root (its root
	// file system) and etc (the files bind-mounted over its /etc/hostname,
	// /etc/hosts and /etc/resolv.conf).
	podsDir = "/mnt/pods"
	// cgroupDir is the guest's cgroup2 hierarchy as the agent sees it.
	cgroupDir = runDir + "/cgroup"
	// podDiskWait bounds the wait for a joined container's hot-plugged
	// root disk.
	podDiskWait = 20 * time.Second
	// podExitTimeout bounds how long the main container's exit waits for
	// the joined containers' to be reported.
	podExitTimeout = 10 * time.Second
	// freezeTimeout bounds the wait for a cgroup to report itself frozen
	// (or thawed).
	freezeTimeout = 10 * time.Second
)

// podCtr is a container that joined the VM.
type podCtr struct {
	name   string
	stream uint32
	dir    string // podsDir/<name>
	root   string // its root file system's mount point
	// cgroup is its cgroup's directory and cgfd that directory open (the
	// CLONE_INTO_CGROUP of its processes); "" and nil on a guest without
	// cgroup2.
	cgroup string
	cgfd   *os.File

	// The fields below are guarded by agent.mu.
	pid int
	// pidns, ipcns and mntns are the namespaces of its process, which its
	// execs and the containers that share them join; pidns is nil in the
	// guest's PID namespace.
	pidns, ipcns, mntns *os.File
	// frozen: freeze without a thaw since (execs are refused: their
	// start would wait for the thaw, holding the agent).
	frozen bool
	// exiting: its process exited and it is being taken down; exit: its
	// exit status, once reported.
	exiting bool
	exit    *agentproto.ExitStatus
	// started: its process runs (Started sent); done is closed once its
	// exit was sent, or its join failed.
	started bool
	done    chan struct{}
}

// execContext is where an exec in c runs.
func (c *podCtr) execContext() spawnContext {
	return spawnContext{root: c.root, joinPIDNS: c.pidns, joinIPCNS: c.ipcns, joinMountNS: c.mntns, cgroup: c.cgfd, pod: c}
}

// closeFiles closes c's namespace and cgroup files; c is gone for good.
func (c *podCtr) closeFiles() {
	for _, f := range []*os.File{c.pidns, c.ipcns, c.mntns, c.cgfd} {
		if f != nil {
			f.Close()
		}
	}
}

// lookupContainer returns the joined container a request's Container
// names, nil for the main container ("" or its name). a.mu is held.
func (a *agent) lookupContainer(name string) (*podCtr, error) {
	if name == "" || name == a.mainName {
		return nil, nil
	}
	c := a.joined[name]
	if c == nil || !c.started || c.exiting || c.exit != nil {
		return nil, fmt.Errorf("no such container in this VM: %s", name)
	}
	return c, nil
}

// containerOf resolves m.Container (lookupContainer, taking a.mu).
func (a *agent) containerOf(m *agentproto.Msg) (*podCtr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lookupContainer(m.Container)
}

// joinedStates lists the joined containers for Hello, by name. a.mu is
// held.
func (a *agent) joinedStates() []agentproto.JoinedState {
	var out []agentproto.JoinedState
	for _, c := range a.joined {
		if !c.started {
			continue
		}
		js := agentproto.JoinedState{Container: c.name, Stream: c.stream}
		if c.exit != nil {
			e := *c.exit
			js.Exit = &e
		} else {
			js.Pid = c.pid
			if p := a.procs[c.stream]; p != nil && p.pod == c {
				js.StdinWindow = p.stdinFree()
			}
		}
		out = append(out, js)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Container < out[j].Container })
	return out
}

// handleJoin starts a container that joins the VM (MsgJoin) on stream.
// It checks the request and reserves the name on the reader loop, and
// sets the container up and starts it on a goroutine of its own.
func (a *agent) handleJoin(stream uint32, m *agentproto.Msg) {
	fail := func(err error) {
		a.logf("join %s: %v", m.Container, err)
		a.reply(stream, m, err)
	}
	req := m.Start
	switch {
	case stream <= agentproto.MainStream || stream >= agentproto.FileStreamBase:
		fail(fmt.Errorf("join needs a process stream above %d, not %d", agentproto.MainStream, stream))
		return
	case req == nil:
		fail(errors.New("join request without parameters"))
		return
	}
	name := m.Container
	if name == "" {
		name = req.Container
	}
	if !validContainerName(name) {
		fail(fmt.Errorf("invalid container name %q", name))
		return
	}
	if req.RootSerial == "" {
		fail(errors.New("join request without a root disk serial"))
		return
	}

	a.mu.Lock()
	phase, shutdown, mainExiting := a.phase, a.shutdown, a.mainExiting
	_, busy := a.procs[stream]
	old := a.joined[name]
	var err error
	switch {
	case phase != phaseRunning || shutdown || mainExiting:
		err = errors.New("the VM's main container is not running")
	case name == a.mainName:
		err = fmt.Errorf("%s is the VM's main container", name)
	case old != nil && old.exit == nil:
		err = fmt.Errorf("container %s is already running in this VM", name)
	case busy:
		err = fmt.Errorf("stream %d is in use", stream)
	}
	sc := spawnContext{init: true, newPIDNS: !req.HostPID, newIPCNS: true, newMountNS: true,
		paths: pathConfinement{Masked: req.MaskedPaths, Readonly: req.ReadonlyPaths}}
	vmIPC := false // the VM's IPC namespace (the main container's)
	if err == nil && req.PIDContainer != "" {
		var src *podCtr
		if src, err = a.lookupContainer(req.PIDContainer); err == nil {
			sc.newPIDNS, sc.joinPIDNS = false, a.pidns
			if src != nil {
				sc.joinPIDNS = src.pidns
			}
			// Nil: the main container (or the one named) is in the
			// guest's PID namespace, which the process then is in too.
		}
	}
	if err == nil && req.IPCContainer != "" {
		var src *podCtr
		if src, err = a.lookupContainer(req.IPCContainer); err == nil {
			sc.newIPCNS = false
			if src != nil {
				sc.joinIPCNS = src.ipcns
			} else {
				vmIPC = true
			}
		}
	}
	var c *podCtr
	if err == nil {
		dir := filepath.Join(podsDir, name)
		c = &podCtr{name: name, stream: stream, dir: dir, root: filepath.Join(dir, "root"), done: make(chan struct{})}
		a.joined[name] = c
	}
	a.mu.Unlock()
	if err != nil {
		fail(err)
		return
	}
	if old != nil {
		old.closeFiles()
	}

	// The rest (the disk may take seconds to appear, a share too) runs
	// off the reader loop, one join at a time (the shares' staging
	// directories are shared). The host sends the process's stdin,
	// signals and resizes only after Started.
	go func() {
		a.joinMu.Lock()
		defer a.joinMu.Unlock()
		t := time.Now()
		undo := func() {
			a.takeDownPod(c)
			a.mu.Lock()
			if a.joined[name] == c {
				delete(a.joined, name)
			}
			a.mu.Unlock()
			c.closeFiles()
			close(c.done)
			a.releasePodSharesLocked()
		}
		guestPID := !sc.newPIDNS && sc.joinPIDNS == nil // --pid host, or that of a container that has it
		if err := a.setupPodRoot(c, req, vmIPC, guestPID); err != nil {
			undo()
			fail(err)
			return
		}
		if err := a.setupPodCgroup(c); err != nil {
			a.logf("join %s: no cgroup of its own: %v", name, err)
		}
		sc.root, sc.cgroup, sc.pod = c.root, c.cgfd, c
		p, err := a.spawn(stream, &req.Process, sc)
		if err != nil {
			undo()
			fail(err)
			return
		}
		a.mu.Lock()
		c.started = true
		late := a.mainExiting
		a.mu.Unlock()
		a.send(stream, &agentproto.Msg{Type: agentproto.MsgStarted, ID: m.ID, Pid: p.pid, StdinWindow: p.stdinGrant()})
		close(p.started)
		a.logf("container %s joined in %v: pid %d on stream %d", name, time.Since(t).Round(time.Millisecond), p.pid, stream)
		if late {
			// The main container ended while this one was being started:
			// it must not outlive the VM's main container.
			a.killPod(c, p)
		}

	}()
}

// setupPodRoot mounts a joined container's root disk, its API file
// systems, its /etc files and its mounts, as setupRoot does for the main
// container; but the hostname (the VM's UTS namespace) and the network
// belong to the main container.
func (a *agent) setupPodRoot(c *podCtr, req *agentproto.StartRequest, vmIPC, guestPID bool) error {
	dev, _, err := findDiskBySerial(req.RootSerial, podDiskWait)
	if err != nil {
		return fmt.Errorf("root disk: %w", err)
	}
	if err := os.MkdirAll(c.root, 0o755); err != nil {
		return err
	}
	fstype, data := req.RootFSType, ""
	if fstype == "" {
		fstype = "ext4"
	}
	if fstype == "ext4" {
		data = "noinit_itable"
	}
	if err := unix.Mount(dev, c.root, fstype, 0, data); err != nil {
		return fmt.Errorf("mount root device %s (%s): %w", dev, fstype, err)
	}
	if err := a.mountAPIFS(c.root, apiFS{privileged: req.Privileged, hostPID: guestPID,
		writableCgroups: req.WritableCgroups, shmSize: req.ShmSize, mqueue: vmIPC}); err != nil {
		return err
	}
	etc := filepath.Join(c.dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	files := []struct{ name, content string }{
		{"hostname", req.Hostname + "\n"},
		{"hosts", req.Hosts},
		{"resolv.conf", req.ResolvConf},
	}
	for _, f := range files {
		if f.content == "" || f.content == "\n" {
			continue
		}
		if err := bindFile(c.root, "/etc/"+f.name, filepath.Join(etc, f.name), f.content); err != nil {
			a.logf("join %s: /etc/%s: %v", c.name, f.name, err)
		}
	}
	if err := a.setupMounts(c.root, req.Mounts); err != nil {
		return err
	}
	if err := writeMemFiles(c.root, req.Files); err != nil {
		return err
	}
	if req.ReadOnly {
		if err := unix.Mount("", c.root, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount root read-only: %w", err)
		}
	}
	// The kernel is the VM's: these apply to every container in it (the
	// host sends only those a joined container may set).
	return writeSysctls(req.Sysctls)
}

// cgroupRoot mounts the guest's cgroup2 hierarchy read-write for the
// agent (once). The containers' /sys/fs/cgroup are bind mounts of it
// (mountAPIFS), read-only per mount: cgroup2 has one superblock, so a
// read-only mount of its own would make the whole hierarchy read-only,
// for the agent too.
func (a *agent) cgroupRoot() error {
	a.cgroupOnce.Do(func() {
		if err := os.MkdirAll(cgroupDir, 0o755); err != nil {
			a.cgroupErr = err
			return
		}
		if isMountPoint(cgroupDir) {
			return
		}
		if err := unix.Mount("cgroup2", cgroupDir, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			a.cgroupErr = fmt.Errorf("mount cgroup2: %w", err)
		}
	})
	return a.cgroupErr
}

// enableControllers enables, once, the controllers a joined container's
// cgroup is measured with in the root's cgroup.subtree_control (not
// before the first join: a VM without pods keeps the hierarchy as it
// was).
func (a *agent) enableControllers() {
	a.controllersOnce.Do(func() {
		avail, _ := os.ReadFile(filepath.Join(cgroupDir, "cgroup.controllers"))
		for _, ctl := range strings.Fields(string(avail)) {
			switch ctl {
			case "cpu", "memory", "pids", "io":
				if err := os.WriteFile(filepath.Join(cgroupDir, "cgroup.subtree_control"), []byte("+"+ctl), 0); err != nil {
					a.logf("enable the %s controller: %v", ctl, err)
				}
			}
		}
	})
}

// setupPodCgroup makes c's cgroup.
func (a *agent) setupPodCgroup(c *podCtr) error {
	if err := a.cgroupRoot(); err != nil {
		return err
	}
	a.enableControllers()
	dir := filepath.Join(cgroupDir, podCgroupPrefix+c.name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return err
	}
	c.cgroup, c.cgfd = dir, f
	return nil
}

// cgroupPids lists the processes in the cgroup dir and its descendants.
func cgroupPids(dir string) []int {
	var pids []int
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// killPod kills every process of c: its cgroup's (cgroup.kill, or one by
// one on a kernel without it), and its own process p.
func (a *agent) killPod(c *podCtr, p *proc) {
	if p != nil {
		p.markKilled()
		unix.Kill(p.pid, unix.SIGKILL)
	}
	if c.cgroup == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(c.cgroup, "cgroup.kill"), []byte("1"), 0); err == nil {
		return
	}
	// Before 5.14: thaw (a frozen process dies only when thawed) and
	// kill what is there, until nothing is.
	os.WriteFile(filepath.Join(c.cgroup, "cgroup.freeze"), []byte("0"), 0)
	for i := 0; i < 50; i++ {
		pids := cgroupPids(c.cgroup)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitCgroupEmpty waits (bounded) until c's cgroup has no process left.
func waitCgroupEmpty(dir string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil || parseFlatKeyed(b)["populated"] == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// takeDownPod unmounts c's root and mounts (detached if still busy),
// removes its directories and its cgroup.
func (a *agent) takeDownPod(c *podCtr) {
	if c.cgroup != "" {
		os.WriteFile(filepath.Join(c.cgroup, "cgroup.freeze"), []byte("0"), 0)
		if !waitCgroupEmpty(c.cgroup, 2*time.Second) {
			a.logf("container %s: processes left in its cgroup", c.name)
		}
	}
	if busy := unmountUnder(c.root, time.Second); busy != nil {
		a.logf("container %s: %v; detaching", c.name, busy)
		for _, mp := range mountPointsUnder(c.root) {
			unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
	// Never a recursive removal where the disk may still be mounted: only
	// the (empty) mount point, the agent's own /etc files and the
	// directory.
	if left := mountPointsUnder(c.dir); len(left) > 0 {
		a.logf("container %s: still mounted: %v", c.name, left)
	} else {
		os.Remove(c.root)
		os.RemoveAll(filepath.Join(c.dir, "etc"))
		if err := os.Remove(c.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.logf("container %s: remove %s: %v", c.name, c.dir, err)
		}
	}
	if c.cgroup != "" {
		if err := os.Remove(c.cgroup); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.logf("container %s: remove its cgroup: %v", c.name, err)
		}
	}
}

// unmountUnder unmounts everything at or below dir, deepest first,
// retrying for timeout while killed processes still hold files; it
// returns the last error if something stayed mounted.
func unmountUnder(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		mps := mountPointsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		var busy error
		for _, mp := range mps {
			if err := unix.Unmount(mp, 0); err != nil {
				busy = fmt.Errorf("unmount %s: %w", mp, err)
			}
		}
		if busy == nil {
			continue
		}
		if time.Now().After(deadline) {
			return busy
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// podExited takes a joined container down once its process p exited
// and reports its exit on its stream.
func (a *agent) podExited(p *proc, st agentproto.ExitStatus) {
	c := p.pod
	a.mu.Lock()
	c.exiting = true
	a.mu.Unlock()
	if c.cgroup != "" && st.Signal == int(unix.SIGKILL) {
		// The OOM killer of its own cgroup, not of the guest at large.
		p.killMu.Lock()
		killed := p.killed
		p.killMu.Unlock()
		b, _ := os.ReadFile(filepath.Join(c.cgroup, "memory.events"))
		st.OOMKilled = !killed && parseFlatKeyed(b)["oom_kill"] > 0
	}
	a.killPod(c, nil)
	a.drain(p)
	// Its mount namespace holds its root disk mounted: let it go before
	// the root is unmounted, so that the disk is released with it.
	a.mu.Lock()
	mntns := c.mntns
	c.mntns = nil
	a.mu.Unlock()
	if mntns != nil {
		mntns.Close()
	}
	a.takeDownPod(c)
	a.mu.Lock()
	reported := c.exit != nil // by finishJoined, which gave up waiting
	if !reported {
		c.exit = &st
	}
	if a.procs[p.stream] == p {
		delete(a.procs, p.stream)
	}
	a.mu.Unlock()
	a.logf("container %s exited: code %d%s", c.name, st.Code, sigSuffix(st))
	if !reported {
		a.sendBounded(p.stream, &agentproto.Msg{Type: agentproto.MsgExit, Status: &st})
	}
	close(c.done)
	a.joinMu.Lock()
	a.releasePodSharesLocked()
	a.joinMu.Unlock()
}

// releasePodSharesLocked unmounts the pod shares once no joined container
// is left that may use them: while the guest has a 9p share mounted, QEMU
// refuses to checkpoint or migrate the VM (its migration blocker goes
// with the guest's last reference to the share's root). A later join
// mounts it again. The caller holds joinMu, so no join is being set up.
func (a *agent) releasePodSharesLocked() {
	if len(a.podShares) == 0 {
		return
	}
	a.mu.Lock()
	for _, c := range a.joined {
		if c.exit == nil {
			a.mu.Unlock()
			return
		}
	}
	a.mu.Unlock()
	for tag, dir := range a.podShares {
		if err := unix.Unmount(dir, 0); err != nil {
			a.logf("pod share %s stays mounted: %v", tag, err)
			continue
		}
		delete(a.podShares, tag)
		a.logf("pod share %s unmounted: no joined container is left", tag)
	}
}

// killJoined kills every joined container (the main container ended).
func (a *agent) killJoined() {
	a.mu.Lock()
	var pods []*podCtr
	procs := map[*podCtr]*proc{}
	for _, c := range a.joined {
		if c.exit == nil {
			pods = append(pods, c)
		}
	}
	for _, p := range a.procs {
		if p.pod != nil && p.init {
			procs[p.pod] = p
		}
	}
	a.mu.Unlock()
	for _, c := range pods {
		a.killPod(c, procs[c])
	}
}

// finishJoined waits (bounded) until the joined containers, killed with
// the main one, were taken down and their exits sent; those still
// unreported then get an exit 137 of their own.
func (a *agent) finishJoined() {
	a.mu.Lock()
	var pods []*podCtr
	for _, c := range a.joined {
		// Not those still being set up: a join that completes now kills
		// its process at once (handleJoin).
		if c.exit == nil && c.started {
			pods = append(pods, c)
		}
	}
	a.mu.Unlock()
	deadline := time.Now().Add(podExitTimeout)
	for _, c := range pods {
		t := time.NewTimer(max(time.Until(deadline), 0))
		select {
		case <-c.done:
			t.Stop()
			continue
		case <-t.C:
		}
		a.mu.Lock()
		pending := c.exit == nil && c.started
		if pending {
			st := agentproto.ExitStatus{Code: 128 + int(unix.SIGKILL), Signal: int(unix.SIGKILL)}
			c.exit = &st
			c.exiting = true
			// Not reported again by finishExecs.
			if p := a.procs[c.stream]; p != nil && p.pod == c {
				delete(a.procs, c.stream)
			}
		}
		a.mu.Unlock()
		if pending {
			a.logf("container %s not taken down in time; reporting it killed", c.name)
			a.sendBounded(c.stream, &agentproto.Msg{Type: agentproto.MsgExit,
				Status: &agentproto.ExitStatus{Code: 128 + int(unix.SIGKILL), Signal: int(unix.SIGKILL)}})
		}
	}
}

// handleFreeze freezes (or thaws) a joined container's processes
// (MsgFreeze, MsgThaw): its cgroup's cgroup.freeze, waiting until the
// kernel reports it done.
func (a *agent) handleFreeze(stream uint32, m *agentproto.Msg, freeze bool) {
	a.reply(stream, m, a.freezePod(m.Container, freeze))
}

func (a *agent) freezePod(name string, freeze bool) error {
	a.mu.Lock()
	c, err := a.lookupContainer(name)
	a.mu.Unlock()
	switch {
	case err != nil:
		return err
	case c == nil:
		return errors.New("freeze and thaw are for a container that joined the VM; the VM's main container is paused with the VM")
	case c.cgroup == "":
		return errors.New("the guest has no cgroup2 to freeze the container with")
	}
	v := "0"
	if freeze {
		v = "1"
	}
	a.mu.Lock()
	c.frozen = freeze
	a.mu.Unlock()
	if err := os.WriteFile(filepath.Join(c.cgroup, "cgroup.freeze"), []byte(v), 0); err != nil {
		return err
	}
	if err := waitCgroupFrozen(c.cgroup, freeze, time.Now().Add(freezeTimeout)); err != nil {
		return fmt.Errorf("container %s: %w", c.name, err)
	}
	return nil
}

// podStats adds a joined container's own CPU, memory and processes to a
// sample of the guest (whose network and disks it shares).
func podStats(c *podCtr, st *agentproto.GuestStats) {
	if c.cgroup == "" {
		return
	}
	if b, err := os.ReadFile(filepath.Join(c.cgroup, "cpu.stat")); err == nil {
		podCPU(st, parseFlatKeyed(b))
	}
	var cm cgroupMemory
	if b, err := os.ReadFile(filepath.Join(c.cgroup, "memory.current")); err == nil {
		cm.current, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	} else {
		return // no memory controller: the guest's figures stand
	}
	if b, err := os.ReadFile(filepath.Join(c.cgroup, "memory.max")); err == nil {
		cm.max, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64) // "max": 0
	}
	if b, err := os.ReadFile(filepath.Join(c.cgroup, "memory.stat")); err == nil {
		cm.stat = parseFlatKeyed(b)
	}
	st.Memory = podMemoryInfo(st.Memory["MemTotal"], cm)
}

// rootOf is the root of the container m names, for the file operations.
func (a *agent) rootOf(m *agentproto.Msg) (string, error) {
	c, err := a.containerOf(m)
	if err != nil {
		return "", err
	}
	if c == nil {
		if err := a.requireRoot(); err != nil {
			return "", err
		}
		return containerRoot, nil
	}
	return c.root, nil
}
