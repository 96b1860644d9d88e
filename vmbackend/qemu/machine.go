package qemu

import (
	"context"
	"errors"
	"fmt"
	"github.com/jevm/jevm/internal/atomicfile"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/internal/cgroups"
	"github.com/jevm/jevm/vmbackend"
)

// killGrace is how long Kill waits after QMP quit before SIGKILL.
const killGrace = 2 * time.Second

// validID restricts machine IDs to what is safe in a QEMU option value and
// a process name.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// maxSockPath is the unix socket path limit (sun_path is 108 bytes with
// the terminating NUL).
const maxSockPath = 107

func processName(id string) string { return "jevm-" + id }

// machine is a running clone.
type machine struct {
	p  *Provider
	id string
	// name is the QEMU process's -name: processName of the ID it was
	// started with, which a claimed blank keeps (claim.go).
	name  string
	spec  vmbackend.MachineSpec
	pid   int
	log   *logrus.Entry
	mon   *monitor
	agent net.Conn

	proc  *qemuProc // our child; nil for an adopted machine
	pidfd int       // adopted: pidfd of the QEMU process, or -1
	// adoptedID is the ids an adopted QEMU runs as (vmids.go).
	adoptedID vmIdentity

	// cg is the VM's cgroup (nil without cgroups); resMu serialises
	// UpdateResources, which changes spec.Resources.
	cg    *cgroups.Group
	resMu sync.Mutex

	exited chan struct{} // the process is gone (before cleanup)
	done   chan struct{} // closed after cleanup

	// A blank (claim.go): started without a root disk for the warm
	// pool, from the template tpl (whose state file was tplState then).
	blank    bool
	tplKey   string
	tplState fileID
	// nic0MAC is the MAC the first NIC is known by when its device
	// property says otherwise (a claimed blank's: the guest has the
	// container's, set by the agent).
	nic0MAC string
}

var _ vmbackend.Machine = (*machine)(nil)

func (m *machine) ID() string                { return m.id }
func (m *machine) Pid() int                  { return m.pid }
func (m *machine) Agent() io.ReadWriteCloser { return m.agent }
func (m *machine) Done() <-chan struct{}     { return m.done }

// Pause implements vmbackend.Machine (QMP stop).
func (m *machine) Pause(ctx context.Context) error {
	if err := m.mon.run(ctx, "stop", nil, nil); err != nil {
		return fmt.Errorf("qemu: pause %s: %w", m.id, err)
	}
	return nil
}

// Resume implements vmbackend.Machine (QMP cont).
func (m *machine) Resume(ctx context.Context) error {
	if err := m.mon.run(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("qemu: resume %s: %w", m.id, err)
	}
	return nil
}

// Kill implements vmbackend.Machine: QMP quit, SIGKILL after killGrace,
// then wait until the process is gone.
func (m *machine) Kill(ctx context.Context) error {
	select {
	case <-m.done:
		return nil
	default:
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	if err := m.mon.run(qctx, "quit", nil, nil); err != nil {
		m.log.WithError(err).Debug("qmp quit failed, will SIGKILL")
	}
	cancel()
	t := time.NewTimer(killGrace)
	defer t.Stop()
	select {
	case <-m.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	m.log.Warn("qemu did not quit, sending SIGKILL")
	if err := m.sigkill(); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("qemu: kill %s: %w", m.id, err)
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		// SIGKILL cannot be ignored; give the kernel a moment even if
		// the caller is in a hurry.
		select {
		case <-m.done:
			return nil
		case <-time.After(2 * time.Second):
			return fmt.Errorf("qemu: kill %s: process %d still there: %w", m.id, m.pid, ctx.Err())
		}
	}
}

func (m *machine) sigkill() error {
	if m.proc != nil {
		return m.proc.cmd.Process.Signal(syscall.SIGKILL)
	}
	if m.pidfd >= 0 {
		return unix.PidfdSendSignal(m.pidfd, unix.SIGKILL, nil, 0)
	}
	// No pidfd (old kernel): make sure the pid is still our QEMU.
	if ok, _ := procCmdlineHasName(m.pid, m.name); !ok {
		return syscall.ESRCH
	}
	return syscall.Kill(m.pid, syscall.SIGKILL)
}

// Stats implements vmbackend.Machine.
func (m *machine) Stats() (vmbackend.MachineStats, error) {
	select {
	case <-m.exited:
		return vmbackend.MachineStats{}, fmt.Errorf("qemu: stats %s: %w", m.id, vmbackend.ErrNotRunning)
	default:
	}
	cpu, rss, pss, err := readProcStats(m.pid)
	if err != nil {
		return vmbackend.MachineStats{}, fmt.Errorf("qemu: stats %s: %w", m.id, err)
	}
	return vmbackend.MachineStats{CPUTime: cpu, RSSBytes: rss, PSSBytes: pss, Throttling: m.throttling()}, nil
}

// watch closes m.done once QEMU has exited and its leftovers are removed.
func (m *machine) watch() {
	<-m.exited
	m.mon.close()
	if m.pidfd >= 0 {
		unix.Close(m.pidfd)
	}
	removeStateFiles(m.spec.StateDir, m.pid)
	removeCgroup(m.cg, m.log)
	m.p.unregister(m.id, m)
	m.log.Info("qemu exited")
	close(m.done)
}

// watchPid turns the exit of a process that is not our child into a closed
// channel, using a pidfd on the runtime's poller (no thread blocked per
// VM), or polling /proc without a pidfd.
func watchPid(pid, pidfd int, name string, exited chan struct{}) {
	defer close(exited)
	if pidfd >= 0 {
		// Duplicate: os.File owns and closes its descriptor; the
		// original stays valid for pidfd_send_signal.
		dup, err := unix.FcntlInt(uintptr(pidfd), unix.F_DUPFD_CLOEXEC, 0)
		if err == nil {
			f := os.NewFile(uintptr(dup), "pidfd")
			if rc, err := f.SyscallConn(); err == nil {
				rerr := rc.Read(func(fd uintptr) bool {
					n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
					return n > 0
				})
				f.Close()
				if rerr == nil {
					return
				}
			} else {
				f.Close()
			}
		}
	}
	for {
		if ok, _ := procCmdlineHasName(pid, name); !ok {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// removeStateFiles removes the sockets and pid file of the QEMU process
// pid from stateDir (only if the pid file still names pid, so a newer VM's
// files are left alone).
func removeStateFiles(stateDir string, pid int) {
	pidPath := filepath.Join(stateDir, pidFileName)
	if b, err := os.ReadFile(pidPath); err == nil {
		if got, _ := strconv.Atoi(strings.TrimSpace(string(b))); got != pid && pid != 0 {
			return
		}
	}
	for _, name := range []string{qmpSockName, agentSockName, pidFileName, claimFileName} {
		os.Remove(filepath.Join(stateDir, name))
	}
}

func (p *Provider) register(m *machine) error {
	p.machinesMu.Lock()
	defer p.machinesMu.Unlock()
	if p.machines == nil {
		p.machines = map[string]*machine{}
	}
	if old := p.machines[m.id]; old != nil {
		return fmt.Errorf("machine %s is already running (pid %d)", m.id, old.pid)
	}
	p.machines[m.id] = m
	return nil
}

func (p *Provider) unregister(id string, m *machine) {
	p.machinesMu.Lock()
	defer p.machinesMu.Unlock()
	if p.machines[id] == m {
		delete(p.machines, id)
	}
}

func (p *Provider) checkSpec(spec vmbackend.MachineSpec) error {
	if !validID.MatchString(spec.ID) {
		return fmt.Errorf("invalid machine id %q", spec.ID)
	}
	if spec.StateDir == "" || !filepath.IsAbs(spec.StateDir) {
		return fmt.Errorf("state dir %q must be an absolute path", spec.StateDir)
	}
	if l := len(filepath.Join(spec.StateDir, agentSockName)); l > maxSockPath {
		return fmt.Errorf("state dir %q too long for unix sockets (%d > %d bytes)", spec.StateDir, l, maxSockPath)
	}
	if spec.ConsoleLog == "" {
		return errors.New("console log path is required")
	}
	return nil
}

// Start implements vmbackend.Provider: clone the template of spec.Shape.
func (p *Provider) Start(ctx context.Context, spec vmbackend.MachineSpec) (vmbackend.Machine, error) {
	return p.start(ctx, spec, nil)
}

// restoreSource is where a restore's guest comes from: a checkpoint's
// state file (or an incoming migration's stream: migrate.go) made with
// the template tplKey, and the NICs to plug (in their slots) before the
// state is loaded. paused leaves the guest stopped once it is loaded.
type restoreSource struct {
	state, tplKey string
	stream        *os.File
	nics          []slotNIC
	paused        bool
}

type slotNIC struct {
	slot int
	nic  vmbackend.NICSpec
}

// start clones the template of spec.Shape; with from, the guest's memory
// and devices come from that checkpoint instead of the template's state.
func (p *Provider) start(ctx context.Context, spec vmbackend.MachineSpec, from *restoreSource) (_ vmbackend.Machine, err error) {
	t0 := time.Now()
	if err := p.checkSpec(spec); err != nil {
		return nil, fmt.Errorf("qemu: start: %w", err)
	}
	log := p.log.WithField("container", spec.ID)
	format, err := p.checkRootDisk(spec.RootDisk)
	if err != nil && spec.RootDisk != "" {
		return nil, fmt.Errorf("qemu: start %s: %w", spec.ID, err)
	}
	if err := checkShares(spec.Shares); err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", spec.ID, err)
	}
	if err := checkNICs(spec.NICs); err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", spec.ID, err)
	}
	tpl, err := p.ensureTemplate(ctx, spec.Shape)
	if err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", spec.ID, err)
	}
	log = log.WithField("template", tpl.key)
	statePath := tpl.statePath()
	if from != nil {
		if tpl.key != from.tplKey {
			return nil, fmt.Errorf("qemu: restore %s: %w", spec.ID, vmbackend.ErrCheckpointIncompatible)
		}
		statePath = from.state
		if from.stream != nil {
			log = log.WithField("incoming", "migration")
		} else {
			log = log.WithField("checkpoint", filepath.Dir(from.state))
		}
	}
	if err := ensureSharePlaceholder(filepath.Dir(tpl.memPath())); err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", spec.ID, err)
	}
	if err := os.MkdirAll(spec.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", spec.ID, err)
	}
	// Only the pid file is checked here: this is the hot path, the
	// provider's registry already refuses a second start in this process,
	// and Adopt (after a daemon restart) scans /proc for lost pid files.
	if pid, alive := pidFromFile(spec.StateDir, adoptName(spec)); alive {
		return nil, fmt.Errorf("qemu: start %s: already running as pid %d", spec.ID, pid)
	}
	// Leftovers of a VM that died without cleaning up.
	removeStateFiles(spec.StateDir, 0)

	m := &machine{
		p: p, id: spec.ID, name: processName(spec.ID), spec: spec, log: log, pidfd: -1,
		exited: make(chan struct{}), done: make(chan struct{}),
		blank: spec.RootDisk == "", tplKey: tpl.key,
	}
	if m.blank {
		// What Claim compares with the template a start would use then.
		if m.tplState, err = statFileID(tpl.statePath()); err != nil {
			return nil, fmt.Errorf("qemu: start %s: %w", spec.ID, err)
		}
	}
	if err := p.register(m); err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", spec.ID, err)
	}
	defer func() {
		if err != nil {
			p.unregister(m.id, m)
		}
	}()

	cfg := vmConfig{
		Name:       m.name,
		Accel:      tpl.meta.Inputs.Accel,
		Shape:      tpl.meta.Inputs.Shape,
		TBSizeMiB:  p.tbSizeMiB(),
		Kernel:     p.opts.Kernel,
		Initrd:     p.opts.Initrd,
		Append:     tpl.meta.Inputs.KernelCmdline,
		MemPath:    tpl.memPath(),
		MemShared:  false,
		Disk:       spec.RootDisk,
		DiskFormat: format,
		DiskSize:   p.opts.DiskSize,
		VMGenID:    uuid.NewString(),
		QMPSock:    filepath.Join(spec.StateDir, qmpSockName),
		AgentSock:  filepath.Join(spec.StateDir, agentSockName),
		Console:    spec.ConsoleLog,
		Incoming:   true,
		Shares:     spec.Shares,
	}
	if len(spec.NICs) > 0 {
		// The first NIC takes the template NIC's place (nics.go).
		cfg.NICTap, cfg.NICMAC = spec.NICs[0].TapName, spec.NICs[0].MAC
	}
	// The VM's cgroup (cgroup.go) is made before QEMU starts, so that a
	// limit the host refuses fails the start before there is a process.
	if m.cg, err = p.createCgroup(spec); err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", spec.ID, err)
	}
	defer func() {
		if err != nil {
			removeCgroup(m.cg, log)
		}
	}()
	proc, err := p.spawn(cfg, filepath.Join(spec.StateDir, qemuLogName), true)
	if err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", spec.ID, err)
	}
	m.proc, m.pid = proc, proc.pid
	log = log.WithField("pid", proc.pid)
	m.log = log
	var conn net.Conn
	defer func() {
		if err == nil {
			return
		}
		if conn != nil {
			conn.Close()
		}
		if m.mon != nil {
			m.mon.close()
		}
		proc.kill()
		removeStateFiles(spec.StateDir, proc.pid)
		err = fmt.Errorf("qemu: start %s: %w", spec.ID, err)
		log.WithError(err).Error("clone failed")
	}()
	// Into its cgroup at once: QEMU has at most loaded its libraries by
	// now, and the guest's RAM is mapped but not yet touched (the restore
	// below maps it from the template), so what it used before the move
	// and stays charged to jevmd's cgroup is a few MiB.
	if err := p.joinCgroup(m.cg, spec, proc.pid); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(spec.StateDir, pidFileName), []byte(strconv.Itoa(proc.pid)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}

	m.mon, err = dialQMP(ctx, cfg.QMPSock, proc.exited)
	if err != nil {
		return nil, proc.explain(err)
	}
	tQMP := time.Now()
	if err := m.mon.setIgnoreShared(ctx); err != nil {
		return nil, proc.explain(err)
	}
	if from != nil {
		// The checkpoint's hot-plugged NICs, where they were: the
		// device state describes them.
		for _, h := range from.nics {
			if err := m.addNICAt(ctx, h.nic, h.slot); err != nil {
				return nil, proc.explain(err)
			}
		}
	}
	if from != nil && from.stream != nil {
		err = m.mon.incomingFrom(ctx, from.stream)
	} else {
		err = m.mon.restoreFrom(ctx, statePath)
	}
	if err != nil {
		return nil, proc.explain(err)
	}
	if err := m.mon.waitMigration(ctx, proc.exited); err != nil {
		return nil, proc.explain(err)
	}
	tRestored := time.Now()
	// Connect the agent channel before the guest runs, so that it finds
	// the host connected as it was when the template was snapshotted.
	conn, err = dialAgent(ctx, cfg.AgentSock, proc.exited)
	if err != nil {
		return nil, proc.explain(err)
	}
	if from == nil || !from.paused {
		if err := m.mon.run(ctx, "cont", nil, nil); err != nil {
			return nil, proc.explain(err)
		}
	}
	// Shares beyond the pre-plugged ones are hot-plugged (shares.go).
	tPlug := time.Now()
	if err := m.plugShares(ctx, spec.Shares); err != nil {
		return nil, proc.explain(err)
	}
	if len(spec.Shares) > 0 {
		log = log.WithField("sharesPlugged", time.Since(tPlug).Round(time.Millisecond))
	}
	// NICs after the first are hot-plugged too (nics.go); a restore's
	// are there already.
	if from == nil {
		if err := m.plugNICs(ctx, spec.NICs); err != nil {
			return nil, proc.explain(err)
		}
	}
	m.agent = conn
	go func() {
		<-proc.exited
		close(m.exited)
	}()
	go m.watch()
	log.WithFields(logrus.Fields{
		"qmp":      tQMP.Sub(t0).Round(time.Millisecond),
		"restore":  tRestored.Sub(tQMP).Round(time.Millisecond),
		"total":    time.Since(t0).Round(time.Millisecond),
		"rootDisk": spec.RootDisk,
	}).Info("clone started")
	return m, nil
}

// livePid finds the QEMU started for spec.ID: the pid file's process if
// it is that QEMU, else (pid file lost) any process named for the ID, so
// that a VM is never started twice on one disk nor leaked by Adopt.
func (p *Provider) livePid(spec vmbackend.MachineSpec, name string) (int, bool) {
	if pid, ok := pidFromFile(spec.StateDir, name); ok {
		return pid, true
	}
	// Only a QEMU of this daemon's: another jevmd on the machine (a
	// migration's source or target on the same host, other data roots)
	// runs VMs of the same name.
	return findProcessByName(name, qmpChardevPath(spec.StateDir))
}

// qmpChardevPath is how a machine's QEMU command line names its QMP
// socket (cmdline.go).
func qmpChardevPath(stateDir string) string {
	return "path=" + qemuOptEscape(filepath.Join(stateDir, qmpSockName)) + ","
}

// pidFromFile returns the VM's pid if its pid file names a live QEMU of
// this VM.
func pidFromFile(stateDir, name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(stateDir, pidFileName))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if ok, _ := procCmdlineHasName(pid, name); ok {
		return pid, true
	}
	return 0, false
}

// findProcessByName scans /proc for a process with "-name name" on its
// command line and, if arg is not empty, an argument containing arg.
func findProcessByName(name, arg string) (int, bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if ok, _ := procCmdlineHasName(pid, name); !ok {
			continue
		}
		if ok, _ := procCmdlineHasArg(pid, arg); ok || arg == "" {
			return pid, true
		}
	}
	return 0, false
}

// identity is the ids m's QEMU runs as.
func (m *machine) identity() vmIdentity {
	if m.proc != nil {
		return m.proc.id
	}
	return m.adoptedID
}

// Adopt implements vmbackend.Provider: reconnect to a clone a previous
// daemon started (it runs in its own session and survived).
func (p *Provider) Adopt(ctx context.Context, spec vmbackend.MachineSpec) (_ vmbackend.Machine, err error) {
	if err := p.checkSpec(spec); err != nil {
		return nil, fmt.Errorf("qemu: adopt: %w", err)
	}
	log := p.log.WithField("container", spec.ID)
	notRunning := func(why string) error {
		removeStateFiles(spec.StateDir, 0)
		// Its cgroup goes with it (if it is empty; otherwise the sweep
		// of the next start takes it).
		if p.cg != nil {
			if g, err := p.cg.Group(spec.ID); err == nil {
				if pids, _ := g.Procs(); len(pids) == 0 {
					removeCgroup(g, log)
				}
			}
		}
		return fmt.Errorf("qemu: adopt %s: %s: %w", spec.ID, why, vmbackend.ErrNotRunning)
	}
	name := adoptName(spec)
	pid, alive := p.livePid(spec, name)
	if !alive {
		return nil, notRunning("no qemu process")
	}
	// Pin the process with a pidfd, then check again that it is ours (the
	// pid could have been reused in between).
	pidfd, err := pidfdOpen(pid)
	if err != nil {
		return nil, notRunning("no qemu process")
	}
	if ok, _ := procCmdlineHasName(pid, name); !ok {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		return nil, notRunning("no qemu process")
	}
	log = log.WithField("pid", pid)
	m := &machine{
		p: p, id: spec.ID, name: name, spec: spec, pid: pid, log: log, pidfd: pidfd,
		exited: make(chan struct{}), done: make(chan struct{}),
	}
	if r, ok := readClaimRecord(spec.StateDir); ok {
		m.nic0MAC = r.NIC0MAC
	}
	if err := p.register(m); err != nil {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		return nil, fmt.Errorf("qemu: adopt %s: %w", spec.ID, err)
	}
	go watchPid(pid, pidfd, name, m.exited)
	if u := p.user; u != nil {
		// Its ids stay taken while it runs. One outside the range is
		// an older daemon's QEMU, running as the VM user itself.
		m.adoptedID = u.own()
		if uid, err := procUID(pid); err == nil {
			if id, ok := u.ids.hold(uid); ok {
				m.adoptedID = id
				go func() { <-m.exited; u.ids.give(id) }()
			}
		}
	}
	defer func() {
		if err != nil {
			if m.mon != nil {
				m.mon.close()
			}
			// The watcher works on its own duplicate of the pidfd.
			if m.pidfd >= 0 {
				unix.Close(m.pidfd)
				m.pidfd = -1
			}
			p.unregister(m.id, m)
			if !errors.Is(err, vmbackend.ErrNotRunning) {
				err = fmt.Errorf("qemu: adopt %s: %w", spec.ID, err)
			}
		}
	}()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A VM that answers neither QMP nor its agent socket cannot be
	// controlled: kill it rather than leak it (unless our caller gave up,
	// which says nothing about the VM).
	unusable := func(err error) error {
		if ctx.Err() == nil {
			log.WithError(err).Warn("killing unusable qemu")
			m.killHalfMade()
		}
		return err
	}
	m.mon, err = dialQMP(qctx, filepath.Join(spec.StateDir, qmpSockName), m.exited)
	if err != nil {
		return nil, unusable(err)
	}
	st, err := m.mon.queryStatus(qctx)
	if err != nil {
		return nil, unusable(err)
	}
	switch {
	case st.Status == "postmigrate" && spec.ResumeUncommittedMigration:
		// Sent to a target that was never told to run it: it goes on
		// here ("cont" takes its disks back from the finished migration).
		if err := m.mon.run(qctx, "cont", nil, nil); err != nil {
			return nil, unusable(fmt.Errorf("resume after an uncommitted migration: %w", err))
		}
		log.Warn("resumed a VM whose outgoing migration was not handed over")
		st.Status = "running"
	case slices.Contains([]string{"inmigrate", "prelaunch", "postmigrate", "internal-error", "shutdown", "guest-panicked"}, st.Status):
		// A Start the previous daemon did not finish, a VM migrated
		// away, or a dead guest.
		m.killHalfMade()
		return nil, notRunning("qemu in state " + st.Status)
	}
	conn, err := dialAgent(qctx, filepath.Join(spec.StateDir, agentSockName), m.exited)
	if err != nil {
		return nil, unusable(err)
	}
	m.agent = conn
	// The VM keeps its cgroup (or gets one, if an older daemon started it
	// without), with the limits of its spec.
	if g, err := p.createCgroup(spec); err != nil {
		log.WithError(err).Warn("adopted VM runs without its cgroup")
	} else if err := p.joinCgroup(g, spec, pid); err != nil {
		log.WithError(err).Warn("adopted VM runs without its cgroup")
	} else {
		m.cg = g
	}
	pidPath := filepath.Join(spec.StateDir, pidFileName)
	if b, _ := os.ReadFile(pidPath); strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		// Found by name: put the pid file back for the next restart.
		if err := atomicfile.WriteFile(pidPath, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			log.WithError(err).Warn("cannot rewrite pid file")
		}
	}
	go m.watch()
	log.WithField("status", st.Status).Info("adopted running clone")
	return m, nil
}

// killHalfMade kills an adopted QEMU that cannot be used and waits for it.
func (m *machine) killHalfMade() {
	_ = m.sigkill()
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
	}
	removeStateFiles(m.spec.StateDir, m.pid)
	if m.p.cg != nil {
		if g, err := m.p.cg.Group(m.id); err == nil {
			removeCgroup(g, m.log)
		}
	}
}
