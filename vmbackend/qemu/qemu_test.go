package qemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/internal/guestassets"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
	"github.com/jevm/jevm/vmbackend/initramfs"
)

// The real-QEMU test boots one template and a few clones under whatever
// accelerator the provider picks (TCG on the project's machines).

const (
	testQEMU = "/usr/bin/qemu-system-x86_64"
	testDisk = 512 << 20 // small: mke2fs and the placeholder stay cheap
)

var testShape = vmbackend.Shape{MemoryMiB: 256, VCPUs: 1}

// repoRoot is the module root (this package is vmbackend/qemu).
func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// guestDir is where `make guest` unpacks the kernel the Makefile picked.
func guestDir(t *testing.T) string { return filepath.Join(repoRoot(t), "build", "guest") }

func requireVM(t *testing.T) (kernel string) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping real-QEMU test in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping real-QEMU test: needs root (mke2fs -d ownership, QEMU sockets)")
	}
	assets, err := guestassets.Load(guestDir(t))
	if err != nil {
		t.Skipf("skipping real-QEMU test: %v (`make guest` unpacks it)", err)
	}
	kernel = assets.Kernel
	for _, f := range []string{testQEMU, "/usr/bin/qemu-img", "/bin/busybox"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("skipping real-QEMU test: %s missing", f)
		}
	}
	if _, err := exec.LookPath("mke2fs"); err != nil {
		t.Skip("skipping real-QEMU test: mke2fs missing")
	}
	return kernel
}

// buildInitrd builds cmd/jevm-agent and an initramfs with it.
func buildInitrd(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	root := repoRoot(t)
	agent := filepath.Join(dir, "jevm-agent")
	if err := initramfs.BuildAgent(ctx, root, "", agent); err != nil {
		t.Fatal(err)
	}
	assets, err := guestassets.Load(guestDir(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := initramfs.Build(initramfs.Options{
		AgentPath:  agent,
		ModulesDir: assets.Modules,
		Output:     filepath.Join(dir, "initrd.gz"),
	})
	if err != nil {
		t.Fatalf("build initramfs: %v", err)
	}
	return res.Path
}

// makeBaseDisk makes an ext4 image of testDisk bytes with busybox.
func makeBaseDisk(t *testing.T, dir string) string {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "root", "usr/bin", "usr/sbin"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		os.Symlink("busybox", filepath.Join(rootfs, "bin", applet))
	}
	os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc", "group"), []byte("root:x:0:\n"), 0o644)
	base := filepath.Join(dir, "base.ext4")
	f, err := os.Create(base)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(testDisk)
	f.Close()
	if out, err := exec.Command("mke2fs", "-q", "-t", "ext4", "-E", "root_owner=0:0", "-d", rootfs, base).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	return base
}

// syncBuffer is a goroutine-safe bytes.Buffer for process output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testClone struct {
	name    string
	m       vmbackend.Machine
	client  *agentclient.Client
	proc    *agentclient.Process
	out     *syncBuffer
	started time.Duration // Start() called -> process started in the guest
}

func startClone(ctx context.Context, t *testing.T, p *Provider, dir, base, name string, args []string) *testClone {
	t.Helper()
	stateDir := filepath.Join(dir, name)
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(stateDir, "root.qcow2")
	if err := p.CreateRootDisk(ctx, base, disk); err != nil {
		t.Fatal(err)
	}
	spec := vmbackend.MachineSpec{
		ID: "test-" + name, Shape: testShape, RootDisk: disk,
		StateDir: stateDir, ConsoleLog: filepath.Join(stateDir, "console.log"),
	}
	t0 := time.Now()
	m, err := p.Start(ctx, spec)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	tStarted := time.Since(t0)
	c := &testClone{name: name, m: m, out: &syncBuffer{}}
	t.Cleanup(func() {
		kctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Kill(kctx); err != nil {
			t.Errorf("cleanup kill %s: %v", name, err)
		}
	})
	client, hello, err := agentclient.Connect(ctx, m.Agent())
	tConnected := time.Since(t0)
	if err != nil {
		t.Fatalf("%s: agent connect: %v\nconsole:\n%s", name, err, fileTail(spec.ConsoleLog, 2000))
	}
	if hello.Phase != "idle" {
		t.Fatalf("%s: agent phase %q, want idle", name, hello.Phase)
	}
	c.client = client
	entropy := make([]byte, 32)
	rand.Read(entropy)
	proc, err := client.Start(ctx, &agentproto.StartRequest{
		RootDevice:   "/dev/vda",
		Hostname:     name,
		Entropy:      entropy,
		TimeUnixNano: time.Now().UnixNano(),
		Process: agentproto.ProcessRequest{
			Args: args,
			Env:  []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root"},
		},
	}, agentclient.ProcessIO{Stdout: c.out, Stderr: c.out})
	if err != nil {
		t.Fatalf("%s: start process: %v\nconsole:\n%s", name, err, fileTail(spec.ConsoleLog, 2000))
	}
	c.proc = proc
	c.started = time.Since(t0)
	t.Logf("%s: clone to process started %v (Start() returned %v, agent hello %v; pid %d)",
		name, c.started.Round(time.Millisecond), tStarted.Round(time.Millisecond), tConnected.Round(time.Millisecond), m.Pid())
	return c
}

func waitExit(ctx context.Context, t *testing.T, c *testClone) agentproto.ExitStatus {
	t.Helper()
	select {
	case <-c.proc.Exited():
	case <-ctx.Done():
		t.Fatalf("%s: process did not exit; output so far: %q", c.name, c.out.String())
	}
	st, ok := c.proc.Status()
	if !ok {
		t.Fatalf("%s: connection lost before exit status; output %q", c.name, c.out.String())
	}
	return st
}

func pidGone(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return errors.Is(err, os.ErrNotExist)
}

func TestRealQEMU(t *testing.T) {
	kernel := requireVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// Short state dirs for the sockets: t.TempDir paths can be long.
	sdir, err := os.MkdirTemp("", "jq")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sdir)

	initrd := buildInitrd(ctx, t, dir)
	base := makeBaseDisk(t, dir)
	logger := logrus.New()
	logger.SetLevel(logrus.InfoLevel)
	logger.SetOutput(newTestWriter(t))
	opts := Options{
		Kernel: kernel, Initrd: initrd, Root: filepath.Join(dir, "templates"),
		Accel: "auto", DiskSize: testDisk, Logger: logrus.NewEntry(logger),
	}

	// Accelerator choice (probe, then cached verdict).
	t0 := time.Now()
	p, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("New (accel %s, incl. KVM probe): %v", p.Accelerator(), time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	if p2, err := New(ctx, opts); err != nil || p2.Accelerator() != p.Accelerator() {
		t.Fatalf("second New: %v, accel %v", err, p2)
	}
	t.Logf("second New (cached probe verdict): %v", time.Since(t0).Round(time.Millisecond))

	t.Run("forced-kvm", func(t *testing.T) {
		if p.Accelerator() == vmbackend.AccelKVM {
			t.Skip("KVM works here")
		}
		o := opts
		o.Accel = "kvm"
		if _, err := New(ctx, o); err == nil {
			t.Fatal("Accel kvm accepted although the probe failed")
		} else {
			t.Logf("Accel=kvm refused as expected: %v", err)
		}
	})

	// Template: cold boot + snapshot.
	// Two concurrent callers: one build.
	t0 = time.Now()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- p.EnsureTemplate(ctx, testShape) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("EnsureTemplate (cold): %v", time.Since(t0).Round(time.Millisecond))
	if n := p.builds.Load(); n != 1 {
		t.Errorf("%d template builds for two concurrent EnsureTemplate calls, want 1", n)
	}
	key, _ := p.TemplateKey(testShape)
	tpl, err := p.loadTemplate(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("template %s: boot %s, snapshot %s, state %d bytes", key, tpl.meta.BootTime, tpl.meta.SnapshotTime, tpl.meta.StateBytes)

	t0 = time.Now()
	if err := p.EnsureTemplate(ctx, testShape); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("second EnsureTemplate took %v; want a no-op", d)
	}
	if tpl2, _ := p.loadTemplate(key); tpl2 == nil || !tpl2.meta.Created.Equal(tpl.meta.Created) || p.builds.Load() != 1 {
		t.Error("second EnsureTemplate rebuilt the template")
	}

	t.Run("two-clones", func(t *testing.T) {
		script := func(me, other string) []string {
			return []string{"/bin/sh", "-c", fmt.Sprintf(
				"echo %[1]s > /whoami; touch /only-%[1]s; sleep 1; "+
					"cat /whoami; hostname; ls /; test -e /only-%[2]s && echo SAW-OTHER; exit 7", me, other)}
		}
		// Both clones run at the same time, each on its own overlay of
		// the same base disk.
		for _, name := range []string{"a", "b"} {
			other := map[string]string{"a": "b", "b": "a"}[name]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				c := startClone(ctx, t, p, sdir, base, name, script(name, other))
				st := waitExit(ctx, t, c)
				out := c.out.String()
				t.Logf("%s: exit %+v, output:\n%s", c.name, st, out)
				if st.Code != 7 {
					t.Errorf("%s: exit code %d, want 7", c.name, st.Code)
				}
				if !strings.HasPrefix(out, c.name+"\n"+c.name+"\n") {
					t.Errorf("%s: output does not start with its own /whoami and hostname", c.name)
				}
				if !strings.Contains(out, "only-"+c.name) || strings.Contains(out, "SAW-OTHER") {
					t.Errorf("%s: clones share files: %q", c.name, out)
				}
				// The guest powers off after the main process exited.
				t0 := time.Now()
				select {
				case <-c.m.Done():
				case <-time.After(30 * time.Second):
					t.Fatalf("%s: qemu did not exit after the main process", c.name)
				}
				t.Logf("%s: qemu exited %v after the exit status", c.name, time.Since(t0).Round(time.Millisecond))
				if !pidGone(c.m.Pid()) {
					t.Errorf("%s: qemu pid %d still there", c.name, c.m.Pid())
				}
				for _, f := range []string{qmpSockName, agentSockName, pidFileName} {
					if _, err := os.Stat(filepath.Join(sdir, c.name, f)); err == nil {
						t.Errorf("%s: %s left behind", c.name, f)
					}
				}
			})
		}
	})

	// Live migration between two VMs of this provider, as between two
	// hosts: a counter in a shell's memory goes on in the target, a file
	// written before and one written during the copy are on its disk
	// (a new layer over the same base), and the source is paused.
	// A guest that dirties memory without pause, migrated several times
	// (each target the next source): it stays healthy.
	t.Run("migrate-busy-hops", func(t *testing.T) {
		src := startClone(ctx, t, p, sdir, base, "h0", []string{"/bin/sh", "-c",
			"head -c 33554432 /dev/urandom > /dev/shm/a && echo ready && while :; do cp /dev/shm/a /dev/shm/b; done"})
		waitOutput(t, src.out, "ready")
		var m vmbackend.Machine = src.m
		console := filepath.Join(sdir, "h0", "console.log")
		for hop := 1; hop <= hopsToTest; hop++ {
			info, err := m.(vmbackend.Migrator).MigrationInfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("h%d", hop)
			stateDir := filepath.Join(sdir, name)
			os.MkdirAll(stateDir, 0o755)
			disk := filepath.Join(stateDir, "root.qcow2")
			if err := p.CreateRootDisk(ctx, base, disk); err != nil {
				t.Fatal(err)
			}
			spec := vmbackend.MachineSpec{ID: "test-" + name, Shape: testShape, RootDisk: disk, StateDir: stateDir, ConsoleLog: filepath.Join(stateDir, "console.log")}
			pr, pw := io.Pipe()
			in := make(chan vmbackend.Machine, 1)
			go func() {
				dm, err := p.StartIncoming(ctx, spec, info, pr)
				if err != nil {
					t.Errorf("hop %d incoming: %v", hop, err)
				}
				pr.CloseWithError(err)
				in <- dm
			}()
			st, err := m.(vmbackend.Migrator).MigrateTo(ctx, pw, nil)
			pw.Close()
			if err != nil {
				t.Fatalf("hop %d: %v", hop, err)
			}
			dst := <-in
			if dst == nil {
				t.FailNow()
			}
			t.Cleanup(func() { _ = dst.Kill(context.Background()) })
			t0 := time.Now()
			if err := m.Kill(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("hop %d: %+v; the source killed in %s", hop, st, time.Since(t0).Round(time.Millisecond))
			if err := dst.Resume(ctx); err != nil {
				t.Fatal(err)
			}
			cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
			client, hello, err := agentclient.Connect(cctx, dst.Agent())
			ccancel()
			if err != nil || hello.Phase != "running" {
				t.Fatalf("hop %d: agent: %v %+v\nconsole:\n%s", hop, err, hello, fileTail(spec.ConsoleLog, 3000))
			}
			client.Reattach(agentclient.ProcessIO{Stdout: io.Discard, Stderr: io.Discard})
			time.Sleep(3 * time.Second)
			if b, _ := os.ReadFile(spec.ConsoleLog); strings.Contains(string(b), "Kernel panic") || strings.Contains(string(b), "BUG:") {
				t.Fatalf("hop %d: the guest broke:\n%s", hop, fileTail(spec.ConsoleLog, 3000))
			}
			m, console = dst, spec.ConsoleLog
		}
		_ = console
	})

	t.Run("migrate", func(t *testing.T) {
		src := startClone(ctx, t, p, sdir, base, "ms", []string{"/bin/sh", "-c",
			// /count is replaced by a rename, so that a read never sees
			// it truncated and not yet written.
			"i=0; echo before > /before; sync; while :; do i=$((i+1)); echo n=$i; echo $i > /count.new; mv /count.new /count; sleep 0.2; done"})
		waitOutput(t, src.out, "n=3")
		mig := src.m.(vmbackend.Migrator)
		info, err := mig.MigrationInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stateDir := filepath.Join(sdir, "mt")
		if err := os.MkdirAll(stateDir, 0o755); err != nil {
			t.Fatal(err)
		}
		disk := filepath.Join(stateDir, "root.qcow2")
		if err := p.CreateRootDisk(ctx, base, disk); err != nil {
			t.Fatal(err)
		}
		spec := vmbackend.MachineSpec{ID: "test-mt", Shape: testShape, RootDisk: disk, StateDir: stateDir, ConsoleLog: filepath.Join(stateDir, "console.log")}
		pr, pw := io.Pipe()
		type incoming struct {
			m   vmbackend.Machine
			err error
		}
		in := make(chan incoming, 1)
		stream := &eofReader{r: pr}
		go func() {
			m, err := p.StartIncoming(ctx, spec, info, stream)
			// The daemon reads the commit from the stream's connection
			// next: StartIncoming must have stopped reading it.
			if err == nil && !stream.ended.Load() {
				_ = m.Kill(context.Background())
				m, err = nil, errors.New("StartIncoming returned before the stream's end")
			}
			pr.CloseWithError(err)
			in <- incoming{m, err}
		}()
		var passes int
		st, err := mig.MigrateTo(ctx, pw, func(pg vmbackend.MigrationProgress) { passes = pg.Passes })
		// The stream's end comes a little after QEMU's last byte, as
		// over a network.
		time.Sleep(300 * time.Millisecond)
		pw.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := <-in
		if got.err != nil {
			t.Fatalf("incoming: %v\nconsole:\n%s", got.err, fileTail(spec.ConsoleLog, 2000))
		}
		dst := got.m
		t.Cleanup(func() { _ = dst.Kill(context.Background()) })
		t.Logf("migrated: %+v (last progress: %d passes)", st, passes)
		if st.RAMBytes < 16<<20 || st.Downtime <= 0 {
			t.Errorf("implausible stats %+v", st)
		}
		before := src.out.String()
		if err := dst.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		client, hello, err := agentclient.Connect(ctx, dst.Agent())
		if err != nil || hello.Phase != "running" {
			t.Fatalf("target agent: %v, %+v", err, hello)
		}
		out := &syncBuffer{}
		client.Reattach(agentclient.ProcessIO{Stdout: out, Stderr: out})
		last := 0
		for _, l := range strings.Fields(before) {
			fmt.Sscanf(l, "n=%d", &last)
		}
		waitOutput(t, out, fmt.Sprintf("n=%d", last+3))
		// The source is paused: it printed nothing since.
		time.Sleep(500 * time.Millisecond)
		if src.out.String() != before {
			t.Errorf("the source ran on after the migration: %q", strings.TrimPrefix(src.out.String(), before))
		}
		cat, code := execShell(ctx, t, client, "sync; echo 3 > /proc/sys/vm/drop_caches; cat /before /count")
		if code != 0 || !strings.HasPrefix(cat, "before\n") {
			t.Fatalf("files on the target: exit %d, %q", code, cat)
		}
		if n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(cat, "before\n"))); n <= last {
			t.Errorf("/count on the target is %q, the counter was at %d when the copy ended", cat, last)
		}
		// The blocks the source's layer held are in the target's (QEMU
		// flushes its layer on quit): the block migration's work, not
		// the guest's page cache.
		if err := dst.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{filepath.Join(sdir, "ms", "root.qcow2"), disk} {
			out, err := exec.Command("qemu-img", "map", "-U", "--output=json", d).Output()
			if err != nil {
				t.Fatal(err)
			}
			if own := strings.Count(string(out), `"depth": 0, "present": true, "zero": false, "data": true`); own == 0 {
				t.Errorf("%s holds no data of its own:\n%s", d, out)
			}
		}

		// The source, sent but never handed over, as a daemon that died
		// before its commit leaves it: a new daemon told so resumes it,
		// and the guest goes on, writing to its disk.
		mm := src.m.(*machine)
		src.client.Close()
		mm.mon.close()
		p2, err := New(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		srcSpec := mm.spec
		srcSpec.ResumeUncommittedMigration = true
		am, err := p2.Adopt(ctx, srcSpec)
		if err != nil {
			t.Fatalf("adopt the source after an uncommitted migration: %v", err)
		}
		t.Cleanup(func() { _ = am.Kill(context.Background()) })
		sc, hello, err := agentclient.Connect(ctx, am.Agent())
		if err != nil || hello.Phase != "running" {
			t.Fatalf("the resumed source's agent: %v, %+v", err, hello)
		}
		defer sc.Close()
		resumed := &syncBuffer{}
		sc.Reattach(agentclient.ProcessIO{Stdout: resumed, Stderr: resumed})
		waitOutput(t, resumed, fmt.Sprintf("n=%d", last+3))
		if out, code := execShell(ctx, t, sc, "echo after > /after && sync && cat /after"); code != 0 || out != "after\n" {
			t.Fatalf("a write and sync on the resumed source: exit %d, %q", code, out)
		}
		if err := am.Kill(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("kill-stats-adopt", func(t *testing.T) {
		c := startClone(ctx, t, p, sdir, base, "k", []string{"/bin/sh", "-c", "echo up; while :; do sleep 1; done"})
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(c.out.String(), "up") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		st, err := c.m.Stats()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("running clone: cpu %v, rss %d MiB, pss %d MiB", st.CPUTime, st.RSSBytes>>20, st.PSSBytes>>20)
		if st.RSSBytes == 0 || st.PSSBytes == 0 || st.PSSBytes > st.RSSBytes {
			t.Errorf("implausible stats %+v", st)
		}
		if err := c.m.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.m.Resume(ctx); err != nil {
			t.Fatal(err)
		}

		// Simulate a daemon restart: drop our connections without
		// stopping the VM, then adopt it from a new provider.
		mm := c.m.(*machine)
		c.client.Close()
		mm.mon.close()
		p2, err := New(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		spec := mm.spec
		am, err := p2.Adopt(ctx, spec)
		if err != nil {
			t.Fatalf("adopt: %v", err)
		}
		if am.Pid() != mm.Pid() {
			t.Fatalf("adopted pid %d, want %d", am.Pid(), mm.Pid())
		}
		// The new provider took back the adopted QEMU's ids
		// (vmids.go): no VM it starts gets them.
		held := func(uid uint32) bool {
			p2.user.ids.mu.Lock()
			defer p2.user.ids.mu.Unlock()
			return p2.user.ids.used[uid-p2.user.ids.uids.start]
		}
		var adoptedUID uint32
		if p2.user != nil {
			uid, err := procUID(am.Pid())
			if err != nil {
				t.Fatal(err)
			}
			if id := am.(*machine).identity(); id.uid != uid || uid == p2.user.uid || !held(uid) {
				t.Errorf("adopted QEMU runs as uid %d; the machine says %+v, held %v", uid, id, held(uid))
			}
			adoptedUID = uid
		}
		client, hello, err := agentclient.Connect(ctx, am.Agent())
		if err != nil {
			t.Fatalf("adopted agent connect: %v", err)
		}
		defer client.Close()
		if hello.Phase != "running" {
			t.Errorf("adopted agent phase %q, want running", hello.Phase)
		}

		t0 := time.Now()
		if err := am.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		if p2.user != nil {
			deadline := time.Now().Add(5 * time.Second)
			for held(adoptedUID) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if held(adoptedUID) {
				t.Errorf("uid %d still taken after its QEMU was killed", adoptedUID)
			}
		}
		t.Logf("Kill of adopted clone: %v", time.Since(t0).Round(time.Millisecond))
		select {
		case <-am.Done():
		default:
			t.Error("Done not closed after Kill")
		}
		<-mm.Done() // the original handle (QEMU's parent) sees the exit and reaps it
		if !pidGone(am.Pid()) {
			t.Errorf("qemu pid %d still there after Kill", am.Pid())
		}
		if _, err := p2.Adopt(ctx, spec); !errors.Is(err, vmbackend.ErrNotRunning) {
			t.Errorf("adopt of a killed VM: %v, want ErrNotRunning", err)
		}
	})

	t.Run("kill-own", func(t *testing.T) {
		c := startClone(ctx, t, p, sdir, base, "j", []string{"/bin/sleep", "1000"})
		t0 := time.Now()
		if err := c.m.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("Kill of running clone: %v", time.Since(t0).Round(time.Millisecond))
		if !pidGone(c.m.Pid()) {
			t.Errorf("qemu pid %d still there after Kill", c.m.Pid())
		}
	})

	t.Run("start-failure-cleans-up", func(t *testing.T) {
		// An overlay whose backing file is gone: QEMU cannot open the
		// root disk and exits; Start must report why and leave nothing.
		stateDir := filepath.Join(sdir, "f")
		os.MkdirAll(stateDir, 0o755)
		gone := filepath.Join(dir, "gone.ext4")
		f, _ := os.Create(gone)
		f.Truncate(testDisk)
		f.Close()
		disk := filepath.Join(stateDir, "root.qcow2")
		if err := p.CreateRootDisk(ctx, gone, disk); err != nil {
			t.Fatal(err)
		}
		os.Remove(gone)
		_, err := p.Start(ctx, vmbackend.MachineSpec{ID: "test-f", Shape: testShape, RootDisk: disk,
			StateDir: stateDir, ConsoleLog: filepath.Join(stateDir, "console.log")})
		if err == nil {
			t.Fatal("Start succeeded with a broken root disk")
		}
		t.Logf("Start error: %v", err)
		if !strings.Contains(err.Error(), "gone.ext4") {
			t.Errorf("error does not carry QEMU's message")
		}
		for _, f := range []string{qmpSockName, agentSockName, pidFileName} {
			if _, err := os.Stat(filepath.Join(stateDir, f)); err == nil {
				t.Errorf("%s left behind", f)
			}
		}
		if pid, ok := findProcessByName(processName("test-f"), ""); ok {
			t.Errorf("qemu %d left behind", pid)
		}
	})

	t.Run("changed-initrd-new-key", func(t *testing.T) {
		b, err := os.ReadFile(initrd)
		if err != nil {
			t.Fatal(err)
		}
		other := filepath.Join(dir, "initrd2.img")
		os.WriteFile(other, append(b, make([]byte, 512)...), 0o644)
		o := opts
		o.Initrd = other
		o.Accel = p.Accelerator()
		p3, err := New(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		k3, _ := p3.TemplateKey(testShape)
		if k3 == key {
			t.Fatal("a changed initrd kept the template key")
		}
		if _, err := p3.loadTemplate(k3); err == nil {
			t.Fatal("template for the new key exists already")
		}
		// GC keeps only what is asked for.
		if err := p.GC([]string{key}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.loadTemplate(key); err != nil {
			t.Fatalf("GC removed a kept template: %v", err)
		}
	})

	// A blank (the warm pool's) is claimed for a disk made after it
	// started: the guest mounts that disk, the state files move, a second
	// claim is refused, Adopt finds it by the recorded name, and a blank
	// of a changed template is refused.
	t.Run("blank-claim", func(t *testing.T) {
		blankSpec := func(name string) vmbackend.MachineSpec {
			sd := filepath.Join(sdir, name)
			if err := os.MkdirAll(sd, 0o755); err != nil {
				t.Fatal(err)
			}
			return vmbackend.MachineSpec{ID: "test-" + name, Shape: testShape, StateDir: sd, ConsoleLog: filepath.Join(sd, "console.log")}
		}
		bs := blankSpec("bl")
		m, err := p.Start(ctx, bs)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Kill(context.Background())
		client, hello, err := agentclient.Connect(ctx, m.Agent())
		if err != nil || hello.Phase != "idle" {
			t.Fatalf("blank's agent: %v %+v", err, hello)
		}
		defer client.Close()
		cs := vmbackend.MachineSpec{ID: "test-claimed", Shape: testShape, StateDir: filepath.Join(sdir, "cl"), ConsoleLog: bs.ConsoleLog,
			RootDisk: filepath.Join(sdir, "bl-root.qcow2")}
		if err := p.CreateRootDisk(ctx, base, cs.RootDisk); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(cs.RootDisk)
		if err := p.Claim(ctx, m, cs); err != nil {
			t.Fatalf("claim: %v", err)
		}
		if err := p.Claim(ctx, m, cs); err == nil {
			t.Fatal("a second claim of one blank was accepted")
		}
		if _, err := os.Stat(bs.StateDir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the blank's state dir is still there: %v", err)
		}
		for _, f := range []string{qmpSockName, agentSockName, pidFileName, claimFileName} {
			if _, err := os.Stat(filepath.Join(cs.StateDir, f)); err != nil {
				t.Fatalf("claimed state dir: %v", err)
			}
		}
		out := &syncBuffer{}
		proc, err := client.Start(ctx, &agentproto.StartRequest{
			RootDevice: "/dev/vda", Hostname: "claimed", TimeUnixNano: time.Now().UnixNano(),
			Process: agentproto.ProcessRequest{Args: []string{"/bin/sh", "-c", "hostname; echo written > /mark; cat /mark; ls /bin/sh"},
				Env: []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}},
		}, agentclient.ProcessIO{Stdout: out, Stderr: out})
		if err != nil {
			t.Fatalf("start on the claimed blank: %v\nconsole:\n%s", err, fileTail(bs.ConsoleLog, 2000))
		}
		c := &testClone{name: "claimed", m: m, client: client, proc: proc, out: out}
		if st := waitExit(ctx, t, c); st.Code != 0 || out.String() != "claimed\nwritten\n/bin/sh\n" {
			t.Fatalf("on the claimed blank: exit %+v, output %q", st, out.String())
		}
		<-m.Done()
		// The container's disk got the write.
		if b, err := os.ReadFile(cs.RootDisk); err != nil || !bytes.Contains(b, []byte("written\n")) {
			t.Fatalf("the claimed disk does not hold the guest's write: %v", err)
		}

		// Adopt after a "daemon restart", by the claim's record.
		m2, err := p.Start(ctx, blankSpec("bl2"))
		if err != nil {
			t.Fatal(err)
		}
		defer m2.Kill(context.Background())
		cs2 := cs
		cs2.ID, cs2.StateDir = "test-claimed2", filepath.Join(sdir, "cl2")
		if err := p.Claim(ctx, m2, cs2); err != nil {
			t.Fatalf("claim: %v", err)
		}
		m2.(*machine).mon.close()
		p2, err := New(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		am, err := p2.Adopt(ctx, cs2)
		if err != nil || am.Pid() != m2.Pid() {
			t.Fatalf("adopt of a claimed blank: %v", err)
		}
		if err := am.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		<-m2.Done()

		// A blank of a template that changed since is refused.
		m3, err := p.Start(ctx, blankSpec("bl3"))
		if err != nil {
			t.Fatal(err)
		}
		defer m3.Kill(context.Background())
		later := time.Now().Add(time.Minute)
		if err := os.Chtimes(filepath.Join(opts.Root, key, tplStateName), later, later); err != nil {
			t.Fatal(err)
		}
		cs3 := cs
		cs3.ID, cs3.StateDir = "test-claimed3", filepath.Join(sdir, "cl3")
		if err := p.Claim(ctx, m3, cs3); !errors.Is(err, vmbackend.ErrTemplateChanged) {
			t.Fatalf("claim of a blank of a changed template: %v", err)
		}
	})

	t.Run("corrupt-template-removed", func(t *testing.T) {
		if removed, err := p.CheckTemplate(ctx, testShape); removed || err != nil {
			t.Fatalf("an intact template: removed %v, %v", removed, err)
		}
		// One byte of the device state changed, the size the same.
		state := filepath.Join(opts.Root, key, tplStateName)
		b, err := os.ReadFile(state)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(state, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := p.loadTemplate(key); err != nil {
			t.Fatalf("the size check already refuses it: %v", err)
		}
		removed, err := p.CheckTemplate(ctx, testShape)
		if !removed || err != nil {
			t.Fatalf("a template with a changed state file: removed %v, %v", removed, err)
		}
		if _, err := os.Stat(filepath.Join(opts.Root, key)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the corrupt template is still there: %v", err)
		}
	})
}

// testWriter sends log lines to t.Log until the test ends (goroutines
// such as the exit watchers may log later).
type testWriter struct {
	t    *testing.T
	mu   *sync.Mutex
	done *bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, mu: new(sync.Mutex), done: new(bool)}
	t.Cleanup(func() {
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// hopsToTest is how many times migrate-busy-hops migrates its guest.
var hopsToTest = 4

// waitOutput waits up to 30 s for want in out.
func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), want); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", want, out.String())
		}
	}
}

// execShell runs a shell command in the guest and returns its output and
// exit code (-1 if it has none).
func execShell(ctx context.Context, t *testing.T, client *agentclient.Client, cmd string) (string, int) {
	t.Helper()
	var out syncBuffer
	proc, err := client.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"/bin/sh", "-c", cmd}, Env: []string{"PATH=/bin"}}, agentclient.ProcessIO{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-proc.Exited():
	case <-time.After(30 * time.Second):
		t.Fatalf("%q did not exit", cmd)
	}
	es, ok := proc.Status()
	if !ok {
		return out.String(), -1
	}
	return out.String(), es.Code
}

// eofReader records that its reader returned io.EOF.
type eofReader struct {
	r     io.Reader
	ended atomic.Bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.ended.Store(true)
	}
	return n, err
}
