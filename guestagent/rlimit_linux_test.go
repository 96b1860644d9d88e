//go:build linux

package guestagent

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// The exec helper runs in a re-executed test binary: TestExecHelperProcess
// becomes the helper when the environment says so.
const execHelperTestEnv = "JEVM_TEST_EXEC_HELPER"

func TestExecHelperProcess(t *testing.T) {
	if os.Getenv(execHelperTestEnv) != "1" {
		t.Skip("the exec helper of TestExecHelper*, not a test of its own")
	}
	for i, a := range os.Args {
		if a == "--" {
			execHelperMain(os.Args[i+1:])
		}
	}
	os.Exit(126)
}

func testHelper(t *testing.T) helperCommand {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return helperCommand{Path: self, Argv: []string{self, "-test.run=^TestExecHelperProcess$", "--"}, Env: []string{execHelperTestEnv + "=1"}}
}

// runHelper starts args through the helper as spec says and returns their
// output and exit status.
func runHelper(t *testing.T, spec execHelperSpec, args ...string) (string, error) {
	t.Helper()
	if spec.Path == "" {
		spec.Path = args[0]
	}
	if spec.Dir == "" {
		spec.Dir = "/"
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := startWithHelper(testHelper(t), spec, args, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "X=y"},
		[]*os.File{devnull, w, w}, &syscall.SysProcAttr{Setsid: true})
	w.Close()
	if p != nil {
		defer p.Wait()
	}
	if err != nil {
		return "", err
	}
	out, _ := readAll(r)
	st, werr := p.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	if !st.Success() {
		t.Fatalf("%q: %v; output %q", args, st, out)
	}
	return out, nil
}

func readAll(r *os.File) (string, error) {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String(), nil
		}
	}
}

func TestExecHelperRlimits(t *testing.T) {
	needRoot(t)
	rls, err := convertRlimits([]agentproto.Rlimit{
		{Name: "nofile", Soft: 1024, Hard: 2048},
		{Name: "nproc", Soft: 500, Hard: 600},
		{Name: "core", Soft: agentproto.RlimitInfinity, Hard: agentproto.RlimitInfinity},
		{Name: "stack", Soft: 4 << 20, Hard: 16 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := runHelper(t, execHelperSpec{Rlimits: rls}, "/bin/sh", "-c", `ulimit -n; ulimit -Hn; ulimit -p; ulimit -Hp; ulimit -c; ulimit -s; ulimit -Hs; echo $X; pwd`)
	if err != nil {
		t.Fatal(err)
	}
	if want := "1024\n2048\n500\n600\nunlimited\n4096\n16384\ny\n/\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

// Without a nofile limit of its own the program gets the agent's original
// soft limit (as from os.StartProcess), not the one the helper's Go
// runtime raised for itself; and the signal mask and dispositions of a
// directly started process.
func TestExecHelperKeepsOriginalNofile(t *testing.T) {
	needRoot(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max > 1001 {
		// A soft limit below the hard one, as the kernel gives PID 1
		// (1024:4096): the helper's runtime raises it for itself.
		low := unix.Rlimit{Cur: 1000, Max: lim.Max}
		if err := syscall.Setrlimit(unix.RLIMIT_NOFILE, (*syscall.Rlimit)(&low)); err != nil {
			t.Fatal(err)
		}
		defer syscall.Setrlimit(unix.RLIMIT_NOFILE, (*syscall.Rlimit)(&lim))
	}
	cmd := `ulimit -n; ulimit -Hn; grep -E '^Sig(Blk|Ign)' /proc/self/status`
	direct, err := exec.Command("/bin/sh", "-c", cmd).Output()
	if err != nil {
		t.Fatal(err)
	}
	rls, _ := convertRlimits([]agentproto.Rlimit{{Name: "core", Soft: 0, Hard: 0}})
	out, err := runHelper(t, execHelperSpec{Rlimits: rls}, "/bin/sh", "-c", cmd)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(direct) {
		t.Errorf("through the helper %q, started directly %q", out, direct)
	}
	if lim.Max > 1001 && !strings.HasPrefix(out, "1000\n") {
		t.Errorf("soft nofile through the helper: %q, want 1000", out)
	}
	t.Logf("test process nofile %d:%d; program %q", lim.Cur, lim.Max, out)
}

// The limits are set as root, before the switch to the user: a hard limit
// above the current one can be given to an unprivileged process.
func TestExecHelperRlimitsBeforeCredentials(t *testing.T) {
	needRoot(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// Raised above the current hard limit where CAP_SYS_RESOURCE allows
	// (the guest agent has it), else lowered.
	hard := lim.Max - 1
	if hasCapSysResource(t) {
		hard = min(lim.Max+100, readNrOpen(t))
	} else {
		t.Log("no CAP_SYS_RESOURCE here: lowering the hard limit instead of raising it")
	}
	rls, _ := convertRlimits([]agentproto.Rlimit{{Name: "nofile", Soft: hard, Hard: hard}})
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	out, err := runHelper(t, execHelperSpec{Rlimits: rls, Dir: dir, Credential: true, UID: 65534, GID: 65534, Groups: []uint32{100}},
		"/bin/sh", "-c", `ulimit -n; ulimit -Hn; id -u; id -g; id -G; pwd`)
	if err != nil {
		t.Fatal(err)
	}
	h := strconv.FormatUint(hard, 10)
	if want := h + "\n" + h + "\n65534\n65534\n65534 100\n" + dir + "\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func hasCapSysResource(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}

func readNrOpen(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestExecHelperErrors(t *testing.T) {
	needRoot(t)
	nrOpen := readNrOpen(t)
	rls, _ := convertRlimits([]agentproto.Rlimit{{Name: "nofile", Soft: 1024, Hard: nrOpen + 1}})
	_, err := runHelper(t, execHelperSpec{Rlimits: rls}, "/bin/true")
	want := "error setting rlimit type 7 (nofile=1024:" + strconv.FormatUint(nrOpen+1, 10) + "): operation not permitted (the kernel allows at most " +
		strconv.FormatUint(nrOpen, 10) + " open files: fs.nr_open)"
	if err == nil || err.Error() != want || !errors.Is(err, syscall.EPERM) {
		t.Errorf("nofile above nr_open: %v, want %q", err, want)
	}

	rls, _ = convertRlimits([]agentproto.Rlimit{{Name: "nofile", Soft: 64, Hard: 64}})
	_, err = runHelper(t, execHelperSpec{Rlimits: rls}, "/nonexistent/prog")
	if err == nil || err.Error() != "exec /nonexistent/prog: no such file or directory" || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing program: %v", err)
	}
	_, err = runHelper(t, execHelperSpec{Rlimits: rls, Dir: "/nonexistent"}, "/bin/true")
	if err == nil || !strings.Contains(err.Error(), `chdir to cwd ("/nonexistent") set in config.json failed: no such file or directory`) {
		t.Errorf("missing cwd: %v", err)
	}
}

// The helper chroots before its execve: the program's path and its view
// of the file system are the root's.
func TestExecHelperChroot(t *testing.T) {
	needRoot(t)
	busybox, err := exec.LookPath("busybox")
	if err != nil || !isStaticELF(busybox) {
		t.Skip("needs a static busybox")
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.MkdirAll(filepath.Join(root, "work"), 0o755)
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "marker"), []byte("inside\n"), 0o644)
	rls, _ := convertRlimits([]agentproto.Rlimit{{Name: "nofile", Soft: 100, Hard: 200}})
	out, err := runHelper(t, execHelperSpec{Root: root, Dir: "/work", Path: "/bin/busybox", Rlimits: rls},
		"sh", "-c", "/bin/busybox cat /marker; pwd; ulimit -n; ulimit -Hn")
	if err != nil {
		t.Fatal(err)
	}
	if want := "inside\n/work\n100\n200\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func isStaticELF(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

func TestConvertRlimits(t *testing.T) {
	if _, err := convertRlimits([]agentproto.Rlimit{{Name: "as", Soft: 1, Hard: 1}}); err == nil || err.Error() != `unknown rlimit type "as"` {
		t.Errorf("as: %v", err)
	}
	if _, err := convertRlimits([]agentproto.Rlimit{{Name: "nofile", Soft: 2, Hard: 1}}); err == nil {
		t.Error("soft above hard accepted")
	}
	for _, n := range agentproto.RlimitNames {
		if _, ok := rlimitResources[n]; !ok {
			t.Errorf("no resource for %q", n)
		}
	}
	if len(rlimitResources) != len(agentproto.RlimitNames) {
		t.Errorf("%d resources for %d names", len(rlimitResources), len(agentproto.RlimitNames))
	}
}
