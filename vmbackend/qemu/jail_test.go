package qemu

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend"
)

// jailTestFiles makes a clone's files in a temp dir: a template with its
// memory file and share placeholder, a raw base disk and a qcow2 overlay
// on it, a state dir, a share and a file nothing names.
func jailTestFiles(t *testing.T) (dir string, cfg vmConfig) {
	t.Helper()
	dir = t.TempDir()
	for _, d := range []string{"tpl/" + sharePlaceholderName, "state", "share", "other"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"vmlinuz", "initrd", "tpl/memory", "base.raw", "other/secret", "share/data"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A qcow2 header whose backing file is base.raw, named relatively.
	hdr := make([]byte, 512)
	copy(hdr, qcow2Magic)
	hdr[15] = 100                   // backing file offset
	hdr[19] = byte(len("base.raw")) // backing file name size
	copy(hdr[100:], "base.raw")
	if err := os.WriteFile(filepath.Join(dir, "disk.qcow2"), hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, vmConfig{
		Accel: vmbackend.AccelTCG, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"),
		MemPath: filepath.Join(dir, "tpl/memory"), Disk: filepath.Join(dir, "disk.qcow2"),
		QMPSock: filepath.Join(dir, "state/qmp.sock"), AgentSock: filepath.Join(dir, "state/agent.sock"),
		Console: filepath.Join(dir, "console.log"),
		Shares:  []vmbackend.ShareSpec{{Tag: vmbackend.ShareTag(0), HostPath: filepath.Join(dir, "share"), ReadOnly: true}},
	}
}

func TestJailFor(t *testing.T) {
	dir, cfg := jailTestFiles(t)
	p := &Provider{opts: Options{Root: filepath.Join(dir, "root"), QEMUPath: "/usr/bin/qemu-system-x86_64"}}
	j, err := p.jailFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]jailBind{}
	var order []string
	for _, b := range j.binds {
		got[b.path] = b
		order = append(order, b.path)
	}
	for path, want := range map[string]jailBind{
		"/usr":                                {dir: true, readOnly: true},
		"/dev/net/tun":                        {},
		cfg.Kernel:                            {readOnly: true},
		cfg.MemPath:                           {},
		filepath.Join(dir, "tpl/share-empty"): {dir: true, readOnly: true},
		cfg.Disk:                              {},
		filepath.Join(dir, "base.raw"):        {readOnly: true},
		filepath.Join(dir, "state"):           {dir: true},
		cfg.Console:                           {},
		filepath.Join(dir, "share"):           {dir: true, readOnly: true},
	} {
		want.path = path
		if got[path] != want {
			t.Errorf("bind %s: %+v, want %+v", path, got[path], want)
		}
	}
	for _, never := range []string{dir, filepath.Join(dir, "other"), "/dev/kvm", "/etc"} {
		if _, ok := got[never]; ok {
			t.Errorf("%s is in the jail", never)
		}
	}
	if len(order) != len(got) {
		t.Errorf("repeated binds: %v", order)
	}
	if _, err := os.Stat(cfg.Console); err != nil {
		t.Errorf("console file not made: %v", err)
	}
	if i, k := slices.Index(order, "/usr"), slices.Index(order, cfg.Disk); i > k {
		t.Errorf("binds not parents first: %v", order)
	}
}

// TestJailEnter enters a jail on a thread of its own, as spawn does, and
// looks around from there: only what the jail binds exists, read-only
// binds refuse writes, /proc/self/fd works (QEMU's 9p server needs it),
// and the test's other threads still see the host.
func TestJailEnter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	dir, cfg := jailTestFiles(t)
	// A file under a directory bound read-only before it (an installed
	// kernel under /usr) is bound again.
	cfg.Initrd = filepath.Join(dir, "share/data")
	p := &Provider{opts: Options{Root: filepath.Join(dir, "root"), QEMUPath: "/usr/bin/qemu-system-x86_64"}}
	j, err := p.jailFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	check := func() error {
		for _, gone := range []string{filepath.Join(dir, "other/secret"), "/etc/passwd", "/proc/sys", "/sys/kernel", filepath.Join(dir, "root")} {
			if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
				problems = append(problems, gone+" exists in the jail")
			}
		}
		for _, there := range []string{cfg.Kernel, cfg.MemPath, filepath.Join(dir, "base.raw"), filepath.Join(dir, "share/data"), "/proc/self/fd/0"} {
			if _, err := os.Stat(there); err != nil {
				problems = append(problems, err.Error())
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "share/data"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
			problems = append(problems, "write to a read-only share: "+errString(err))
		}
		if err := os.WriteFile(filepath.Join(dir, "state/new"), []byte("x"), 0o644); err != nil {
			problems = append(problems, "write to the state dir: "+err.Error())
		}
		if err := os.WriteFile("/planted", []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
			problems = append(problems, "write to the jail's root: "+errString(err))
		}
		// What the thread starts runs in the jail too.
		if out, err := exec.Command("/usr/bin/ls", "/").Output(); err != nil {
			problems = append(problems, "run ls in the jail: "+err.Error())
		} else if string(out) == "" {
			problems = append(problems, "ls / in the jail printed nothing")
		}
		return nil
	}
	if err := startFiltered(j.enter, check, nil); err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Error(pr)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Errorf("the test's own threads lost the host: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "state/new")); err != nil || string(b) != "x" {
		t.Errorf("the jail's write to the state dir, on the host: %q, %v", b, err)
	}
	if mounted, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mounted), j.root) {
		t.Errorf("the jail's mounts leaked into the test's namespace")
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// The process's main thread is never jailed (startFiltered): /proc/self,
// which shows the main thread, keeps showing jevmd's mount namespace
// however often jails are made.
func TestJailNeverMainThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	dir, cfg := jailTestFiles(t)
	p := &Provider{opts: Options{Root: filepath.Join(dir, "root"), QEMUPath: "/usr/bin/qemu-system-x86_64"}}
	j, err := p.jailFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	mainThread := 0
	for i := 0; i < 50; i++ {
		err := startFiltered(j.enter, func() error {
			if unix.Gettid() == unix.Getpid() {
				mainThread++
			}
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := os.Readlink("/proc/self/ns/mnt"); after != before || mainThread > 0 {
		t.Fatalf("/proc/self's mount namespace %s, was %s; %d jails on the main thread", after, before, mainThread)
	}
}
