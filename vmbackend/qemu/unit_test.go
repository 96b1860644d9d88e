package qemu

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

func testConfig() vmConfig {
	return vmConfig{
		Name: "jevm-abc", Accel: vmbackend.AccelTCG,
		Shape:  vmbackend.Shape{MemoryMiB: 256, VCPUs: 2},
		Kernel: "/k/vmlinuz", Initrd: "/k/initrd", Append: kernelCmdline("x=1"),
		MemPath: "/t/memory", Disk: "/d/root.qcow2", DiskFormat: "qcow2",
		VMGenID: "11111111-2222-3333-4444-555555555555",
		QMPSock: "/s/qmp.sock", AgentSock: "/s/agent.sock", Console: "/s/console.log",
	}
}

// argAfter returns the values following every occurrence of flag.
func argsAfter(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

func TestMachineArgsTemplateVsClone(t *testing.T) {
	tpl := testConfig()
	tpl.MemShared = true
	tpl.Disk, tpl.DiskFormat = "/t/disk.raw", "raw"
	clone := testConfig()
	clone.Incoming = true
	clone.VMGenID = "99999999-2222-3333-4444-555555555555"

	ta, ca := machineArgs(tpl), machineArgs(clone)
	for _, want := range []string{"-nodefaults", "-no-user-config", "-no-reboot"} {
		if !slices.Contains(ta, want) || !slices.Contains(ca, want) {
			t.Errorf("missing %s", want)
		}
	}
	if got := argsAfter(ta, "-object"); len(got) != 1 || !strings.Contains(got[0], "share=on") || !strings.Contains(got[0], "mem-path=/t/memory") || !strings.Contains(got[0], fmt.Sprintf("size=%dK", 256<<10+ramPad>>10)) {
		t.Errorf("template memory backend: %v", got)
	}
	if got := argsAfter(ca, "-object"); len(got) != 1 || !strings.Contains(got[0], "share=off") {
		t.Errorf("clone memory backend: %v", got)
	}
	// The RAM is padded (ramPad: live migration under TCG), in -m too.
	if got := argsAfter(ta, "-m"); len(got) != 1 || got[0] != fmt.Sprintf("%dk", 256<<10+ramPad>>10) {
		t.Errorf("-m %v", got)
	}
	if got := argsAfter(ca, "-M"); len(got) != 1 || got[0] != "pc,memory-backend=mem" {
		t.Errorf("machine: %v", got)
	}
	if got := argsAfter(ca, "-incoming"); len(got) != 1 || got[0] != "defer" || !slices.Contains(ca, "-S") {
		t.Errorf("clone must be -S -incoming defer: %v", ca)
	}
	if slices.Contains(ta, "-incoming") || slices.Contains(ta, "-S") {
		t.Errorf("template must boot normally: %v", ta)
	}
	if got := argsAfter(ca, "-accel"); len(got) != 1 || got[0] != "tcg,thread=multi" {
		t.Errorf("accel: %v", got)
	}
	if got := argsAfter(ca, "-cpu"); len(got) != 1 || got[0] != "max" {
		t.Errorf("cpu: %v", got)
	}
	kvm := testConfig()
	kvm.Accel = vmbackend.AccelKVM
	ka := machineArgs(kvm)
	if argsAfter(ka, "-accel")[0] != "kvm" || argsAfter(ka, "-cpu")[0] != "host" {
		t.Errorf("kvm args: %v", ka)
	}

	// The devices differ only in the disk file/format and the vmgenid
	// GUID; the drive id is the same.
	td, cd := devices(tpl), devices(clone)
	if len(td) != len(cd) {
		t.Fatalf("device lists differ in length:\n%v\n%v", td, cd)
	}
	for i := range td {
		a, b := td[i], cd[i]
		if a == b {
			continue
		}
		switch {
		case strings.HasPrefix(a, "file=/t/disk.raw,if=none,id=root,format=raw") && strings.HasPrefix(b, "file=/d/root.qcow2,if=none,id=root,format=qcow2"):
		case strings.HasPrefix(a, "vmgenid,") && strings.HasPrefix(b, "vmgenid,") && strings.Contains(b, clone.VMGenID):
		default:
			t.Errorf("device arg %d differs: %q vs %q", i, a, b)
		}
	}
	joined := strings.Join(ca, " ")
	for _, want := range []string{
		"virtserialport,bus=vser0.0,nr=1,chardev=agent,name=" + agentproto.PortName,
		"socket,id=agent,path=/s/agent.sock,server=on,wait=off",
		"socket,id=qmp,path=/s/qmp.sock,server=on,wait=off",
		"-mon chardev=qmp,mode=control",
		"file,id=console,path=/s/console.log,append=on",
		"virtio-blk-pci,drive=root",
		"-name jevm-abc",
		"-append " + baseKernelArgs + " x=1",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("clone command line lacks %q:\n%s", want, joined)
		}
	}
}

func TestOptEscapeAndQuote(t *testing.T) {
	c := testConfig()
	c.Disk = "/a,b/disk"
	if !strings.Contains(strings.Join(devices(c), " "), "file=/a,,b/disk,") {
		t.Errorf("comma not doubled: %v", devices(c))
	}
}

// Every VM runs under QEMU's seccomp filter with spawning denied (the
// snapshot's state file comes as a descriptor instead of exec:cat).
func TestSandboxed(t *testing.T) {
	args := strings.Join(machineArgs(testConfig()), " ")
	if !strings.Contains(args, "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny") {
		t.Errorf("no sandbox: %s", args)
	}
	if strings.Contains(args, "exec:") {
		t.Errorf("an exec: URI: %s", args)
	}
}

func TestTemplateKey(t *testing.T) {
	base := TemplateKeyInputs{
		QEMU: "QEMU emulator version 7.2.22", KernelSHA256: "k", InitrdSHA256: "i",
		Accel: vmbackend.AccelTCG, Shape: vmbackend.Shape{MemoryMiB: 256, VCPUs: 1},
		DiskSize: 8 << 30, KernelCmdline: kernelCmdline(""), DeviceLayout: DeviceLayoutVersion, AgentProto: agentproto.Version,
	}
	k := base.Key()
	if len(k) != 24 || k != base.Key() {
		t.Fatalf("key %q not stable", k)
	}
	mods := map[string]func(*TemplateKeyInputs){
		"qemu":    func(in *TemplateKeyInputs) { in.QEMU += "x" },
		"kernel":  func(in *TemplateKeyInputs) { in.KernelSHA256 = "k2" },
		"initrd":  func(in *TemplateKeyInputs) { in.InitrdSHA256 = "i2" },
		"accel":   func(in *TemplateKeyInputs) { in.Accel = vmbackend.AccelKVM },
		"memory":  func(in *TemplateKeyInputs) { in.Shape.MemoryMiB = 512 },
		"vcpus":   func(in *TemplateKeyInputs) { in.Shape.VCPUs = 2 },
		"disk":    func(in *TemplateKeyInputs) { in.DiskSize = 4 << 30 },
		"cmdline": func(in *TemplateKeyInputs) { in.KernelCmdline += " debug" },
		"layout":  func(in *TemplateKeyInputs) { in.DeviceLayout++ },
		"proto":   func(in *TemplateKeyInputs) { in.AgentProto++ },
	}
	seen := map[string]string{k: "base"}
	for name, mod := range mods {
		in := base
		mod(&in)
		nk := in.Key()
		if prev, dup := seen[nk]; dup {
			t.Errorf("changing %s gives the key of %s", name, prev)
		}
		seen[nk] = name
	}
}

// TestProviderKeyFollowsFiles checks that the provider rehashes a changed
// initrd (without a QEMU: the provider is built by hand).
func TestProviderKeyFollowsFiles(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	os.WriteFile(initrd, []byte("initrd-1"), 0o644)
	p := &Provider{opts: Options{Kernel: kernel, Initrd: initrd, DiskSize: DefaultDiskSize}, qemuVersion: "QEMU emulator version 7.2.22", accel: vmbackend.AccelTCG}
	shape := vmbackend.Shape{MemoryMiB: 256, VCPUs: 1}
	k1, err := p.TemplateKey(shape)
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := p.TemplateKey(shape); k != k1 {
		t.Fatal("key changed without a file change")
	}
	os.WriteFile(initrd, []byte("initrd-2"), 0o644)
	future := time.Now().Add(time.Minute)
	os.Chtimes(initrd, future, future)
	k2, err := p.TemplateKey(shape)
	if err != nil {
		t.Fatal(err)
	}
	if k2 == k1 {
		t.Fatal("changed initrd did not change the template key")
	}
}

func TestParseProc(t *testing.T) {
	stat := "1234 (qemu-system-x86 (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0 100 1000 100 18446744073709551615"
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3*time.Second {
		t.Errorf("cpu = %v, %v; want 3s", cpu, err)
	}
	rss, pss := parseSmapsRollup("55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:              102400 kB\nPss:               51200 kB\nPss_Anon:  1 kB\n")
	if rss != 100<<20 || pss != 50<<20 {
		t.Errorf("rss %d pss %d", rss, pss)
	}
}

func TestDiskVirtualSize(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw")
	f, _ := os.Create(raw)
	f.Truncate(1 << 30)
	f.Close()
	if n, fmt, err := diskVirtualSize(raw); err != nil || n != 1<<30 || fmt != "raw" {
		t.Errorf("raw: %d %s %v", n, fmt, err)
	}
	hdr := make([]byte, 512)
	copy(hdr, []byte{'Q', 'F', 'I', 0xfb, 0, 0, 0, 3})
	binary.BigEndian.PutUint64(hdr[24:], 8<<30)
	q := filepath.Join(dir, "q")
	os.WriteFile(q, hdr, 0o644)
	if n, fmt, err := diskVirtualSize(q); err != nil || n != 8<<30 || fmt != "qcow2" {
		t.Errorf("qcow2: %d %s %v", n, fmt, err)
	}
}

// A container's root disk is the provider's business: made over an image's
// base disk with qemu-img, and read back (its base) from the qcow2 header.
func TestRootDisks(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	p := &Provider{opts: Options{DiskSize: 64 << 20, QEMUImgPath: qemuImg}}
	base := filepath.Join(dir, "base.ext4")
	if err := os.WriteFile(base, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(base, 64<<20); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "rootfs.qcow2")
	if err := p.CreateRootDisk(context.Background(), base, disk); err != nil {
		t.Fatal(err)
	}
	if got, err := p.RootDiskBase(disk); err != nil || got != base {
		t.Fatalf("RootDiskBase = %q, %v; want %q", got, err, base)
	}
	if n, format, err := diskVirtualSize(disk); err != nil || n != 64<<20 || format != "qcow2" {
		t.Fatalf("root disk: %d %s %v", n, format, err)
	}
	if err := p.CreateRootDisk(context.Background(), base, disk); !errors.Is(err, os.ErrExist) {
		t.Fatalf("over an existing disk: %v", err)
	}
	if _, err := p.RootDiskBase(base); err == nil || !strings.Contains(err.Error(), "not a qcow2") {
		t.Fatalf("RootDiskBase of a raw disk: %v", err)
	}
	// A base of the wrong size is refused before anything is written.
	small := filepath.Join(dir, "small.ext4")
	os.WriteFile(small, make([]byte, 4096), 0o644)
	other := filepath.Join(dir, "other.qcow2")
	if err := p.CreateRootDisk(context.Background(), small, other); err == nil {
		t.Fatal("a base disk of the wrong size was accepted")
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatalf("failed create left %s behind: %v", other, err)
	}
	// A relative backing file name is taken relative to the overlay.
	rel := filepath.Join(dir, "rel.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "base.ext4", rel).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got, err := p.RootDiskBase(rel); err != nil || got != base {
		t.Fatalf("relative backing file: %q, %v", got, err)
	}
	if p.GuestRootDevice() != "/dev/vda" {
		t.Fatalf("GuestRootDevice = %q", p.GuestRootDevice())
	}
}

func TestCheckSpec(t *testing.T) {
	p := &Provider{}
	good := vmbackend.MachineSpec{ID: "abc123", StateDir: "/run/jevm/abc", ConsoleLog: "/x/console.log"}
	if err := p.checkSpec(good); err != nil {
		t.Error(err)
	}
	for _, bad := range []vmbackend.MachineSpec{
		{ID: "a,b", StateDir: "/r", ConsoleLog: "c"},
		{ID: "", StateDir: "/r", ConsoleLog: "c"},
		{ID: "a", StateDir: "rel", ConsoleLog: "c"},
		{ID: "a", StateDir: "/" + strings.Repeat("x", 100), ConsoleLog: "c"},
	} {
		if err := p.checkSpec(bad); err == nil {
			t.Errorf("spec %+v accepted", bad)
		}
	}
}

func TestLoadTemplateRejectsIncomplete(t *testing.T) {
	root := t.TempDir()
	p := &Provider{opts: Options{Root: root}}
	in := TemplateKeyInputs{QEMU: "q", Shape: vmbackend.Shape{MemoryMiB: 64, VCPUs: 1}, DiskSize: 1 << 20}
	key := in.Key()
	dir := filepath.Join(root, key)
	os.MkdirAll(dir, 0o755)
	if _, err := p.loadTemplate(key); err == nil {
		t.Fatal("empty template dir accepted")
	}
	b, _ := json.Marshal(templateMeta{Key: key, Inputs: in})
	os.WriteFile(filepath.Join(dir, tplMetaName), b, 0o644)
	mk := func(name string, size int64) {
		f, _ := os.Create(filepath.Join(dir, name))
		f.Truncate(size)
		f.Close()
	}
	mk(tplMemoryName, guestRAMBytes(in.Shape))
	mk(tplDiskName, 1<<20)
	if _, err := p.loadTemplate(key); err == nil {
		t.Fatal("template without state accepted")
	}
	mk(tplStateName, 1000)
	if _, err := p.loadTemplate(key); err != nil {
		t.Fatalf("complete template rejected: %v", err)
	}
	mk(tplMemoryName, 32<<20)
	if _, err := p.loadTemplate(key); err == nil {
		t.Fatal("template with a short memory file accepted")
	}
	// A meta.json for other inputs under this key is stale.
	mk(tplMemoryName, 64<<20)
	in2 := in
	in2.QEMU = "other"
	b, _ = json.Marshal(templateMeta{Key: key, Inputs: in2})
	os.WriteFile(filepath.Join(dir, tplMetaName), b, 0o644)
	if _, err := p.loadTemplate(key); err == nil {
		t.Fatal("meta.json of other inputs accepted")
	}
}

func TestStartRejectsWrongDiskSize(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "root.raw")
	f, _ := os.Create(disk)
	f.Truncate(1 << 20)
	f.Close()
	p := &Provider{opts: Options{DiskSize: 2 << 20}}
	p.log = logrusEntryForTest()
	_, err := p.Start(t.Context(), vmbackend.MachineSpec{ID: "x", RootDisk: disk, StateDir: dir, ConsoleLog: filepath.Join(dir, "c")})
	if err == nil || !strings.Contains(err.Error(), "virtual size") {
		t.Fatalf("err = %v, want a virtual size error", err)
	}
}

func logrusEntryForTest() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// TCG's translated-code buffer is sized unless asked for QEMU's default;
// KVM takes no tb-size.
func TestAccelArgsTBSize(t *testing.T) {
	for _, tc := range []struct {
		accel string
		tb    int
		want  string
	}{
		{vmbackend.AccelTCG, 16, "tcg,thread=multi,tb-size=16"},
		{vmbackend.AccelTCG, 0, "tcg,thread=multi"},
		{vmbackend.AccelKVM, 16, "kvm"},
	} {
		if got := accelArgs(tc.accel, tc.tb)[1]; got != tc.want {
			t.Errorf("accelArgs(%s, %d) = %q, want %q", tc.accel, tc.tb, got, tc.want)
		}
	}
	for opt, want := range map[int]int{0: DefaultTCGTBSizeMiB, -1: 0, 64: 64} {
		p := &Provider{opts: Options{TCGTBSizeMiB: opt}}
		if got := p.tbSizeMiB(); got != want {
			t.Errorf("TCGTBSizeMiB %d: tb-size %d, want %d", opt, got, want)
		}
	}
}

// A restarted daemon adopts only a QEMU whose command line names its own
// state directory's QMP socket: another jevmd on the machine runs VMs of
// the same name (a migration between two daemons of one machine).
func TestQMPChardevPathIdentifiesTheStateDir(t *testing.T) {
	cfg := testConfig()
	cfg.QMPSock = filepath.Join("/var/run/jevm,a/vms/abc", qmpSockName)
	args := machineArgs(cfg)
	has := func(sub string) bool {
		return slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, sub) })
	}
	if !has(qmpChardevPath("/var/run/jevm,a/vms/abc")) {
		t.Fatalf("%s not on the command line %q", qmpChardevPath("/var/run/jevm,a/vms/abc"), args)
	}
	for _, other := range []string{"/var/run/jevm,a/vms/ab", "/var/run/jevm2/vms/abc", "/var/run/jevm,a/vms"} {
		if has(qmpChardevPath(other)) {
			t.Errorf("the command line of %s matches %s", cfg.QMPSock, other)
		}
	}
}
