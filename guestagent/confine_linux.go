//go:build linux

package guestagent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Confinement of the container's processes, as runc does it (the host's
// daemon/security.go decides what): masked and read-only paths, set up once
// by the main process's exec helper after the container's /proc is
// mounted and the helper is chrooted into the container; and a seccomp
// filter, compiled on the host and installed by the exec helper right
// before the program's execve.

// pathConfinement is what the main process's helper masks and makes
// read-only (StartRequest.MaskedPaths, ReadonlyPaths).
type pathConfinement struct {
	Masked   []string `json:"masked,omitempty"`
	Readonly []string `json:"readonly,omitempty"`
}

func (pc pathConfinement) empty() bool { return len(pc.Masked) == 0 && len(pc.Readonly) == 0 }

// applyPathConfinement runs in the helper, chrooted: paths are the
// container's, and a symlink cannot lead out of it. Missing paths are
// skipped, as runc does.
func applyPathConfinement(pc pathConfinement) error {
	for _, p := range pc.Masked {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range pc.Readonly {
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
		// A bind remount replaces the mount's flags: keep nosuid, nodev
		// and noexec (ST_* and MS_* have the same values).
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
		keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|keep, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	return nil
}

const seccompSetModeFilter = 1 // SECCOMP_SET_MODE_FILTER

// installSeccomp installs a filter (struct sock_filter array,
// little-endian) on the calling thread; the caller has locked it and
// execs from it. Without no_new_privs the caller needs CAP_SYS_ADMIN,
// so it runs before the switch to the container's user.
func installSeccomp(prog []byte, flags uint32) error {
	if len(prog) == 0 || len(prog)%8 != 0 || len(prog)/8 > 0xffff {
		return fmt.Errorf("seccomp: bad program of %d bytes", len(prog))
	}
	filter := make([]unix.SockFilter, len(prog)/8)
	for i := range filter {
		b := prog[8*i:]
		filter[i] = unix.SockFilter{
			Code: binary.LittleEndian.Uint16(b[0:]),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.LittleEndian.Uint32(b[4:]),
		}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, seccompSetModeFilter, uintptr(flags), uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("seccomp: install filter: %w", errno)
	}
	return nil
}
