package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/jevm/jevm/internal/mountinfo"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"
	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentproto"
	"github.com/jevm/jevm/volumes"
)

// Mounts of a container (docs/VOLUMES.md): bind mounts, named and anonymous
// volumes and --volumes-from become the container's MountPoints at create,
// as dockerd's registerMountPoints does; at every start they become 9p
// shares of the VM (vmbackend.ShareSpec) and mount requests for the agent,
// with the tmpfs mounts. A bind-mounted host file is exported through a
// directory of its own: EXEC_ROOT/mounts/<id12>/<n>/<name>, a bind mount of
// the file, so that the VM never sees the file's siblings.

// maxContainerShares is how many bind mounts and volumes one container may
// have (each is a hot-plugged PCI device of its VM).
const maxContainerShares = vmbackend.MaxShares

// mountStagingDir holds the host-side bind mounts of a container's
// bind-mounted files.
func (d *Daemon) mountStagingDir(id string) string {
	return filepath.Join(d.cfg.ExecRoot, "mounts", id[:12])
}

// registerMounts resolves the container's mount points (volumes-from, then
// binds, then --mount, then the image's and `-v /path` anonymous volumes,
// each overriding earlier ones on the same destination) and creates the
// volumes they need, referenced by the container. On error nothing is left
// behind.
func (d *Daemon) registerMounts(c *Container) (retErr error) {
	hc, cfg := c.HostConfig, c.Config
	byDest := map[string]*volumes.MountPoint{}
	var created []string // anonymous volumes made here
	defer func() {
		if retErr == nil {
			return
		}
		for _, mp := range byDest {
			if mp.Type == mount.TypeVolume && mp.Name != "" {
				d.volumes.Release(mp.Name, c.ID)
			}
		}
		for _, name := range created {
			_ = d.volumes.Remove(name)
		}
	}()

	// 1. --volumes-from: the other container's mounts, ro if asked.
	for _, spec := range hc.VolumesFrom {
		ref, rw, err := volumes.ParseVolumesFrom(spec)
		if err != nil {
			return errdefs.InvalidParameter(err)
		}
		src, err := d.containers.get(ref)
		if err != nil {
			// 400, not the lookup's 404: the request is what is wrong.
			return errdefs.InvalidParameter(errors.New(err.Error()))
		}
		src.mu.Lock()
		mps := append([]*volumes.MountPoint(nil), src.MountPoints...)
		src.mu.Unlock()
		for _, m := range mps {
			cp := *m
			cp.RW = m.RW && rw
			cp.CopyData = false
			if cp.Type == mount.TypeVolume {
				if err := d.volumes.Reference(cp.Name, c.ID); err != nil {
					return err
				}
			}
			d.dropMountPoint(byDest, cp.Destination, c.ID)
			byDest[cp.Destination] = &cp
		}
	}

	// 2. -v binds and named volumes.
	binds := map[string]bool{}
	for _, raw := range hc.Binds {
		mp, err := volumes.ParseBind(raw)
		if err != nil {
			return errdefs.InvalidParameter(err)
		}
		if _, isTmpfs := hc.Tmpfs[mp.Destination]; binds[mp.Destination] || isTmpfs {
			return errdefs.InvalidParameter(volumes.DuplicateMountPointError(mp.Destination))
		}
		if mp.Type == mount.TypeVolume {
			if hc.VolumeDriver != "" && hc.VolumeDriver != volumes.DefaultDriver {
				mp.Driver = hc.VolumeDriver
			}
			if err := d.createMountVolume(mp, c.ID, &created); err != nil {
				return err
			}
		}
		binds[mp.Destination] = true
		d.dropMountPoint(byDest, mp.Destination, c.ID)
		byDest[mp.Destination] = mp
	}

	// 3. --mount.
	for _, m := range hc.Mounts {
		mp, err := volumes.ParseMount(m, volumes.SourceExists)
		if err != nil {
			return errdefs.InvalidParameter(err)
		}
		if binds[mp.Destination] {
			return errdefs.InvalidParameter(volumes.DuplicateMountPointError(m.Target))
		}
		if mp.Type == mount.TypeVolume {
			if err := d.createMountVolume(mp, c.ID, &created); err != nil {
				return err
			}
		}
		binds[mp.Destination] = true
		d.dropMountPoint(byDest, mp.Destination, c.ID)
		byDest[mp.Destination] = mp
	}

	// 4. VOLUME entries of the image and `-v /path`: anonymous volumes
	// where nothing else is mounted.
	dests := make([]string, 0, len(cfg.Volumes))
	for dst := range cfg.Volumes {
		dests = append(dests, dst)
	}
	sort.Strings(dests)
	for _, dst := range dests {
		dst = path.Clean(dst)
		if !path.IsAbs(dst) {
			return errdefs.InvalidParameter(fmt.Errorf("invalid mount path: '%s' mount path must be absolute", dst))
		}
		if dst == "/" {
			return errdefs.InvalidParameter(volumes.ErrTargetIsRoot)
		}
		if _, ok := byDest[dst]; ok {
			continue
		}
		if _, ok := hc.Tmpfs[dst]; ok {
			continue
		}
		mp := &volumes.MountPoint{Type: mount.TypeVolume, Destination: dst, RW: true, Driver: volumes.DefaultDriver, CopyData: true}
		if err := d.createMountVolume(mp, c.ID, &created); err != nil {
			return err
		}
		byDest[dst] = mp
	}

	for dst := range hc.Tmpfs {
		if err := volumes.ValidateTmpfsDestination(dst); err != nil {
			return errdefs.InvalidParameter(err)
		}
		if _, err := volumes.MergeTmpfsOptions(strings.Split(hc.Tmpfs[dst], ",")); err != nil {
			return errdefs.InvalidParameter(err)
		}
	}

	mps := make([]*volumes.MountPoint, 0, len(byDest))
	shares := 0
	for _, mp := range byDest {
		mps = append(mps, mp)
		if mp.Type != mount.TypeTmpfs {
			shares++
		}
	}
	if shares > maxContainerShares {
		return errdefs.InvalidParameter(fmt.Errorf("%d bind mounts and volumes: a jevm container can have at most %d (each is a device of its VM)", shares, maxContainerShares))
	}
	volumes.SortByDestination(mps)
	c.MountPoints = mps
	return nil
}

// dropMountPoint releases the volume of a mount point about to be replaced
// by another on the same destination.
func (d *Daemon) dropMountPoint(byDest map[string]*volumes.MountPoint, dst, id string) {
	old, ok := byDest[dst]
	if !ok {
		return
	}
	if old.Type == mount.TypeVolume && old.Name != "" {
		still := false
		for _, mp := range byDest {
			if mp != old && mp.Name == old.Name {
				still = true
			}
		}
		if !still {
			d.volumes.Release(old.Name, id)
		}
	}
	delete(byDest, dst)
}

// createMountVolume creates (or finds) the volume of mp, referenced by the
// container, and fills in its name, driver and source.
func (d *Daemon) createMountVolume(mp *volumes.MountPoint, id string, created *[]string) error {
	v, isNew, err := d.volumes.Create(mp.Name, mp.Driver, mp.VolumeDriverOpts, mp.VolumeLabels, id)
	if err != nil {
		return err
	}
	if isNew {
		if mp.Name == "" {
			*created = append(*created, v.Name)
		}
		d.volumeEvent("create", v.Name, map[string]string{"driver": v.Driver})
	}
	mp.Name = v.Name
	mp.Driver = v.Driver
	mp.Source = v.Mountpoint
	return nil
}

// mountSession is what a start prepared: the VM's shares and the agent's
// mount requests.
type mountSession struct {
	shares   []vmbackend.ShareSpec
	requests []agentproto.MountRequest
}

// guestMounts reports whether the container's VM mounts the volume or
// bind-mounted directory of mp itself (a network filesystem,
// volumes.GuestMount: an NFS volume, or a directory on shared storage,
// named by a bind mount or a bind-source volume): only a VM with a
// network can; the host shares it with the others over 9p.
func (d *Daemon) guestMounts(c *Container, mp *volumes.MountPoint) bool {
	if c.HostConfig.NetworkMode.IsNone() {
		return false
	}
	switch mp.Type {
	case mount.TypeVolume:
		return mp.Name != "" && d.volumes.GuestMountable(mp.Name)
	case mount.TypeBind:
		_, ok := d.volumes.SharedDirMount(mp.Source)
		return ok
	}
	return false
}

// hostShared lists the destinations of the container's mounts its VM
// reaches over virtio-9p: bind mounts and the volumes the host mounts.
// Such a VM cannot be checkpointed or migrated (QEMU refuses to move a
// mounted 9p export); tmpfs mounts and NFS volumes move with it.
func (d *Daemon) hostShared(c *Container) []string {
	var dests []string
	for _, mp := range c.MountPoints {
		if mp.Type != mount.TypeTmpfs && !d.guestMounts(c, mp) {
			dests = append(dests, mp.Destination)
		}
	}
	return dests
}

// errHostShared refuses a checkpoint, restore or migration of a container
// with mounts shared from the host (hostShared).
func errHostShared(op string, dests []string) error {
	return errdefs.InvalidParameter(fmt.Errorf("jevm cannot %s a container with bind mounts or volumes on the host's disk (%s): QEMU cannot move a mounted 9p share; NFS volumes (docker volume create --opt type=nfs) and bind-source volumes on shared storage (--opt type=none --opt o=bind --opt device=DIR, DIR on an NFS mount or under jevmd --shared-storage) move with the container",
		op, strings.Join(dests, ", ")))
}

// prepareMounts turns the container's mount points and tmpfs mounts into
// shares and mount requests: it creates missing `-v` bind sources, stages
// bind-mounted files and mounts volumes that have a host filesystem.
// guestNet says the VM has the container's networks: it then mounts
// network filesystem volumes itself (a maintenance VM has none).
// Callers hold c.mu; on error everything is released.
func (d *Daemon) prepareMounts(ctx context.Context, c *Container, guestNet bool) (_ *mountSession, retErr error) {
	ms := &mountSession{}
	defer func() {
		if retErr != nil {
			d.releaseMounts(c)
		}
	}()
	type item struct {
		dest string
		req  agentproto.MountRequest
		sh   *vmbackend.ShareSpec
	}
	var items []item
	staging := d.mountStagingDir(c.ID)
	for i, mp := range c.MountPoints {
		req := agentproto.MountRequest{Target: mp.Destination, ReadOnly: !mp.RW}
		var hostPath string
		switch mp.Type {
		case mount.TypeTmpfs:
			opts, err := volumes.MergeTmpfsOptions(mp.TmpfsOptions)
			if err != nil {
				return nil, errdefs.InvalidParameter(err)
			}
			req.Type, req.Source, req.Options = "tmpfs", "tmpfs", opts
			items = append(items, item{dest: mp.Destination, req: req})
			continue
		case mount.TypeBind:
			fi, err := os.Stat(mp.Source)
			if errors.Is(err, fs.ErrNotExist) && mp.CreateSource {
				if err := os.MkdirAll(mp.Source, 0o755); err != nil {
					return nil, fmt.Errorf("error while creating mount source path '%s': %w", mp.Source, err)
				}
				fi, err = os.Stat(mp.Source)
			}
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil, errdefs.InvalidParameter(&volumes.MountConfigError{Type: mount.TypeBind, Err: &volumes.BindSourceMissingError{Path: mp.Source}})
				}
				return nil, err
			}
			if fi.IsDir() {
				// On shared storage, the VM mounts it from there (as
				// guestMounts says).
				var gm volumes.GuestMount
				shared := false
				if guestNet && !c.HostConfig.NetworkMode.IsNone() {
					gm, shared = d.volumes.SharedDirMount(mp.Source)
				}
				if shared {
					gm, err := gm.Resolve(ctx)
					if err != nil {
						return nil, errdefs.InvalidParameter(fmt.Errorf("bind mount %s: %w", mp.Source, err))
					}
					req.Type, req.Source, req.Options = gm.FSType, gm.Device, gm.Options
					items = append(items, item{dest: mp.Destination, req: req})
					continue
				}
				hostPath = mp.Source
				break
			}
			dir, err := stageFile(staging, i, mp.Source, !mp.RW)
			if err != nil {
				return nil, fmt.Errorf("bind mount %s: %w", mp.Source, err)
			}
			hostPath = dir
			req.IsFile = true
			req.SubPath = filepath.Base(mp.Source)
		case mount.TypeVolume:
			// One look at the volume: the guest's to mount (as guestMounts
			// says), or the host's (ErrMountedByHost).
			guestMounted := false
			if guestNet && !c.HostConfig.NetworkMode.IsNone() && mp.Name != "" {
				gm, err := d.volumes.MountInGuest(ctx, mp.Name, c.ID)
				switch {
				case err == nil:
					guestMounted = true
					req.Type, req.Source, req.Options = gm.FSType, gm.Device, gm.Options
				case !errors.Is(err, volumes.ErrMountedByHost):
					return nil, err
				}
			}
			if guestMounted {
				d.volumeMountEvent(c, mp)
				req.SubPath = mp.Subpath
				req.CopyUp = mp.CopyData
				items = append(items, item{dest: mp.Destination, req: req})
				continue
			}
			p, err := d.volumes.Mount(mp.Name, c.ID)
			if err != nil {
				return nil, err
			}
			d.volumeMountEvent(c, mp)
			hostPath = p
			if mp.Subpath != "" {
				sub, err := volumeSubpath(p, mp.Subpath)
				if err != nil {
					return nil, err
				}
				fi, err := os.Stat(sub)
				if err != nil {
					return nil, errdefs.InvalidParameter(fmt.Errorf("cannot access path %s: %w", sub, err))
				}
				if fi.IsDir() {
					hostPath = sub
				} else {
					// The file's directory is shared; the agent binds the
					// file from it.
					hostPath, req.SubPath, req.IsFile = filepath.Dir(sub), filepath.Base(sub), true
				}
			}
			req.CopyUp = mp.CopyData && !req.IsFile
		default:
			return nil, errdefs.InvalidParameter(fmt.Errorf("mount type %q is not supported", mp.Type))
		}
		tag := vmbackend.ShareTag(len(ms.shares))
		req.Type, req.Source = "9p", tag
		// A copy-up writes into the share: export it read-write and let
		// the agent make the mount read-only afterwards.
		sh := vmbackend.ShareSpec{Tag: tag, HostPath: hostPath, ReadOnly: !mp.RW && !req.CopyUp}
		ms.shares = append(ms.shares, sh)
		items = append(items, item{dest: mp.Destination, req: req})
	}
	dests := make([]string, 0, len(c.HostConfig.Tmpfs))
	for dst := range c.HostConfig.Tmpfs {
		dests = append(dests, dst)
	}
	sort.Strings(dests)
	for _, dst := range dests {
		var user []string
		if data := c.HostConfig.Tmpfs[dst]; data != "" {
			user = strings.Split(data, ",")
		}
		opts, err := volumes.MergeTmpfsOptions(user)
		if err != nil {
			return nil, errdefs.InvalidParameter(err)
		}
		items = append(items, item{dest: path.Clean(dst), req: agentproto.MountRequest{Type: "tmpfs", Source: "tmpfs", Target: path.Clean(dst), Options: opts}})
	}
	// Parents before children.
	sort.SliceStable(items, func(i, j int) bool {
		di, dj := strings.Count(items[i].dest, "/"), strings.Count(items[j].dest, "/")
		if di != dj {
			return di < dj
		}
		return items[i].dest < items[j].dest
	})
	for _, it := range items {
		ms.requests = append(ms.requests, it.req)
	}
	return ms, nil
}

// volumeMountEvent is dockerd's "mount" event of a volume a start uses.
func (d *Daemon) volumeMountEvent(c *Container, mp *volumes.MountPoint) {
	d.volumeEvent("mount", mp.Name, map[string]string{
		"container": c.ID, "destination": mp.Destination, "driver": mp.Driver,
		"propagation": string(mp.Propagation), "read/write": strconv.FormatBool(mp.RW),
	})
}

// stageFile makes dir/<n>/<base of file> a bind mount of the host file and
// returns dir/<n>: the directory exported to the VM for it.
func stageFile(dir string, n int, file string, readOnly bool) (string, error) {
	sub := filepath.Join(dir, strconv.Itoa(n))
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return "", err
	}
	target := filepath.Join(sub, filepath.Base(file))
	if mounted, _ := mountinfo.IsMountPoint(target); mounted {
		unix.Unmount(target, unix.MNT_DETACH)
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	f.Close()
	if err := unix.Mount(file, target, "", unix.MS_BIND, ""); err != nil {
		return "", fmt.Errorf("bind %s: %w", file, err)
	}
	if readOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			unix.Unmount(target, unix.MNT_DETACH)
			return "", fmt.Errorf("bind %s read-only: %w", file, err)
		}
	}
	return sub, nil
}

// mountsStarted records that the container's first start filled its new
// volumes (copy-up happens once, as dockerd's at create). Callers hold c.mu
// and save the record.
func (d *Daemon) mountsStarted(c *Container) {
	for _, mp := range c.MountPoints {
		mp.CopyData = false
	}
}

// releaseMounts undoes prepareMounts once the VM is gone: volumes with a
// host filesystem are unmounted by their last user, staged files are
// unmounted. It is idempotent and needs no state from the start.
func (d *Daemon) releaseMounts(c *Container) {
	for _, mp := range c.MountPoints {
		if mp.Type == mount.TypeVolume && mp.Name != "" {
			was, err := d.volumes.Unmount(mp.Name, c.ID)
			if err != nil {
				d.log.WithError(err).WithField("volume", mp.Name).Warn("unmount volume")
			}
			if was {
				d.volumeEvent("unmount", mp.Name, map[string]string{"container": c.ID, "driver": mp.Driver})
			}
		}
	}
	warn := d.log.WithField("container", c.ID[:12]).Warn
	cleanStaging(d.mountStagingDir(c.ID), warn)
	// A member's entries in its VM's pod share, a VM's own pod share
	// (podshare.go).
	d.releasePodMounts(c.ID, warn)
	d.podShareOf(c.ID).remove(warn)
}

// cleanStaging unmounts the staged files under dir and removes it, never
// recursing into anything still mounted.
func cleanStaging(dir string, warn func(...any)) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		sub := filepath.Join(dir, e.Name())
		files, _ := os.ReadDir(sub)
		for _, f := range files {
			p := filepath.Join(sub, f.Name())
			if mounted, _ := mountinfo.IsMountPoint(p); mounted {
				if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
					warn(fmt.Sprintf("unmount %s: %v", p, err))
					continue
				}
			}
			if err := os.Remove(p); err != nil {
				warn(fmt.Sprintf("remove %s: %v", p, err))
			}
		}
		os.Remove(sub)
	}
	os.Remove(dir)
}

// restoreMounts re-registers a loaded container's volume references (and,
// for a running one, its use of them); leftovers of a stopped one's staged
// files are cleaned.
func (d *Daemon) restoreMounts(c *Container) {
	for _, mp := range c.MountPoints {
		if mp.Type != mount.TypeVolume || mp.Name == "" {
			continue
		}
		if err := d.volumes.Reference(mp.Name, c.ID); err != nil {
			d.log.WithError(err).WithField("container", c.ID[:12]).Warn("container refers to a missing volume")
			continue
		}
		if c.running() {
			d.volumes.MarkActive(mp.Name, c.ID)
		}
	}
	if !c.running() {
		warn := d.log.WithField("container", c.ID[:12]).Warn
		cleanStaging(d.mountStagingDir(c.ID), warn)
		d.releasePodMounts(c.ID, warn)
		d.podShareOf(c.ID).remove(warn)
	}
}

// removeMounts drops a removed container's volume references and, with
// removeAnonymous (`docker rm -v`, `--rm`), removes its anonymous volumes
// that no other container uses.
func (d *Daemon) removeMounts(c *Container, removeAnonymous bool) {
	d.releaseMounts(c)
	for _, mp := range c.MountPoints {
		if mp.Type != mount.TypeVolume || mp.Name == "" {
			continue
		}
		d.volumes.Release(mp.Name, c.ID)
		if !removeAnonymous || mp.Named {
			continue
		}
		if err := d.volumes.Remove(mp.Name); err == nil {
			d.volumeEvent("destroy", mp.Name, map[string]string{"driver": mp.Driver})
		}
	}
}

// inspectMounts renders the mount points as `docker inspect` shows them.
func inspectMounts(c *Container) []container.MountPoint {
	out := make([]container.MountPoint, 0, len(c.MountPoints))
	for _, mp := range c.MountPoints {
		out = append(out, container.MountPoint{
			Type:        mp.Type,
			Name:        mp.Name,
			Source:      mp.Source,
			Destination: mp.Destination,
			Driver:      mp.Driver,
			Mode:        mp.Mode,
			RW:          mp.RW,
			Propagation: mp.Propagation,
		})
	}
	return out
}

// matchVolumeFilter is `docker ps --filter volume=`: a volume name, or a
// mount's destination or source.
func matchVolumeFilter(c *Container, f filters.Args) bool {
	if !f.Contains("volume") {
		return true
	}
	for _, v := range f.Get("volume") {
		for _, mp := range c.MountPoints {
			if mp.Name == v || mp.Destination == v || mp.Source == v {
				return true
			}
		}
	}
	return false
}

// volumeSubpath resolves a volume subpath as dockerd's safepath.Join does:
// symbolic links are followed, and a result outside the volume is refused
// with dockerd's message; the resolved path is what gets shared, so a link
// changed later cannot redirect the mount.
func volumeSubpath(base, subpath string) (string, error) {
	realBase, err := filepath.EvalSymlinks(base)
	if err != nil {
		return "", errdefs.System(fmt.Errorf("volume %s: %w", base, err))
	}
	joined := filepath.Join(realBase, subpath)
	resolved, err := filepath.EvalSymlinks(joined)
	if err != nil {
		return "", errdefs.NotFound(fmt.Errorf("cannot access path %s: %w", joined, err))
	}
	rel, err := filepath.Rel(realBase, resolved)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", errdefs.InvalidParameter(fmt.Errorf("path concatenation escapes the base directory, base: %s, subpath: %s", realBase, subpath))
	}
	return resolved, nil
}
