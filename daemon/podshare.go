package daemon

// A pod share is how a container that joins a running VM (pods.go) gets
// its volumes and bind mounts. A VM's 9p shares are fixed when its QEMU
// starts (QEMU cannot add a 9p backend to a running VM), and a member
// joins later. So a VM that has a spare pre-plugged share slot (one that
// costs no hot-plug: vmbackend.SharePlugger) is started with one more
// share: a directory of the daemon's, empty until a member with mounts
// joins. For each of the member's shares the daemon then bind-mounts the
// share's host directory (a volume, a bind source, the directory of a
// staged file) on an entry of that directory, and the agent binds the
// entry, from the one mount of the pod share it keeps, into the member's
// root (agentproto.MountRequest.PodShare).
//
// QEMU serves the guest as root: through a share the guest may create,
// rename and remove anything. Paths the daemon resolves under the pod
// share must never be ones the guest made (a symlink it planted in
// place of an entry would send the daemon's bind mount anywhere). So the
// directory the VM is given ("share") is a read-only bind mount of the one
// the daemon makes entries in ("points"): the guest cannot add, rename or
// remove an entry. Each entry's own mount is read-write or read-only as
// the member's mount is, and only what is under it is the guest's.

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/docker/docker/errdefs"
	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/internal/mountinfo"
	"github.com/jevm/jevm/vmbackend"
)

// podShare is the pod share of one VM (its main container's ID).
type podShare struct{ base string }

func (d *Daemon) podShareOf(id string) podShare {
	return podShare{base: filepath.Join(d.cfg.ExecRoot, "pods", id[:12])}
}

// points is where the daemon makes the entries; share (a read-only bind
// mount of points) is what the VM gets.
func (p podShare) points() string { return filepath.Join(p.base, "points") }
func (p podShare) share() string  { return filepath.Join(p.base, "share") }

// podShareFor adds a pod share to the shares of a VM about to start for
// container id when a pre-plugged slot is left, and returns its tag ("" when
// none: members of this VM then cannot have mounts). A failure to make
// it is logged, not fatal: the container itself needs no pod share.
func (d *Daemon) podShareFor(id string, shares []vmbackend.ShareSpec) ([]vmbackend.ShareSpec, string) {
	sp, ok := d.vms.(vmbackend.SharePlugger)
	if !ok || len(shares) >= sp.PrePluggedShares() {
		return shares, ""
	}
	p := d.podShareOf(id)
	if err := p.create(); err != nil {
		d.log.WithError(err).WithField("container", id[:12]).Warn("no pod share: containers that join this VM cannot have volumes or bind mounts")
		p.remove(d.log.WithField("container", id[:12]).Warn)
		return shares, ""
	}
	tag := vmbackend.ShareTag(len(shares))
	return append(shares, vmbackend.ShareSpec{Tag: tag, HostPath: p.share()}), tag
}

// create makes points and share, share a private read-only bind mount of
// points (private: the entries' mounts stay on share alone).
func (p podShare) create() error {
	p.remove(func(...any) {}) // what a killed daemon left
	if err := os.MkdirAll(p.points(), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(p.share(), 0o700); err != nil {
		return err
	}
	if err := unix.Mount(p.points(), p.share(), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", p.share(), err)
	}
	if err := unix.Mount("", p.share(), "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", p.share(), err)
	}
	if err := unix.Mount("", p.share(), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", p.share(), err)
	}
	// Shared, in a peer group of its own: QEMU's jail holds a slave copy
	// of share (vmbackend/qemu/jail.go), into which the entries bound
	// later propagate.
	if err := unix.Mount("", p.share(), "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", p.share(), err)
	}
	return nil
}

// remove unmounts everything of the pod share (detached: QEMU may still
// hold files under an entry) and removes its directories; it never
// removes a directory with something still mounted under it.
func (p podShare) remove(warn func(...any)) {
	if _, err := os.Lstat(p.base); err != nil {
		return
	}
	mps, _ := mountinfo.Under(p.base)
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
			warn(fmt.Sprintf("unmount %s: %v", mp, err))
		}
	}
	if left, _ := mountinfo.Under(p.base); len(left) > 0 {
		warn(fmt.Sprintf("pod share %s: still mounted: %v", p.base, left))
		return
	}
	if err := os.RemoveAll(p.base); err != nil {
		warn(fmt.Sprintf("remove %s: %v", p.base, err))
	}
}

// podEntryPrefix starts the names of a member's entries.
func podEntryPrefix(memberID string) string { return memberID[:12] + "." }

// bind mounts dir (with what is mounted under it: a staged file) on a new
// entry of the pod share for member's i-th share, read-only if asked,
// and returns the entry's name.
func (p podShare) bind(memberID string, i int, dir string, readOnly bool) (string, error) {
	name := podEntryPrefix(memberID) + strconv.Itoa(i)
	if err := os.Mkdir(filepath.Join(p.points(), name), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	target := filepath.Join(p.share(), name)
	// The entry is made whole before it is attached (read-only where
	// asked, with what is mounted under it, private): the share
	// propagates it into the VM's jail as it is at that moment, and a
	// later remount would not follow it there.
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return "", fmt.Errorf("bind %s into the pod share: %w", dir, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Propagation: unix.MS_PRIVATE}
	if readOnly {
		attr.Attr_set = unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return "", fmt.Errorf("bind %s into the pod share: %w", dir, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", fmt.Errorf("bind %s into the pod share: %w", dir, err)
	}
	return name, nil
}

// bindPodMounts moves the shares a member's start prepared into its host
// VM's pod share (tag podTag, "" when the VM has none): each becomes an
// entry, and its mount requests name the pod share and the entry.
func (d *Daemon) bindPodMounts(host *Container, podTag string, c *Container, ms *mountSession) error {
	if len(ms.shares) == 0 {
		return nil
	}
	if podTag == "" {
		return errdefs.InvalidParameter(fmt.Errorf("the VM of %s has no share left for the volumes and bind mounts of containers that join it (its own take every share a VM starts with; or jevm could not make it: see the daemon's log)", host.Name))
	}
	p := d.podShareOf(host.ID)
	entries := map[string]string{} // share tag → entry
	for i, sh := range ms.shares {
		name, err := p.bind(c.ID, i, sh.HostPath, sh.ReadOnly)
		if err != nil {
			return err // the caller's release-mounts unbinds what was bound
		}
		entries[sh.Tag] = name
	}
	for i := range ms.requests {
		r := &ms.requests[i]
		if r.Type != "9p" {
			continue
		}
		r.SubPath = path.Join(entries[r.Source], r.SubPath)
		r.Source, r.PodShare = podTag, true
	}
	ms.shares = nil
	return nil
}

// releasePodMounts unmounts and removes a member's entries from whatever
// pod share holds them (found by name: it needs no state of the start).
func (d *Daemon) releasePodMounts(memberID string, warn func(...any)) {
	pts, _ := filepath.Glob(filepath.Join(d.cfg.ExecRoot, "pods", "*", "points", podEntryPrefix(memberID)+"*"))
	for _, pt := range pts {
		base := filepath.Dir(filepath.Dir(pt))
		target := filepath.Join(podShare{base: base}.share(), filepath.Base(pt))
		if mounted, _ := mountinfo.IsMountPoint(target); mounted {
			if err := unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
				warn(fmt.Sprintf("unmount %s: %v", target, err))
				continue
			}
		}
		if err := os.Remove(pt); err != nil && !errors.Is(err, os.ErrNotExist) {
			warn(fmt.Sprintf("remove %s: %v", pt, err))
		}
	}
}
