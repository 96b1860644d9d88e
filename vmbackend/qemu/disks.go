package qemu

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/vmbackend"
)

// Disks hot-plugged into running clones (vmbackend.DiskAttacher): a
// blockdev node on the file plus a virtio-blk-pci device on the root bus,
// which the guest's ACPI PCI hotplug probes. They take PCI slots
// diskSlotFirst.. (below the shares' slots, which count down from 0x1f,
// and above the NIC's slot 5), so the template's device layout is
// unchanged.
const (
	maxAttachedDisks = 4
	diskSlotFirst    = 0x0c
	diskNodePrefix   = "xdisk"
	diskDevPrefix    = "xdiskdev"
	diskSerialPrefix = "jevm-disk"
)

var _ vmbackend.DiskAttacher = (*machine)(nil)

// attachedDisks are the disks hot-plugged into each running machine:
// the index (node, device, serial and slot) each path holds.
var attachedDisks = struct {
	sync.Mutex
	m map[*machine]map[string]int
}{m: map[*machine]map[string]int{}}

func diskSerial(i int) string { return fmt.Sprintf("%s%d", diskSerialPrefix, i) }

// AttachDisk implements vmbackend.DiskAttacher.
func (m *machine) AttachDisk(ctx context.Context, path string, readOnly bool) (string, error) {
	select {
	case <-m.exited:
		return "", fmt.Errorf("qemu: attach disk to %s: %w", m.id, vmbackend.ErrNotRunning)
	default:
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	attachedDisks.Lock()
	defer attachedDisks.Unlock()
	disks := attachedDisks.m[m]
	if disks == nil {
		// A VM this daemon adopted may have disks a previous one plugged.
		disks = m.pluggedDisks(ctx)
	}
	if i, ok := disks[path]; ok {
		return diskSerial(i), nil
	}
	// The lowest free index: a detached disk's slot is used again.
	n := -1
	used := map[int]bool{}
	for _, i := range disks {
		used[i] = true
	}
	for i := 0; i < maxAttachedDisks; i++ {
		if !used[i] {
			n = i
			break
		}
	}
	if n < 0 {
		return "", fmt.Errorf("qemu: attach disk to %s: at most %d disks can be attached", m.id, maxAttachedDisks)
	}
	t := time.Now()
	node := fmt.Sprintf("%s%d", diskNodePrefix, n)
	serial := diskSerial(n)
	// By descriptor: QEMU's jail has no disks (fdset.go).
	blockdev, err := m.openDiskNode(ctx, path, readOnly, diskFdsets(n))
	if err != nil {
		return "", fmt.Errorf("qemu: attach disk %s: %w", path, err)
	}
	blockdev["node-name"] = node
	if err := m.mon.run(ctx, "blockdev-add", blockdev, nil); err != nil {
		_ = m.removeFdsets(context.Background(), diskFdsets(n))
		return "", fmt.Errorf("qemu: attach disk %s to %s: %w", path, m.id, err)
	}
	dev := map[string]any{
		"driver": "virtio-blk-pci",
		"id":     fmt.Sprintf("%s%d", diskDevPrefix, n),
		"drive":  node,
		"serial": serial,
		"addr":   fmt.Sprintf("0x%x", diskSlotFirst+n),
	}
	if err := m.mon.run(ctx, "device_add", dev, nil); err != nil {
		_ = m.mon.run(context.Background(), "blockdev-del", map[string]any{"node-name": node}, nil)
		_ = m.removeFdsets(context.Background(), diskFdsets(n))
		return "", fmt.Errorf("qemu: hot-plug disk %s into %s: %w", path, m.id, err)
	}
	disks[path] = n
	m.log.WithFields(logrus.Fields{"disk": path, "serial": serial, "readOnly": readOnly, "took": time.Since(t).Round(time.Millisecond)}).Info("disk hot-plugged")
	return serial, nil
}

// DetachDisk implements vmbackend.DiskAttacher: the device is unplugged
// (the guest acknowledges the ACPI eject, so it must have stopped using
// the disk), then its block node is deleted, so nothing holds the file.
func (m *machine) DetachDisk(ctx context.Context, path string) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	attachedDisks.Lock()
	defer attachedDisks.Unlock()
	if attachedDisks.m[m] == nil {
		attachedDisks.m[m] = m.pluggedDisks(ctx)
	}
	n, ok := attachedDisks.m[m][path]
	if !ok {
		return nil
	}
	select {
	case <-m.exited:
		return nil // gone with the VM
	default:
	}
	t := time.Now()
	id := fmt.Sprintf("%s%d", diskDevPrefix, n)
	if err := m.mon.run(ctx, "device_del", map[string]any{"id": id}, nil); err != nil {
		return fmt.Errorf("qemu: unplug disk %s from %s: %w", path, m.id, err)
	}
	if err := m.waitUnplugged(ctx, id); err != nil {
		if errors.Is(err, vmbackend.ErrNotRunning) {
			return nil // gone with the VM
		}
		return fmt.Errorf("qemu: unplug disk %s from %s: %w", path, m.id, err)
	}
	node := fmt.Sprintf("%s%d", diskNodePrefix, n)
	if err := m.deleteNode(ctx, node); err != nil {
		return fmt.Errorf("qemu: delete block node of %s in %s: %w", path, m.id, err)
	}
	if err := m.removeFdsets(ctx, diskFdsets(n)); err != nil {
		m.log.WithError(err).Warn("cannot close the descriptors of an unplugged disk")
	}
	delete(attachedDisks.m[m], path)
	m.log.WithFields(logrus.Fields{"disk": path, "took": time.Since(t).Round(time.Millisecond)}).Info("disk unplugged")
	return nil
}

// nodeReleaseTimeout bounds how long a block node may stay in use after
// its device is gone from the QOM tree: QEMU drops the device's reference
// to the node a moment later (measured: under load, after the unplug was
// already reported, blockdev-del still said "is in use").
const nodeReleaseTimeout = 10 * time.Second

// deleteNode deletes a hot-plugged disk's block node, waiting while the
// unplugged device still holds it. Until it is gone, the disk counts as
// attached: plugging the same path again would be taken for done.
func (m *machine) deleteNode(ctx context.Context, node string) error {
	deadline := time.Now().Add(nodeReleaseTimeout)
	for {
		err := m.mon.run(ctx, "blockdev-del", map[string]any{"node-name": node}, nil)
		if err == nil || !strings.Contains(err.Error(), "in use") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-m.exited:
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pluggedDisks asks QEMU which disks are hot-plugged (their block nodes
// are named diskNodePrefix<N>), for a VM adopted after a daemon restart.
// The map is registered for m and forgotten when m is done. Callers hold
// attachedDisks.
func (m *machine) pluggedDisks(ctx context.Context) map[string]int {
	disks := map[string]int{}
	var nodes []struct {
		NodeName string `json:"node-name"`
		File     string `json:"file"`
		Drv      string `json:"drv"`
	}
	if err := m.mon.run(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes); err != nil {
		m.log.WithError(err).Debug("query the hot-plugged disks")
	}
	// A node's file is its fd set (fdset.go), whose opaque string is the
	// disk's path.
	sets, err := m.fdsets(ctx)
	if err != nil {
		m.log.WithError(err).Debug("query the fd sets of the hot-plugged disks")
	}
	for _, n := range nodes {
		var i int
		if _, err := fmt.Sscanf(n.NodeName, diskNodePrefix+"%d", &i); err != nil || n.NodeName != fmt.Sprintf("%s%d", diskNodePrefix, i) {
			continue
		}
		if i < 0 || i >= maxAttachedDisks {
			continue
		}
		if set, ok := sets[diskFdsets(i)]; ok && len(set.Fds) > 0 && set.Fds[0].Opaque != "" {
			disks[set.Fds[0].Opaque] = i
		}
	}
	attachedDisks.m[m] = disks
	go func() {
		<-m.done
		attachedDisks.Lock()
		delete(attachedDisks.m, m)
		attachedDisks.Unlock()
	}()
	return disks
}
