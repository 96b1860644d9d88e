//go:build linux

package guestagent

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/internal/mountinfo"
)

// A joined container (pods_linux.go) gets a mount namespace of its own, as
// a runc container does, so that its processes cannot reach the VM's other
// containers' files: a chroot alone is left with `cd ..` by a process with
// CAP_SYS_CHROOT (in Docker's default set) that chroots again.
//
// runc pivot_roots into the container's root, which leaves nothing of the
// old root in the namespace. The agent runs from the initramfs, and the
// kernel refuses pivot_root out of it (rootfs is the root of every mount
// tree). So the exec helper, first process of the new namespace, detaches
// every mount that is not the container's root, under it, or one of its
// parents, moves the root over / and chroots into it (runc's MS_MOVE path,
// for the same reason). A chroot escape then climbs from the container's
// root to the namespace's /, on which that root is mounted, and the walk
// comes straight back down into it; and even a way around that would find
// no other container's root, mounts or shares, nor the agent's devices.
// The mount list is the thread's (/proc/thread-self): only the helper's
// locked thread is in the new namespace until its execve.

// isolateRoot makes root the root of the calling thread's mount namespace
// as described above; the thread unshared CLONE_NEWNS.
func isolateRoot(root string) error {
	// Nothing done here may reach the agent's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the container's mounts private: %w", err)
	}
	// Each lazy unmount waits for an RCU grace period (milliseconds
	// under TCG): detach only the topmost mount of each subtree to go,
	// which takes its subtree with it, and look again for what remains
	// (mounts stacked on one path).
	// Read from one open file: the first pass detaches /proc. The
	// thread's own (thread-self): only this thread is in the new
	// namespace, and /proc/self shows the thread group leader's.
	mi, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	defer mi.Close()
	for pass := 0; ; pass++ {
		mps, err := mountinfo.MountPointsOf(mi)
		if err != nil {
			return fmt.Errorf("list mounts: %w", err)
		}
		tops := detachTops(mps, root)
		if len(tops) == 0 {
			break
		}
		if pass == 8 {
			return fmt.Errorf("mounts left in the container's mount namespace: %v", tops)
		}
		for _, mp := range tops {
			// EINVAL: already gone with a parent detached before it.
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("detach %s from the container's mount namespace: %w", mp, err)
			}
		}
	}
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("chdir %s: %w", root, err)
	}
	if err := unix.Mount(root, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the container's root over /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the container's root: %w", err)
	}
	return unix.Chdir("/")
}

// detachTops returns, of the mount points mps, those to detach for root
// (not keepForRoot) that lie under no other one to detach, once each.
func detachTops(mps []string, root string) []string {
	gone := map[string]bool{}
	for _, mp := range mps {
		if !keepForRoot(mp, root) {
			gone[mp] = true
		}
	}
	var tops []string
	for mp := range gone {
		top := true
		for p := path.Dir(mp); p != "/" && p != "."; p = path.Dir(p) {
			if gone[p] {
				top = false
				break
			}
		}
		if top {
			tops = append(tops, mp)
		}
	}
	sort.Strings(tops)
	return tops
}

// keepForRoot tells whether mount point mp stays in a namespace whose
// root becomes root: the root itself, what is under it, and its parents
// (detaching a parent would detach the root with it).
func keepForRoot(mp, root string) bool {
	return mp == "/" || mp == root || strings.HasPrefix(mp, root+"/") || strings.HasPrefix(root, mp+"/")
}

// joinMountNamespace moves the calling thread (locked) into the mount
// namespace open as fd, whose root becomes its root and working
// directory. A thread shares its file system attributes with the other
// threads of a Go process: it must stop sharing them first (CLONE_FS),
// or setns refuses.
func joinMountNamespace(fd int) error {
	defer unix.Close(fd)
	return setnsMount(fd)
}

// setnsMount moves the calling (locked) thread into the mount namespace
// open as fd, first unsharing its file system attributes.
func setnsMount(fd int) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("join the container's mount namespace: unshare CLONE_FS: %w", err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("join the container's mount namespace: %w", err)
	}
	return nil
}

// joinMountNamespacePrep is a thread preparation (startOnThread) that
// moves the forking thread into the mount namespace ns, so that the
// process it forks starts there, in the namespace's root.
func joinMountNamespacePrep(ns *os.File) func() error {
	return func() error { return setnsMount(int(ns.Fd())) }
}

// openMountNamespace opens the mount namespace of a container's process
// pid, for its execs; nil (execs are then chrooted) if it cannot.
func (a *agent) openMountNamespace(pid int) *os.File {
	ns, err := openNamespace(pid, "mnt")
	if err != nil {
		a.logf("open the mount namespace of pid %d: %v; execs will be chrooted instead", pid, err)
		return nil
	}
	return ns
}

// closeMountNamespaces lets the containers' mount namespaces go (powering
// off): each holds its container's root and mounts mounted.
func (a *agent) closeMountNamespaces() {
	a.mu.Lock()
	files := []*os.File{a.mntns}
	a.mntns = nil
	for _, c := range a.joined {
		files = append(files, c.mntns)
		c.mntns = nil
	}
	a.mu.Unlock()
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
