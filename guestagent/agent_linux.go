//go:build linux

package guestagent

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// BuildID identifies the agent build in Hello. It may be set at link time
// (-ldflags "-X github.com/jevm/jevm/guestagent.BuildID=..."); by default
// it is derived from the Go build information.
var BuildID = ""

// Where things live in the guest.
const (
	containerRoot = "/mnt/root"          // the container's root filesystem
	runDir        = "/run/jevm"          // tmpfs: files bind-mounted into the container
	moduleOrder   = "/lib/modules/ORDER" // written by vmbackend/initramfs
	consolePath   = "/dev/console"
)

// Phases reported in Hello.
const (
	phaseIdle    = "idle"
	phaseRunning = "running"
	phaseExited  = "exited"
)

type agent struct {
	debug  bool
	kernel string
	build  string
	start  time.Time

	console *os.File
	logMu   sync.Mutex

	port *port
	w    *agentproto.Writer

	// mu guards the fields below and is held by the reaper while it reaps,
	// and by whoever starts a process until its pid is registered, so that
	// no exit is reaped before its process is known.
	mu          sync.Mutex
	phase       string
	exit        *agentproto.ExitStatus
	procs       map[uint32]*proc // by stream
	byPid       map[int]*proc
	rootMounted bool
	shutdown    bool
	// hold: the host asked to keep the VM up after the main process
	// exits (StartRequest.HoldAfterExit); Shutdown powers it off.
	hold bool
	// execExitsSending counts execs' exits being sent (proc_linux.go).
	execExitsSending int
	mainExiting      bool     // the main process exited: no more execs (exec_linux.go)
	pidns            *os.File // the main process's PID namespace, which execs join (pidns_linux.go); nil with --pid host
	mntns            *os.File // the main process's mount namespace, which execs join (mountns_linux.go)
	// mainName is the main container's name (StartRequest.Container;
	// empty from a host that predates pods).
	mainName string
	// joined are the containers that joined the VM, running or exited
	// since, by name (pods_linux.go).
	joined map[string]*podCtr
	// cgroupOnce mounts the guest's cgroup2 hierarchy for the agent
	// (cgroupRoot); cgroupErr is why it could not.
	cgroupOnce      sync.Once
	cgroupErr       error
	controllersOnce sync.Once
	// joinMu makes joins set up one at a time (pods_linux.go).
	joinMu sync.Mutex
	// podShares are the pod shares mounted for joined containers' mounts,
	// by tag (mountPodShare); guarded by joinMu.
	podShares map[string]string
	// mainHeld: the main container's processes are held for a
	// checkpoint (hold_linux.go): execs into it are refused. holdMu
	// makes holds and releases one at a time.
	mainHeld bool
	holdMu   sync.Mutex
	// heldCgroups are the cgroups of the main container's own that the
	// hold froze (guarded by holdMu).
	heldCgroups []string
	// zyg is the main process's helper, forked at boot (zygote_linux.go);
	// nil once taken.
	zyg       *zygote
	powerOnce sync.Once
}

// Main runs the agent. It does not return: the VM powers off.
func Main() {
	if len(os.Args) > 0 && os.Args[0] == execHelperArg0 {
		execHelperMain(os.Args[1:]) // rlimit_linux.go
	}
	a := &agent{
		start:  time.Now(),
		phase:  phaseIdle,
		procs:  map[uint32]*proc{},
		byPid:  map[int]*proc{},
		joined: map[string]*podCtr{},
		build:  buildID(),
	}
	defer func() {
		if r := recover(); r != nil {
			a.logf("panic: %v\n%s", r, debug.Stack())
			a.powerOff()
		}
	}()
	a.boot()
	a.serve()
}

// idleSettings turn off the guest kernel's periodic work that wakes an
// idle VM: under TCG every wake-up is host CPU, and a host holds hundreds
// of idle jeVMs. Measured 2026-12-05 over 20 s of an idle clone (timer
// tracepoints): kcompactd's proactive compaction check every 500 ms,
// vmstat's per-CPU counter folding every second and the block layer's
// writeback-throttling statistics timer; local timer interrupts went from
// 7 to 4.4 a second. A VM has one workload and its memory is the
// template's, so proactive compaction buys nothing; per-CPU counters
// still fold when they pass their thresholds; the disk is a virtual one
// the host throttles if anything.
var idleSettings = []struct{ path, value string }{
	{"/proc/sys/vm/compaction_proactiveness", "0"},
	{"/proc/sys/vm/stat_interval", "10"},
}

// quietIdle applies idleSettings, and drops writeback throttling on the
// virtio disks present at boot (the root disk's device, which clones
// keep).
func (a *agent) quietIdle() {
	settings := idleSettings
	wbt, _ := filepath.Glob("/sys/block/vd*/queue/wbt_lat_usec")
	for _, p := range wbt {
		settings = append(settings, struct{ path, value string }{p, "0"})
	}
	for _, s := range settings {
		if err := os.WriteFile(s.path, []byte(s.value), 0o644); err != nil {
			a.debugf("%s: %v", s.path, err)
		}
	}
}

func buildID() string {
	if BuildID != "" {
		return BuildID
	}
	id := "jevm-agent"
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			id += "/" + rev
			if dirty {
				id += "-dirty"
			}
		}
		id += " " + bi.GoVersion
	}
	return id
}

// logf writes a diagnostic line to the console (the host's console log).
func (a *agent) logf(format string, args ...any) {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	line := fmt.Sprintf("jevm-agent: "+format+"\n", args...)
	if a.console != nil {
		a.console.WriteString(line)
	} else {
		os.Stderr.WriteString(line)
	}
}

func (a *agent) debugf(format string, args ...any) {
	if a.debug {
		a.logf(format, args...)
	}
}

// consoleLine writes a raw marker line to the console.
func (a *agent) consoleLine(s string) {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	f := a.console
	if f == nil {
		f = os.Stderr
	}
	f.WriteString(s + "\n")
	f.Sync()
}

func (a *agent) boot() {
	for _, m := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.typ, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			a.logf("mount %s: %v", m.dir, err)
		}
	}
	// The kernel gave PID 1 the initramfs's /dev/console (if any); use the
	// devtmpfs one from now on, also for the Go runtime's own messages.
	if f, err := os.OpenFile(consolePath, os.O_RDWR|unix.O_NOCTTY, 0); err == nil {
		a.console = f
		for fd := 0; fd <= 2; fd++ {
			unix.Dup3(int(f.Fd()), fd, 0)
		}
	}
	os.MkdirAll(runDir, 0o755)
	os.MkdirAll(containerRoot, 0o755)

	cmdline, _ := os.ReadFile("/proc/cmdline")
	params := map[string]string{}
	for _, f := range strings.Fields(string(cmdline)) {
		k, v, _ := strings.Cut(f, "=")
		params[k] = v
	}
	a.debug = params["jevm.debug"] == "1"
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		a.kernel = unix.ByteSliceToString(uts.Release[:])
	}
	os.Setenv("PATH", "/bin:/sbin")

	t := time.Now()
	a.loadModules()
	a.debugf("modules loaded in %v", time.Since(t).Round(time.Millisecond))
	if err := linkUp("lo"); err != nil {
		a.logf("lo: %v", err)
	}
	a.quietIdle()

	if params["jevm.probe"] == "1" {
		a.consoleLine(agentproto.ConsoleProbeOK)
		a.powerOff()
	}

	// Reap from now on: nothing is started before this point.
	sigch := make(chan os.Signal, 1)
	signal.Notify(sigch, unix.SIGCHLD)
	go a.reaper(sigch)
	// Before the port opens, so before the template is snapshotted.
	a.startZygote()
	// Catch (and drop) the signals whose Go default would end PID 1 (a
	// panic). Not signal.Ignore: SIG_IGN would be inherited by the
	// container's processes through exec.
	termch := make(chan os.Signal, 4)
	signal.Notify(termch, unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	go func() {
		for s := range termch {
			a.debugf("ignoring signal %v", s)
		}
	}()

	p, err := openPort(agentproto.PortName, 60*time.Second)
	if err != nil {
		a.logf("%v", err)
		a.powerOff()
	}
	a.port = p
	a.w = agentproto.NewWriter(p)
	a.logf("%s up on %s, kernel %s, %v after agent start%s", a.build, p.path, a.kernel,
		time.Since(a.start).Round(time.Millisecond), uptime())
}

func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return ", uptime " + f[0] + "s"
}

// loadModules loads the modules listed in moduleOrder, in that order.
func (a *agent) loadModules() {
	f, err := os.Open(moduleOrder)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.logf("modules: %v", err)
		}
		return
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		p := strings.TrimSpace(s.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if !filepath.IsAbs(p) {
			p = "/" + p
		}
		t := time.Now()
		err := loadModule(p)
		switch {
		case err == nil:
			a.debugf("loaded %s (%v)", filepath.Base(p), time.Since(t).Round(time.Millisecond))
		case errors.Is(err, unix.EEXIST):
		default:
			a.logf("load module %s: %v", p, err)
		}
	}
}

func loadModule(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.FinitModule(fd, "", 0)
}

// linkUp sets a network interface up.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// serve reads the host's frames forever.
func (a *agent) serve() {
	for {
		r := agentproto.NewReader(a.port)
		for {
			f, err := r.ReadFrame()
			if err != nil {
				if errors.Is(err, agentproto.ErrBadMagic) || errors.Is(err, agentproto.ErrTooLarge) {
					a.debugf("resynchronising: %v", err)
					if err = r.Resync(); err == nil {
						continue
					}
				}
				if errors.Is(err, errDisconnected) {
					a.debugf("host disconnected")
					a.fileHostGone() // files_linux.go
				} else {
					a.logf("read: %v", err)
					time.Sleep(100 * time.Millisecond)
				}
				break // drop partial input; start on a fresh reader
			}
			a.handle(f)
		}
	}
}

func (a *agent) handle(f *agentproto.Frame) {
	switch f.Type {
	case agentproto.FrameMsg:
	case agentproto.FrameStdin, agentproto.FrameEOF:
		if a.handleFileFrame(f) { // files_linux.go
			return
		}
		a.mu.Lock()
		p := a.procs[f.Stream]
		a.mu.Unlock()
		if p != nil {
			if f.Type == agentproto.FrameEOF {
				p.closeStdin()
			} else {
				p.queueStdin(f.Payload)
			}
		}
		return
	default:
		a.debugf("ignoring frame type %d", f.Type)
		return
	}
	m, err := agentproto.DecodeMsg(f)
	if err != nil {
		a.logf("%v", err)
		return
	}
	a.debugf("<- %s id=%d stream=%d", m.Type, m.ID, f.Stream)
	if agentproto.IsFileMsg(m.Type) { // cp, export, diff, commit: files_linux.go
		a.handleFileMsg(f.Stream, m)
		return
	}
	switch m.Type {
	case agentproto.MsgHostHello:
		a.hello(m)
	case agentproto.MsgStart:
		a.handleStart(f.Stream, m)
	case agentproto.MsgExec:
		a.handleExec(f.Stream, m)
	case agentproto.MsgJoin:
		a.handleJoin(f.Stream, m) // pods_linux.go
	case agentproto.MsgFreeze, agentproto.MsgThaw:
		a.handleFreezeMsg(f.Stream, m) // hold_linux.go
	case agentproto.MsgCheckUser:
		go a.handleCheckUser(f.Stream, m)
	case agentproto.MsgTop:
		go a.handleTop(f.Stream, m)
	case agentproto.MsgStats:
		go a.handleStats(f.Stream, m)
	case agentproto.MsgInterfaceUp:
		go a.handleInterfaceUp(f.Stream, m)
	case agentproto.MsgRestored:
		go a.handleRestored(f.Stream, m)
	case agentproto.MsgSignal:
		a.handleSignal(f.Stream, m)
	case agentproto.MsgResize:
		a.reply(f.Stream, m, a.resize(f.Stream, m.Rows, m.Cols))
	case agentproto.MsgShutdown:
		a.handleShutdown(f.Stream, m)
	default:
		a.reply(f.Stream, m, fmt.Errorf("unknown request %q", m.Type))
	}
}

func (a *agent) send(stream uint32, m *agentproto.Msg) {
	if err := a.w.WriteMsg(stream, m); err != nil {
		a.logf("write %s: %v", m.Type, err)
	}
}

// reply answers request m with OK, or Error if err is set.
func (a *agent) reply(stream uint32, m *agentproto.Msg, err error) {
	r := &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID}
	if err != nil {
		// ErrCode: only the command errors of start and exec have one.
		r.Type, r.Message, r.ErrCode = agentproto.MsgError, err.Error(), processErrCode(err)
	}
	a.send(stream, r)
}

func (a *agent) hello(m *agentproto.Msg) {
	a.mu.Lock()
	h := &agentproto.Msg{
		Type:    agentproto.MsgHello,
		ID:      m.ID,
		Version: agentproto.Version,
		Nonce:   m.Nonce,
		Agent:   a.build,
		Kernel:  a.kernel,
		Phase:   a.phase,
	}
	if p := a.procs[agentproto.MainStream]; p != nil && a.phase == phaseRunning {
		h.Pid = p.pid
		h.StdinWindow = p.stdinFree()
	}
	if a.phase == phaseExited && a.exit != nil {
		e := *a.exit
		h.Exit = &e
	}
	h.Joined = a.joinedStates() // pods_linux.go
	a.mu.Unlock()
	if m.Version != 0 && m.Version != agentproto.Version {
		a.logf("host speaks protocol version %d, this agent %d", m.Version, agentproto.Version)
	}
	a.send(0, h)
}

// handleSignal signals the process of stream; a signal for the main
// process in its start-up is sent (and answered) once it is past it
// (pidns_linux.go), without holding up the frames that follow.
func (a *agent) handleSignal(stream uint32, m *agentproto.Msg) {
	a.mu.Lock()
	p := a.procs[stream]
	a.mu.Unlock()
	if p != nil && m.Signal > 0 && m.Signal <= 64 && a.holdSignal(p, m.Signal) {
		go func() {
			awaitStartup(p, m.Signal)
			a.reply(stream, m, a.signal(stream, m.Signal))
		}()
		return
	}
	a.reply(stream, m, a.signal(stream, m.Signal))
}

func (a *agent) signal(stream uint32, sig int) error {
	a.mu.Lock()
	p := a.procs[stream]
	a.mu.Unlock()
	if p == nil || p.pid == 0 {
		return errors.New("process not running")
	}
	if sig <= 0 || sig > 64 {
		return fmt.Errorf("invalid signal %d", sig)
	}
	if sig == int(unix.SIGKILL) {
		p.markKilled()
	}
	if err := unix.Kill(p.pid, unix.Signal(sig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errors.New("process not running")
		}
		return err
	}
	return nil
}

func (a *agent) resize(stream uint32, rows, cols uint16) error {
	a.mu.Lock()
	p := a.procs[stream]
	a.mu.Unlock()
	if p == nil {
		return errors.New("process not running")
	}
	return p.resize(rows, cols)
}

func (a *agent) handleShutdown(stream uint32, m *agentproto.Msg) {
	a.mu.Lock()
	a.shutdown = true
	running := a.phase == phaseRunning
	a.mu.Unlock()
	a.reply(stream, m, nil)
	if running {
		// The main process's exit completes the shutdown (Exit on its
		// stream, console marker, power off); make sure it happens.
		a.logf("shutdown requested: killing all processes")
		unix.Kill(-1, unix.SIGKILL)
		time.AfterFunc(10*time.Second, a.powerOff)
		return
	}
	a.mu.Lock()
	exiting := a.phase == phaseExited
	held := a.hold
	a.mu.Unlock()
	if !exiting || held {
		go a.powerOff()
	}
}

// handleCheckUser resolves an exec's user before the exec exists.
func (a *agent) handleCheckUser(stream uint32, m *agentproto.Msg) {
	user := ""
	if m.Process != nil {
		user = m.Process.User
	}
	root := containerRoot
	c, err := a.containerOf(m)
	if c != nil {
		root = c.root
	}
	if err == nil {
		_, err = resolveUser(root, user)
	}
	a.reply(stream, m, err)
}
