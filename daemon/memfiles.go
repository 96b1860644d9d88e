package daemon

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// maxMemFilesBytes bounds the data of a container's in-memory files: they
// travel in the agent's start request, whose JSON (base64 data) must fit
// one protocol message (agentproto.MaxPayload).
const maxMemFilesBytes = 640 << 10

// SetContainerFiles gives a created container files that exist only in
// memory, as swarm tasks get their secrets and configs: the daemon keeps
// them in memory (never in the container's configuration on disk) and
// hands them to every start, where the guest agent writes them to a tmpfs
// in the VM and binds them read-only at their targets. A restarted daemon
// has none: the swarm gives a task a new container.
func (d *Daemon) SetContainerFiles(ctx context.Context, ref string, files []backend.ContainerFile) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	reqs := make([]agentproto.FileRequest, 0, len(files))
	total := 0
	seen := map[string]bool{}
	for _, f := range files {
		t := path.Clean(f.Target)
		if !path.IsAbs(f.Target) || t == "/" {
			return errdefs.InvalidParameter(fmt.Errorf("file target %q: must be an absolute file path", f.Target))
		}
		if seen[t] {
			return errdefs.InvalidParameter(fmt.Errorf("file target %s given twice", t))
		}
		seen[t] = true
		total += len(f.Data)
		reqs = append(reqs, agentproto.FileRequest{Target: t, Data: f.Data, UID: f.UID, GID: f.GID, Mode: uint32(f.Mode.Perm())})
	}
	if total > maxMemFilesBytes {
		return errdefs.InvalidParameter(fmt.Errorf("the container's secrets and configs hold %d bytes: jevm takes at most %d", total, maxMemFilesBytes))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removing {
		return errdefs.Conflict(errors.New("the container is being removed"))
	}
	c.memFiles = reqs
	return nil
}
