package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jevm/jevm/vmbackend"
)

// Host directories reach a VM over virtio-9p (docs/VOLUMES.md).
//
// Every template carries prePluggedShares virtio-9p-pci devices whose mount
// tags are vmbackend.ShareTag(0..n-1), on fsdev backends that point at an
// empty read-only placeholder directory of the template. The guest probes
// them while it boots, but nothing mounts them: QEMU blocks migration only
// while a 9p export is attached. A clone is started with the same fsdev
// ids on the container's directories (as its disk takes the placeholder
// disk's place), so its guest mounts a share at once, with no hot-plug.
// Shares beyond prePluggedShares get their fsdev on the clone's command
// line and a virtio-9p-pci device hot-plugged over QMP after the restore
// (ACPI PCI hotplug; the guest probes it in ~1 s under TCG).
//
// PCI slots: pre-plugged shares take 0x1f downwards, hot-plugged ones
// continue below them, so they never meet the NICs (slot 5, hot-plugged
// 6-0xb).

// MaxShares is how many shares one VM can have.
const MaxShares = vmbackend.MaxShares

const (
	prePluggedShares = 4
	shareSlotTop     = 0x1f
	fsdevPrefix      = "jfs"
	shareDevPfx      = "jshare"
	// sharePlaceholderName is the empty directory, in a template's
	// directory, behind the fsdevs of unused shares.
	sharePlaceholderName = "share-empty"
)

// PrePluggedShares implements vmbackend.SharePlugger.
func (p *Provider) PrePluggedShares() int { return prePluggedShares }

func checkShares(shares []vmbackend.ShareSpec) error {
	if len(shares) > MaxShares {
		return fmt.Errorf("%d shared directories; a jeVM takes at most %d bind mounts and volumes", len(shares), MaxShares)
	}
	for i, s := range shares {
		if s.Tag != vmbackend.ShareTag(i) {
			return fmt.Errorf("share %d has tag %q, want %q", i, s.Tag, vmbackend.ShareTag(i))
		}
		fi, err := os.Stat(s.HostPath)
		if err != nil {
			return fmt.Errorf("shared directory: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("shared directory %s is not a directory", s.HostPath)
		}
	}
	return nil
}

// ensureSharePlaceholder makes the template's empty placeholder directory
// (a template directory is otherwise only read by clones).
func ensureSharePlaceholder(templateDir string) error {
	return os.MkdirAll(filepath.Join(templateDir, sharePlaceholderName), 0o555)
}

// fsdevArg is one 9p backend. security_model=passthrough stores the
// guest's owners and modes as the files' real ones (QEMU runs as root), as
// a container's bind mount does; multidevs=remap keeps inode numbers
// unique when the directory spans several host filesystems.
func fsdevArg(i int, dir string, readOnly bool) string {
	opt := fmt.Sprintf("local,id=%s%d,path=%s,security_model=passthrough,multidevs=remap", fsdevPrefix, i, qemuOptEscape(dir))
	if readOnly {
		opt += ",readonly=on"
	}
	return opt
}

func shareSlot(i int) string { return fmt.Sprintf("0x%x", shareSlotTop-i) }

// shareDevices are the pre-plugged shares of the device list (devices()):
// the same devices for a template and its clones; the backends are the
// clone's directories, or the template's placeholder.
func shareDevices(c vmConfig) []string {
	placeholder := filepath.Join(filepath.Dir(c.MemPath), sharePlaceholderName)
	var args []string
	for i := 0; i < prePluggedShares; i++ {
		dir, ro := placeholder, true
		if i < len(c.Shares) {
			dir, ro = c.Shares[i].HostPath, c.Shares[i].ReadOnly
		}
		args = append(args,
			"-fsdev", fsdevArg(i, dir, ro),
			"-device", fmt.Sprintf("virtio-9p-pci,id=%s%d,fsdev=%s%d,mount_tag=%s,addr=%s",
				shareDevPfx, i, fsdevPrefix, i, vmbackend.ShareTag(i), shareSlot(i)))
	}
	return args
}

// shareArgs are the backends of the shares to hot-plug (beyond the
// pre-plugged ones).
func shareArgs(shares []vmbackend.ShareSpec) []string {
	var args []string
	for i := prePluggedShares; i < len(shares); i++ {
		args = append(args, "-fsdev", fsdevArg(i, shares[i].HostPath, shares[i].ReadOnly))
	}
	return args
}

// plugShares hot-plugs the devices of the shares beyond the pre-plugged
// ones.
func (m *machine) plugShares(ctx context.Context, shares []vmbackend.ShareSpec) error {
	for i := prePluggedShares; i < len(shares); i++ {
		args := map[string]any{
			"driver":    "virtio-9p-pci",
			"id":        fmt.Sprintf("%s%d", shareDevPfx, i),
			"fsdev":     fmt.Sprintf("%s%d", fsdevPrefix, i),
			"mount_tag": shares[i].Tag,
			"addr":      shareSlot(i),
		}
		if err := m.mon.run(ctx, "device_add", args, nil); err != nil {
			return fmt.Errorf("hot-plug share %s (%s): %w", shares[i].Tag, shares[i].HostPath, err)
		}
	}
	return nil
}
