package seccomp

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
)

var dockerDefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// filter runs a compiled program in x/net/bpf's VM. The VM loads words
// big-endian where the kernel loads them in the guest's (little-endian)
// order; the program only loads aligned words, so each word of
// seccomp_data is written big-endian here and the results agree.
type filter struct {
	t  *testing.T
	vm *bpf.VM
}

func compileProfile(t *testing.T, p *Profile, caps []string) filter {
	t.Helper()
	r, err := p.Resolve(caps, "6.1.0")
	if err != nil {
		t.Fatal(err)
	}
	prog, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	ins := make([]bpf.Instruction, len(prog.Instructions))
	for i, raw := range prog.Instructions {
		ins[i] = raw.Disassemble()
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	return filter{t, vm}
}

func (f filter) run(arch, nr uint32, args ...uint64) uint32 {
	f.t.Helper()
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[20+8*i:], uint32(a>>32))
	}
	v, err := f.vm.Run(b)
	if err != nil {
		f.t.Fatal(err)
	}
	return uint32(v)
}

func (f filter) x86_64(name string, args ...uint64) uint32 {
	f.t.Helper()
	nr, ok := sysnumX86_64[name]
	if !ok {
		f.t.Fatalf("no syscall %s", name)
	}
	return f.run(auditArchX86_64, nr, args...)
}

const (
	cloneNewUser = 0x10000000
	cloneNewNS   = 0x00020000
	sigchld      = 17
)

func TestDefaultProfile(t *testing.T) {
	f := compileProfile(t, Default(), dockerDefaultCaps)
	for _, tc := range []struct {
		name string
		got  uint32
		want uint32
	}{
		{"read", f.x86_64("read"), retAllow},
		{"chown", f.x86_64("chown"), retAllow},
		{"unshare", f.x86_64("unshare"), retErrno | errnoEPERM},
		{"mount", f.x86_64("mount"), retErrno | errnoEPERM},
		{"keyctl", f.x86_64("keyctl"), retErrno | errnoEPERM},
		{"clone fork", f.x86_64("clone", sigchld), retAllow},
		{"clone newuser", f.x86_64("clone", cloneNewUser|sigchld), retErrno | errnoEPERM},
		// clone3's flags are behind a pointer: ENOSYS, so that libc falls back to clone.
		{"clone3", f.x86_64("clone3"), retErrno | errnoENOSYS},
		{"socket inet", f.x86_64("socket", 2, 1, 0), retAllow},
		{"socket vsock", f.x86_64("socket", 40, 1, 0), retErrno | errnoEPERM},
		{"personality linux", f.x86_64("personality", 0), retAllow},
		{"personality 0xffffffff", f.x86_64("personality", 0xffffffff), retAllow},
		{"personality other", f.x86_64("personality", 5), retErrno | errnoEPERM},
		// A call newer than any the profile names: ENOSYS, not EPERM.
		{"unknown", f.run(auditArchX86_64, 1000), retErrno | errnoENOSYS},
		{"i386 chown32", f.run(auditArchI386, sysnumX86["chown32"]), retAllow},
		{"i386 unshare", f.run(auditArchI386, sysnumX86["unshare"]), retErrno | errnoEPERM},
		{"x32 read", f.run(auditArchX86_64, sysnumX86_64["read"]|x32SyscallBit), retAllow},
		{"x32 unshare", f.run(auditArchX86_64, sysnumX86_64["unshare"]|x32SyscallBit), retErrno | errnoEPERM},
		{"other arch", f.run(0xc00000b7, 63), retKillThread}, // aarch64
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

func TestDefaultProfileSysAdmin(t *testing.T) {
	f := compileProfile(t, Default(), append(append([]string(nil), dockerDefaultCaps...), "CAP_SYS_ADMIN"))
	for _, name := range []string{"unshare", "mount", "setns", "clone3"} {
		if got := f.x86_64(name); got != retAllow {
			t.Errorf("%s with CAP_SYS_ADMIN: got %#x, want allow", name, got)
		}
	}
	if got := f.x86_64("clone", cloneNewUser|cloneNewNS); got != retAllow {
		t.Errorf("clone newuser with CAP_SYS_ADMIN: got %#x, want allow", got)
	}
}

// The profile of moby's TestSeccomp: allow by default, no architectures.
func TestConfinedProfile(t *testing.T) {
	p, err := Parse([]byte(`{"defaultAction": "SCMP_ACT_ALLOW",
 "syscalls": [ { "names": [ "chown", "chown32", "fchownat" ], "action": "SCMP_ACT_ERRNO" } ]}`))
	if err != nil {
		t.Fatal(err)
	}
	f := compileProfile(t, p, nil)
	if got := f.x86_64("chown"); got != retErrno|errnoEPERM {
		t.Errorf("chown: %#x", got)
	}
	if got := f.x86_64("fchownat"); got != retErrno|errnoEPERM {
		t.Errorf("fchownat: %#x", got)
	}
	if got := f.x86_64("unshare"); got != retAllow {
		t.Errorf("unshare: %#x", got)
	}
	if got := f.run(auditArchX86_64, 1000); got != retAllow {
		t.Errorf("unknown call with a default allow: %#x", got)
	}
	// Only the native architecture is covered: libseccomp kills others.
	if got := f.run(auditArchI386, sysnumX86["chown32"]); got != retKillThread {
		t.Errorf("i386: %#x", got)
	}
}

func TestArgumentComparisons(t *testing.T) {
	const big = 0x1_0000_0005 // a high word, to catch 32-bit-only compares
	for _, tc := range []struct {
		op       string
		value    uint64
		valueTwo uint64
		match    []uint64
		noMatch  []uint64
	}{
		{"SCMP_CMP_EQ", big, 0, []uint64{big}, []uint64{5, 0x2_0000_0005, big + 1}},
		{"SCMP_CMP_NE", big, 0, []uint64{5, 0x2_0000_0005, 0}, []uint64{big}},
		{"SCMP_CMP_GT", big, 0, []uint64{big + 1, 0x2_0000_0000}, []uint64{big, 6, 0x1_0000_0000}},
		{"SCMP_CMP_GE", big, 0, []uint64{big, big + 1, 0x2_0000_0000}, []uint64{big - 1, 6}},
		{"SCMP_CMP_LT", big, 0, []uint64{big - 1, 6, 0}, []uint64{big, 0x2_0000_0000, 0x1_0000_0006}},
		{"SCMP_CMP_LE", big, 0, []uint64{big, 6, 0}, []uint64{big + 1, 0x2_0000_0000}},
		{"SCMP_CMP_MASKED_EQ", 0x1_0000_00ff, 0x1_0000_0005, []uint64{0x1_0000_0005, 0x1_0000_ff05, 0x3_0000_0005}, []uint64{5, 0x1_0000_0006}},
	} {
		p := &Profile{DefaultAction: "SCMP_ACT_ALLOW", Syscalls: []Syscall{{
			Names: []string{"ioctl"}, Action: "SCMP_ACT_ERRNO",
			Args: []Arg{{Index: 1, Value: tc.value, ValueTwo: tc.valueTwo, Op: tc.op}},
		}}}
		f := compileProfile(t, p, nil)
		for _, v := range tc.match {
			if got := f.x86_64("ioctl", 3, v); got != retErrno|errnoEPERM {
				t.Errorf("%s %#x: %#x does not match", tc.op, tc.value, v)
			}
		}
		for _, v := range tc.noMatch {
			if got := f.x86_64("ioctl", 3, v); got != retAllow {
				t.Errorf("%s %#x: %#x matches", tc.op, tc.value, v)
			}
		}
	}
}

// All comparisons of a rule must hold; two of the same argument are
// alternatives.
func TestArgumentConjunction(t *testing.T) {
	p := &Profile{DefaultAction: "SCMP_ACT_ALLOW", Syscalls: []Syscall{
		{Names: []string{"ioctl"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: uintp(13),
			Args: []Arg{{Index: 0, Value: 1, Op: "SCMP_CMP_EQ"}, {Index: 1, Value: 2, Op: "SCMP_CMP_EQ"}}},
		{Names: []string{"fcntl"}, Action: "SCMP_ACT_ERRNO",
			Args: []Arg{{Index: 0, Value: 1, Op: "SCMP_CMP_EQ"}, {Index: 0, Value: 2, Op: "SCMP_CMP_EQ"}}},
	}}
	f := compileProfile(t, p, nil)
	if got := f.x86_64("ioctl", 1, 2); got != retErrno|13 {
		t.Errorf("ioctl 1 2: %#x", got)
	}
	if got := f.x86_64("ioctl", 1, 3); got != retAllow {
		t.Errorf("ioctl 1 3: %#x", got)
	}
	for _, a := range []uint64{1, 2} {
		if got := f.x86_64("fcntl", a); got != retErrno|errnoEPERM {
			t.Errorf("fcntl %d: %#x", a, got)
		}
	}
	if got := f.x86_64("fcntl", 3); got != retAllow {
		t.Errorf("fcntl 3: %#x", got)
	}
}

func TestProfileErrors(t *testing.T) {
	for _, body := range []string{
		`{"defaultAction": "SCMP_ACT_BOGUS"}`,
		`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}`,
		`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}`,
		`{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}`,
		`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}`,
	} {
		p, err := Parse([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		r, err := p.Resolve(nil, "")
		if err == nil {
			_, err = Compile(r)
		}
		if err == nil {
			t.Errorf("%s: no error", body)
		}
	}
	if _, err := Parse([]byte(`{`)); err == nil {
		t.Error("bad JSON: no error")
	}
	// Nothing to confine: no filter, as with dockerd.
	if r, err := (&Profile{}).Resolve(nil, ""); err != nil || r != nil {
		t.Errorf("empty profile: %v %v", r, err)
	}
}

func TestMinKernel(t *testing.T) {
	p := &Profile{DefaultAction: "SCMP_ACT_ERRNO", Syscalls: []Syscall{
		{Names: []string{"read"}, Action: "SCMP_ACT_ALLOW", Includes: &Filter{MinKernel: "5.10"}},
	}}
	for release, want := range map[string]int{"5.4.0": 0, "5.10.1-foo": 1, "6.1": 1, "": 1} {
		r, err := p.Resolve(nil, release)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Rules) != want {
			t.Errorf("kernel %q: %d rules, want %d", release, len(r.Rules), want)
		}
	}
}

func uintp(v uint) *uint { return &v }
