package qemu

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/vmbackend"
)

// Network interfaces (docs/NETWORKING.md). Every VM has one virtio-net-pci
// NIC in PCI slot 5 ("nic0" on netdev "net0"): the template's is connected
// to nothing (a hub port without peers), and a clone is started with the
// same netdev id on the container's tap, or again on a lone hub port for
// --network none. Netdev backends are not part of the migrated device
// state, so this is all it takes. The guest keeps the template's MAC
// address after the restore until the agent sets the container's (the
// clone's device property carries the container's MAC, so that RemoveNIC
// can find it). More NICs are hot-plugged (ACPI PCI hotplug) in slots 6 to
// 0xb, below the hot-plugged disks' and shares' slots.
const (
	nicNetdevID = "net0"
	nicDeviceID = "nic0"
	// templateMAC is the template's NIC address (locally administered).
	templateMAC = "02:4a:56:4d:00:01"

	hotNICSlotFirst = 0x06
	hotNICSlotLast  = 0x0b
	hotNICPrefix    = "hnic"
	hotNetdevPrefix = "hnet"

	// unplugTimeout bounds how long the guest may take to release an
	// unplugged NIC (ACPI eject under TCG takes well under a second).
	unplugTimeout = 10 * time.Second
)

var (
	validMAC = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
	validTap = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
)

func checkNICs(nics []vmbackend.NICSpec) error {
	if len(nics) > 1+hotNICSlotLast-hotNICSlotFirst+1 {
		return fmt.Errorf("%d network interfaces; a jeVM takes at most %d", len(nics), 1+hotNICSlotLast-hotNICSlotFirst+1)
	}
	seen := map[string]bool{}
	for _, n := range nics {
		if err := checkNIC(n); err != nil {
			return err
		}
		if seen[strings.ToLower(n.MAC)] {
			return fmt.Errorf("MAC address %s used twice", n.MAC)
		}
		seen[strings.ToLower(n.MAC)] = true
	}
	return nil
}

func checkNIC(n vmbackend.NICSpec) error {
	if !validTap.MatchString(n.TapName) {
		return fmt.Errorf("invalid tap name %q", n.TapName)
	}
	if !validMAC.MatchString(n.MAC) {
		return fmt.Errorf("invalid MAC address %q", n.MAC)
	}
	return nil
}

// nicNetdevArg is the -netdev of the NIC in slot 5.
func nicNetdevArg(tap string) string {
	if tap == "" {
		return "hubport,id=" + nicNetdevID + ",hubid=0"
	}
	return fmt.Sprintf("tap,id=%s,ifname=%s,script=no,downscript=no", nicNetdevID, qemuOptEscape(tap))
}

// nicDeviceArg is the -device of the NIC in slot 5. No option ROM: the
// guest boots from -kernel, and a ROM would be one more RAM block to
// migrate.
func nicDeviceArg(mac string) string {
	if mac == "" {
		mac = templateMAC
	}
	return fmt.Sprintf("virtio-net-pci,netdev=%s,id=%s,mac=%s,addr=0x5,romfile=", nicNetdevID, nicDeviceID, mac)
}

// nicMu serialises NIC hot-plugging (slot choice, then device_add).
var nicMu sync.Mutex

var _ vmbackend.NICHotplugger = (*machine)(nil)

type qomEntry struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// peripherals lists the VM's devices that have an id.
func (m *machine) peripherals(ctx context.Context) (map[string]string, error) {
	var list []qomEntry
	if err := m.mon.run(ctx, "qom-list", map[string]any{"path": "/machine/peripheral"}, &list); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range list {
		if strings.HasPrefix(e.Type, "child<") {
			out[e.Name] = strings.TrimSuffix(strings.TrimPrefix(e.Type, "child<"), ">")
		}
	}
	return out, nil
}

// nicByMAC finds the id of the NIC device whose mac property is mac.
func (m *machine) nicByMAC(ctx context.Context, mac string) (string, error) {
	devs, err := m.peripherals(ctx)
	if err != nil {
		return "", err
	}
	for id, typ := range devs {
		if typ != "virtio-net-pci" {
			continue
		}
		if id == nicDeviceID && m.nic0MAC != "" {
			// A claimed blank's: its property is the blank's MAC.
			if strings.EqualFold(m.nic0MAC, mac) {
				return id, nil
			}
			continue
		}
		var got string
		if err := m.mon.run(ctx, "qom-get", map[string]any{"path": "/machine/peripheral/" + id, "property": "mac"}, &got); err != nil {
			return "", err
		}
		if strings.EqualFold(got, mac) {
			return id, nil
		}
	}
	return "", nil
}

// AddNIC implements vmbackend.NICHotplugger.
func (m *machine) AddNIC(ctx context.Context, nic vmbackend.NICSpec) error {
	select {
	case <-m.exited:
		return fmt.Errorf("qemu: add NIC to %s: %w", m.id, vmbackend.ErrNotRunning)
	default:
	}
	if err := checkNIC(nic); err != nil {
		return fmt.Errorf("qemu: add NIC to %s: %w", m.id, err)
	}
	nicMu.Lock()
	defer nicMu.Unlock()
	t := time.Now()
	if id, err := m.nicByMAC(ctx, nic.MAC); err != nil {
		return fmt.Errorf("qemu: add NIC to %s: %w", m.id, err)
	} else if id != "" {
		return fmt.Errorf("qemu: add NIC to %s: a NIC with MAC %s is already there (%s)", m.id, nic.MAC, id)
	}
	devs, err := m.peripherals(ctx)
	if err != nil {
		return fmt.Errorf("qemu: add NIC to %s: %w", m.id, err)
	}
	slot := -1
	for s := hotNICSlotFirst; s <= hotNICSlotLast; s++ {
		if _, used := devs[fmt.Sprintf("%s%x", hotNICPrefix, s)]; !used {
			slot = s
			break
		}
	}
	if slot < 0 {
		return fmt.Errorf("qemu: add NIC to %s: all %d slots for network interfaces are in use", m.id, hotNICSlotLast-hotNICSlotFirst+1)
	}
	if err := m.addNICAt(ctx, nic, slot); err != nil {
		return err
	}
	m.log.WithFields(logrus.Fields{"tap": nic.TapName, "mac": nic.MAC, "slot": slot, "took": time.Since(t).Round(time.Millisecond)}).Info("NIC hot-plugged")
	return nil
}

// addNICAt plugs nic into PCI slot (a hot-plug slot): its netdev on the
// tap, its device. A restore does it before the incoming migration, to
// give the checkpoint's device state the devices it describes.
func (m *machine) addNICAt(ctx context.Context, nic vmbackend.NICSpec, slot int) error {
	netdev := fmt.Sprintf("%s%x", hotNetdevPrefix, slot)
	dev := fmt.Sprintf("%s%x", hotNICPrefix, slot)
	if err := m.p.user.grantTap(nic.TapName, m.identity()); err != nil {
		return fmt.Errorf("qemu: add NIC to %s: %w", m.id, err)
	}
	// A netdev left by an unplug that timed out blocks the id.
	_ = m.mon.run(ctx, "netdev_del", map[string]any{"id": netdev}, nil)
	if err := m.mon.run(ctx, "netdev_add", map[string]any{
		"type": "tap", "id": netdev, "ifname": nic.TapName, "script": "no", "downscript": "no",
	}, nil); err != nil {
		return fmt.Errorf("qemu: add NIC to %s: tap %s: %w", m.id, nic.TapName, err)
	}
	if err := m.mon.run(ctx, "device_add", map[string]any{
		"driver": "virtio-net-pci", "id": dev, "netdev": netdev, "mac": nic.MAC,
		"addr": fmt.Sprintf("0x%x", slot), "romfile": "",
	}, nil); err != nil {
		_ = m.mon.run(context.Background(), "netdev_del", map[string]any{"id": netdev}, nil)
		return fmt.Errorf("qemu: hot-plug NIC into %s: %w", m.id, err)
	}
	return nil
}

// hotNICs lists the hot-plugged NICs: their slot and MAC, by slot.
func (m *machine) hotNICs(ctx context.Context, devs map[string]string) ([]hotNIC, error) {
	var out []hotNIC
	for id := range devs {
		if !strings.HasPrefix(id, hotNICPrefix) {
			continue
		}
		slot, err := strconv.ParseInt(strings.TrimPrefix(id, hotNICPrefix), 16, 32)
		if err != nil {
			continue
		}
		var mac string
		if err := m.mon.run(ctx, "qom-get", map[string]any{"path": "/machine/peripheral/" + id, "property": "mac"}, &mac); err != nil {
			return nil, err
		}
		out = append(out, hotNIC{Slot: int(slot), MAC: mac})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out, nil
}

// hotNIC is a hot-plugged NIC as a checkpoint records it.
type hotNIC struct {
	Slot int    `json:"slot"`
	MAC  string `json:"mac"`
}

// RemoveNIC implements vmbackend.NICHotplugger.
func (m *machine) RemoveNIC(ctx context.Context, mac string) error {
	select {
	case <-m.exited:
		return fmt.Errorf("qemu: remove NIC from %s: %w", m.id, vmbackend.ErrNotRunning)
	default:
	}
	nicMu.Lock()
	defer nicMu.Unlock()
	t := time.Now()
	id, err := m.nicByMAC(ctx, mac)
	if err != nil {
		return fmt.Errorf("qemu: remove NIC from %s: %w", m.id, err)
	}
	if id == "" {
		return fmt.Errorf("qemu: remove NIC from %s: no NIC with MAC %s", m.id, mac)
	}
	netdev := nicNetdevID
	if id != nicDeviceID {
		netdev = hotNetdevPrefix + strings.TrimPrefix(id, hotNICPrefix)
	}
	if err := m.mon.run(ctx, "device_del", map[string]any{"id": id}, nil); err != nil {
		return fmt.Errorf("qemu: unplug NIC %s from %s: %w", id, m.id, err)
	}
	if err := m.waitUnplugged(ctx, id); err != nil {
		return fmt.Errorf("qemu: unplug NIC %s from %s: %w", id, m.id, err)
	}
	if err := m.mon.run(ctx, "netdev_del", map[string]any{"id": netdev}, nil); err != nil && !errors.Is(err, context.Canceled) {
		m.log.WithError(err).WithField("netdev", netdev).Warn("netdev_del after unplug")
	}
	m.log.WithFields(logrus.Fields{"mac": mac, "device": id, "took": time.Since(t).Round(time.Millisecond)}).Info("NIC unplugged")
	return nil
}

// waitUnplugged waits until the device id is gone after a device_del:
// the guest acknowledged the ACPI eject (within unplugTimeout).
func (m *machine) waitUnplugged(ctx context.Context, id string) error {
	deadline := time.Now().Add(unplugTimeout)
	for {
		devs, err := m.peripherals(ctx)
		if err != nil {
			return err
		}
		if _, still := devs[id]; !still {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the guest did not release it within %s", unplugTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.exited:
			return vmbackend.ErrNotRunning
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// plugNICs hot-plugs a new clone's NICs after the first (which took the
// template NIC's place).
func (m *machine) plugNICs(ctx context.Context, nics []vmbackend.NICSpec) error {
	for i := 1; i < len(nics); i++ {
		if err := m.AddNIC(ctx, nics[i]); err != nil {
			return err
		}
	}
	return nil
}
