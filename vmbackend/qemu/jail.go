package qemu

// Every QEMU runs in a jail: a mount namespace of its own whose root is a
// small read-only tmpfs holding only what its command line names, bound
// at the same paths (so the command line is the same as without a jail):
// /usr (QEMU, its libraries, its firmware) with the merged-usr links, the
// loader's cache, a few devices (/dev/null, /dev/urandom, /dev/net/tun,
// /dev/kvm with KVM), the kernel and initramfs, the template's memory
// file, the VM's root disk and its backing file, its state directory
// (sockets), its console file, its shares, and a /proc of processes
// only. The rest of the host's files do not exist for it: not the other
// VMs' disks, memory, sockets or shares, not jevmd's data root, not /sys
// or /etc. QEMU has no
// CAP_SYS_CHROOT or CAP_SYS_ADMIN (user.go) and its seccomp filters stop
// it mounting, so it cannot leave. Firecracker's jailer does the same with
// pivot_root; docs/SECURITY.md says what each layer stops.
//
// The jail is built on the thread that forks QEMU (startFiltered), after
// that thread unshared its file system information and its mount
// namespace: jevmd's own namespace and its other threads never see the
// jail's mounts, nothing needs unmounting when QEMU exits (the namespace
// dies with it) and nothing is left behind by a kill -9 of jevmd.
//
// What QEMU opens by name after it started must reach the jail too:
//   - disks hot-plugged later (a pool blank's root disk at its claim, pod
//     members' disks, the base disk docker cp reads) are handed over as
//     descriptors (QMP add-fd, /dev/fdset/N: fdset.go);
//   - mounts jevmd makes later under a share (a pod share's entries,
//     daemon/podshare.go) propagate into the jail: the share is a shared
//     mount in jevmd's namespace and its copy in the jail a slave of it,
//     so they arrive and leave, and nothing made in the jail goes back.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend"
)

// jailDirName is the directory, in the provider's Root, on which each
// jail's tmpfs is mounted in the jail's own namespace (one directory
// serves every jail: each has its own namespace).
const jailDirName = "jail"

// maxBackingChain bounds how many files a disk's backing chain may have
// (jevm's root disks have two: the overlay and the image's base disk).
const maxBackingChain = 4

// jailBind is one host path made visible in the jail, at the same path.
type jailBind struct {
	path     string
	dir      bool
	readOnly bool
}

// jailSpec is what one QEMU's jail holds.
type jailSpec struct {
	root  string // where the jail's tmpfs is mounted (in its namespace)
	binds []jailBind
	links map[string]string // symbolic links at the root: "/lib" → "usr/lib"
}

// jailDevices are the device nodes every jail has; /dev/kvm is added for
// KVM. /dev/net/tun is there even for a VM without a NIC: `docker network
// connect` may hot-plug one (nics.go).
var jailDevices = []string{"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/net/tun"}

// jailFor lists what cfg's QEMU needs in its jail.
func (p *Provider) jailFor(cfg vmConfig) (*jailSpec, error) {
	j := &jailSpec{root: filepath.Join(p.opts.Root, jailDirName), links: map[string]string{}}
	add := func(path string, dir, readOnly bool) {
		if path != "" {
			j.binds = append(j.binds, jailBind{path: filepath.Clean(path), dir: dir, readOnly: readOnly})
		}
	}
	// The system: /usr, and /bin, /lib... as links into it (merged /usr)
	// or, where they are directories of their own, read-only binds.
	add("/usr", true, true)
	for _, top := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		st, err := os.Lstat(top)
		switch {
		case err != nil:
		case st.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(top); err == nil {
				j.links[top] = target
			}
		case st.IsDir():
			add(top, true, true)
		}
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		add("/etc/ld.so.cache", false, true)
	}
	if !strings.HasPrefix(p.opts.QEMUPath, "/usr/") {
		add(p.opts.QEMUPath, false, true)
	}
	devs := jailDevices
	if cfg.Accel == vmbackend.AccelKVM {
		devs = append(append([]string(nil), devs...), "/dev/kvm")
	}
	for _, d := range devs {
		if _, err := os.Stat(d); err == nil {
			add(d, false, false)
		} else if d == "/dev/net/tun" || d == "/dev/kvm" {
			return nil, fmt.Errorf("jail: %w", err)
		}
	}

	// The VM's own files.
	add(cfg.Kernel, false, true)
	add(cfg.Initrd, false, true)
	if cfg.MemShared {
		// A template being built: its directory is all its own.
		add(filepath.Dir(cfg.MemPath), true, false)
	} else {
		// QEMU opens the memory file read-write even for a private
		// (copy-on-write) mapping.
		add(cfg.MemPath, false, false)
		add(filepath.Join(filepath.Dir(cfg.MemPath), sharePlaceholderName), true, true)
	}
	if cfg.Disk != "" {
		chain, err := backingChain(cfg.Disk)
		if err != nil {
			return nil, fmt.Errorf("jail: %w", err)
		}
		for i, f := range chain {
			add(f, false, i > 0)
		}
	}
	add(filepath.Dir(cfg.QMPSock), true, false)
	add(filepath.Dir(cfg.AgentSock), true, false)
	if cfg.Console != "" {
		// QEMU appends to it; it must exist to be bound.
		f, err := os.OpenFile(cfg.Console, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("jail: console: %w", err)
		}
		f.Close()
		add(cfg.Console, false, false)
	}
	for _, s := range cfg.Shares {
		add(s.HostPath, true, s.ReadOnly)
	}
	j.binds = dedupBinds(j.binds)
	return j, nil
}

// dedupBinds sorts binds parents first (a bind under another is made
// after it, so it is not hidden) and merges repeats (read-write wins).
func dedupBinds(binds []jailBind) []jailBind {
	sort.SliceStable(binds, func(a, b int) bool {
		return strings.Count(binds[a].path, "/") < strings.Count(binds[b].path, "/")
	})
	var out []jailBind
	seen := map[string]int{}
	for _, b := range binds {
		if i, ok := seen[b.path]; ok {
			out[i].readOnly = out[i].readOnly && b.readOnly
			continue
		}
		seen[b.path] = len(out)
		out = append(out, b)
	}
	return out
}

// backingChain returns path and the files of its backing chain, each
// made absolute as QEMU resolves them (relative to the overlay's
// directory).
func backingChain(path string) ([]string, error) {
	chain := []string{filepath.Clean(path)}
	for cur := path; ; {
		if len(chain) > maxBackingChain {
			return nil, fmt.Errorf("disk %s: backing chain longer than %d files", path, maxBackingChain)
		}
		f, err := os.Open(cur)
		if err != nil {
			return nil, err
		}
		h, ok, err := readQcow2Header(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		if !ok || h.backingFile == "" {
			return chain, nil
		}
		next := h.backingFile
		if !filepath.IsAbs(next) {
			next = filepath.Join(filepath.Dir(cur), next)
		}
		chain = append(chain, filepath.Clean(next))
		cur = next
	}
}

// enter makes the calling thread's mount namespace the jail and its root
// the jail's root. The caller has locked the thread to its goroutine and
// never unlocks it (the thread ends with the goroutine): what it then
// forks starts inside the jail.
func (j *jailSpec) enter() error {
	// A mount namespace of the thread's own (CLONE_NEWNS implies
	// CLONE_FS: the other threads keep jevmd's root and namespace).
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("jail: unshare the mount namespace: %w", err)
	}
	// Mounts of jevmd's namespace keep arriving (a pod share's entries),
	// none made here leave.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("jail: make / a slave: %w", err)
	}
	if err := os.MkdirAll(j.root, 0o700); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount("jevm-jail", j.root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=64k,nr_inodes=4096"); err != nil {
		return fmt.Errorf("jail: mount its tmpfs: %w", err)
	}
	for _, b := range j.binds {
		if err := j.bind(b); err != nil {
			return err
		}
	}
	// QEMU's 9p server needs /proc/self/fd (it changes a file's mode
	// through an O_PATH descriptor's /proc path, so that it never follows
	// a symlink the guest planted). The jail's proc shows processes only
	// (subset=pid: no /proc/sys, no kcore, no kallsyms), and of those only
	// the ones QEMU's user may trace (hidepid=invisible).
	procDir := filepath.Join(j.root, "proc")
	if err := os.Mkdir(procDir, 0o555); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount("proc", procDir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=invisible,subset=pid"); err != nil {
		return fmt.Errorf("jail: mount proc: %w", err)
	}
	links := make([]string, 0, len(j.links))
	for l := range j.links {
		links = append(links, l)
	}
	sort.Strings(links)
	for _, l := range links {
		if err := os.Symlink(j.links[l], filepath.Join(j.root, l)); err != nil {
			return fmt.Errorf("jail: %w", err)
		}
	}
	// Nothing may be added to the jail's own directories.
	if err := unix.Mount("", j.root, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("jail: make its root read-only: %w", err)
	}
	// pivot_root(".", "."): the old root ends up on top of the new one,
	// where it is detached; the namespace keeps only the jail.
	if err := unix.Chdir(j.root); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("jail: pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("jail: detach the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	return nil
}

// bind makes b's host path visible at the same path in the jail.
func (j *jailSpec) bind(b jailBind) error {
	target := filepath.Join(j.root, b.path)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if _, err := os.Lstat(target); err == nil {
		// Under a bind made before (a kernel under /usr): bound again,
		// with its own access.
	} else if b.dir {
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("jail: %w", err)
		}
	} else if err := unix.Mknod(target, unix.S_IFREG|0o644, 0); err != nil && !errors.Is(err, os.ErrExist) {
		// Made without opening it: a descriptor open for writing on the
		// jail's tmpfs, even one a concurrent fork in another thread
		// holds until its exec, makes the read-only remount below fail
		// with EBUSY.
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount(b.path, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("jail: bind %s: %w", b.path, err)
	}
	if b.readOnly {
		// Recursive: what is mounted under a read-only share is too.
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("jail: bind %s read-only: %w", b.path, err)
		}
	}
	return nil
}
