package qemu

// QEMU runs as an unprivileged user (Options.User, "jevm-vm" by default)
// that keeps, as ambient capabilities, only what its 9p server needs to
// serve shares with security_model=passthrough on the guest's behalf:
// giving created files the guest's owner (CAP_CHOWN), reaching files the
// guest's root may reach whatever their modes (CAP_DAC_OVERRIDE), setting
// modes and times of files it does not own (CAP_FOWNER) and keeping
// setgid bits (CAP_FSETID). Everything else root could do is gone: a QEMU
// taken over by a guest cannot load modules, mount, reconfigure the host's
// network, trace or signal jevmd and other root processes, bind privileged
// ports, or open files by handle (CAP_DAC_READ_SEARCH, the "shocker"
// escape). jevmd opens what needs more before QEMU starts: it creates the
// VM's taps and gives them to the user (grantTap), so that QEMU
// attaches to them without CAP_NET_ADMIN. docs/SECURITY.md lists the
// layers.

import (
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultUser is the user QEMU runs as unless Options.User says
// otherwise; jevmd creates it (a system user and group) when missing, as
// dockerd creates "dockremap" for --userns-remap=default.
const DefaultUser = "jevm-vm"

// vmCaps are QEMU's ambient capabilities (see the top of this file).
var vmCaps = []uintptr{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID}

// VMCapMask is vmCaps as /proc/PID/status's CapEff shows them (for tests).
func VMCapMask() uint64 {
	var m uint64
	for _, c := range vmCaps {
		m |= 1 << c
	}
	return m
}

// vmUser is whom QEMU runs as; nil runs it as jevmd's user (root). Each
// VM's QEMU runs with ids of its own from the user's subordinate ranges
// (vmids.go); the user's own ids run only the KVM probe.
type vmUser struct {
	name   string
	uid    uint32
	gid    uint32
	groups []uint32 // supplementary: "kvm" where it exists, for /dev/kvm
	ids    *vmIDs
}

// own is the VM user's own identity.
func (u *vmUser) own() vmIdentity { return vmIdentity{uid: u.uid, gid: u.gid} }

// resolveUser looks name up ("root" or "0": QEMU keeps jevmd's
// privileges, nil); the default user is created if it does not exist.
func resolveUser(name string) (*vmUser, error) {
	if name == "root" || name == "0" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) && name == DefaultUser {
		if err := createSystemUser(name); err != nil {
			return nil, err
		}
		u, err = user.Lookup(name)
	}
	if err != nil {
		return nil, fmt.Errorf("VM user %q: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("VM user %q: uid %q, gid %q", name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return nil, nil
	}
	vu := &vmUser{name: name, uid: uint32(uid), gid: uint32(gid)}
	if vu.ids, err = loadVMIDs(name); err != nil {
		return nil, err
	}
	if g, err := user.LookupGroup("kvm"); err == nil {
		if kvm, err := strconv.ParseUint(g.Gid, 10, 32); err == nil {
			vu.groups = append(vu.groups, uint32(kvm))
		}
	}
	return vu, nil
}

// createSystemUser adds a system user and its group, without a home or a
// login shell.
func createSystemUser(name string) error {
	out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
		"--comment", "jevm virtual machines (QEMU)", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create the VM user %q (useradd): %v: %s; create it, or name another with --vm-user", name, err, out)
	}
	return nil
}

// apply makes cmd run as id, with u's supplementary groups and only
// vmCaps (nil u: unchanged).
func (u *vmUser) apply(attr *syscall.SysProcAttr, id vmIdentity) {
	if u == nil {
		return
	}
	attr.Credential = &syscall.Credential{Uid: id.uid, Gid: id.gid, Groups: u.groups}
	attr.AmbientCaps = vmCaps
}

// grantTap gives the tap name to id (owner and group), so that QEMU
// running as id may attach to it (TUNSETIFF on a persistent tap needs the
// tap's owner and group, or CAP_NET_ADMIN). It must run before QEMU attaches: a tap
// takes one attachment at a time.
func (u *vmUser) grantTap(name string, id vmIdentity) error {
	if u == nil || name == "" {
		return nil
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("tap %s: attach to give it to the VM's group: %w", name, err)
	}
	// Both: the kernel refuses a tap whose owner is set and is not the
	// caller, or whose group is set and is not one of the caller's.
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETOWNER, uintptr(id.uid)); errno != 0 {
		return fmt.Errorf("tap %s: set owner %d: %w", name, id.uid, errno)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETGROUP, uintptr(id.gid)); errno != 0 {
		return fmt.Errorf("tap %s: set group %d: %w", name, id.gid, errno)
	}
	return nil
}
