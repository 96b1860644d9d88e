//go:build linux

package guestagent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Resource limits (docker run --ulimit). os/exec cannot set a child's
// rlimits, and prlimit(2) on the child races with its program. So a process
// with rlimits (and the main process, which mounts its PID namespace's
// proc: pidns_linux.go) is started through the exec helper: the agent re-executes
// itself (/proc/self/exe) with argv[0] execHelperArg0; the helper, still
// root and outside the container, chroots into the container, changes to
// the working directory, sets the rlimits, drops to the container user and
// execve(2)s the program in its own process: the pid the agent registered
// is the program's, and no instruction of the program runs before its
// limits are in place (as with runc, where the init process sets them).
//
// The helper reports a failure before the execve on fd 3 (close-on-exec),
// as one JSON helperFailure, and exits; the agent reads fd 3 to its end:
// nothing means the execve happened. This is how Go's own fork/exec reports
// a failed exec.
//
// RLIMIT_NOFILE: the Go runtime raises its soft limit to the hard one at
// start and restores the original in the children it starts (os/exec) and
// in syscall.Exec, unless the program set RLIMIT_NOFILE itself through
// syscall.Setrlimit. The helper uses syscall.Setrlimit and syscall.Exec, so
// the program gets the nofile limit it was given, or else the agent's
// original one (what a process started without the helper gets), never
// the runtime's raised soft limit.

// execHelperArg0 is argv[0] of the agent re-executed as the exec helper.
const execHelperArg0 = "jevm-agent-exec"

// helperStatusFd is the helper's fd to report a failure on.
const helperStatusFd = 3

// rlimitResources maps docker's ulimit names (agentproto.RlimitNames) to
// the kernel's resources.
var rlimitResources = map[string]int{
	"core":       unix.RLIMIT_CORE,
	"cpu":        unix.RLIMIT_CPU,
	"data":       unix.RLIMIT_DATA,
	"fsize":      unix.RLIMIT_FSIZE,
	"locks":      unix.RLIMIT_LOCKS,
	"memlock":    unix.RLIMIT_MEMLOCK,
	"msgqueue":   unix.RLIMIT_MSGQUEUE,
	"nice":       unix.RLIMIT_NICE,
	"nofile":     unix.RLIMIT_NOFILE,
	"nproc":      unix.RLIMIT_NPROC,
	"rss":        unix.RLIMIT_RSS,
	"rtprio":     unix.RLIMIT_RTPRIO,
	"rttime":     unix.RLIMIT_RTTIME,
	"sigpending": unix.RLIMIT_SIGPENDING,
	"stack":      unix.RLIMIT_STACK,
}

// helperRlimit is one limit as the helper sets it.
type helperRlimit struct {
	Name     string `json:"name"`
	Resource int    `json:"resource"`
	Soft     uint64 `json:"soft"`
	Hard     uint64 `json:"hard"`
}

// convertRlimits checks the requested limits and maps their names.
func convertRlimits(rls []agentproto.Rlimit) ([]helperRlimit, error) {
	out := make([]helperRlimit, 0, len(rls))
	for _, rl := range rls {
		res, ok := rlimitResources[rl.Name]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit type %q", rl.Name)
		}
		if rl.Soft > rl.Hard {
			return nil, fmt.Errorf("rlimit %s: soft limit %s is above the hard limit %s", rl.Name, rlimitString(rl.Soft), rlimitString(rl.Hard))
		}
		out = append(out, helperRlimit{Name: rl.Name, Resource: res, Soft: rl.Soft, Hard: rl.Hard})
	}
	return out, nil
}

func rlimitString(v uint64) string {
	if v == agentproto.RlimitInfinity {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

// execHelperSpec is what the helper does before its execve; argv[1] of the
// helper. The program's argv (NArgs strings) and environment follow it as
// the helper's further arguments, so the helper's own environment stays
// clean of the container's (GODEBUG, GOGC, ... would steer its runtime).
type execHelperSpec struct {
	// Root is chrooted into ("" for none), then Dir is the working
	// directory.
	Root string `json:"root,omitempty"`
	Dir  string `json:"dir"`
	// Path is the program, as seen inside Root.
	Path  string `json:"path"`
	NArgs int    `json:"nargs"`
	// Rlimits are set in order, before the credentials change.
	Rlimits []helperRlimit `json:"rlimits,omitempty"`
	// Capabilities is the bounding set, dropped after the rlimits (raising
	// a hard limit needs CAP_SYS_RESOURCE) and before the credentials
	// change; nil keeps every capability.
	Capabilities *[]string `json:"capabilities,omitempty"`
	// Credential switches to UID, GID and Groups (as os/exec's
	// SysProcAttr.Credential: setgroups, setgid, setuid).
	Credential bool     `json:"credential,omitempty"`
	UID        uint32   `json:"uid"`
	GID        uint32   `json:"gid"`
	Groups     []uint32 `json:"groups,omitempty"`
	// MountProc, set when the helper is PID 1 of a new PID namespace (the
	// container's main process, pidns_linux.go), is where it mounts a
	// proc of its namespace (the container's /proc, as the agent sees
	// it) before the chroot.
	MountProc string `json:"mountProc,omitempty"`
	// MountMqueue, set when the helper is in an IPC namespace of its own
	// (a joined container's process), is where it mounts an mqueue of
	// that namespace (the container's /dev/mqueue) before the chroot.
	MountMqueue string `json:"mountMqueue,omitempty"`
	// IsolateRoot (a container's own process) gives the helper a mount
	// namespace of its own, where Root is the only file system instead of
	// a chroot: every other mount is detached and Root is moved over /
	// (mountns_linux.go). MountProc and MountMqueue are mounted there.
	IsolateRoot bool `json:"isolateRoot,omitempty"`
	// JoinMountNSFd, if not 0, is the helper's fd of a mount namespace to
	// join first (an exec in a joined container); Root is then "".
	JoinMountNSFd int `json:"joinMountNsFd,omitempty"`
	// Paths are masked and made read-only after the chroot (a
	// container's own process: confine_linux.go).
	Paths pathConfinement `json:"paths,omitempty"`
	// NoNewPrivs sets no_new_privs; Seccomp (a struct sock_filter array)
	// is installed with SeccompFlags right before the execve, or, without
	// no_new_privs, before the credentials change (it needs CAP_SYS_ADMIN
	// then), as runc does.
	NoNewPrivs   bool   `json:"noNewPrivs,omitempty"`
	Seccomp      []byte `json:"seccomp,omitempty"`
	SeccompFlags uint32 `json:"seccompFlags,omitempty"`
}

// helperFailure is the helper's report of a failed step.
type helperFailure struct {
	Stage    string `json:"stage"` // spec, mountns, proc, chroot, paths, chdir, rlimit, capabilities, seccomp, credential, exec
	Errno    int    `json:"errno,omitempty"`
	Message  string `json:"message"`
	Resource int    `json:"resource,omitempty"` // stage rlimit
}

// helperError is a helper failure as the agent reports it.
type helperError struct {
	msg   string
	errno syscall.Errno
	exec  bool // the execve failed (the command), not the set-up
}

func (e *helperError) Error() string { return e.msg }
func (e *helperError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

// helperCommand is how the agent runs its exec helper.
type helperCommand struct {
	Path string   // the agent's binary
	Argv []string // the helper's argv before the spec
	Env  []string // the helper's own environment
}

// agentHelper is the agent re-executing itself.
func agentHelper() helperCommand {
	self := "/proc/self/exe"
	if _, err := os.Stat(self); err != nil {
		self = os.Args[0]
	}
	return helperCommand{Path: self, Argv: []string{execHelperArg0}, Env: []string{}}
}

// startWithHelper starts args (environment env) through the exec helper
// as spec says. files and sys (session, terminal) are for the helper
// process, which becomes the program; sys must not chroot, change
// credentials or set Dir: the helper does. It returns once the program's
// execve succeeded, or with the error that prevented it.
//
// extra are the helper's further files, from helperStatusFd+1 on (a
// namespace it joins).
func startWithHelper(hc helperCommand, spec execHelperSpec, args, env []string, files []*os.File, sys *syscall.SysProcAttr, extra ...*os.File) (*os.Process, error) {
	spec.NArgs = len(args)
	js, err := json.Marshal(&spec)
	if err != nil {
		return nil, err
	}
	argv := make([]string, 0, len(hc.Argv)+1+len(args)+len(env))
	argv = append(argv, hc.Argv...)
	argv = append(argv, string(js))
	argv = append(argv, args...)
	argv = append(argv, env...)

	sr, sw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer sr.Close()
	if len(files) != helperStatusFd {
		sw.Close()
		return nil, fmt.Errorf("exec helper: %d files given, want stdin, stdout and stderr", len(files))
	}
	fds := append(append(append(make([]*os.File, 0, helperStatusFd+1+len(extra)), files...), sw), extra...)
	env0 := hc.Env
	if env0 == nil {
		env0 = []string{}
	}
	p, err := os.StartProcess(hc.Path, argv, &os.ProcAttr{Env: env0, Files: fds, Sys: sys})
	sw.Close()
	if err != nil {
		return nil, fmt.Errorf("start exec helper: %w", err)
	}
	b, rerr := io.ReadAll(sr)
	if len(bytes.TrimSpace(b)) == 0 {
		if rerr != nil {
			p.Kill()
			return p, fmt.Errorf("exec helper: %w", rerr)
		}
		return p, nil // execve succeeded: the pipe closed with it
	}
	return p, helperResult(b, spec)
}

// helperResult is the error a helper's failure report b stands for.
func helperResult(b []byte, spec execHelperSpec) error {
	var f helperFailure
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("exec helper: %s", strings.TrimSpace(string(b)))
	}
	e := &helperError{msg: f.Message, errno: syscall.Errno(f.Errno)}
	switch f.Stage {
	case "exec":
		// As os.StartProcess reports it (spawn's direct path).
		e.msg = fmt.Sprintf("exec %s: %v", spec.Path, e.errno)
		e.exec = true
	case "rlimit":
		if f.Resource == unix.RLIMIT_NOFILE && e.errno == unix.EPERM {
			if max, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
				e.msg += fmt.Sprintf(" (the kernel allows at most %s open files: fs.nr_open)", strings.TrimSpace(string(max)))
			}
		}
	}
	return e
}

// execHelperMain is the exec helper (argv[0] execHelperArg0); args are its
// arguments: the spec, then the program's argv and environment. It does
// not return.
func execHelperMain(args []string) {
	unix.CloseOnExec(helperStatusFd)
	if len(args) == 1 && args[0] == zygoteArg {
		zygoteMain() // zygote_linux.go: does not return
	}
	fail := func(f helperFailure) {
		b, _ := json.Marshal(&f)
		unix.Write(helperStatusFd, append(b, '\n'))
		os.Exit(127)
	}
	if len(args) == 0 {
		fail(helperFailure{Stage: "spec", Errno: int(unix.EINVAL), Message: "exec helper: no spec"})
	}
	var spec execHelperSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		fail(helperFailure{Stage: "spec", Errno: int(unix.EINVAL), Message: "exec helper: " + err.Error()})
	}
	rest := args[1:]
	if spec.NArgs < 1 || spec.NArgs > len(rest) {
		fail(helperFailure{Stage: "spec", Errno: int(unix.EINVAL), Message: "exec helper: bad argument count"})
	}
	helperWithSpec(spec, rest[:spec.NArgs], rest[spec.NArgs:])
}

// helperWithSpec is the helper's work once it has its spec: it does not
// return (the program runs, or the failure is reported on helperStatusFd
// and the helper exits).
func helperWithSpec(spec execHelperSpec, argv, env []string) {
	fail := func(f helperFailure) {
		b, _ := json.Marshal(&f)
		unix.Write(helperStatusFd, append(b, '\n'))
		os.Exit(127)
	}
	failErr := func(stage string, err error, msg string) {
		var errno syscall.Errno
		errors.As(err, &errno)
		fail(helperFailure{Stage: stage, Errno: int(errno), Message: msg})
	}

	if spec.IsolateRoot {
		// A mount namespace of the thread's own, where it mounts, isolates
		// the root and execs: the other threads stay in the agent's.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			failErr("mountns", err, fmt.Sprintf("unshare the mount namespace: %v", err))
		}
	}
	if spec.JoinMountNSFd != 0 {
		// The mount namespace is the thread's (with its root and working
		// directory, once CLONE_FS is undone): the execve must come from
		// this one.
		runtime.LockOSThread()
		if err := joinMountNamespace(spec.JoinMountNSFd); err != nil {
			failErr("mountns", err, err.Error())
		}
	}
	if spec.MountProc != "" {
		// The namespace's init until the execve: a signal the agent
		// forwards now (docker stop) would end the Go runtime, where the
		// program, with its default disposition, would not see it.
		// Caught (never SIG_IGN, which the program would inherit) and
		// dropped; the execve resets caught signals to the default.
		signal.Notify(make(chan os.Signal, 1))
		if err := syscall.Mount("proc", spec.MountProc, "proc", procMountFlags, ""); err != nil {
			failErr("proc", err, fmt.Sprintf("mount proc on /proc: %v", err))
		}
	}
	if spec.MountMqueue != "" {
		const common = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
		if err := syscall.Mount("mqueue", spec.MountMqueue, "mqueue", common, ""); err != nil {
			failErr("proc", err, fmt.Sprintf("mount mqueue on /dev/mqueue: %v", err))
		}
	}
	switch {
	case spec.Root != "" && spec.IsolateRoot:
		if err := isolateRoot(spec.Root); err != nil {
			failErr("chroot", err, err.Error())
		}
	case spec.Root != "":
		if err := syscall.Chroot(spec.Root); err != nil {
			failErr("chroot", err, fmt.Sprintf("chroot %s: %v", spec.Root, err))
		}
	}
	if !spec.Paths.empty() {
		if err := applyPathConfinement(spec.Paths); err != nil {
			failErr("paths", err, err.Error())
		}
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	if err := syscall.Chdir(dir); err != nil {
		failErr("chdir", err, fmt.Sprintf("chdir to cwd (%q) set in config.json failed: %v", dir, err))
	}
	// As root, before the switch to the container's user: raising a hard
	// limit needs CAP_SYS_RESOURCE. syscall.Setrlimit (not a raw
	// prlimit) also tells syscall.Exec not to restore the Go runtime's
	// original RLIMIT_NOFILE over the one set here.
	for _, rl := range spec.Rlimits {
		if err := syscall.Setrlimit(rl.Resource, &syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			var errno syscall.Errno
			errors.As(err, &errno)
			fail(helperFailure{Stage: "rlimit", Errno: int(errno), Resource: rl.Resource,
				Message: fmt.Sprintf("error setting rlimit type %d (%s=%s:%s): %v", rl.Resource, rl.Name, rlimitString(rl.Soft), rlimitString(rl.Hard), err)})
		}
	}
	if spec.Capabilities != nil {
		// The bounding set is per thread: the execve below must come from
		// this one.
		runtime.LockOSThread()
		if err := dropCapabilities(*spec.Capabilities); err != nil {
			fail(helperFailure{Stage: "capabilities", Errno: int(unix.EPERM), Message: err.Error()})
		}
	}
	if spec.NoNewPrivs || spec.Seccomp != nil {
		// A filter, like the bounding set, is the thread's: the execve
		// must come from this one.
		runtime.LockOSThread()
	}
	if spec.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			failErr("seccomp", err, fmt.Sprintf("set no_new_privs: %v", err))
		}
	}
	installFilter := func() {
		if spec.Seccomp != nil {
			if err := installSeccomp(spec.Seccomp, spec.SeccompFlags); err != nil {
				failErr("seccomp", err, err.Error())
			}
		}
	}
	if !spec.NoNewPrivs {
		installFilter()
	}
	if spec.Credential {
		groups := make([]int, len(spec.Groups))
		for i, g := range spec.Groups {
			groups[i] = int(g)
		}
		if err := syscall.Setgroups(groups); err != nil {
			failErr("credential", err, fmt.Sprintf("setgroups: %v", err))
		}
		if err := syscall.Setgid(int(spec.GID)); err != nil {
			failErr("credential", err, fmt.Sprintf("setgid %d: %v", spec.GID, err))
		}
		if err := syscall.Setuid(int(spec.UID)); err != nil {
			failErr("credential", err, fmt.Sprintf("setuid %d: %v", spec.UID, err))
		}
	}
	if spec.NoNewPrivs {
		installFilter()
	}
	err := syscall.Exec(spec.Path, argv, env)
	failErr("exec", err, fmt.Sprintf("exec %s: %v", spec.Path, err))
}
