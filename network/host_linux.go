package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"

	// github.com/coreos/go-iptables: runs the iptables binary with the
	// xtables lock (-w) and gives Exists/AppendUnique/DeleteIfExists; it
	// works with both the legacy and the nf_tables backend of iptables,
	// whichever the host uses (Debian 12: nf_tables), which is what other
	// firewall tools on the host see too.
	"github.com/coreos/go-iptables/iptables"
	// github.com/vishvananda/netlink: bridges, taps, addresses, routes and
	// link aliases over rtnetlink without shelling out to ip(8).
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// OwnerPrefix starts the alias (IFLA_IFALIAS) jevm puts on every bridge
// and tap it creates: "jevm:<network or endpoint ID>". A link whose alias
// is not ours is never touched, so several daemons (or dockerd) can share
// a host.
const OwnerPrefix = "jevm:"

// BridgePrefix starts the names of the bridges jevm makes ("jevm0",
// "jevm-<id>"); isolation rules match other networks by it.
const BridgePrefix = "jevm"

// MaxIfNameLen is Linux's limit on interface names (IFNAMSIZ - 1).
const MaxIfNameLen = 15

// Host makes the host-side network objects.
type Host struct {
	// ipt is nil when the daemon must not touch iptables (dockerd's
	// --iptables=false): the firewall methods then do nothing.
	ipt *iptables.IPTables
	// ipt6 runs ip6tables for IPv6 networks; nil without a firewall or
	// where the host has no ip6tables (IPv6 networks then get addresses
	// and routes but no NAT or forwarding rules).
	ipt6 *iptables.IPTables
	mu   sync.Mutex // serialises iptables changes (check then add)
}

// NewHost checks that iptables is usable (and ip6tables, for IPv6
// networks; its absence is not an error).
func NewHost() (*Host, error) {
	ipt, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	h := &Host{ipt: ipt}
	if ipt6, err := iptables.NewWithProtocol(iptables.ProtocolIPv6); err == nil {
		h.ipt6 = ipt6
	}
	return h, nil
}

// Firewall6 reports whether h installs ip6tables rules.
func (h *Host) Firewall6() bool { return h.ipt6 != nil }

// NewHostWithoutFirewall is a Host that makes bridges and taps but never
// runs iptables (dockerd's --iptables=false), so it needs no iptables
// binary either: the admin manages the firewall.
func NewHostWithoutFirewall() *Host { return &Host{} }

// Firewall reports whether h installs and removes iptables rules.
func (h *Host) Firewall() bool { return h.ipt != nil }

// LinkOwner returns the alias of the link called name ("" if it has none),
// and whether it exists.
func LinkOwner(name string) (string, bool) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return "", false
	}
	return l.Attrs().Alias, true
}

// EnsureBridge creates (or adopts, if it exists with the same owner alias)
// the bridge name with exactly the gateway/prefix addresses (one IPv4, one
// IPv6, or both; the kernel's IPv6 link-local address stays), and sets it
// up. A link of that name owned by someone else is an error.
func (h *Host) EnsureBridge(name, owner string, gateways []netip.Prefix, mtu int) error {
	l, err := netlink.LinkByName(name)
	if err == nil {
		if l.Attrs().Alias != owner {
			return fmt.Errorf("interface %s exists and is not jevm's (alias %q)", name, l.Attrs().Alias)
		}
		if _, ok := l.(*netlink.Bridge); !ok {
			return fmt.Errorf("interface %s is a %s, not a bridge", name, l.Type())
		}
	} else {
		la := netlink.NewLinkAttrs()
		la.Name = name
		if mtu > 0 {
			la.MTU = mtu
		}
		br := &netlink.Bridge{LinkAttrs: la}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		if err := netlink.LinkSetAlias(l, owner); err != nil {
			_ = netlink.LinkDel(l)
			return fmt.Errorf("bridge %s: set alias: %w", name, err)
		}
	}
	// Exactly the gateway addresses (a re-picked subnet replaces an old
	// one). IPv6 ones skip duplicate address detection, as the bridge's
	// address is ours alone and must be usable at once.
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("bridge %s: list addresses: %w", name, err)
	}
	want := map[string]*netlink.Addr{}
	for _, gw := range gateways {
		bits := 32
		if gw.Addr().Is6() {
			bits = 128
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(gw.Addr().AsSlice()), Mask: net.CIDRMask(gw.Bits(), bits)}}
		if gw.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		want[a.IPNet.String()] = a
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		if want[a.IPNet.String()] != nil {
			delete(want, a.IPNet.String())
			continue
		}
		_ = netlink.AddrDel(l, &a)
	}
	for s, a := range want {
		if err := netlink.AddrAdd(l, a); err != nil {
			return fmt.Errorf("bridge %s: add address %s: %w", name, s, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bridge %s: set up: %w", name, err)
	}
	return nil
}

// AnnounceNeighbor records on bridge that ip is at mac (a neighbour entry
// in state STALE: the kernel sends to mac at once and confirms it on
// first use). A guest that moved to this host (live migration) keeps its
// address and MAC; entries this host marked FAILED while it was away
// would otherwise hold its traffic until they expire.
func AnnounceNeighbor(bridge string, ip netip.Addr, mac string) error {
	link, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("neighbour on %s: %w", bridge, err)
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("neighbour on %s: %w", bridge, err)
	}
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: family, State: netlink.NUD_STALE, IP: net.IP(ip.AsSlice()), HardwareAddr: hw}); err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", ip, bridge, err)
	}
	return nil
}

// DeleteLink deletes the link name if owner owns it (any jevm owner when
// owner is OwnerPrefix). A missing link is not an error.
func DeleteLink(name, owner string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	alias := l.Attrs().Alias
	if alias != owner && !(owner == OwnerPrefix && strings.HasPrefix(alias, OwnerPrefix)) {
		return fmt.Errorf("interface %s is not owned by %s (alias %q)", name, owner, alias)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// CreateTap creates a persistent tap device for a VM's NIC (QEMU opens it
// by name), enslaves it to bridge and sets it up. An existing tap of the
// same owner is reused.
//
// Without a bridge, the tap is made and left down, connected to nothing: a
// warm-pool VM's (daemon/pool.go), which ReplaceTap later puts in the
// place of a container's.
func CreateTap(name, owner, bridge string, mtu int) error {
	var br netlink.Link
	if bridge != "" {
		var err error
		if br, err = netlink.LinkByName(bridge); err != nil {
			return fmt.Errorf("tap %s: bridge %s: %w", name, bridge, err)
		}
	}
	l, err := netlink.LinkByName(name)
	if err == nil && l.Attrs().Alias != owner {
		return fmt.Errorf("interface %s exists and is not jevm's (alias %q)", name, l.Attrs().Alias)
	}
	if err != nil {
		la := netlink.NewLinkAttrs()
		la.Name = name
		// Flags: single queue, no packet information header, as QEMU's
		// -netdev tap opens it; QEMU sets the vnet header itself.
		tap := &netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("create tap %s: %w", name, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("create tap %s: %w", name, err)
		}
		if err := netlink.LinkSetAlias(l, owner); err != nil {
			_ = netlink.LinkDel(l)
			return fmt.Errorf("tap %s: set alias: %w", name, err)
		}
	}
	fail := func(what string, err error) error {
		_ = netlink.LinkDel(l)
		return fmt.Errorf("tap %s: %s: %w", name, what, err)
	}
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fail("set mtu", err)
		}
	}
	if br == nil {
		return nil
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fail("attach to "+bridge, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fail("set up", err)
	}
	return nil
}

// ReplaceTap puts the tap spare (a warm-pool VM's, owned by spareOwner)
// in the place of the tap name: name's owner, bridge and MTU go to spare,
// name is deleted, and spare is renamed to name and set up. The VM that
// holds spare's descriptor is then on name's network, as the VM name
// was made for would have been. On failure, name is left as it was
// as far as it can be (a half-moved spare is the caller's to delete by
// whichever name it has).
func ReplaceTap(name, spare, spareOwner string) error {
	old, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("replace tap %s: %w", name, err)
	}
	sp, err := netlink.LinkByName(spare)
	if err != nil {
		return fmt.Errorf("replace tap %s: %w", name, err)
	}
	if sp.Attrs().Alias != spareOwner {
		return fmt.Errorf("replace tap %s: %s is not owned by %s (alias %q)", name, spare, spareOwner, sp.Attrs().Alias)
	}
	if _, ok := old.(*netlink.Tuntap); !ok && old.Type() != "tuntap" {
		return fmt.Errorf("replace tap %s: not a tap (%s)", name, old.Type())
	}
	alias, mtu, master := old.Attrs().Alias, old.Attrs().MTU, old.Attrs().MasterIndex
	if err := netlink.LinkSetDown(sp); err != nil {
		return fmt.Errorf("replace tap %s: set %s down: %w", name, spare, err)
	}
	if err := netlink.LinkDel(old); err != nil {
		return fmt.Errorf("replace tap %s: delete it: %w", name, err)
	}
	if err := netlink.LinkSetName(sp, name); err != nil {
		return fmt.Errorf("replace tap %s: rename %s: %w", name, spare, err)
	}
	if err := netlink.LinkSetAlias(sp, alias); err != nil {
		return fmt.Errorf("replace tap %s: set alias: %w", name, err)
	}
	if mtu > 0 && sp.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(sp, mtu); err != nil {
			return fmt.Errorf("replace tap %s: set mtu: %w", name, err)
		}
	}
	if master > 0 {
		if err := netlink.LinkSetMasterByIndex(sp, master); err != nil {
			return fmt.Errorf("replace tap %s: attach to its bridge: %w", name, err)
		}
	}
	if err := netlink.LinkSetUp(sp); err != nil {
		return fmt.Errorf("replace tap %s: set up: %w", name, err)
	}
	return nil
}

// OwnedLinks lists the links whose alias starts with prefix (name ->
// alias), for cleaning up after a crash.
func OwnedLinks(prefix string) (map[string]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range links {
		if a := l.Attrs().Alias; strings.HasPrefix(a, prefix) {
			out[l.Attrs().Name] = a
		}
	}
	return out, nil
}

// Routes are the host's IPv4 and IPv6 routes other than default routes,
// IPv6 link-local and multicast routes, and the routes of exclude (our own
// bridges): a new subnet must overlap none.
func Routes(exclude map[string]bool) ([]netip.Prefix, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil || exclude[names[r.LinkIndex]] {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue
		}
		ip := r.Dst.IP
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok || a.IsLinkLocalUnicast() || a.IsMulticast() {
			continue
		}
		out = append(out, netip.PrefixFrom(a, ones).Masked())
	}
	return out, nil
}

const (
	ipForwardPath  = "/proc/sys/net/ipv4/ip_forward"
	ip6ForwardPath = "/proc/sys/net/ipv6/conf/all/forwarding"
)

// EnableIP6Forward turns on IPv6 forwarding for IPv6 networks, as dockerd
// does (and leaves it on). Like dockerd, it warns nobody that a host that
// takes its own address from router advertisements needs accept_ra=2
// then; docs/NETWORKING.md says so.
func EnableIP6Forward() error {
	b, err := os.ReadFile(ip6ForwardPath)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	return os.WriteFile(ip6ForwardPath, []byte("1\n"), 0o644)
}

// EnableIPForward turns on IPv4 forwarding (needed for NAT), as dockerd
// does; it is left on.
func EnableIPForward() error {
	if IPForwardEnabled() {
		return nil
	}
	return os.WriteFile(ipForwardPath, []byte("1\n"), 0o644)
}

// IPForwardEnabled reports whether the host forwards IPv4 (read only; for
// /info and for warning when the daemon may not turn it on itself).
func IPForwardEnabled() bool {
	b, err := os.ReadFile(ipForwardPath)
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// FirewallSpec says what rules a bridge network needs.
type FirewallSpec struct {
	Bridge string
	// Subnet is the IPv4 subnet (invalid on an IPv6-only network),
	// Subnet6 the IPv6 one (invalid without IPv6): each family gets its
	// rules in its own tool (iptables, ip6tables).
	Subnet  netip.Prefix
	Subnet6 netip.Prefix
	// Internal networks reach nothing outside the bridge and nothing
	// outside reaches them.
	Internal bool
	// Masquerade NATs outbound traffic (not for internal networks).
	Masquerade bool
}

func ruleComment(bridge string) string { return OwnerPrefix + bridge }

type rule struct {
	table, chain string
	spec         []string
	v6           bool // an ip6tables rule
}

// rules are the rules of both families: the forwarding rules per family
// that the network has, and the MASQUERADE of each subnet.
func (s FirewallSpec) rules() []rule {
	var rs []rule
	if s.Subnet.IsValid() || !s.Subnet6.IsValid() {
		rs = append(rs, s.familyRules(s.Subnet, false)...)
	}
	if s.Subnet6.IsValid() {
		rs = append(rs, s.familyRules(s.Subnet6, true)...)
	}
	return rs
}

func (s FirewallSpec) familyRules(subnet netip.Prefix, v6 bool) []rule {
	c := []string{"-m", "comment", "--comment", ruleComment(s.Bridge)}
	with := func(spec ...string) []string { return append(spec, c...) }
	var rs []rule
	if s.Internal {
		rs = append(rs,
			rule{table: "filter", chain: "FORWARD", v6: v6, spec: with("-i", s.Bridge, "!", "-o", s.Bridge, "-j", "DROP")},
			rule{table: "filter", chain: "FORWARD", v6: v6, spec: with("-o", s.Bridge, "!", "-i", s.Bridge, "-j", "DROP")},
		)
		return rs
	}
	// Accept what the containers send and the replies to it, even where
	// the FORWARD policy is DROP (as on hosts that run dockerd); but, as
	// dockerd's isolation chains do, nothing from this network to another
	// jevm network. Each rule is inserted at the top of FORWARD, so the
	// chain ends up in the reverse of this order: same-bridge accept, drop
	// to other jevm bridges, accept the rest, accept replies.
	rs = append(rs,
		rule{table: "filter", chain: "FORWARD", v6: v6, spec: with("-o", s.Bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")},
		rule{table: "filter", chain: "FORWARD", v6: v6, spec: with("-i", s.Bridge, "-j", "ACCEPT")},
		rule{table: "filter", chain: "FORWARD", v6: v6, spec: with("-i", s.Bridge, "-o", BridgePrefix+"+", "-j", "DROP")},
		rule{table: "filter", chain: "FORWARD", v6: v6, spec: with("-i", s.Bridge, "-o", s.Bridge, "-j", "ACCEPT")},
	)
	if s.Masquerade && subnet.IsValid() {
		rs = append(rs, rule{table: "nat", chain: "POSTROUTING", v6: v6, spec: with("-s", subnet.String(), "!", "-o", s.Bridge, "-j", "MASQUERADE")})
	}
	return rs
}

// SetupFirewall installs the rules of spec (idempotent). Rules are
// inserted at the top of FORWARD, so they apply before other tools'
// rules, and appended to POSTROUTING.
func (h *Host) SetupFirewall(spec FirewallSpec) error {
	if h.ipt == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range spec.rules() {
		ipt := h.ipt
		if r.v6 {
			if ipt = h.ipt6; ipt == nil {
				continue // no ip6tables on this host
			}
		}
		ok, err := ipt.Exists(r.table, r.chain, r.spec...)
		if err != nil {
			return fmt.Errorf("iptables -t %s -C %s: %w", r.table, r.chain, err)
		}
		if ok {
			continue
		}
		if r.chain == "FORWARD" {
			err = ipt.Insert(r.table, r.chain, 1, r.spec...)
		} else {
			err = ipt.Append(r.table, r.chain, r.spec...)
		}
		if err != nil {
			return fmt.Errorf("%s -t %s %s: %w", toolName(r.v6), r.table, r.chain, err)
		}
	}
	return nil
}

// TeardownFirewall deletes every rule jevm made for bridge (whatever
// subnet or mode it was made for).
func (h *Host) TeardownFirewall(bridge string) error {
	if h.ipt == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, ipt := range []*iptables.IPTables{h.ipt, h.ipt6} {
		if ipt == nil {
			continue
		}
		tool := toolName(ipt.Proto() == iptables.ProtocolIPv6)
		for _, tc := range [][2]string{{"nat", "POSTROUTING"}, {"filter", "FORWARD"}} {
			list, err := ipt.List(tc[0], tc[1])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, line := range list {
				spec, ok := ownRule(line, tc[1], ruleComment(bridge))
				if !ok {
					continue
				}
				if err := ipt.Delete(tc[0], tc[1], spec...); err != nil {
					errs = append(errs, fmt.Errorf("%s -t %s -D %s %s: %w", tool, tc[0], tc[1], strings.Join(spec, " "), err))
				}
			}
		}
	}
	// A swarm network's virtual IP rules (vip_linux.go).
	if err := deleteOwnRules(h.ipt, func(c string) bool { return strings.HasPrefix(c, vipComment(bridge)) }, vipChains); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func toolName(v6 bool) string {
	if v6 {
		return "ip6tables"
	}
	return "iptables"
}

// ownRule parses a line of iptables -S ("-A CHAIN spec...") and returns
// spec if the rule carries comment.
func ownRule(line, chain, comment string) ([]string, bool) {
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "-A" || f[1] != chain {
		return nil, false
	}
	spec := f[2:]
	for i := range spec {
		spec[i] = strings.Trim(spec[i], `"`)
	}
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] == "--comment" && spec[i+1] == comment {
			return spec, true
		}
	}
	return nil, false
}
