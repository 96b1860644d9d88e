//go:build linux

package guestagent_test

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jevm/jevm/internal/guestassets"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
	"github.com/jevm/jevm/vmbackend/initramfs"
)

// End-to-end: the real agent as PID 1 of a QEMU (TCG) guest running
// Debian's kernel, driven through agentclient over virtio-serial.

type e2eEnv struct {
	kernel string
	initrd string
	disk   string // pristine busybox root disk; each VM gets a copy
}

var (
	e2eOnce sync.Once
	e2e     *e2eEnv
	e2eDir  string
	e2eErr  error
	e2eSkip string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if e2eDir != "" {
		os.RemoveAll(e2eDir)
	}
	os.Exit(code)
}

func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("no go.mod found")
		}
		d = p
	}
}

func isStatic(p string) bool {
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

func setupE2E(t *testing.T) *e2eEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e VM test skipped in -short mode")
	}
	e2eOnce.Do(func() {
		if os.Geteuid() != 0 {
			e2eSkip = "e2e VM test needs root"
			return
		}
		root, err := repoRoot()
		if err != nil {
			e2eErr = err
			return
		}
		assets, err := guestassets.Load(filepath.Join(root, "build", "guest"))
		if err != nil {
			e2eSkip = fmt.Sprintf("e2e VM test needs the guest kernel that `make guest` unpacks: %v", err)
			return
		}
		kernel := assets.Kernel
		for _, tool := range []string{"qemu-system-x86_64", "mke2fs"} {
			if _, err := exec.LookPath(tool); err != nil {
				e2eSkip = "e2e VM test needs " + tool
				return
			}
		}
		busybox := "/bin/busybox"
		if !isStatic(busybox) {
			e2eSkip = "e2e VM test needs a static /bin/busybox (Debian busybox-static)"
			return
		}
		dir, err := os.MkdirTemp("", "jevm-e2e-")
		if err != nil {
			e2eErr = err
			return
		}
		e2eDir = dir
		env := &e2eEnv{kernel: kernel}
		agent := filepath.Join(dir, "jevm-agent")
		if err := initramfs.BuildAgent(context.Background(), root, "", agent); err != nil {
			e2eErr = err
			return
		}
		res, err := initramfs.Build(initramfs.Options{AgentPath: agent, ModulesDir: assets.Modules, Output: filepath.Join(dir, "initrd.gz"),
			KeepSignatures: os.Getenv("JEVM_E2E_KEEPSIG") == "1"})
		if err != nil {
			e2eErr = err
			return
		}
		env.initrd = res.Path
		env.disk, e2eErr = makeBusyboxDisk(dir, busybox, nil)
		e2e = env
	})
	if e2eSkip != "" {
		t.Skip(e2eSkip)
	}
	if e2eErr != nil {
		t.Fatal(e2eErr)
	}
	return e2e
}

// makeBusyboxDisk makes a root disk with busybox and the files extra
// (path in the root: content) in dir.
func makeBusyboxDisk(dir, busybox string, extra map[string]string) (string, error) {
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "root", "home/nobody"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return "", err
		}
	}
	os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777)
	data, err := os.ReadFile(busybox)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), data, 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		// Absolute symlinks: they must resolve inside the container root.
		os.Symlink("/bin/busybox", filepath.Join(rootfs, "bin", applet))
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home/nobody:/bin/false\n",
		"etc/group":  "root:x:0:\nusers:x:100:nobody\nnogroup:x:65534:\n",
	}
	for name, content := range extra {
		files[name] = content
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), mode); err != nil {
			return "", err
		}
	}
	disk := filepath.Join(dir, "root.img")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", rootfs, disk, "64M").CombinedOutput(); err != nil {
		return "", fmt.Errorf("mke2fs: %v: %s", err, out)
	}
	return disk, nil
}

type testVM struct {
	cmd     *exec.Cmd
	console string
	sock    string
	done    chan struct{}
	started time.Time
}

func bootVM(t *testing.T, env *e2eEnv, extraAppend string) *testVM {
	t.Helper()
	return bootVMDisks(t, env, extraAppend, nil)
}

// vmDisk is one more virtio disk of a test VM: what the host would
// hot-plug for a container joining it (pods), attached at boot here.
type vmDisk struct{ path, serial string }

func bootVMDisks(t *testing.T, env *e2eEnv, extraAppend string, disks []vmDisk) *testVM {
	t.Helper()
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	data, err := os.ReadFile(env.disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	vm := &testVM{console: filepath.Join(dir, "console.log"), sock: filepath.Join(dir, "agent.sock"), done: make(chan struct{})}
	args := []string{
		"-M", "pc", "-accel", "tcg", "-cpu", "max", "-m", "256",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", env.kernel, "-initrd", env.initrd,
		"-append", strings.TrimSpace("console=ttyS0 quiet panic=-1 " + extraAppend),
		"-chardev", "file,id=con,path=" + vm.console, "-serial", "chardev:con",
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=agent,path=" + vm.sock + ",server=on,wait=off",
		"-device", "virtserialport,bus=vser.0,chardev=agent,name=" + agentproto.PortName,
		"-drive", "file=" + disk + ",if=none,id=root,format=raw",
		"-device", "virtio-blk-pci,drive=root",
	}
	for i, d := range disks {
		id := fmt.Sprintf("extra%d", i)
		args = append(args, "-drive", "file="+d.path+",if=none,id="+id+",format=raw",
			"-device", "virtio-blk-pci,drive="+id+",serial="+d.serial)
	}
	vm.cmd = exec.Command("qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	vm.cmd.Stderr = &stderr
	vm.started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { vm.cmd.Wait(); close(vm.done) }()
	t.Cleanup(func() {
		select {
		case <-vm.done:
		default:
			vm.cmd.Process.Kill()
			<-vm.done
		}
		if stderr.Len() > 0 {
			t.Logf("qemu stderr: %s", stderr.String())
		}
		if t.Failed() || testing.Verbose() {
			b, _ := os.ReadFile(vm.console)
			t.Logf("console:\n%s", b)
		}
	})
	return vm
}

func (vm *testVM) connect(t *testing.T, ctx context.Context) (*agentclient.Client, *agentproto.Msg) {
	t.Helper()
	var conn net.Conn
	for {
		c, err := net.Dial("unix", vm.sock)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-vm.done:
			t.Fatalf("qemu exited: %v", vm.cmd.ProcessState)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	c, hello, err := agentclient.Connect(ctx, conn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Logf("agent answered %v after qemu start: %+v", time.Since(vm.started).Round(time.Millisecond), *hello)
	return c, hello
}

func (vm *testVM) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-vm.done:
		t.Logf("qemu exited by itself (%v)", vm.cmd.ProcessState)
	case <-time.After(d):
		t.Fatalf("qemu still running %v after the container exited", d)
	}
}

type buf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *buf) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func startReq(args []string, user string, tty bool) *agentproto.StartRequest {
	return &agentproto.StartRequest{
		RootDevice:   "/dev/vda",
		Hostname:     "e2ebox",
		Hosts:        "127.0.0.1\tlocalhost\n",
		ResolvConf:   "nameserver 10.0.2.3\n",
		Entropy:      bytes.Repeat([]byte{0x5a}, 32),
		TimeUnixNano: time.Now().UnixNano(),
		Process: agentproto.ProcessRequest{
			Args: args,
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			User: user,
			TTY:  tty,
		},
	}
}

func waitExited(t *testing.T, ctx context.Context, p *agentclient.Process) agentproto.ExitStatus {
	t.Helper()
	select {
	case <-p.Exited():
	case <-ctx.Done():
		t.Fatal("process did not exit")
	}
	st, ok := p.Status()
	if !ok {
		t.Fatal("connection lost before the exit status")
	}
	return st
}

func TestE2ERun(t *testing.T) {
	env := setupE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm := bootVM(t, env, os.Getenv("JEVM_E2E_APPEND"))
	c, hello := vm.connect(t, ctx)
	defer c.Close()
	if hello.Phase != "idle" || hello.Version != agentproto.Version || !strings.HasPrefix(hello.Kernel, "6.1") {
		t.Fatalf("hello %+v", hello)
	}
	var out, errb buf
	t0 := time.Now()
	p, err := c.Start(ctx, startReq([]string{"sh", "-c", "echo hello; echo err >&2; hostname; cat /etc/hostname /etc/resolv.conf; date +%Y; exit 3"}, "", false),
		agentclient.ProcessIO{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	st := waitExited(t, ctx, p)
	t.Logf("start -> exit %v; stdout %q stderr %q status %+v", time.Since(t0).Round(time.Millisecond), out.String(), errb.String(), st)
	wantOut := fmt.Sprintf("hello\ne2ebox\ne2ebox\nnameserver 10.0.2.3\n%d\n", time.Now().Year())
	if out.String() != wantOut {
		t.Errorf("stdout %q, want %q", out.String(), wantOut)
	}
	if errb.String() != "err\n" {
		t.Errorf("stderr %q", errb.String())
	}
	if st.Code != 3 || st.Signal != 0 {
		t.Errorf("status %+v, want code 3", st)
	}
	vm.waitExit(t, 30*time.Second)
	con, _ := os.ReadFile(vm.console)
	if !strings.Contains(string(con), agentproto.ConsoleExitMarker+" 3\r\n") && !strings.Contains(string(con), agentproto.ConsoleExitMarker+" 3\n") {
		t.Errorf("console has no %q line:\n%s", agentproto.ConsoleExitMarker+" 3", con)
	}
}

func TestE2EUserAndErrors(t *testing.T) {
	env := setupE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm := bootVM(t, env, "")
	c, _ := vm.connect(t, ctx)
	defer c.Close()

	// A failed start leaves the agent idle: the errors mirror runc's.
	_, err := c.Start(ctx, startReq([]string{"nosuchcmd"}, "", false), agentclient.ProcessIO{})
	if err == nil || err.Error() != `exec: "nosuchcmd": executable file not found in $PATH` {
		t.Fatalf("start nosuchcmd: %v", err)
	}
	_, err = c.Start(ctx, startReq([]string{"id"}, "nosuchuser", false), agentclient.ProcessIO{})
	if err == nil || err.Error() != "unable to find user nosuchuser: no matching entries in passwd file" {
		t.Fatalf("start as nosuchuser: %v", err)
	}

	var out, errb buf
	// The shell is PID 1 of its PID namespace: its SIGTERM to itself,
	// with no trap, is not delivered (as in a runc container).
	p, err := c.Start(ctx, startReq([]string{"sh", "-c", "id -u; id -g; id -G; echo $HOME; pwd; kill -TERM $$; echo $$ survived; exit 3"}, "nobody", false),
		agentclient.ProcessIO{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	st := waitExited(t, ctx, p)
	t.Logf("stdout %q stderr %q status %+v", out.String(), errb.String(), st)
	if want := "65534\n65534\n65534 100\n/home/nobody\n/\n1 survived\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	if st.Code != 3 || st.Signal != 0 {
		t.Errorf("status %+v, want exit 3", st)
	}
	vm.waitExit(t, 30*time.Second)
}

func TestE2ETTYStdinSignal(t *testing.T) {
	env := setupE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm := bootVM(t, env, "")
	c, _ := vm.connect(t, ctx)
	defer c.Close()

	var out buf
	req := startReq([]string{"sh", "-c", "tty; stty size; read x; echo got $x; stty size; sleep 1000"}, "", true)
	req.Process.Stdin = true
	req.Process.Rows, req.Process.Cols = 24, 80
	p, err := c.Start(ctx, req, agentclient.ProcessIO{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(s string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(out.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in output %q", s, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("24 80")
	if err := p.Resize(ctx, 40, 120); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stdin().Write([]byte("abc\r")); err != nil {
		t.Fatal(err)
	}
	waitFor("40 120")
	if err := p.Signal(ctx, 9); err != nil {
		t.Fatal(err)
	}
	st := waitExited(t, ctx, p)
	t.Logf("tty output %q status %+v", out.String(), st)
	o := strings.ReplaceAll(out.String(), "\r\n", "\n")
	if !strings.HasPrefix(o, "/dev/pts/0\n24 80\n") || !strings.Contains(o, "got abc\n") {
		t.Errorf("tty output %q", o)
	}
	if st.Code != 137 || st.Signal != 9 || st.OOMKilled {
		t.Errorf("status %+v, want SIGKILL", st)
	}
	vm.waitExit(t, 30*time.Second)
}

func TestE2EReconnectShutdown(t *testing.T) {
	env := setupE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm := bootVM(t, env, "")
	c, _ := vm.connect(t, ctx)
	// Reconnect: a second connection gets a fresh Hello (still idle).
	c.Close()
	c, hello := vm.connect(t, ctx)
	if hello.Phase != "idle" {
		t.Fatalf("phase %q after reconnect", hello.Phase)
	}
	var out1 buf
	p, err := c.Start(ctx, startReq([]string{"sh", "-c", "echo one; read x; echo two; sleep 1000"}, "", false), agentclient.ProcessIO{Stdout: &out1, Stderr: &out1})
	if err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(out1.String(), "one") {
		time.Sleep(20 * time.Millisecond)
	}
	pid := p.Pid()
	// The daemon goes away and comes back: re-adopt the running process.
	c.Close()
	c, hello = vm.connect(t, ctx)
	defer c.Close()
	if hello.Phase != "running" || hello.Pid != pid {
		t.Fatalf("hello after reconnect %+v, want running pid %d", hello, pid)
	}
	var out2 buf
	p = c.Reattach(agentclient.ProcessIO{Stdout: &out2, Stderr: &out2})
	if p.Pid() != pid {
		t.Fatalf("reattached pid %d, want %d", p.Pid(), pid)
	}
	// Shutdown while running: everything is killed, the main process's
	// exit status still arrives.
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	st := waitExited(t, ctx, p)
	t.Logf("after reattach: output %q status %+v", out2.String(), st)
	if st.Code != 137 || st.Signal != 9 {
		t.Errorf("status %+v, want SIGKILL", st)
	}
	vm.waitExit(t, 30*time.Second)
}

func TestE2EShutdownIdle(t *testing.T) {
	env := setupE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm := bootVM(t, env, "")
	c, _ := vm.connect(t, ctx)
	defer c.Close()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	vm.waitExit(t, 30*time.Second)
}

func TestE2EProbe(t *testing.T) {
	env := setupE2E(t)
	vm := bootVM(t, env, "jevm.probe=1")
	vm.waitExit(t, 2*time.Minute)
	con, _ := os.ReadFile(vm.console)
	if !strings.Contains(string(con), agentproto.ConsoleProbeOK) {
		t.Fatalf("no %s on the console:\n%s", agentproto.ConsoleProbeOK, con)
	}
	t.Logf("probe boot took %v", time.Since(vm.started).Round(time.Millisecond))
}
