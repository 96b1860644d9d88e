package network

// VXLAN devices of overlay networks (swarm mode): one per network on each
// node, a port of the network's bridge, tunnelling its frames in UDP to
// the other nodes. As libnetwork's overlay driver does, the device
// neither learns nor floods: every remote endpoint is programmed (its MAC
// at its node's address, its IP at its MAC), and the device answers the
// local VMs' ARP requests for them itself (proxy), so nothing is
// broadcast between nodes and an address the local node owns (its own
// address on the network, a service's virtual IP) is never answered from
// afar.

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VXLANPeer is a remote endpoint: its IPv4 address, its MAC and the data
// address of the node it is on.
type VXLANPeer struct {
	IP   netip.Addr
	MAC  net.HardwareAddr
	Node netip.Addr
}

// EnsureVXLAN creates (or adopts, with the same owner alias) the VXLAN
// device name with ID vni on UDP port, sending from local, as a port of
// bridge, and sets it up.
func EnsureVXLAN(name, owner, bridge string, vni, port int, local netip.Addr, mtu int) error {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("vxlan %s: bridge %s: %w", name, bridge, err)
	}
	l, err := netlink.LinkByName(name)
	if err == nil {
		vx, ok := l.(*netlink.Vxlan)
		switch {
		case l.Attrs().Alias != owner:
			return fmt.Errorf("interface %s exists and is not jevm's (alias %q)", name, l.Attrs().Alias)
		case !ok || vx.VxlanId != vni || vx.Port != port || !vx.SrcAddr.Equal(net.IP(local.AsSlice())):
			// Another VNI or address (the network was made again):
			// make the device again.
			if err := netlink.LinkDel(l); err != nil {
				return fmt.Errorf("vxlan %s: remove the stale device: %w", name, err)
			}
			l = nil
		}
	} else {
		l = nil
	}
	if l == nil {
		la := netlink.NewLinkAttrs()
		la.Name = name
		if mtu > 0 {
			la.MTU = mtu
		}
		vx := &netlink.Vxlan{LinkAttrs: la, VxlanId: vni, Port: port, SrcAddr: net.IP(local.AsSlice()), Learning: false, Proxy: true}
		if err := netlink.LinkAdd(vx); err != nil {
			return fmt.Errorf("create vxlan %s (VNI %d, port %d): %w", name, vni, port, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("create vxlan %s: %w", name, err)
		}
		if err := netlink.LinkSetAlias(l, owner); err != nil {
			_ = netlink.LinkDel(l)
			return fmt.Errorf("vxlan %s: set alias: %w", name, err)
		}
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("vxlan %s: attach to %s: %w", name, bridge, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("vxlan %s: set up: %w", name, err)
	}
	return nil
}

// SetLinkMAC sets the MAC address of link name.
func SetLinkMAC(name string, mac net.HardwareAddr) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if l.Attrs().HardwareAddr.String() == mac.String() {
		return nil
	}
	return netlink.LinkSetHardwareAddr(l, mac)
}

// SetVXLANPeers makes the VXLAN device name's entries exactly peers: for
// each, a forwarding entry (its MAC at its node), the bridge's entry (its
// MAC behind this port) and a neighbour entry (its IP at its MAC).
func SetVXLANPeers(name string, peers []VXLANPeer) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	idx := l.Attrs().Index
	wantFDB := map[string]netip.Addr{}
	wantNeigh := map[netip.Addr]string{}
	for _, p := range peers {
		wantFDB[p.MAC.String()] = p.Node
		wantNeigh[p.IP] = p.MAC.String()
	}
	fdb, err := netlink.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("vxlan %s: list forwarding entries: %w", name, err)
	}
	haveSelf, haveMaster := map[string]bool{}, map[string]bool{}
	own := l.Attrs().HardwareAddr.String()
	for _, n := range fdb {
		mac := n.HardwareAddr.String()
		if mac == own {
			continue // the bridge's entry for the device itself
		}
		node, ok := wantFDB[mac]
		if n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) == 0 {
			continue // learned entries (none: learning is off)
		}
		if n.Flags&netlink.NTF_MASTER != 0 {
			if ok {
				haveMaster[mac] = true
				continue
			}
		} else if ok && n.IP != nil && n.IP.Equal(net.IP(node.AsSlice())) {
			haveSelf[mac] = true
			continue
		}
		_ = netlink.NeighDel(&n)
	}
	var errs []error
	for mac, node := range wantFDB {
		hw, _ := net.ParseMAC(mac)
		if !haveSelf[mac] {
			if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, HardwareAddr: hw, IP: net.IP(node.AsSlice())}); err != nil {
				errs = append(errs, fmt.Errorf("forwarding entry %s at %s: %w", mac, node, err))
			}
		}
		if !haveMaster[mac] {
			// Static (NOARP), not permanent: a permanent bridge entry
			// is one of the bridge's own addresses, delivered to the
			// host instead of forwarded to the port.
			if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER, State: netlink.NUD_NOARP, HardwareAddr: hw}); err != nil {
				errs = append(errs, fmt.Errorf("bridge entry %s: %w", mac, err))
			}
		}
	}
	neighs, err := netlink.NeighList(idx, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("vxlan %s: list neighbours: %w", name, err)
	}
	have := map[netip.Addr]bool{}
	for _, n := range neighs {
		a, _ := netip.AddrFromSlice(n.IP.To4())
		if mac, ok := wantNeigh[a]; ok && n.HardwareAddr.String() == mac {
			have[a] = true
			continue
		}
		_ = netlink.NeighDel(&n)
	}
	for ip, mac := range wantNeigh {
		if have[ip] {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: net.IP(ip.AsSlice()), HardwareAddr: hw}); err != nil {
			errs = append(errs, fmt.Errorf("neighbour %s at %s: %w", ip, mac, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("vxlan %s: %v", name, errs)
	}
	return nil
}
