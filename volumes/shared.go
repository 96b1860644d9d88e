package volumes

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// A host directory a container uses (a bind-source volume, `--opt
// type=none --opt o=bind --opt device=DIR`; a `-v DIR:/path` bind mount;
// a local volume's _data) is shared with its VM over virtio-9p, which
// QEMU cannot migrate. When DIR is on storage every jevm host sees (an
// NFS export), the VM mounts that export itself instead, as it does an
// NFS volume: the mount is then part of the guest's state and follows the
// container when it is checkpointed or migrated, and every host reaches
// the same files.
//
// jevm knows DIR is shared in two ways (DIR=none declares it is not):
//   - the host has it on an NFS mount (/proc/self/mountinfo): the guest
//     mounts the same export with the host's options;
//   - the admin declared it (jevmd --shared-storage DIR=nfs://SERVER/EXPORT):
//     DIR holds the same files as that export, which the guests reach
//     (for one, a directory the host itself exports, or one it reaches
//     another way than NFS).

// SharedStorage declares that a host directory holds the same files as an
// NFS export the VMs can mount.
type SharedStorage struct {
	// Dir is the host directory (absolute, cleaned).
	Dir string
	// FSType is "nfs" or "nfs4"; "none" declares Dir the host's own.
	FSType string
	// Server is the export's host (a name or an IP address).
	Server string
	// Export is the exported path on the server ("/" or "/srv/x").
	Export string
	// Options are mount options for the guest's mount (no addr=: the
	// server's address is looked up when a VM mounts it).
	Options []string
}

// ParseSharedStorage reads a --shared-storage value:
// DIR=nfs://SERVER[:PORT]/EXPORT[?OPTION&OPTION=VALUE...], where the
// scheme is nfs or nfs4, PORT becomes the port= option and the query's
// options are passed on as mount options (vers=3, mountport=N, nolock...);
// or DIR=none: DIR is the host's to share (9p), even on an NFS mount.
func ParseSharedStorage(s string) (SharedStorage, error) {
	dir, raw, ok := strings.Cut(s, "=")
	if !ok || dir == "" || raw == "" {
		return SharedStorage{}, fmt.Errorf("shared storage %q: want DIR=nfs://SERVER[:PORT]/EXPORT[?OPTIONS] or DIR=none", s)
	}
	if !filepath.IsAbs(dir) {
		return SharedStorage{}, fmt.Errorf("shared storage %q: %s is not an absolute path", s, dir)
	}
	if raw == notShared {
		return SharedStorage{Dir: filepath.Clean(dir), FSType: notShared}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return SharedStorage{}, fmt.Errorf("shared storage %q: %w", s, err)
	}
	if u.Scheme != "nfs" && u.Scheme != "nfs4" {
		return SharedStorage{}, fmt.Errorf("shared storage %q: the scheme must be nfs or nfs4, not %q", s, u.Scheme)
	}
	if u.Hostname() == "" || u.User != nil || u.Fragment != "" {
		return SharedStorage{}, fmt.Errorf("shared storage %q: want nfs://SERVER[:PORT]/EXPORT[?OPTIONS]", s)
	}
	ss := SharedStorage{Dir: filepath.Clean(dir), FSType: u.Scheme, Server: u.Hostname(), Export: path.Clean("/" + u.Path)}
	if p := u.Port(); p != "" {
		ss.Options = append(ss.Options, "port="+p)
	}
	for _, opt := range strings.Split(u.RawQuery, "&") {
		if opt == "" {
			continue
		}
		opt, err := url.QueryUnescape(opt)
		if err != nil {
			return SharedStorage{}, fmt.Errorf("shared storage %q: %w", s, err)
		}
		if strings.Contains(opt, ",") {
			return SharedStorage{}, fmt.Errorf("shared storage %q: option %q has a comma", s, opt)
		}
		if k, _, _ := strings.Cut(opt, "="); k == "addr" {
			return SharedStorage{}, fmt.Errorf("shared storage %q: the server's address is the URL's host, not addr=", s)
		}
		ss.Options = append(ss.Options, opt)
	}
	return ss, nil
}

// notShared is the FSType of a directory declared the host's own
// (DIR=none): what the host's mounts say of it is overridden.
const notShared = "none"

// String renders the declaration as ParseSharedStorage reads it.
func (ss SharedStorage) String() string {
	if ss.FSType == notShared {
		return ss.Dir + "=" + notShared
	}
	host := ss.Server
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	var query []string
	portSet := false
	for _, o := range ss.Options {
		if p, ok := strings.CutPrefix(o, "port="); ok && !portSet {
			host, portSet = net.JoinHostPort(ss.Server, p), true
			continue
		}
		query = append(query, o)
	}
	u := url.URL{Scheme: ss.FSType, Host: host, Path: ss.Export, RawQuery: strings.Join(query, "&")}
	return ss.Dir + "=" + u.String()
}

// nfsGuestOptions are the options of a host's NFS mount (mountinfo's
// super options) that a guest's mount of the same export takes over: how
// to reach the server and speak to it. The rest are the host's own
// (clientaddr, the host's address, first) or the kernel's reports
// (namlen).
var nfsGuestOptions = map[string]bool{
	"vers": true, "nfsvers": true, "minorversion": true, "proto": true, "port": true,
	"mountport": true, "mountproto": true, "mountvers": true, "mountaddr": true, "addr": true,
	"sec": true, "hard": true, "soft": true, "softerr": true, "timeo": true, "retrans": true,
	"rsize": true, "wsize": true, "local_lock": true, "nolock": true, "lock": true,
	"noacl": true, "acl": true, "nocto": true, "cto": true, "noac": true, "ac": true,
	"acregmin": true, "acregmax": true, "acdirmin": true, "acdirmax": true, "actimeo": true,
	"lookupcache": true, "nordirplus": true, "rdirplus": true,
}

// mountLister lists the mounts that hold a path (mountinfo.GetMounts with
// a ParentsFilter); tests give their own.
type mountLister func(dir string) ([]*mountinfo.Info, error)

func hostMounts(dir string) ([]*mountinfo.Info, error) {
	return mountinfo.GetMounts(mountinfo.ParentsFilter(dir))
}

// errNotShared: the directory is on this host's own storage.
var errNotShared = errors.New("not on shared storage")

// sharedMount says how a VM mounts host directory dir (absolute, with no
// symbolic links) from shared storage: the declared storage with the
// longest directory holding it, else the host's NFS mount of it.
func sharedMount(dir string, declared []SharedStorage, list mountLister) (GuestMount, error) {
	var best *SharedStorage
	for i := range declared {
		ss := &declared[i]
		if within(dir, ss.Dir) && (best == nil || len(ss.Dir) > len(best.Dir)) {
			best = ss
		}
	}
	if best != nil && best.FSType == notShared {
		return GuestMount{}, errNotShared
	}
	if best != nil {
		rel, _ := filepath.Rel(best.Dir, dir)
		return GuestMount{
			FSType:  best.FSType,
			Device:  nfsDevice(best.Server, path.Join(best.Export, filepath.ToSlash(rel))),
			Options: slices.Clone(best.Options),
		}, nil
	}
	mounts, err := list(dir)
	if err != nil {
		return GuestMount{}, fmt.Errorf("read the host's mounts: %w", err)
	}
	var m *mountinfo.Info
	for _, mi := range mounts { // the innermost mount holding dir
		if within(dir, mi.Mountpoint) && (m == nil || len(mi.Mountpoint) >= len(m.Mountpoint)) {
			m = mi
		}
	}
	// A bind mount of a directory inside an NFS mount (Root not "/") is
	// left alone: its root's path in the export is not certain.
	if m == nil || (m.FSType != "nfs" && m.FSType != "nfs4") || m.Root != "/" {
		return GuestMount{}, errNotShared
	}
	server, export, ok := splitNFSSource(m.Source)
	if !ok {
		return GuestMount{}, errNotShared
	}
	rel, _ := filepath.Rel(m.Mountpoint, dir)
	var opts []string
	for _, o := range strings.Split(m.VFSOptions, ",") {
		k, v, _ := strings.Cut(o, "=")
		// A mount the guest could not make as the host did stays the
		// host's (9p): Kerberos needs the host's credentials, RDMA its
		// adapter.
		if k == "sec" && v != "sys" && v != "none" || k == "proto" && strings.HasPrefix(v, "rdma") {
			return GuestMount{}, errNotShared
		}
		if nfsGuestOptions[k] {
			opts = append(opts, o)
		}
	}
	return GuestMount{FSType: m.FSType, Device: nfsDevice(server, path.Join(export, filepath.ToSlash(rel))), Options: opts}, nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// splitNFSSource splits an NFS mount's source, "server:/export" or
// "[v6addr]:/export".
func splitNFSSource(src string) (server, export string, ok bool) {
	i := strings.Index(src, ":/")
	if i <= 0 {
		return "", "", false
	}
	return strings.Trim(src[:i], "[]"), src[i+1:], true
}

// nfsDevice is an NFS mount's device for server and export path.
func nfsDevice(server, export string) string {
	if strings.Contains(server, ":") {
		server = "[" + server + "]"
	}
	return server + ":" + export
}
