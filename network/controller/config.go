package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	jnet "github.com/jevm/jevm/network"
)

// Config is the daemon's networking configuration. The zero value
// of every field is jevm's (and dockerd's) default; the fields that carry
// a dockerd daemon setting name it, so that an admin's dockerd flags and
// daemon.json keys map onto them one to one.
type Config struct {
	// DefaultBridge is the Linux bridge of the predefined "bridge"
	// network (dockerd's -b/--bridge, daemon.json "bridge"); "jevm0" by
	// default. jevm creates it if missing. Under the default name, if
	// another owner has jevm0, its successors (jevm1, ...) are tried; a
	// name the admin chose is used as is or the daemon fails to start,
	// since jevm only uses bridges it created (alias jevm:<network ID>).
	// "none" is the same as NoDefaultBridge.
	DefaultBridge string
	// NoDefaultBridge is dockerd's `-b none` ("bridge": "none"): there is
	// no predefined "bridge" network and no bridge for it. As in dockerd,
	// containers on the default network ("bridge", which is what `docker
	// run` without --network asks for) start without a network interface
	// (as with --network none) and their published ports are not opened;
	// user-defined networks work as usual.
	NoDefaultBridge bool
	// BridgeIP is dockerd's --bip ("bip"), e.g. 172.30.0.1/16: the
	// default bridge's gateway address and, masked, its subnet. Zero: the
	// first free subnet of the address pools. It is applied at daemon
	// start if no running container is on the default bridge; otherwise
	// the old subnet is kept, with a warning, until one of the next
	// starts finds the bridge unused.
	BridgeIP netip.Prefix
	// DefaultAddressPools is dockerd's --default-address-pool
	// ("default-address-pools"): where networks without --subnet (and the
	// default bridge without BridgeIP) get their subnets. Empty: dockerd's
	// built-in pools (network.DefaultAddressPools).
	DefaultAddressPools []AddressPool
	// DisableIPTables is dockerd's --iptables=false ("iptables": false):
	// jevm runs no iptables at all (no NAT, forwarding, internal-network
	// or isolation rules, and needs no iptables binary); bridges, taps and
	// addresses are still made. The admin provides any firewall rules.
	DisableIPTables bool
	// DisableIPForward is dockerd's --ip-forward=false ("ip-forward":
	// false): jevm does not turn on net.ipv4.ip_forward, so containers
	// reach beyond the host only if the admin enables it.
	DisableIPForward bool
	// DNS, DNSSearch and DNSOptions are dockerd's --dns, --dns-search and
	// --dns-opt ("dns", "dns-search", "dns-opts"): the defaults of
	// containers that give no --dns, --dns-search or --dns-option of
	// their own, used where dockerd uses them: on the default bridge (and
	// without a network) DNS are the nameservers of the container's
	// resolv.conf; on user-defined networks resolv.conf names the
	// embedded DNS server and DNS are the servers it forwards to (instead
	// of the host's). DNSSearch and DNSOptions replace the host's search
	// and options lines on every network.
	DNS        []string
	DNSSearch  []string
	DNSOptions []string
	// MTU of bridges, taps and guest interfaces (default 1500).
	MTU int
	// ResolvConf is the host's resolver configuration (default
	// /etc/resolv.conf): the embedded DNS forwards to its nameservers, and
	// containers on the default bridge get a copy.
	ResolvConf string
	// DNSPort is the embedded DNS server's port on each user network's
	// gateway address (default 53).
	DNSPort int
}

// AddressPool is one entry of Config.DefaultAddressPools: Base
// split into subnets of prefix length Size.
type AddressPool = jnet.AddressPool

// defaultBridgeName is the default bridge's name unless the admin names
// one.
const defaultBridgeName = "jevm0"

// bridgeNone is dockerd's `-b none`.
const bridgeNone = "none"

func (c *Config) setDefaults() {
	if c.DefaultBridge == bridgeNone {
		c.NoDefaultBridge = true
		c.DefaultBridge = ""
	}
	if c.DefaultBridge == "" {
		c.DefaultBridge = defaultBridgeName
	}
	if c.MTU == 0 {
		c.MTU = 1500
	}
	if c.ResolvConf == "" {
		c.ResolvConf = jnet.HostResolvConfPath
	}
	if c.DNSPort == 0 {
		c.DNSPort = 53
	}
}

// explicitBridge reports whether the admin named the default bridge (then
// jevm does not fall back to other names).
func (c *Config) explicitBridge() bool {
	return c.DefaultBridge != "" && c.DefaultBridge != defaultBridgeName && c.DefaultBridge != bridgeNone
}

// pools are the address pools networks get their subnets from.
func (c *Config) pools() []AddressPool {
	if len(c.DefaultAddressPools) > 0 {
		return c.DefaultAddressPools
	}
	return jnet.DefaultAddressPools
}

// validDNSSearch is dockerd's check of a --dns-search domain.
var validDNSSearch = regexp.MustCompile(`^(:?(:?[a-zA-Z0-9]|(:?[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9]))(:?\.(:?[a-zA-Z0-9]|(:?[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])))*)\.?$`)

// Validate checks the settings an admin gives (flags, daemon.json) and
// returns every problem found, each naming the dockerd option, so that
// the daemon refuses to start with a bad configuration rather than fail
// later. The zero value is valid.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if b := c.DefaultBridge; b != "" && b != bridgeNone {
		if len(b) > jnet.MaxIfNameLen || strings.ContainsAny(b, "/: \t\n") || b == "." || b == ".." {
			bad("invalid --bridge %q: not a valid interface name (at most %d characters, no '/', ':' or spaces)", b, jnet.MaxIfNameLen)
		}
	}
	noBridge := c.NoDefaultBridge || c.DefaultBridge == bridgeNone
	if c.BridgeIP != (netip.Prefix{}) {
		ip := c.BridgeIP
		switch {
		case !ip.IsValid() || !ip.Addr().Is4():
			bad("invalid --bip %s: only an IPv4 address with a prefix length (such as 172.30.0.1/16) is supported", ip)
		case ip.Bits() > 30:
			bad("invalid --bip %s: the subnet is too small for a gateway and a container (at most /30)", ip)
		case ip.Addr() == ip.Masked().Addr() || ip.Addr() == lastAddr4(ip):
			bad("invalid --bip %s: it is the network or broadcast address of %s; give the bridge's own address, such as %s", ip, ip.Masked(), ip.Masked().Addr().Next())
		}
		if noBridge {
			// As dockerd: without a default bridge there is nothing to
			// address.
			bad("you specified -b none & --bip, mutually exclusive options: please specify only one")
		}
	}
	for _, p := range c.DefaultAddressPools {
		if err := p.Validate(); err != nil {
			bad("invalid --default-address-pool %s: %w", p, err)
		}
	}
	for _, s := range c.DNS {
		if _, err := netip.ParseAddr(s); err != nil {
			bad("invalid --dns %q: IP address is not correctly formatted", s)
		}
	}
	for _, s := range c.DNSSearch {
		if s == "." {
			continue
		}
		if len(s) > 255 || !validDNSSearch.MatchString(s) {
			bad("invalid --dns-search %q: not a valid domain", s)
		}
	}
	for _, s := range c.DNSOptions {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			bad("invalid --dns-opt %q: an option is one word, such as ndots:2", s)
		}
	}
	return errors.Join(errs...)
}

// lastAddr4 is the broadcast address of p.
func lastAddr4(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	for i := p.Bits(); i < 32; i++ {
		b := a.As4()
		b[i/8] |= 0x80 >> (i % 8)
		a = netip.AddrFrom4(b)
	}
	return a
}
