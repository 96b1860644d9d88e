package volumes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"
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

// String is the mount as the offer of a migration names it: "TYPE DEVICE".
func (gm GuestMount) String() string { return gm.FSType + " " + gm.Device }

// guestMountable reports whether the volume's filesystem is one a VM
// mounts itself.
func (v *Volume) guestMountable() bool {
	return guestFSTypes[v.Options["type"]]
}

// guestMount says how a VM mounts volume v itself: an NFS volume, a
// bind-source volume whose directory is on shared storage (shared.go),
// or a plain local volume whose _data is (the host serves its volumes
// directory over NFS, or has it on an NFS mount). It reports false for a
// volume the host shares over 9p. It reads the file system (the
// directory, mountinfo), so it is called without the store's lock.
func (s *Store) guestMount(v *Volume) (GuestMount, bool) {
	if v.guestMountable() {
		var opts []string
		for _, o := range strings.Split(v.Options["o"], ",") {
			if o != "" {
				opts = append(opts, o)
			}
		}
		return GuestMount{FSType: v.Options["type"], Device: v.Options["device"], Options: opts}, true
	}
	if dev, ok := v.bindDevice(); ok {
		return s.SharedDirMount(dev)
	}
	if len(v.Options) == 0 && v.Mountpoint != "" {
		return s.SharedDirMount(v.Mountpoint)
	}
	return GuestMount{}, false
}

// SharedDirMount says how a VM mounts host directory dir from shared
// storage (shared.go), following symbolic links; false: dir is on this
// host's own storage (or missing, or not a directory) and the host shares
// it over 9p. It reads the file system, so no lock is held meanwhile.
func (s *Store) SharedDirMount(dir string) (GuestMount, bool) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return GuestMount{}, false
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return GuestMount{}, false
	}
	s.mu.Lock()
	declared, list := s.shared, s.listMounts
	s.mu.Unlock()
	gm, err := sharedMount(dir, declared, list)
	if err != nil {
		if !errors.Is(err, errNotShared) {
			logrus.WithError(err).WithField("dir", dir).Warn("cannot tell whether the directory is on shared storage; it is shared from the host")
		}
		return GuestMount{}, false
	}
	return gm, true
}

// Resolve returns the mount with its server's address in addr= (the
// guest kernel resolves no names): a name is looked up on the host.
func (gm GuestMount) Resolve(ctx context.Context) (GuestMount, error) {
	opts, err := resolveServerAddr(ctx, gm.Device, strings.Join(gm.Options, ","))
	if err != nil {
		return GuestMount{}, err
	}
	gm.Options = opts
	return gm, nil
}

// BindSource returns the directory a volume with these driver options
// stands for, if it is a bind-source volume (type=none, o=bind).
func BindSource(opts map[string]string) (string, bool) {
	return (&Volume{Options: opts}).bindDevice()
}

// SetSharedStorage declares the host directories that hold the same
// files as NFS exports the VMs can mount (jevmd --shared-storage).
func (s *Store) SetSharedStorage(declared []SharedStorage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shared = slices.Clone(declared)
}

// GuestMountable reports whether volume name is one a VM mounts itself
// (a network filesystem reached the same way from every host: an NFS
// volume, or a bind-source one on shared storage).
func (s *Store) GuestMountable(name string) bool {
	v, err := s.Get(name)
	if err != nil {
		return false
	}
	_, ok := s.guestMount(v)
	return ok
}

// GuestMountFor says how a VM on this host would mount a volume with
// these driver options itself (an offered migration's volumes must be
// so); false: the host shares it over 9p.
func (s *Store) GuestMountFor(opts map[string]string) (GuestMount, bool) {
	return s.guestMount(&Volume{Options: opts})
}

// ErrMountedByHost: the volume is one the host mounts and shares over
// 9p, not one a VM mounts itself (MountInGuest).
var ErrMountedByHost = errors.New("the volume is mounted by the host")

// MountInGuest marks the volume in use by running container ref, whose VM
// mounts it itself, and says how. The host mounts nothing. For a volume
// the host shares it fails with ErrMountedByHost, having marked nothing:
// a start asks once, and mounts such a volume on the host instead.
func (s *Store) MountInGuest(ctx context.Context, name, ref string) (GuestMount, error) {
	v, err := s.Get(name)
	if err != nil {
		return GuestMount{}, opErr("mount", name, ErrNoSuchVolume, nil)
	}
	gm, ok := s.guestMount(v)
	if !ok {
		return GuestMount{}, opErr("mount", name, errdefs.InvalidParameter(fmt.Errorf("%w (type %q)", ErrMountedByHost, v.Options["type"])), nil)
	}
	if gm, err = gm.Resolve(ctx); err != nil {
		return GuestMount{}, opErr("mount", name, errdefs.InvalidParameter(fmt.Errorf("failed to mount local volume: %w", err)), nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.vols[name]
	if !ok { // removed meanwhile
		return GuestMount{}, opErr("mount", name, ErrNoSuchVolume, nil)
	}
	e.active[ref] = struct{}{}
	return gm, nil
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
		server, _, ok := splitNFSSource(device)
		if !ok || server == "" {
			return nil, fmt.Errorf("the NFS server's address is missing: give --opt o=addr=SERVER or --opt device=SERVER:/path (device is %q)", device)
		}
		ip, err := lookupServer(ctx, server)
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
