//go:build linux

package guestagent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A process started on a thread that joined a PID namespace is in it: its
// PID there is not its PID here, its namespace is the target's, and the
// agent's own namespace (and later children) are untouched.
func TestStartOnThreadJoinsPIDNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	// The namespace's init: a shell that waits.
	init := exec.Command(sh, "-c", "read x")
	init.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID}
	stdin, err := init.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := init.Start(); err != nil {
		t.Skipf("cannot make a PID namespace here: %v", err)
	}
	defer func() { stdin.Close(); init.Wait() }()

	ns, err := openPIDNamespace(init.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	want, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(ns.Fd())))
	self, _ := os.Readlink("/proc/self/ns/pid")
	if want == self {
		t.Fatal("the child's PID namespace is the test's")
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// The child sleeps so that its namespace link can be read from here.
	p, err := startOnThread(func() (*os.Process, error) {
		return os.StartProcess(sh, []string{"sh", "-c", "echo $$; exec sleep 5"}, &os.ProcAttr{Files: []*os.File{nil, w, w}})
	}, joinPIDNamespace(ns))
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Kill(); p.Wait() }()
	buf := make([]byte, 64)
	n, _ := r.Read(buf)
	inner := strings.TrimSpace(string(buf[:n]))
	if inner == "" || inner == strconv.Itoa(p.Pid) {
		t.Fatalf("PID inside the namespace %q, outside %d: not in a namespace of its own", inner, p.Pid)
	}
	var got string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got, _ = os.Readlink("/proc/" + strconv.Itoa(p.Pid) + "/ns/pid"); got != "" {
			break
		}
	}
	if got != want {
		t.Fatalf("child's PID namespace %q, want %q", got, want)
	}
	// The test's other children stay in its namespace.
	later, err := exec.Command(sh, "-c", "readlink /proc/self/ns/pid").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(later)) != self {
		t.Fatalf("a later child is in %q, want %q", later, self)
	}
}

// The main process as the exec helper starts it: PID 1 of a new PID
// namespace, with a proc of that namespace at the container's /proc; like
// a runc container's init, it does not get a signal it has no handler for
// from outside, but SIGKILL, and does get one it traps.
func TestExecHelperPIDNamespaceInit(t *testing.T) {
	needRoot(t)
	busybox, err := exec.LookPath("busybox")
	if err != nil || !isStaticELF(busybox) {
		t.Skip("needs a static busybox")
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "proc"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "cat", "readlink", "sleep", "ls"} {
		os.Symlink("/bin/busybox", filepath.Join(root, "bin", a))
	}

	start := func(script string) (*os.Process, *os.File) {
		t.Helper()
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer devnull.Close()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		spec := execHelperSpec{Root: root, Dir: "/", Path: "/bin/sh", MountProc: filepath.Join(root, "proc")}
		// A mount namespace of its own (private: Go remounts / so), so
		// that the proc mount goes away with the process.
		sys := &syscall.SysProcAttr{Setsid: true, Cloneflags: unix.CLONE_NEWPID, Unshareflags: unix.CLONE_NEWNS}
		p, err := startWithHelper(testHelper(t), spec, []string{"sh", "-c", script}, []string{"PATH=/bin"},
			[]*os.File{devnull, w, w}, sys)
		w.Close()
		if err != nil {
			r.Close()
			if p != nil {
				p.Wait()
			}
			t.Fatal(err)
		}
		return p, r
	}
	readLine := func(r *os.File) string {
		t.Helper()
		var b []byte
		one := make([]byte, 1)
		for {
			n, err := r.Read(one)
			if n == 0 || err != nil || one[0] == '\n' {
				return string(b)
			}
			b = append(b, one[0])
		}
	}

	// PID 1, its own /proc, /proc/self resolves.
	p, r := start(`echo "$$ $(readlink /proc/self) $(cat /proc/1/cmdline | tr '\0' ' ')$(ls /proc | grep -c '^[0-9]')"; echo ready; sleep 100`)
	defer r.Close()
	if line := readLine(r); !strings.HasPrefix(line, "1 ") || !strings.Contains(line, "sh -c ") {
		t.Fatalf("inside the namespace: %q, want PID 1 and its command line", line)
	}
	if line := readLine(r); line != "ready" {
		t.Fatalf("got %q", line)
	}
	// SIGTERM without a trap: ignored. SIGKILL: killed.
	p.Signal(syscall.SIGTERM)
	exited := make(chan *os.ProcessState, 1)
	go func() { st, _ := p.Wait(); exited <- st }()
	select {
	case st := <-exited:
		t.Fatalf("the namespace's init died of a SIGTERM it has no handler for: %v", st)
	case <-time.After(500 * time.Millisecond):
	}
	p.Signal(syscall.SIGKILL)
	select {
	case st := <-exited:
		if ws := st.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("after SIGKILL: %v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGKILL did not end the namespace's init")
	}

	// With a trap: the trap runs.
	p, r = start(`trap "exit 42" TERM; echo ready; while true; do sleep 0.1; done`)
	defer r.Close()
	if line := readLine(r); line != "ready" {
		t.Fatalf("got %q", line)
	}
	p.Signal(syscall.SIGTERM)
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 42 {
		t.Fatalf("trapped SIGTERM: %v, want exit 42", st)
	}
}

func TestStatusSigMask(t *testing.T) {
	status := []byte("Name:\tsh\nSigBlk:\t0000000000000000\nSigCgt:\t0000000000004002\n")
	if m, ok := statusSigMask(status, "SigCgt"); !ok || m != 1<<(2-1)|1<<(15-1) {
		t.Fatalf("SigCgt %x %v", m, ok)
	}
	if _, ok := statusSigMask(status, "SigIgn"); ok {
		t.Fatal("a missing line was found")
	}
}

// awaitStartup returns as soon as the process catches the signal or waits
// for something, and otherwise at the end of the hold.
func TestAwaitStartup(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	run := func(script string) *proc {
		t.Helper()
		c := exec.Command(sh, "-c", script)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return &proc{pid: c.Process.Pid, stream: 1}
	}
	const term = int(syscall.SIGTERM)
	// Busy, no handler: held until signalHoldMax after its start.
	busy := run("while :; do :; done")
	busy.startedAt = time.Now().Add(-signalHoldMax + 300*time.Millisecond)
	t0 := time.Now()
	awaitStartup(busy, term)
	if d := time.Since(t0); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("busy process without a handler: held %v, want about 300ms", d)
	}
	// Busy with a trap: not held (once the trap is there).
	trapped := run("trap 'exit 5' TERM; while :; do :; done")
	trapped.startedAt = time.Now()
	time.Sleep(100 * time.Millisecond)
	t0 = time.Now()
	awaitStartup(trapped, term)
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Errorf("process with a handler: held %v", d)
	}
	// Sleeping: past its start-up.
	sleeping := run("exec sleep 100")
	sleeping.startedAt = time.Now()
	time.Sleep(100 * time.Millisecond)
	t0 = time.Now()
	awaitStartup(sleeping, term)
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Errorf("sleeping process: held %v", d)
	}
}
