package vmbackend

import "context"

// DiskAttacher is implemented by Machines that can hot-plug extra disks
// into the running guest (the QEMU machine does). The daemon uses it to
// show an image's base disk, read-only, to the agent of a running
// container or of a maintenance clone, for docker diff and commit.
type DiskAttacher interface {
	// AttachDisk hot-plugs the disk image at path (raw or qcow2) and
	// returns the virtio serial number the guest sees it under
	// (/sys/block/vdX/serial). Attaching a path that is already attached
	// returns its serial again. The disk stays until DetachDisk or until
	// the VM stops.
	AttachDisk(ctx context.Context, path string, readOnly bool) (serial string, err error)
	// DetachDisk unplugs the disk at path (the guest must no longer use
	// it: a joined container's root after its exit) and releases the
	// file. A path that is not attached, or a VM that is gone, is no
	// error.
	DetachDisk(ctx context.Context, path string) error
}
