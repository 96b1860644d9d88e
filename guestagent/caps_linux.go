package guestagent

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// A container's capabilities are its processes' bounding set, as runc sets
// it: root in the container has the capabilities in the set and no others,
// a non-root user has none (unless its program has file capabilities
// within the set). The bounding set is a per-thread attribute inherited
// across fork and execve, so the agent drops it on a thread of its own,
// forks the process from that thread, and lets the thread die with it.

// lastCap is the highest capability the guest kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 && n < 64 {
			return n
		}
	}
	return 40 // CAP_CHECKPOINT_RESTORE, Linux 5.9+
}

// dropCapabilities reduces the calling thread's bounding set to keep and
// clears its inheritable and ambient sets (a root execve gets inheritable
// | bounding as permitted). The caller has locked its goroutine to the
// thread and never unlocks it: the change cannot be undone.
func dropCapabilities(keep []string) error {
	allowed := map[int]bool{}
	for _, name := range keep {
		n, ok := agentproto.CapabilityNumbers[name]
		if !ok {
			return fmt.Errorf("unknown capability %q", name)
		}
		allowed[n] = true
	}
	for c := 0; c <= lastCap(); c++ {
		if allowed[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// dropCapabilitiesPrep is dropCapabilities(keep) as a thread preparation
// for startOnThread (pidns_linux.go).
func dropCapabilitiesPrep(keep []string) func() error {
	return func() error { return dropCapabilities(keep) }
}

// privateDevice reports guest devices a --privileged container still does
// not get: the agent's channel to the host (writing to it would speak the
// agent's protocol), the serial console (the exit marker the host reads)
// and the VM's firmware console.
func privateDevice(rel string) bool {
	base := rel[strings.LastIndex(rel, "/")+1:]
	switch {
	case strings.HasPrefix(rel, "virtio-ports"), strings.HasPrefix(base, "vport"),
		base == "console", strings.HasPrefix(base, "ttyS"), strings.HasPrefix(base, "hvc"):
		return true
	}
	return false
}

// copyGuestDevices makes, in the container's /dev (dst), a node for each
// character and block device of the guest's devtmpfs (src), as dockerd
// gives a --privileged container the host's devices. What the container's
// /dev already has (null, zero, the pty, ...) is left alone.
func copyGuestDevices(src, dst string) error {
	return walkDevices(src, "", func(rel string, st *unix.Stat_t) error {
		if privateDevice(rel) {
			return nil
		}
		p := dst + "/" + rel
		if i := strings.LastIndex(rel, "/"); i > 0 {
			if err := os.MkdirAll(dst+"/"+rel[:i], 0o755); err != nil {
				return err
			}
		}
		err := unix.Mknod(p, st.Mode, int(st.Rdev))
		if err == nil {
			return os.Chmod(p, os.FileMode(st.Mode&0o7777))
		}
		if err == unix.EEXIST {
			return nil
		}
		return fmt.Errorf("mknod /dev/%s: %w", rel, err)
	})
}

// walkDevices calls fn for each device node under dir (rel is the path
// below the top), skipping the pseudo-filesystems mounted in it.
func walkDevices(top, rel string, fn func(rel string, st *unix.Stat_t) error) error {
	dir := top
	if rel != "" {
		dir = top + "/" + rel
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		r := name
		if rel != "" {
			r = rel + "/" + name
		}
		var st unix.Stat_t
		if err := unix.Lstat(top+"/"+r, &st); err != nil {
			continue
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR, unix.S_IFBLK:
			if err := fn(r, &st); err != nil {
				return err
			}
		case unix.S_IFDIR:
			if name == "pts" || name == "shm" || name == "mqueue" || name == "hugepages" {
				continue
			}
			if err := walkDevices(top, r, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
