package daemon

// docker cp, export and diff. The container's file system lives on its own
// disk inside its VM, and the guest agent owns it: every file operation
// goes through the agent. For a running container that is its live agent;
// for a created or exited one, a short-lived "maintenance clone" of the
// container's VM (maintenance.go).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// containerFileNotFound is dockerd's error for a missing path.
func containerFileNotFound(path, name string) error {
	return errdefs.NotFound(fmt.Errorf("Could not find the file %s in container %s", path, name))
}

// fileOpError maps an agent's file error to dockerd's kinds.
func fileOpError(err error, path, name string) error {
	switch {
	case err == nil:
		return nil
	case agentclient.IsNotFound(err):
		return containerFileNotFound(path, name)
	case agentclient.IsInvalid(err):
		return errdefs.InvalidParameter(err)
	case errdefs.IsNotFound(err), errdefs.IsConflict(err), errdefs.IsInvalidParameter(err), errdefs.IsNotImplemented(err):
		return err
	case errors.Is(err, context.Canceled):
		return errdefs.Cancelled(err)
	}
	return errdefs.System(err)
}

func toPathStat(st *agentproto.PathStat) *container.PathStat {
	return &container.PathStat{
		Name:       st.Name,
		Size:       st.Size,
		Mode:       fs.FileMode(st.Mode),
		Mtime:      st.Mtime,
		LinkTarget: st.LinkTarget,
	}
}

// ContainerStatPath serves HEAD /containers/{name}/archive.
func (d *Daemon) ContainerStatPath(ctx context.Context, name, path string) (*container.PathStat, error) {
	c, err := d.containers.get(name)
	if err != nil {
		return nil, err
	}
	var st *agentproto.PathStat
	err = d.withContainerFS(ctx, c, "stat", func(s *fsSession) error {
		var err error
		st, err = s.agent.StatPath(ctx, path)
		return err
	})
	if err != nil {
		return nil, fileOpError(err, path, name)
	}
	return toPathStat(st), nil
}

// ContainerArchivePath serves GET /containers/{name}/archive.
func (d *Daemon) ContainerArchivePath(ctx context.Context, name, path string, start func(*container.PathStat) (io.Writer, error)) error {
	c, err := d.containers.get(name)
	if err != nil {
		return err
	}
	started := false
	err = d.withContainerFS(ctx, c, "archive", func(s *fsSession) error {
		st, rc, err := s.agent.ArchiveGet(ctx, path)
		if err != nil {
			return err
		}
		defer rc.Close()
		w, err := start(toPathStat(st))
		if err != nil {
			return err
		}
		started = true
		_, err = io.Copy(w, rc)
		return err
	})
	if err != nil && !started {
		return fileOpError(err, path, name)
	}
	if err == nil {
		d.lockedContainerEvent(c, events.ActionArchivePath, nil)
	}
	return err
}

// ContainerExtractToDir serves PUT /containers/{name}/archive.
func (d *Daemon) ContainerExtractToDir(ctx context.Context, name, path string, copyUIDGID, noOverwriteDirNonDir bool, content io.Reader) error {
	c, err := d.containers.get(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	readOnly := c.HostConfig.ReadonlyRootfs
	user := c.Config.User
	c.mu.Unlock()
	if readOnly {
		return errdefs.InvalidParameter(errors.New("container rootfs is marked read-only"))
	}
	op := agentproto.FileOp{Path: path, NoOverwriteDirNonDir: noOverwriteDirNonDir, CopyUIDGID: copyUIDGID}
	if copyUIDGID {
		op.User = user
	}
	err = d.withContainerFS(ctx, c, "extract", func(s *fsSession) error {
		return s.agent.ArchivePut(ctx, op, content)
	})
	if err != nil {
		return fileOpError(err, path, name)
	}
	d.lockedContainerEvent(c, events.ActionExtractToDir, nil)
	return nil
}

// ContainerExport serves GET /containers/{name}/export.
func (d *Daemon) ContainerExport(ctx context.Context, name string, out io.Writer) error {
	c, err := d.containers.get(name)
	if err != nil {
		return err
	}
	err = d.withContainerFS(ctx, c, "export", func(s *fsSession) error {
		rc, err := s.agent.Export(ctx)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(out, rc)
		return err
	})
	if err != nil {
		if errdefs.IsConflict(err) || errdefs.IsNotFound(err) {
			return err
		}
		return fmt.Errorf("Error exporting container %s: %v", name, err)
	}
	d.lockedContainerEvent(c, events.ActionExport, nil)
	return nil
}

// ContainerChanges serves GET /containers/{name}/changes: the container's
// disk is compared, in the guest, with the image's base disk hot-plugged
// read-only into the VM.
func (d *Daemon) ContainerChanges(ctx context.Context, name string) ([]container.FilesystemChange, error) {
	c, err := d.containers.get(name)
	if err != nil {
		return nil, err
	}
	base, err := d.baseDisk(c)
	if err != nil {
		return nil, err
	}
	var changes []agentproto.Change
	err = d.withContainerFS(ctx, c, "diff", func(s *fsSession) error {
		serial, err := attachBaseDisk(ctx, s.machine, base)
		if err != nil {
			return err
		}
		changes, err = s.agent.Changes(ctx, serial)
		return err
	})
	if err != nil {
		return nil, fileOpError(err, "/", name)
	}
	out := make([]container.FilesystemChange, 0, len(changes))
	for _, ch := range changes {
		out = append(out, container.FilesystemChange{Path: ch.Path, Kind: container.ChangeType(ch.Kind)})
	}
	return out, nil
}

// attachBaseDisk hot-plugs the image's base disk read-only into the VM and
// returns the serial the agent finds it by.
func attachBaseDisk(ctx context.Context, m vmbackend.Machine, base string) (string, error) {
	da, ok := m.(vmbackend.DiskAttacher)
	if !ok {
		return "", errdefs.NotImplemented(errors.New("the VM backend cannot attach the image's disk"))
	}
	return da.AttachDisk(ctx, base, true)
}

// baseDisk is the image's base disk under the container's disk, as the VM
// backend layered it (still there when the image was deleted since).
func (d *Daemon) baseDisk(c *Container) (string, error) {
	p, err := d.vms.RootDiskBase(c.diskPath())
	if err != nil {
		return "", errdefs.System(fmt.Errorf("container %s: %w", c.ID, err))
	}
	if _, err := os.Stat(p); err != nil {
		return "", errdefs.System(fmt.Errorf("container %s: image disk: %w", c.ID, err))
	}
	return p, nil
}
