package volumes

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/docker/docker/errdefs"
)

// Volumes of a network filesystem (`--opt type=nfs`) are mounted by the
// container's VM itself instead of by the host: the guest kernel is the
// NFS client, so the mount is part of the VM's state and moves with it
// when the container is checkpointed or migrated (a host directory shared
// over virtio-9p cannot move: QEMU blocks the migration of a mounted 9p
// export). Every host that reaches the server mounts the same data, which
// is what lets such a volume follow its container (docs/MIGRATION.md).

// guestFSTypes are the filesystem types a jeVM mounts itself.
var guestFSTypes = map[string]bool{"nfs": true, "nfs4": true}

// addrLookupTimeout bounds the host's lookup of an NFS server's name.
const addrLookupTimeout = 10 * time.Second

// GuestMount says how a VM mounts a volume itself.
type GuestMount struct {
	// FSType is the filesystem type ("nfs", "nfs4").
	FSType string
	// Device is the volume's device option ("server:/export" or
	// ":/export").
	Device string
	// Options are the volume's o option, split at commas, with addr= a
	// literal IP address (the guest kernel resolves no names).
	Options []string
}

// guestMountable reports whether the volume's filesystem is one a VM
// mounts itself.
func (v *Volume) guestMountable() bool {
	return guestFSTypes[v.Options["type"]]
}

// GuestMountable reports whether volume name is one a VM mounts itself
// (a network filesystem, reached the same way from every host).
func (s *Store) GuestMountable(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.vols[name]
	return ok && e.vol.guestMountable()
}

// GuestMountableOptions reports whether a volume with these driver
// options would be mounted by its VMs (an offered migration's volumes
// must be).
func GuestMountableOptions(opts map[string]string) bool {
	return guestFSTypes[opts["type"]]
}

// MountInGuest marks the volume in use by running container ref, whose VM
// mounts it itself, and says how. The host mounts nothing.
func (s *Store) MountInGuest(ctx context.Context, name, ref string) (GuestMount, error) {
	v, err := s.Get(name)
	if err != nil {
		return GuestMount{}, opErr("mount", name, ErrNoSuchVolume, nil)
	}
	if !v.guestMountable() {
		return GuestMount{}, opErr("mount", name, errdefs.InvalidParameter(fmt.Errorf("a volume of type %q is mounted by the host", v.Options["type"])), nil)
	}
	opts, err := resolveServerAddr(ctx, v.Options["device"], v.Options["o"])
	if err != nil {
		return GuestMount{}, opErr("mount", name, errdefs.InvalidParameter(fmt.Errorf("failed to mount local volume: %w", err)), nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.vols[name]
	if !ok { // removed meanwhile
		return GuestMount{}, opErr("mount", name, ErrNoSuchVolume, nil)
	}
	e.active[ref] = struct{}{}
	return GuestMount{FSType: v.Options["type"], Device: v.Options["device"], Options: opts}, nil
}

// resolveServerAddr returns the options of an NFS mount with addr= an IP
// address, as the kernel needs it: a name in addr= is looked up here (as
// dockerd does for the mounts it makes), and without addr= the server
// part of device ("server:/export") gives it.
func resolveServerAddr(ctx context.Context, device, o string) ([]string, error) {
	var opts []string
	found := false
	for _, opt := range strings.Split(o, ",") {
		if opt == "" {
			continue
		}
		if k, val, ok := strings.Cut(opt, "="); ok && k == "addr" {
			ip, err := lookupServer(ctx, val)
			if err != nil {
				return nil, err
			}
			opt, found = "addr="+ip, true
		}
		opts = append(opts, opt)
	}
	if !found {
		server, _, ok := strings.Cut(device, ":")
		if !ok || server == "" {
			return nil, fmt.Errorf("the NFS server's address is missing: give --opt o=addr=SERVER or --opt device=SERVER:/path (device is %q)", device)
		}
		ip, err := lookupServer(ctx, strings.Trim(server, "[]"))
		if err != nil {
			return nil, err
		}
		opts = append(opts, "addr="+ip)
	}
	return opts, nil
}

func lookupServer(ctx context.Context, host string) (string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, addrLookupTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return "", fmt.Errorf("look up NFS server %s: %w", host, err)
	}
	for _, a := range addrs { // IPv4 first: the common bridge network has no IPv6
		if a.IP.To4() != nil {
			return a.IP.String(), nil
		}
	}
	return addrs[0].IP.String(), nil
}
