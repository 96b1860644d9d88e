package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// qemuProc is a QEMU process this daemon started.
type qemuProc struct {
	cmd     *exec.Cmd
	pid     int
	logPath string
	exited  chan struct{}
	waitErr error      // valid once exited is closed
	id      vmIdentity // the ids it runs as (vmids.go)
}

// spawn starts QEMU with cfg's command line, in its jail (jail.go); its
// stdout and stderr are appended to logPath. A detached process gets its
// own session so that it survives the daemon (clones); otherwise it is
// killed with the daemon (template builds).
func (p *Provider) spawn(cfg vmConfig, logPath string, detach bool) (*qemuProc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("qemu log: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- %s starting %s\n", time.Now().UTC().Format(time.RFC3339Nano), cfg.Name)
	jail, err := p.jailFor(cfg)
	if err != nil {
		return nil, err
	}
	// Opened here: the thread that forks QEMU is in the jail by then.
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()
	cmd := exec.Command(p.opts.QEMUPath, machineArgs(cfg)...)
	cmd.Stdin = devNull
	cmd.Stdout = logf
	cmd.Stderr = logf
	if detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	// Ids of its own (vmids.go), given back when it exited.
	var id vmIdentity
	giveID := func() {}
	if p.user != nil {
		if id, err = p.user.ids.take(); err != nil {
			return nil, err
		}
		giveID = func() { p.user.ids.give(id) }
	}
	p.user.apply(cmd.SysProcAttr, id)
	if err := p.user.grantTap(cfg.NICTap, id); err != nil {
		giveID()
		return nil, err
	}
	exited := make(chan struct{})
	var hold <-chan struct{}
	if !detach {
		hold = exited // Pdeathsig is the forking thread's (confine.go)
	}
	if err := startFiltered(jail.enter, cmd.Start, hold); err != nil {
		giveID()
		return nil, fmt.Errorf("start %s: %w", p.opts.QEMUPath, err)
	}
	q := &qemuProc{cmd: cmd, pid: cmd.Process.Pid, logPath: logPath, exited: exited, id: id}
	go func() {
		q.waitErr = cmd.Wait()
		giveID()
		close(q.exited)
	}()
	return q, nil
}

// kill SIGKILLs the process (if still running) and waits for it.
func (q *qemuProc) kill() {
	select {
	case <-q.exited:
		return
	default:
	}
	_ = q.cmd.Process.Signal(syscall.SIGKILL)
	<-q.exited
}

// wait waits up to grace (or ctx) for the process to exit by itself, then
// kills it.
func (q *qemuProc) wait(ctx context.Context, grace time.Duration) error {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-q.exited:
		return nil
	case <-t.C:
		q.kill()
		return fmt.Errorf("qemu did not exit within %s; killed", grace)
	case <-ctx.Done():
		q.kill()
		return ctx.Err()
	}
}

// explain adds QEMU's exit status and the tail of its log to err when QEMU
// has exited (which is usually why err happened).
func (q *qemuProc) explain(err error) error {
	select {
	case <-q.exited:
	case <-time.After(100 * time.Millisecond):
		return err
	}
	return fmt.Errorf("%w (qemu exited: %v; log: %s)", err, q.waitErr, fileTail(q.logPath, 800))
}

// fileTail returns the last n bytes of a file, trimmed, for error messages.
func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "(" + err.Error() + ")"
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	b := make([]byte, st.Size()-off)
	nr, _ := f.ReadAt(b, off)
	s := strings.TrimSpace(string(b[:nr]))
	if s == "" {
		return "(empty)"
	}
	if off > 0 {
		s = "..." + s
	}
	return strconv.Quote(s)
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(path string) {
	if f, err := os.Open(path); err == nil {
		_ = f.Sync()
		f.Close()
	}
}

func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}

// procCmdlineHasName reports whether /proc/pid/cmdline has "-name" followed
// by name, i.e. pid is the QEMU we started for that name.
func procCmdlineHasName(pid int, name string) (bool, error) {
	args, err := procCmdline(pid)
	for i := 0; i+1 < len(args); i++ {
		if string(args[i]) == "-name" && string(args[i+1]) == name {
			return true, nil
		}
	}
	return false, err
}

// procCmdlineHasArg reports whether an argument on /proc/pid/cmdline
// contains sub.
func procCmdlineHasArg(pid int, sub string) (bool, error) {
	args, err := procCmdline(pid)
	for _, arg := range args {
		if bytes.Contains(arg, []byte(sub)) {
			return true, nil
		}
	}
	return false, err
}

// procCmdline is pid's arguments; none, without an error, if it is gone.
func procCmdline(pid int) ([][]byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return nil, nil
		}
		return nil, err
	}
	return bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0}), nil
}

// readProcStats reads CPU time from /proc/pid/stat and RSS/PSS from
// /proc/pid/smaps_rollup.
func readProcStats(pid int) (cpu time.Duration, rss, pss uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	cpu, err = parseStatCPU(string(b))
	if err != nil {
		return 0, 0, 0, err
	}
	b, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, 0, 0, err
	}
	rss, pss = parseSmapsRollup(string(b))
	return cpu, rss, pss, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture we run on.
const clockTicks = 100

// parseStatCPU returns utime+stime from a /proc/pid/stat line. The comm
// field may contain spaces and parentheses, so fields are counted after the
// last ')'.
func parseStatCPU(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/pid/stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc/pid/stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/pid/stat: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// parseSmapsRollup returns the Rss and Pss lines (kB) in bytes.
func parseSmapsRollup(s string) (rss, pss uint64) {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			rss = v << 10
		case "Pss:":
			pss = v << 10
		}
	}
	return rss, pss
}

// pidfdOpen opens a pidfd for pid, or returns -1 if the kernel lacks it.
func pidfdOpen(pid int) (int, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return -1, err
		}
		return -1, nil // ENOSYS & co: fall back to polling /proc
	}
	return fd, nil
}
