package qemu

// Blanks and claims (vmbackend.Claimer): the daemon's warm pool
// (daemon/pool.go) keeps clones restored and resumed before there is a
// container for them. A blank is started like any clone but for its root
// disk, whose device has a placeholder backend (rootDiskArgs); Claim
// binds it to a container with no guest-visible hot-plug:
//   - the container's qcow2 overlay is opened as a new node and becomes
//     the file child of the raw node the device is attached to
//     (blockdev-reopen), and the placeholder is deleted;
//   - the VM's state files (sockets, pid file) move to the container's
//     state dir (a rename: QEMU keeps its listening sockets, and the
//     host's connections stay up);
//   - the QEMU process keeps the -name it was started with, so the
//     state dir records it (claimFileName) for Adopt after a daemon
//     restart;
//   - it moves from the blank's cgroup to one named for the container,
//     with the container's limits.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jevm/jevm/internal/atomicfile"
	"github.com/jevm/jevm/vmbackend"
)

// claimFileName is, in a claimed machine's state dir, what Adopt needs
// that the spec does not say (claimRecord).
const claimFileName = "claim.json"

// claimRecord is what a claimed blank keeps of its blank days.
type claimRecord struct {
	// Name is the QEMU process's -name (processName of the blank's ID).
	Name string `json:"name"`
	// NIC0MAC is the MAC the first NIC is known by (its device property
	// is the blank's).
	NIC0MAC string `json:"nic0Mac,omitempty"`
}

// readClaimRecord reads stateDir's claim record (ok false if there is none).
func readClaimRecord(stateDir string) (claimRecord, bool) {
	b, err := os.ReadFile(filepath.Join(stateDir, claimFileName))
	if err != nil || len(b) > 4096 {
		return claimRecord{}, false
	}
	var r claimRecord
	if json.Unmarshal(b, &r) != nil || !strings.HasPrefix(r.Name, processName("")) || !validID.MatchString(strings.TrimPrefix(r.Name, processName(""))) {
		return claimRecord{}, false
	}
	return r, true
}

// adoptName is the -name of the QEMU that runs spec's VM: its own, or the
// blank's it was claimed from.
func adoptName(spec vmbackend.MachineSpec) string {
	if r, ok := readClaimRecord(spec.StateDir); ok {
		return r.Name
	}
	return processName(spec.ID)
}

// statFileID identifies path's file as it is now.
func statFileID(path string) (fileID, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	return fileID{size: st.Size(), mtime: st.ModTime(), ino: inode(st)}, nil
}

// checkRootDisk checks that path is a disk of the provider's size and
// returns its format.
func (p *Provider) checkRootDisk(path string) (string, error) {
	size, format, err := diskVirtualSize(path)
	if err != nil {
		return "", fmt.Errorf("root disk: %w", err)
	}
	if size != p.opts.DiskSize {
		return "", fmt.Errorf("root disk %s has virtual size %d, want %d", path, size, p.opts.DiskSize)
	}
	return format, nil
}

// templateCurrent tells whether a start of shape now would restore the
// template m was cloned from: same key (kernel, initramfs, QEMU, ...) and
// the same state file (not removed or rebuilt since).
func (p *Provider) templateCurrent(m *machine) bool {
	key, err := p.TemplateKey(m.spec.Shape)
	if err != nil || key != m.tplKey {
		return false
	}
	id, err := statFileID(filepath.Join(p.opts.Root, key, tplStateName))
	return err == nil && id == m.tplState
}

// Claim implements vmbackend.Claimer.
func (p *Provider) Claim(ctx context.Context, vm vmbackend.Machine, spec vmbackend.MachineSpec) (err error) {
	m, ok := vm.(*machine)
	if !ok || m.p != p {
		return fmt.Errorf("qemu: claim: not a machine of this provider")
	}
	defer func() {
		if err != nil && !errors.Is(err, vmbackend.ErrTemplateChanged) {
			err = fmt.Errorf("qemu: claim %s for %s: %w", m.id, spec.ID, err)
		}
	}()
	if !m.blank {
		return errors.New("not a blank machine (or claimed already)")
	}
	select {
	case <-m.exited:
		return vmbackend.ErrNotRunning
	default:
	}
	if spec.Shape != m.spec.Shape {
		return fmt.Errorf("shape %+v, the blank's is %+v", spec.Shape, m.spec.Shape)
	}
	if err := p.checkSpec(spec); err != nil {
		return err
	}
	if err := checkNICs(spec.NICs); err != nil {
		return err
	}
	if len(spec.Shares) != len(m.spec.Shares) {
		return fmt.Errorf("%d shares, the blank has %d", len(spec.Shares), len(m.spec.Shares))
	}
	if !p.templateCurrent(m) {
		return vmbackend.ErrTemplateChanged
	}
	format, err := p.checkRootDisk(spec.RootDisk)
	if err != nil {
		return err
	}
	m.blank = false // never twice, even if what follows fails
	if err := m.swapRootDisk(ctx, spec.RootDisk, format); err != nil {
		return err
	}
	// The record first, then the move: once the state files are in the
	// container's dir, Adopt can find the process by its name.
	rec := claimRecord{Name: m.name}
	if len(spec.NICs) > 0 {
		rec.NIC0MAC = spec.NICs[0].MAC
	}
	b, _ := json.Marshal(rec)
	if err := atomicfile.WriteFile(filepath.Join(m.spec.StateDir, claimFileName), b, 0o644); err != nil {
		return fmt.Errorf("claim record: %w", err)
	}
	if spec.StateDir != m.spec.StateDir {
		// In place of the container's (what an earlier run left there,
		// its QEMU log; a live QEMU there is refused).
		if pid, alive := pidFromFile(spec.StateDir, adoptName(spec)); alive {
			return fmt.Errorf("%s already running as pid %d", spec.ID, pid)
		}
		if err := os.RemoveAll(spec.StateDir); err != nil {
			return fmt.Errorf("replace state dir: %w", err)
		}
		if err := os.Rename(m.spec.StateDir, spec.StateDir); err != nil {
			return fmt.Errorf("move state dir: %w", err)
		}
	}
	oldID := m.id
	p.unregister(oldID, m)
	m.id, m.spec, m.nic0MAC = spec.ID, spec, rec.NIC0MAC
	m.log = p.log.WithField("container", spec.ID).WithField("pid", m.pid).WithField("blank", oldID)
	if err := p.register(m); err != nil {
		return err
	}
	// The container's cgroup and limits; the blank's goes.
	if g, err := p.createCgroup(spec); err != nil {
		return err
	} else if err := p.joinCgroup(g, spec, m.pid); err != nil {
		removeCgroup(g, m.log)
		return fmt.Errorf("cgroup: %w", err)
	} else {
		old := m.cg
		m.cg = g
		removeCgroup(old, m.log)
	}
	if err := m.plugShares(ctx, spec.Shares); err != nil {
		return err
	}
	if err := m.plugNICs(ctx, spec.NICs); err != nil {
		return err
	}
	m.log.Info("blank claimed")
	return nil
}

// swapRootDisk opens path as the root disk's new backend and puts it
// under the raw node the device uses, in the placeholder's place. QEMU
// gets the disk's files as descriptors (fdset.go): its jail has no disk.
func (m *machine) swapRootDisk(ctx context.Context, path, format string) error {
	const node = "disk"
	opts, err := m.openDiskNode(ctx, path, false, rootDiskFdsets)
	if err != nil {
		return fmt.Errorf("open root disk: %w", err)
	}
	if opts["driver"] != format {
		return fmt.Errorf("open root disk: %s is %s, was %s", path, opts["driver"], format)
	}
	opts["node-name"], opts["discard"] = node, "unmap"
	opts["file"].(map[string]any)["discard"] = "unmap"
	if err := m.mon.run(ctx, "blockdev-add", opts, nil); err != nil {
		_ = m.removeFdsets(context.Background(), rootDiskFdsets)
		return fmt.Errorf("open root disk: %w", err)
	}
	if err := m.mon.run(ctx, "blockdev-reopen", map[string]any{"options": []any{map[string]any{
		"driver": "raw", "node-name": rootDriveID, "file": node, "discard": "unmap",
	}}}, nil); err != nil {
		return fmt.Errorf("swap in root disk: %w", err)
	}
	if err := m.mon.run(ctx, "blockdev-del", map[string]any{"node-name": blankDiskNode}, nil); err != nil {
		m.log.WithError(err).Warn("cannot delete the placeholder disk node")
	}
	return nil
}
