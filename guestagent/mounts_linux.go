//go:build linux

package guestagent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Volumes and bind mounts reach the guest as virtio-9p shares that the host
// hot-plugs right after the clone is restored (docs/VOLUMES.md). Each share
// is mounted at a staging directory first, filled from the image if asked
// (CopyUp), then moved (or, for a SubPath, bind-mounted) onto its target
// inside the container, so that at the end every mount lives under
// containerRoot and unmountContainer takes it down.

// shareStaging is where shares are mounted before they are moved into the
// container.
const shareStaging = runDir + "/shares"

// shareWait bounds the wait for a hot-plugged share to be probed.
const shareWait = 10 * time.Second

// ninepOptions are the 9p mount options: cache=mmap reads and writes
// through to the host on every call (coherent with the host and other VMs)
// and keeps a page cache only for mmap; access=client makes the guest
// kernel check permissions with the files' owners and modes, as a local
// filesystem would (QEMU keeps the capabilities that security_model=
// passthrough needs: vmbackend/qemu/user.go).
// msize is the largest the virtio transport allows (~500 KiB).
const ninepOptions = "trans=virtio,version=9p2000.L,cache=mmap,access=client,msize=512000"

// setupMounts mounts req's volumes, bind mounts and tmpfs mounts inside the
// container root, in order (the host sorts parents first).
func (a *agent) setupMounts(root string, mounts []agentproto.MountRequest) error {
	if len(mounts) == 0 {
		return nil
	}
	t0 := time.Now()
	var probed time.Duration // until the first share was mounted
	defer func() {
		a.logf("%d mounts set up in %v (first share mounted after %v)", len(mounts),
			time.Since(t0).Round(time.Millisecond), probed.Round(time.Millisecond))
	}()
	for i := range mounts {
		m := &mounts[i]
		t := time.Now()
		var err error
		switch m.Type {
		case "9p":
			err = a.mountShare(root, i, m)
			if probed == 0 {
				probed = time.Since(t0)
			}
		case "nfs", "nfs4":
			err = a.mountShare(root, i, m)
		case "tmpfs":
			err = mountTmpfsIn(root, m)
		default:
			err = fmt.Errorf("unknown mount type %q", m.Type)
		}
		if err != nil {
			return fmt.Errorf("error mounting %q to rootfs at %q: %w", m.Source, m.Target, err)
		}
		a.debugf("mounted %s %s on %s in %v", m.Type, m.Source, m.Target, time.Since(t).Round(time.Millisecond))
	}
	return nil
}

// waitShareTag waits until a virtio-9p device with the tag is probed (the
// host hot-plugs it after the restore, concurrently with the Start
// request).
func waitShareTag(tag string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		paths, _ := filepath.Glob("/sys/bus/virtio/drivers/9pnet_virtio/virtio*/mount_tag")
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err == nil && strings.TrimRight(string(b), "\x00\n") == tag {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if _, err := os.Stat("/sys/bus/virtio/drivers/9pnet_virtio"); err != nil {
				return errors.New("the guest kernel has no 9pnet_virtio driver")
			}
			return fmt.Errorf("share %q did not appear within %v", tag, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (a *agent) mountShare(root string, i int, m *agentproto.MountRequest) error {
	if m.Source == "" {
		return errors.New("9p mount without a share tag")
	}
	var staging string
	staged := false // staging is this mount's own, to unmount at the end
	defer func() {
		if staged {
			unix.Unmount(staging, unix.MNT_DETACH)
		}
	}()
	if m.PodShare {
		if m.SubPath == "" {
			return errors.New("a mount from the pod share without an entry (subPath)")
		}
		var err error
		if staging, err = a.mountPodShare(m.Source); err != nil {
			return err
		}
	} else {
		staging = filepath.Join(shareStaging, strconv.Itoa(i))
		var flags uintptr
		if m.ReadOnly && !m.CopyUp {
			flags |= unix.MS_RDONLY
		}
		mount := mount9p
		if m.Type != "9p" {
			mount = func(device, dir string, flags uintptr) error {
				return mountNetFS(m.Type, device, dir, flags, m.Options)
			}
		}
		if err := mount(m.Source, staging, flags); err != nil {
			return err
		}
		staged = true
	}

	src := staging
	if m.SubPath != "" {
		p, err := resolveInRoot(staging, m.SubPath)
		if err != nil {
			return err
		}
		src = p
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if m.Type != "9p" && m.SubPath != "" {
		// The host cannot look into a volume only the guest mounts: what
		// the subpath names decides.
		m.IsFile = !fi.IsDir()
	}
	if m.IsFile != !fi.IsDir() {
		if m.IsFile {
			return fmt.Errorf("%s: the host's file is a directory now", m.SubPath)
		}
		return fmt.Errorf("%s: not a directory", m.SubPath)
	}

	// Copy-up only from what the image has at the target (dockerd does
	// not copy from a directory it had to create).
	hadTarget := false
	if hp, err := resolveInRoot(root, m.Target); err == nil {
		if fi, err := os.Lstat(hp); err == nil && fi.IsDir() {
			hadTarget = true
		}
	}
	target, err := prepareTarget(root, m.Target, m.IsFile)
	if err != nil {
		return err
	}
	if m.CopyUp && !m.IsFile && hadTarget {
		n, err := copyUpIfEmpty(target, src)
		if err != nil {
			return fmt.Errorf("copy image content of %s into the volume: %w", m.Target, err)
		}
		if n > 0 {
			a.debugf("copied %d entries of %s into the volume", n, m.Target)
		}
	}
	if m.ReadOnly && m.CopyUp && m.SubPath == "" {
		// Mounted read-write for the copy-up.
		if err := unix.Mount("", staging, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount share read-only: %w", err)
		}
	}
	if m.SubPath == "" {
		if err := unix.Mount(staging, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move share into the container: %w", err)
		}
		staged = false
		return nil
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", m.SubPath, err)
	}
	if m.ReadOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", m.Target, err)
		}
	}
	return nil
}

// mount9p mounts the share tag at dir (created if missing), once the
// device is there.
func mount9p(tag, dir string, flags uintptr) error {
	if err := waitShareTag(tag, shareWait); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The device can be listed a moment before its channel is usable
	// ("no channels available": ENOENT).
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Mount(tag, dir, "9p", flags, ninepOptions)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOENT) || time.Now().After(deadline) {
			return fmt.Errorf("mount 9p share %s: %w", tag, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mountNetFS mounts a network filesystem volume (MountRequest type "nfs"
// or "nfs4") at dir: the guest kernel is the client, so the mount moves
// with the VM (checkpoint, migration). options are the volume's, with the
// server's address resolved by the host; flag options (ro, nosuid, ...)
// become mount flags.
func mountNetFS(fstype, device, dir string, flags uintptr, options []string) error {
	if device == "" {
		return errors.New("a network filesystem mount without a device")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	optFlags, data := mountOptions(options)
	if err := unix.Mount(device, dir, fstype, flags|optFlags, data); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("mount %s %s: the guest kernel has no %s support", fstype, device, fstype)
		}
		return fmt.Errorf("mount %s %s (%s): %w", fstype, device, data, err)
	}
	return nil
}

// mountPodShare mounts the VM's pod share (agentproto.MountRequest.
// PodShare) the first time a joined container needs it and keeps it:
// one 9p device serves one mount at a time, and every joined container's
// mounts are entries of it. The caller holds joinMu.
func (a *agent) mountPodShare(tag string) (string, error) {
	if dir, ok := a.podShares[tag]; ok {
		return dir, nil
	}
	dir := filepath.Join(runDir, "podshare", tag)
	if err := mount9p(tag, dir, 0); err != nil {
		return "", err
	}
	if a.podShares == nil {
		a.podShares = map[string]string{}
	}
	a.podShares[tag] = dir
	return dir, nil
}

// prepareTarget creates the mount target inside root (a directory, or an
// empty file for a file mount) and returns its path as the agent sees it.
func prepareTarget(root, target string, isFile bool) (string, error) {
	target = path.Clean("/" + target)
	if !isFile {
		if err := mkdirAllInRoot(root, target, 0o755); err != nil {
			return "", err
		}
		return resolveInRoot(root, target)
	}
	if err := mkdirAllInRoot(root, path.Dir(target), 0o755); err != nil {
		return "", err
	}
	hp, err := resolveInRoot(root, target)
	if err != nil {
		return "", err
	}
	fi, err := os.Lstat(hp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f, err := os.OpenFile(hp, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return "", err
		}
		f.Close()
	case err != nil:
		return "", err
	case fi.IsDir():
		return "", fmt.Errorf("cannot mount a file on directory %s", target)
	}
	return hp, nil
}

// mountFlag maps the flag options of a mount (tmpfs, nfs) to MS_ flags;
// false in set means the option clears the flag.
var mountFlag = map[string]struct {
	set  bool
	flag uintptr
}{
	"ro": {true, unix.MS_RDONLY}, "rw": {false, unix.MS_RDONLY},
	"noexec": {true, unix.MS_NOEXEC}, "exec": {false, unix.MS_NOEXEC},
	"nosuid": {true, unix.MS_NOSUID}, "suid": {false, unix.MS_NOSUID},
	"nodev": {true, unix.MS_NODEV}, "dev": {false, unix.MS_NODEV},
	"noatime": {true, unix.MS_NOATIME}, "atime": {false, unix.MS_NOATIME},
	"nodiratime": {true, unix.MS_NODIRATIME}, "diratime": {false, unix.MS_NODIRATIME},
	"relatime": {true, unix.MS_RELATIME}, "norelatime": {false, unix.MS_RELATIME},
	"strictatime": {true, unix.MS_STRICTATIME}, "nostrictatime": {false, unix.MS_STRICTATIME},
	"sync": {true, unix.MS_SYNCHRONOUS}, "async": {false, unix.MS_SYNCHRONOUS},
}

// mountOptions splits mount options into mount flags and data.
func mountOptions(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		if o == "" {
			continue
		}
		if f, ok := mountFlag[o]; ok {
			if f.set {
				flags |= f.flag
			} else {
				flags &^= f.flag
			}
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ",")
}

func mountTmpfsIn(root string, m *agentproto.MountRequest) error {
	target, err := prepareTarget(root, m.Target, false)
	if err != nil {
		return err
	}
	flags, data := mountOptions(m.Options)
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", flags, data); err != nil {
		return fmt.Errorf("mount tmpfs (%s): %w", data, err)
	}
	return nil
}

// copyUpIfEmpty copies the tree at src (the container's own files at the
// mount target: the image's content) into dst if dst is empty, keeping
// owners, modes, times, links and extended attributes, and gives dst the
// owner and mode of src (dockerd's copy-up of a new volume). It returns the
// number of entries copied.
func copyUpIfEmpty(src, dst string) (int, error) {
	sfi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !sfi.IsDir() {
		return 0, nil
	}
	d, err := os.Open(dst)
	if err != nil {
		return 0, err
	}
	names, err := d.Readdirnames(1)
	d.Close()
	if len(names) > 0 {
		return 0, nil // not empty: the volume keeps its data
	}
	if err != nil && err != io.EOF {
		return 0, err
	}
	c := &treeCopier{links: map[uint64]string{}, buf: make([]byte, 256<<10)}
	if err := c.copyDir(src, dst, true); err != nil {
		return c.n, err
	}
	return c.n, nil
}

type treeCopier struct {
	n     int
	links map[uint64]string // inode -> first copy, for hard links
	buf   []byte
	dev   uint64
}

// copyDir copies the contents of directory src into the existing dst,
// then dst's metadata from src. It does not descend into other
// filesystems mounted below src.
func (c *treeCopier) copyDir(src, dst string, top bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if top {
		c.dev = st.Dev
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := c.copyEntry(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return copyMeta(src, dst, &st)
}

func (c *treeCopier) copyEntry(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	c.n++
	mode := st.Mode & unix.S_IFMT
	perm := uint32(st.Mode & 0o7777)
	if mode != unix.S_IFDIR && st.Nlink > 1 {
		if first, ok := c.links[st.Ino]; ok {
			return unix.Link(first, dst)
		}
		c.links[st.Ino] = dst
	}
	switch mode {
	case unix.S_IFDIR:
		if st.Dev != c.dev {
			// A mount point: copy the empty directory only.
			if err := os.Mkdir(dst, 0o700); err != nil {
				return err
			}
			return copyMeta(src, dst, &st)
		}
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		return c.copyDir(src, dst, false)
	case unix.S_IFREG:
		if err := c.copyFile(src, dst, perm); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknod(dst, uint32(mode)|perm, int(st.Rdev)); err != nil {
			return err
		}
	default:
		return nil
	}
	return copyMeta(src, dst, &st)
}

func (c *treeCopier) copyFile(src, dst string, perm uint32) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(out, in, c.buf); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyMeta gives dst the owner, mode, extended attributes and times of src
// (st is src's stat).
func copyMeta(src, dst string, st *unix.Stat_t) error {
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", dst, err)
	}
	copyXattrs(src, dst)
	if !isLink {
		// After chown, which clears set-id bits.
		if err := unix.Chmod(dst, uint32(st.Mode&0o7777)); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && !isLink {
		return fmt.Errorf("set times of %s: %w", dst, err)
	}
	return nil
}

// copyXattrs copies extended attributes best-effort (file capabilities
// such as ping's; the host filesystem may refuse some namespaces).
func copyXattrs(src, dst string) {
	sz, err := unix.Llistxattr(src, nil)
	if err != nil || sz <= 0 {
		return
	}
	list := make([]byte, sz)
	sz, err = unix.Llistxattr(src, list)
	if err != nil {
		return
	}
	for _, name := range strings.Split(string(list[:sz]), "\x00") {
		if name == "" || strings.HasPrefix(name, "system.posix_acl") {
			continue
		}
		vsz, err := unix.Lgetxattr(src, name, nil)
		if err != nil || vsz < 0 {
			continue
		}
		val := make([]byte, vsz)
		vsz, err = unix.Lgetxattr(src, name, val)
		if err != nil {
			continue
		}
		unix.Lsetxattr(dst, name, val[:vsz], 0)
	}
}
