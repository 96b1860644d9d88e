//go:build linux

package guestagent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Network interfaces (docs/NETWORKING.md, docs/AGENT_PROTOCOL.md). A clone
// wakes up with the template's NIC as eth0, still down and with the
// template's MAC; the host's Start request names the container's MAC,
// addresses, MTU and gateway for it, and for any further NIC (hot-plugged
// by the host, found by its MAC). With no interfaces (--network none) only
// loopback is up.

// nicWait bounds how long the agent waits for a hot-plugged NIC to appear.
const nicWait = 10 * time.Second

// setupInterfaces configures the Start request's interfaces in order. The
// first may take over the template's NIC by name (its MAC is the
// template's); the others must show up with their own MAC.
func (a *agent) setupInterfaces(ifs []agentproto.InterfaceConfig) error {
	t := time.Now()
	if len(ifs) == 0 {
		// --network none: the template's NIC (connected to nothing on
		// the host) goes away, so that only loopback is left, as in a
		// dockerd container without a network.
		a.unbindNICs()
		return nil
	}
	for i, cfg := range ifs {
		if err := a.configureInterface(cfg, i == 0, nicWait); err != nil {
			return fmt.Errorf("network interface %s (%s): %w", cfg.Name, cfg.MAC, err)
		}
	}
	if len(ifs) > 0 {
		a.debugf("%d network interface(s) configured in %v", len(ifs), time.Since(t).Round(time.Millisecond))
	}
	return nil
}

// handleInterfaceUp serves MsgInterfaceUp (docker network connect of a
// running container). It runs in its own goroutine: the NIC may take a
// moment to be probed.
func (a *agent) handleInterfaceUp(stream uint32, m *agentproto.Msg) {
	if m.Interface == nil {
		a.reply(stream, m, errors.New("interface-up without an interface"))
		return
	}
	err := a.configureInterface(*m.Interface, false, nicWait)
	if err != nil {
		err = fmt.Errorf("network interface %s (%s): %w", m.Interface.Name, m.Interface.MAC, err)
		a.logf("%v", err)
	}
	a.reply(stream, m, err)
}

// findLink waits for the link with mac; with adoptName, a link of that
// name that is still down (the template's NIC) will do.
func findLink(mac net.HardwareAddr, adoptName string, wait time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(wait)
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, err
		}
		var byName netlink.Link
		for _, l := range links {
			at := l.Attrs()
			if at.Flags&net.FlagLoopback != 0 {
				continue
			}
			if strings.EqualFold(at.HardwareAddr.String(), mac.String()) {
				return l, nil
			}
			if adoptName != "" && at.Name == adoptName && at.Flags&net.FlagUp == 0 {
				byName = l
			}
		}
		if byName != nil {
			return byName, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no network interface with MAC %s appeared within %s", mac, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (a *agent) configureInterface(cfg agentproto.InterfaceConfig, adoptByName bool, wait time.Duration) error {
	mac, err := net.ParseMAC(cfg.MAC)
	if err != nil {
		return err
	}
	adopt := ""
	if adoptByName {
		adopt = cfg.Name
	}
	l, err := findLink(mac, adopt, wait)
	if err != nil {
		return err
	}
	if cfg.Name != "" && l.Attrs().Name != cfg.Name {
		// Renaming needs the link down; a name taken by another NIC
		// keeps the kernel's name.
		_ = netlink.LinkSetDown(l)
		if err := netlink.LinkSetName(l, cfg.Name); err != nil {
			a.logf("rename %s to %s: %v", l.Attrs().Name, cfg.Name, err)
		}
		if nl, err := netlink.LinkByIndex(l.Attrs().Index); err == nil {
			l = nl
		}
	}
	if !strings.EqualFold(l.Attrs().HardwareAddr.String(), mac.String()) {
		if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("set MAC address: %w", err)
		}
	}
	if cfg.MTU > 0 && l.Attrs().MTU != cfg.MTU {
		if err := netlink.LinkSetMTU(l, cfg.MTU); err != nil {
			return fmt.Errorf("set MTU %d: %w", cfg.MTU, err)
		}
	}
	for _, s := range cfg.Addresses {
		addr, err := netlink.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("address %q: %w", s, err)
		}
		if addr.IP.To4() == nil {
			// The host's IPAM made the address unique on the network:
			// no duplicate address detection, so that it is usable at
			// once rather than "tentative" for a second (as dockerd).
			addr.Flags |= unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(l, addr); err != nil {
			return fmt.Errorf("add address %s: %w", s, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	for _, gwStr := range []string{cfg.Gateway, cfg.Gateway6} {
		if gwStr == "" {
			continue
		}
		if err := setDefaultRoute(l, gwStr); err != nil {
			return err
		}
	}
	a.debugf("interface %s: mac %s, %v, gateway %q, gateway6 %q", cfg.Name, cfg.MAC, cfg.Addresses, cfg.Gateway, cfg.Gateway6)
	return nil
}

// setDefaultRoute makes the default route of gw's family go via gw on l,
// replacing one through another interface (the host moves the default
// route when a network with a higher priority is connected).
func setDefaultRoute(l netlink.Link, gwStr string) error {
	gw := net.ParseIP(gwStr)
	if gw == nil {
		return fmt.Errorf("invalid gateway %q", gwStr)
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}
	if gw.To4() == nil {
		r.Family = netlink.FAMILY_V6
		r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	} else {
		r.Family = netlink.FAMILY_V4
		r.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	if err := netlink.RouteReplace(r); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("default route via %s: %w", gwStr, err)
	}
	return nil
}

// virtioNetDriver is the guest's virtio-net driver in sysfs.
const virtioNetDriver = "/sys/bus/virtio/drivers/virtio_net"

// unbindNICs detaches the virtio-net driver from every NIC: their network
// interfaces disappear (the devices stay, unused).
func (a *agent) unbindNICs() {
	entries, err := os.ReadDir(virtioNetDriver)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "virtio") {
			continue
		}
		if err := os.WriteFile(virtioNetDriver+"/unbind", []byte(e.Name()), 0o200); err != nil {
			a.logf("unbind %s from virtio_net: %v", e.Name(), err)
		}
	}
}

// handleRestored serves MsgRestored: the guest was restored from a
// checkpoint. Its clock is the checkpoint's: set it; the kernel reseeded
// its RNG on the VM generation change (vmgenid), and the host's entropy
// is mixed in too. For a fork, the new identity: hostname, /etc files,
// and each interface's MAC and addresses (the old ones removed).
func (a *agent) handleRestored(stream uint32, m *agentproto.Msg) {
	r := m.Restored
	if r == nil {
		a.reply(stream, m, errors.New("restored without its request"))
		return
	}
	if r.TimeUnixNano != 0 {
		ts := unix.NsecToTimespec(r.TimeUnixNano)
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
			a.logf("set the clock: %v", err)
		}
	}
	if len(r.Entropy) > 0 {
		if err := addEntropy(r.Entropy); err != nil {
			a.logf("entropy: %v", err)
		}
	}
	if r.Hostname != "" {
		if err := unix.Sethostname([]byte(r.Hostname)); err != nil {
			a.logf("sethostname: %v", err)
		}
	}
	// The files bind-mounted over the container's /etc: rewritten in
	// place (the bind mounts keep the inode).
	for _, f := range []struct{ name, content string }{
		{"hostname", r.Hostname + "\n"},
		{"hosts", r.Hosts},
		{"resolv.conf", r.ResolvConf},
	} {
		if f.content == "" || f.content == "\n" {
			continue
		}
		if err := os.WriteFile(runDir+"/"+f.name, []byte(f.content), 0o644); err != nil {
			a.logf("/etc/%s: %v", f.name, err)
		}
	}
	gone := map[string]bool{} // the addresses the guest had and lost
	for _, cfg := range r.Interfaces {
		removed, err := renewInterface(cfg.Name)
		if err != nil {
			a.reply(stream, m, fmt.Errorf("network interface %s: %w", cfg.Name, err))
			return
		}
		for _, ip := range removed {
			gone[ip.String()] = true
		}
		if err := a.configureInterface(cfg, true, nicWait); err != nil {
			a.reply(stream, m, fmt.Errorf("network interface %s (%s): %w", cfg.Name, cfg.MAC, err))
			return
		}
	}
	for _, cfg := range r.Interfaces {
		for _, cidr := range cfg.Addresses {
			if ip, _, err := net.ParseCIDR(cidr); err == nil {
				delete(gone, ip.String()) // kept
			}
		}
	}
	abortConnectionsFrom(a, gone)
	flushNeighbors(a)
	// Only now may the container's processes run (hold_linux.go): with
	// the host's time, and a fork with its own identity.
	a.reply(stream, m, a.releaseMain())
}

// flushNeighbors forgets the MACs the guest learned: after a live
// migration its gateway (the host's bridge) has the same address and
// another MAC, and a cached entry would send its replies nowhere until
// the kernel probes again (5 s and more).
func flushNeighbors(a *agent) {
	neighs, err := netlink.NeighList(0, netlink.FAMILY_ALL)
	if err != nil {
		a.logf("neighbours: %v", err)
		return
	}
	for _, n := range neighs {
		if n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 || n.IP == nil {
			continue
		}
		if err := netlink.NeighDel(&n); err != nil {
			a.logf("forget neighbour %s: %v", n.IP, err)
		}
	}
}

// renewInterface takes link name down and removes its addresses, so that
// configureInterface adopts it by name with a new MAC and addresses. It
// returns the addresses removed.
func renewInterface(name string) ([]net.IP, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetDown(l); err != nil {
		return nil, err
	}
	var removed []net.IP
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		addrs, err := netlink.AddrList(l, family)
		if err != nil {
			return removed, err
		}
		for _, ad := range addrs {
			if ad.IP.IsLinkLocalUnicast() {
				continue
			}
			if err := netlink.AddrDel(l, &ad); err != nil {
				return removed, fmt.Errorf("remove address %s: %w", ad.IPNet, err)
			}
			removed = append(removed, ad.IP)
		}
	}
	return removed, nil
}

// abortConnectionsFrom aborts the guest's TCP connections from addresses
// it no longer has (a migrated or forked guest given new ones): Linux
// keeps such a connection open, and its peer's answers now go to
// whoever has the address, so it would hang until TCP gives up (many
// minutes). Aborted, its owner sees ECONNABORTED at once, and a client
// that reconnects (the kernel's NFS client, for one) does so from the
// new address. IPv4 and IPv6 sockets both (an IPv6 socket's IPv4
// connection has a v4-mapped address, which gone names as IPv4).
func abortConnectionsFrom(a *agent, gone map[string]bool) {
	n, errs := abortTCPFrom(gone)
	for _, err := range errs {
		a.logf("%v", err)
	}
	a.debugf("aborted %d TCP connection(s) from the guest's old addresses", n)
}
