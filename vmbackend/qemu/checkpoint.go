package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jevm/jevm/internal/atomicfile"
	"github.com/jevm/jevm/internal/diskcopy"
	"github.com/jevm/jevm/vmbackend"
)

// Checkpoints (docker checkpoint create, docs/CHECKPOINT.md). A clone's
// RAM is a private copy-on-write mapping of its template's memory file, so
// unlike the template's it is not "shared" for x-ignore-shared: a
// migration of the stopped clone into a file carries all of it, with the
// device state. The root disk (the clone's qcow2 overlay over the image's
// base disk, flushed and inactive once the migration completed) is
// copied beside it. A restore is a clone whose incoming migration is that
// file instead of the template's state: the same command line (the
// template's devices), the same template memory file under the RAM (every
// page is then overwritten by the stream), a new VM generation ID.
const (
	ckptStateName = "vm.state"
	ckptDiskName  = "disk.qcow2"
	ckptMetaName  = "vm.json"
)

// Checkpoint implements vmbackend.Checkpointer.
func (m *machine) Checkpoint(ctx context.Context, dir string, leaveRunning bool) (info vmbackend.CheckpointInfo, err error) {
	hot, err := m.movable(ctx, "checkpoint")
	if err != nil {
		return info, err
	}
	t0 := time.Now()
	if err := m.mon.run(ctx, "stop", nil, nil); err != nil {
		return info, fmt.Errorf("qemu: checkpoint %s: pause: %w", m.id, err)
	}
	resume := func() {
		if err := m.mon.run(context.Background(), "cont", nil, nil); err != nil {
			m.log.WithError(err).Error("checkpoint: could not resume the VM")
		}
	}
	statePath := filepath.Join(dir, ckptStateName)
	defer func() {
		if err != nil {
			os.Remove(statePath)
			os.Remove(filepath.Join(dir, ckptDiskName))
			resume()
			err = fmt.Errorf("qemu: checkpoint %s: %w", m.id, err)
		}
	}()
	if err := m.mon.saveTo(ctx, statePath); err != nil {
		return info, explainMigrationBlocker(err)
	}
	if err := m.mon.waitMigration(ctx, m.exited); err != nil {
		return info, explainMigrationBlocker(err)
	}
	tState := time.Since(t0)
	if err := diskcopy.Copy(m.spec.RootDisk, filepath.Join(dir, ckptDiskName)); err != nil {
		return info, fmt.Errorf("copy the root disk: %w", err)
	}
	st, err := os.Stat(statePath)
	if err != nil {
		return info, err
	}
	info = vmbackend.CheckpointInfo{Template: m.tplKey, Shape: m.spec.Shape, NICs: min(len(m.spec.NICs), 1) + len(hot), StateBytes: st.Size()}
	b, _ := json.MarshalIndent(ckptRecord{CheckpointInfo: info, HotNICs: hot}, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(dir, ckptMetaName), append(b, '\n'), 0o600); err != nil {
		return info, err
	}
	syncDir(dir)
	if leaveRunning {
		// cont re-activates the disk the migration left inactive.
		resume()
	}
	m.log.WithFields(map[string]any{"state": tState.Round(time.Millisecond), "total": time.Since(t0).Round(time.Millisecond), "stateBytes": st.Size(), "leaveRunning": leaveRunning}).Info("checkpoint written")
	return info, nil
}

// explainMigrationBlocker says why QEMU refused: a 9p share the guest
// mounted (a bind mount or volume) blocks migration.
func explainMigrationBlocker(err error) error {
	if strings.Contains(err.Error(), "VirtFS") || strings.Contains(err.Error(), "9p") {
		return fmt.Errorf("jevm cannot checkpoint a container with bind mounts or volumes (QEMU: %w)", err)
	}
	return err
}

// movable checks that the machine's whole state can be migrated (into
// a checkpoint or to another host: what is being done, for the message)
// and lists its hot-plugged NICs: an attached disk or a share beyond the
// template's is a device a restore would not re-create.
func (m *machine) movable(ctx context.Context, what string) ([]hotNIC, error) {
	if m.blank {
		return nil, fmt.Errorf("qemu: a blank VM has nothing to %s", what)
	}
	devs, err := m.peripherals(ctx)
	if err != nil {
		return nil, fmt.Errorf("qemu: %s %s: %w", what, m.id, err)
	}
	for id := range devs {
		switch {
		case strings.HasPrefix(id, diskDevPrefix):
			return nil, fmt.Errorf("jevm cannot %s a container while a disk is attached to its VM (docker diff, export or cp in progress, or a pod member)", what)
		case strings.HasPrefix(id, shareDevPfx):
			// The first prePluggedShares are the template's.
			if i, err := strconv.Atoi(strings.TrimPrefix(id, shareDevPfx)); err != nil || i >= prePluggedShares {
				return nil, fmt.Errorf("jevm cannot %s a container with more than %d bind mounts or volumes", what, prePluggedShares)
			}
		}
	}
	hot, err := m.hotNICs(ctx, devs)
	if err != nil {
		return nil, fmt.Errorf("qemu: %s %s: %w", what, m.id, err)
	}
	return hot, nil
}

// CheckpointDisk implements vmbackend.Restorer.
func (p *Provider) CheckpointDisk(dir string) string { return filepath.Join(dir, ckptDiskName) }

// ckptRecord is vm.json: the checkpoint's description and where its
// hot-plugged NICs were.
type ckptRecord struct {
	vmbackend.CheckpointInfo
	HotNICs []hotNIC `json:"hotNICs,omitempty"`
}

// readCheckpoint loads the description of the checkpoint in dir.
func readCheckpoint(dir string) (ckptRecord, error) {
	var info ckptRecord
	b, err := os.ReadFile(filepath.Join(dir, ckptMetaName))
	if err != nil {
		return info, fmt.Errorf("checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("checkpoint: %s: %w", ckptMetaName, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ckptStateName)); err != nil {
		return info, fmt.Errorf("checkpoint: %w", err)
	}
	return info, nil
}

// slotNICs pairs each hot-plugged NIC of a saved machine with the NIC
// of spec that goes back in its slot: the one of the same MAC (a restore
// or migration asks for the same addresses), else (a fork) the one in
// the same place.
func slotNICs(spec vmbackend.MachineSpec, hot []hotNIC) []slotNIC {
	var nics []slotNIC
	for i, h := range hot {
		nic := spec.NICs[1+i]
		for _, n := range spec.NICs[1:] {
			if strings.EqualFold(n.MAC, h.MAC) {
				nic = n
			}
		}
		nics = append(nics, slotNIC{slot: h.Slot, nic: nic})
	}
	return nics
}

// Restore implements vmbackend.Restorer.
func (p *Provider) Restore(ctx context.Context, spec vmbackend.MachineSpec, dir string) (vmbackend.Machine, error) {
	info, err := readCheckpoint(dir)
	if err != nil {
		return nil, fmt.Errorf("qemu: restore %s: %w", spec.ID, err)
	}
	if info.Shape != spec.Shape {
		return nil, fmt.Errorf("qemu: restore %s: the checkpoint's VM has %d MiB and %d vCPUs, the container's %d MiB and %d: %w",
			spec.ID, info.Shape.MemoryMiB, info.Shape.VCPUs, spec.Shape.MemoryMiB, spec.Shape.VCPUs, vmbackend.ErrCheckpointIncompatible)
	}
	if len(spec.NICs) != info.NICs || len(info.HotNICs) != max(info.NICs-1, 0) {
		return nil, fmt.Errorf("qemu: restore %s: the checkpoint's VM had %d network interfaces, the container has %d now", spec.ID, info.NICs, len(spec.NICs))
	}
	nics := slotNICs(spec, info.HotNICs)
	if len(spec.Shares) > prePluggedShares {
		return nil, fmt.Errorf("qemu: restore %s: %d shares; a restored VM has at most %d", spec.ID, len(spec.Shares), prePluggedShares)
	}
	key, err := p.TemplateKey(spec.Shape)
	if err != nil {
		return nil, fmt.Errorf("qemu: restore %s: %w", spec.ID, err)
	}
	if key != info.Template {
		return nil, fmt.Errorf("qemu: restore %s: %w", spec.ID, vmbackend.ErrCheckpointIncompatible)
	}
	return p.start(ctx, spec, &restoreSource{state: filepath.Join(dir, ckptStateName), tplKey: key, nics: nics})
}
