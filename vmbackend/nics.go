package vmbackend

import "context"

// NICHotplugger is implemented by Machines that can add and remove network
// interfaces while the guest runs (the QEMU machine does). The daemon uses
// it for `docker network connect` and `disconnect` of a running container.
type NICHotplugger interface {
	// AddNIC hot-plugs a NIC on nic.TapName (the caller made the tap) with
	// nic.MAC. The guest's agent then has to configure it.
	AddNIC(ctx context.Context, nic NICSpec) error
	// RemoveNIC unplugs the NIC with this MAC address and waits until the
	// guest released it. The caller removes the tap afterwards.
	RemoveNIC(ctx context.Context, mac string) error
}
