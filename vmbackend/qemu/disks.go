package qemu

import (
	"context"
	"fmt"
	"path/filepath"
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

// attachedDisks are the disks hot-plugged into each running machine, by
// path.
var attachedDisks = struct {
	sync.Mutex
	m map[*machine]map[string]string
}{m: map[*machine]map[string]string{}}

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
	if serial, ok := disks[path]; ok {
		return serial, nil
	}
	if disks == nil {
		disks = map[string]string{}
		attachedDisks.m[m] = disks
		go func() {
			<-m.done
			attachedDisks.Lock()
			delete(attachedDisks.m, m)
			attachedDisks.Unlock()
		}()
	}
	n := len(disks)
	if n >= maxAttachedDisks {
		return "", fmt.Errorf("qemu: attach disk to %s: at most %d disks can be attached", m.id, maxAttachedDisks)
	}
	_, format, err := diskVirtualSize(path)
	if err != nil {
		return "", fmt.Errorf("qemu: attach disk %s: %w", path, err)
	}
	t := time.Now()
	node := fmt.Sprintf("%s%d", diskNodePrefix, n)
	serial := fmt.Sprintf("%s%d", diskSerialPrefix, n)
	blockdev := map[string]any{
		"driver":    format,
		"node-name": node,
		"read-only": readOnly,
		"file": map[string]any{
			"driver":    "file",
			"filename":  path,
			"read-only": readOnly,
		},
	}
	if err := m.mon.run(ctx, "blockdev-add", blockdev, nil); err != nil {
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
		return "", fmt.Errorf("qemu: hot-plug disk %s into %s: %w", path, m.id, err)
	}
	disks[path] = serial
	m.log.WithFields(logrus.Fields{"disk": path, "serial": serial, "readOnly": readOnly, "took": time.Since(t).Round(time.Millisecond)}).Info("disk hot-plugged")
	return serial, nil
}
