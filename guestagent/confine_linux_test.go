//go:build linux

package guestagent

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/internal/seccomp"
)

// The default profile's program, compiled as the daemon does, installed in
// a real kernel (this host's, x86_64 like the guest) by installSeccomp in a
// child process: the test binary re-executed.
const seccompChildEnv = "JEVM_TEST_SECCOMP_CHILD"

func defaultProgram(t *testing.T, caps []string) []byte {
	r, err := seccomp.Default().Resolve(caps, "")
	if err != nil {
		t.Fatal(err)
	}
	prog, err := seccomp.Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, ins := range prog.Instructions {
		b = binary.LittleEndian.AppendUint16(b, ins.Op)
		b = append(b, ins.Jt, ins.Jf)
		b = binary.LittleEndian.AppendUint32(b, ins.K)
	}
	return b
}

func TestSeccompFilterInKernel(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the filter is compiled for x86_64")
	}
	if os.Getenv(seccompChildEnv) != "" {
		seccompChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSeccompFilterInKernel$", "-test.v")
	cmd.Env = append(os.Environ(), seccompChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
}

func seccompChild(t *testing.T) {
	runtime.LockOSThread()
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	prog := defaultProgram(t, caps)
	// no_new_privs: an unprivileged test run may install a filter too.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := installSeccomp(prog, 0); err != nil {
		t.Fatal(err)
	}
	// Allowed.
	if unix.Getpid() <= 0 {
		t.Error("getpid")
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatalf("create a file under the filter: %v", err)
	}
	f.Close()
	// Denied without CAP_SYS_ADMIN: EPERM, as docker run's `unshare -U`.
	if err := unix.Unshare(unix.CLONE_NEWUSER); !errors.Is(err, unix.EPERM) {
		t.Errorf("unshare(CLONE_NEWUSER): %v, want EPERM", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_KEYCTL, 0, 0, 0); errno != unix.EPERM {
		t.Errorf("keyctl: %v, want EPERM", errno)
	}
	// clone3: ENOSYS so that libc falls back to clone.
	if _, _, errno := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0); errno != unix.ENOSYS {
		t.Errorf("clone3: %v, want ENOSYS", errno)
	}
	// personality: allowed for PER_LINUX, denied for others.
	if _, _, errno := unix.Syscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0); errno != 0 {
		t.Errorf("personality(query): %v", errno)
	}
	if _, _, errno := unix.Syscall(unix.SYS_PERSONALITY, 0x0040000, 0, 0); errno != unix.EPERM {
		t.Errorf("personality(ADDR_NO_RANDOMIZE): %v, want EPERM", errno)
	}
	// A number past every call the profile names: ENOSYS.
	if _, _, errno := unix.Syscall(1000, 0, 0, 0); errno != unix.ENOSYS {
		t.Errorf("syscall 1000: %v, want ENOSYS", errno)
	}
}
