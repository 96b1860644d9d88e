package daemon

// Container networking (docs/NETWORKING.md): networks and their endpoints,
// persisted in DATA_ROOT/network/state.json; the host side (bridges, taps,
// NAT, DNS, port proxies) comes from package network.
//
// Locking: c.mu (a container) may be held when taking nm.mu, never the
// other way round. The embedded DNS servers take nm.mu and read the
// container store's name index (its own lock), never c.mu.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/internal/atomicfile"
	jnet "github.com/jevm/jevm/network"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// NetworkConfig is the daemon's networking configuration. The zero value
// of every field is jevm's (and dockerd's) default; the fields that carry
// a dockerd daemon setting name it, so that an admin's dockerd flags and
// daemon.json keys map onto them one to one.
type NetworkConfig struct {
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

// AddressPool is one entry of NetworkConfig.DefaultAddressPools: Base
// split into subnets of prefix length Size.
type AddressPool = jnet.AddressPool

// defaultBridgeName is the default bridge's name unless the admin names
// one.
const defaultBridgeName = "jevm0"

// bridgeNone is dockerd's `-b none`.
const bridgeNone = "none"

func (c *NetworkConfig) setDefaults() {
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
func (c *NetworkConfig) explicitBridge() bool {
	return c.DefaultBridge != "" && c.DefaultBridge != defaultBridgeName && c.DefaultBridge != bridgeNone
}

// pools are the address pools networks get their subnets from.
func (c *NetworkConfig) pools() []AddressPool {
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
func (c NetworkConfig) Validate() error {
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

// Drivers of the predefined networks.
const (
	driverBridge = "bridge"
	driverHost   = "host"
	driverNull   = "null"
)

// Bridge network options dockerd understands that jevm honours.
const (
	optBridgeName = "com.docker.network.bridge.name"
	optMasquerade = "com.docker.network.bridge.enable_ip_masquerade"
	optMTU        = "com.docker.network.driver.mtu"
	optDefault    = "com.docker.network.bridge.default_bridge"
)

// netRecord is one network as persisted.
type netRecord struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Created    time.Time         `json:"created"`
	Internal   bool              `json:"internal,omitempty"`
	Attachable bool              `json:"attachable,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Options    map[string]string `json:"options,omitempty"`
	// IPv4 configuration (bridge networks).
	Subnet  string            `json:"subnet,omitempty"`
	Gateway string            `json:"gateway,omitempty"`
	IPRange string            `json:"ipRange,omitempty"`
	Aux     map[string]string `json:"aux,omitempty"`
	// UserIPAM: the user gave the subnet (kept as is; --ip allowed).
	UserIPAM bool   `json:"userIpam,omitempty"`
	Bridge   string `json:"bridge,omitempty"`
	MTU      int    `json:"mtu,omitempty"`
	LastIP   string `json:"lastIp,omitempty"`
	// Endpoints are the running containers' attachments, by endpoint ID.
	Endpoints map[string]*endpointRecord `json:"endpoints,omitempty"`

	// FromBIP: the default bridge's subnet and gateway came from the
	// daemon's --bip (kept as is; picked anew when --bip is dropped).
	FromBIP bool `json:"fromBip,omitempty"`

	pool *jnet.Pool
	dns  *jnet.DNSServer
	up   bool // bridge and rules exist
}

// endpointRecord is one running container's attachment to a network.
type endpointRecord struct {
	ID          string   `json:"id"`
	ContainerID string   `json:"containerId"`
	IP          string   `json:"ip"`
	MAC         string   `json:"mac"`
	Tap         string   `json:"tap"`
	IfName      string   `json:"ifName"`
	Aliases     []string `json:"aliases,omitempty"`
	// DefaultRoute: the container's default route goes through this
	// endpoint's gateway.
	DefaultRoute bool `json:"defaultRoute,omitempty"`
	// DNS are the container's --dns servers (forwarding targets of the
	// embedded DNS for queries from this endpoint).
	DNS []string `json:"dns,omitempty"`
}

func (r *netRecord) predefined() bool {
	return r.Name == network.NetworkBridge || r.Name == network.NetworkHost || r.Name == network.NetworkNone
}

func (r *netRecord) isDefaultBridge() bool { return r.Name == network.NetworkBridge }

func (r *netRecord) owner() string { return jnet.OwnerPrefix + r.ID }

func (r *netRecord) gatewayPrefix() netip.Prefix {
	sub := netip.MustParsePrefix(r.Subnet)
	return netip.PrefixFrom(netip.MustParseAddr(r.Gateway), sub.Bits())
}

func (r *netRecord) masquerade() bool {
	return !r.Internal && r.Options[optMasquerade] != "false"
}

// netManager owns the networks.
type netManager struct {
	d    *Daemon
	cfg  NetworkConfig
	log  *logrus.Entry
	path string
	// instance tags this daemon's taps: "jevm:<instance>:<endpoint ID>"
	// (a hash of the data root), so that leftovers can be told from other
	// daemons' taps.
	instance string
	// host is nil where host networking cannot be used (no iptables):
	// containers then start without NICs, as with --network none.
	host *jnet.Host

	mu      sync.Mutex
	nets    map[string]*netRecord
	ports   map[string][]jnet.PortBinding // running containers' bound ports
	proxies map[string][]*jnet.Proxy
	// Retired under mu, closed by unlock.
	closingDNS     []*jnet.DNSServer
	closingProxies []*jnet.Proxy

	resolvMu   sync.Mutex
	resolv     jnet.ResolvConf
	resolvTime time.Time
}

// unlock releases nm.mu, then closes the DNS servers and port proxies
// that were retired while it was held: closing waits for their handlers,
// which may be waiting for nm.mu (name lookups, proxy backends).
func (nm *netManager) unlock() {
	dns, proxies := nm.closingDNS, nm.closingProxies
	nm.closingDNS, nm.closingProxies = nil, nil
	nm.mu.Unlock()
	for _, s := range dns {
		s.Close()
	}
	for _, p := range proxies {
		p.Close()
	}
}

type netStateFile struct {
	Networks []*netRecord                  `json:"networks"`
	Ports    map[string][]jnet.PortBinding `json:"ports,omitempty"`
}

// initNetworking loads the networks (making the predefined ones on the
// first start) and brings their bridges, rules and DNS servers up.
func (d *Daemon) initNetworking(cfg NetworkConfig) error {
	if err := cfg.Validate(); err != nil {
		return errdefs.InvalidParameter(fmt.Errorf("network configuration: %w", err))
	}
	cfg.setDefaults()
	nm := &netManager{
		d: d, cfg: cfg, log: d.log.WithField("part", "network"),
		path:     filepath.Join(d.cfg.DataRoot, "network", "state.json"),
		instance: instanceTag(d.cfg.DataRoot),
		nets:     map[string]*netRecord{},
		ports:    map[string][]jnet.PortBinding{},
		proxies:  map[string][]*jnet.Proxy{},
	}
	if err := os.MkdirAll(filepath.Dir(nm.path), 0o700); err != nil {
		return err
	}
	host, err := newNetHost(cfg, os.Geteuid())
	if err != nil {
		nm.log.WithError(err).Warn("host networking unavailable: containers get no network interfaces")
	} else {
		nm.host = host
		if !host.Firewall() {
			nm.log.Info("iptables disabled (--iptables=false): jevm installs no NAT, forwarding or isolation rules")
		}
		if cfg.DisableIPForward && !jnet.IPForwardEnabled() {
			nm.log.Warn("IPv4 forwarding is disabled on the host and --ip-forward=false: containers cannot reach beyond the host")
		}
	}
	if err := nm.load(); err != nil {
		return err
	}
	nm.mu.Lock()
	defer nm.unlock()
	if err := nm.setUpNetworksLocked(); err != nil {
		return err
	}
	d.net = nm
	return nm.saveLocked()
}

// setUpNetworksLocked makes the predefined networks that are missing,
// applies the configuration to the default bridge and brings every
// network up.
func (nm *netManager) setUpNetworksLocked() error {
	for _, name := range []string{network.NetworkBridge, network.NetworkHost, network.NetworkNone} {
		if name == network.NetworkBridge && nm.cfg.NoDefaultBridge {
			continue
		}
		if nm.byNameLocked(name) == nil {
			if err := nm.createPredefinedLocked(name); err != nil {
				return err
			}
		}
	}
	// As dockerd, which makes its default bridge anew from the
	// configuration at every start: a changed -b, --bip or address pool
	// applies now, unless containers still run on the bridge.
	if _, err := nm.syncDefaultBridgeLocked(false); err != nil {
		return err
	}
	for _, r := range nm.sortedLocked() {
		if err := nm.bringUpLocked(r); err != nil {
			if r.isDefaultBridge() && nm.cfg.explicitBridge() {
				// The admin named this bridge: no quiet fallback.
				return fmt.Errorf("default bridge network: %w", err)
			}
			nm.log.WithError(err).WithField("network", r.Name).Error("cannot set up network")
		}
	}
	return nil
}

// newNetHost returns the host networking backend, or why there is none
// (containers then start without network interfaces). With
// DisableIPTables it neither needs nor runs iptables.
func newNetHost(cfg NetworkConfig, euid int) (*jnet.Host, error) {
	if euid != 0 {
		return nil, errors.New("host networking needs root")
	}
	if cfg.DisableIPTables {
		return jnet.NewHostWithoutFirewall(), nil
	}
	return jnet.NewHost()
}

// bridgeDisabled reports whether ref names the default bridge network
// while the daemon runs without one (-b none): dockerd then starts such
// containers without a network (NetworkDisabled), and so does jevm.
func (nm *netManager) bridgeDisabled(ref string) bool {
	return nm.cfg.NoDefaultBridge && (ref == network.NetworkBridge || ref == network.NetworkDefault)
}

// defaultBridgeNameOK reports whether the default bridge may keep the
// host bridge name: the admin's name if one was given, else jevm0 or one
// of its fallbacks.
func (nm *netManager) defaultBridgeNameOK(name string) bool {
	if nm.cfg.explicitBridge() {
		return name == nm.cfg.DefaultBridge
	}
	n, ok := strings.CutPrefix(name, "jevm")
	if !ok || n == "" {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 8)
	return err == nil
}

// defaultBridgeChangeLocked says how the default bridge network's record
// differs from the configuration: its removal (-b none), its bridge name,
// its address ("" each where it does not).
func (nm *netManager) defaultBridgeChangeLocked(r *netRecord) (remove, name, addr string) {
	if nm.cfg.NoDefaultBridge {
		return "no default bridge (-b none)", "", ""
	}
	if r.Bridge != "" && !nm.defaultBridgeNameOK(r.Bridge) {
		name = fmt.Sprintf("bridge %s instead of %s", nm.cfg.DefaultBridge, r.Bridge)
	}
	bip := nm.cfg.BridgeIP
	switch {
	case bip.IsValid() && (r.Subnet != bip.Masked().String() || r.Gateway != bip.Addr().String()):
		addr = fmt.Sprintf("--bip %s instead of %s", bip, r.gatewayPrefixString())
	case !bip.IsValid() && r.FromBIP:
		addr = "a subnet from the address pools instead of the former --bip " + r.gatewayPrefixString()
	case !bip.IsValid() && !r.subnetInPools(nm.cfg.pools()):
		addr = "a subnet from the address pools instead of " + r.Subnet
	}
	return remove, name, addr
}

func (r *netRecord) gatewayPrefixString() string {
	sub, err := netip.ParsePrefix(r.Subnet)
	if err != nil {
		return r.Subnet
	}
	return r.Gateway + "/" + strconv.Itoa(sub.Bits())
}

func (r *netRecord) subnetInPools(pools []AddressPool) bool {
	sub, err := netip.ParsePrefix(r.Subnet)
	return err == nil && jnet.InPools(pools, sub)
}

// syncDefaultBridgeLocked makes the default bridge network follow the
// configuration (NoDefaultBridge, DefaultBridge, BridgeIP,
// DefaultAddressPools): it is removed, renamed or re-addressed, its old
// bridge and rules removed first. Like dockerd, which leaves its networks
// alone while live-restored containers have sandboxes, it changes nothing
// while endpoints are on it; reconcileNetworking tries again once the
// endpoints of containers that no longer run are gone (final: the last
// try of this start, which warns if the change stays pending). It reports
// whether the record changed.
func (nm *netManager) syncDefaultBridgeLocked(final bool) (bool, error) {
	r := nm.byNameLocked(network.NetworkBridge)
	if r == nil {
		return false, nil
	}
	remove, name, addr := nm.defaultBridgeChangeLocked(r)
	if remove == "" && name == "" && addr == "" {
		return false, nil
	}
	log := nm.log.WithFields(logrus.Fields{"network": r.Name, "change": strings.Trim(remove+"; "+name+"; "+addr, "; ")})
	if len(r.Endpoints) > 0 {
		if final {
			log.Warn("the default bridge network has running containers: keeping its current configuration until a daemon start finds it unused")
		}
		return false, nil
	}
	nm.bringDownLocked(r)
	if nm.cfg.NoDefaultBridge {
		delete(nm.nets, r.ID)
		log.Info("default bridge network removed")
		return true, nil
	}
	if name != "" {
		r.Bridge = "" // bringUpLocked names it
	}
	if addr != "" {
		old := *r
		if err := nm.addressDefaultBridgeLocked(r); err != nil {
			r.Subnet, r.Gateway, r.IPRange, r.LastIP, r.FromBIP, r.pool = old.Subnet, old.Gateway, old.IPRange, old.LastIP, old.FromBIP, old.pool
			return false, err
		}
	}
	log.WithField("subnet", r.Subnet).Info("default bridge network reconfigured")
	return true, nil
}

// addressDefaultBridgeLocked gives the default bridge network its subnet
// and gateway: --bip's, else the first free subnet of the address pools.
func (nm *netManager) addressDefaultBridgeLocked(r *netRecord) error {
	r.IPRange, r.LastIP, r.Gateway = "", "", ""
	if bip := nm.cfg.BridgeIP; bip.IsValid() {
		sub := bip.Masked()
		for _, o := range nm.nets {
			if o == r || o.Subnet == "" {
				continue
			}
			if op, err := netip.ParsePrefix(o.Subnet); err == nil && jnet.Overlaps(op, sub) {
				return errdefs.Conflict(fmt.Errorf("--bip %s overlaps the subnet %s of network %s", bip, o.Subnet, o.Name))
			}
		}
		r.Subnet, r.Gateway, r.FromBIP = sub.String(), bip.Addr().String(), true
	} else {
		sub, err := nm.pickSubnetLocked(r)
		if err != nil {
			return err
		}
		r.Subnet, r.FromBIP = sub.String(), false
	}
	return nm.buildPool(r)
}

func (nm *netManager) load() error {
	b, err := os.ReadFile(nm.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st netStateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("network state %s: %w", nm.path, err)
	}
	for _, r := range st.Networks {
		if r.Endpoints == nil {
			r.Endpoints = map[string]*endpointRecord{}
		}
		if r.Driver == driverBridge {
			if err := nm.buildPool(r); err != nil {
				nm.log.WithError(err).WithField("network", r.Name).Error("network address pool")
			}
		}
		nm.nets[r.ID] = r
	}
	for id, b := range st.Ports {
		nm.ports[id] = b
	}
	return nil
}

// buildPool makes r's pool from its record, with its endpoints' addresses
// in use.
func (nm *netManager) buildPool(r *netRecord) error {
	sub, err := netip.ParsePrefix(r.Subnet)
	if err != nil {
		return err
	}
	var rng netip.Prefix
	if r.IPRange != "" {
		if rng, err = netip.ParsePrefix(r.IPRange); err != nil {
			return err
		}
	}
	var gw netip.Addr
	if r.Gateway != "" {
		if gw, err = netip.ParseAddr(r.Gateway); err != nil {
			return err
		}
	}
	p, err := jnet.NewPool(sub, rng, gw)
	if err != nil {
		return err
	}
	for _, a := range r.Aux {
		if ip, err := netip.ParseAddr(a); err == nil {
			_ = p.Reserve(ip)
		}
	}
	for _, ep := range r.Endpoints {
		if ip, err := netip.ParseAddr(ep.IP); err == nil {
			_ = p.Request(ip)
		}
	}
	if r.LastIP != "" {
		if ip, err := netip.ParseAddr(r.LastIP); err == nil {
			p.SetLast(ip)
		}
	}
	r.pool = p
	r.Gateway = p.Gateway().String()
	return nil
}

func (nm *netManager) saveLocked() error {
	st := netStateFile{Networks: nm.sortedLocked(), Ports: nm.ports}
	for _, r := range st.Networks {
		if r.pool != nil && r.pool.Last().IsValid() {
			r.LastIP = r.pool.Last().String()
		}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(nm.path, b, 0o600); err != nil {
		nm.log.WithError(err).Error("save network state")
		return err
	}
	return nil
}

func (nm *netManager) sortedLocked() []*netRecord {
	list := make([]*netRecord, 0, len(nm.nets))
	for _, r := range nm.nets {
		list = append(list, r)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Created.Equal(list[j].Created) {
			return list[i].Name < list[j].Name
		}
		return list[i].Created.Before(list[j].Created)
	})
	return list
}

func (nm *netManager) byNameLocked(name string) *netRecord {
	for _, r := range nm.nets {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// getLocked resolves a network as dockerd does: full ID, then name, then a
// unique ID prefix.
func (nm *netManager) getLocked(ref string) (*netRecord, error) {
	if ref == "" {
		return nil, errdefs.NotFound(fmt.Errorf("network %s not found", ref))
	}
	if ref == network.NetworkDefault {
		ref = network.NetworkBridge
	}
	if r, ok := nm.nets[ref]; ok {
		return r, nil
	}
	if r := nm.byNameLocked(ref); r != nil {
		return r, nil
	}
	var found *netRecord
	for id, r := range nm.nets {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, errdefs.InvalidParameter(fmt.Errorf("network %s is ambiguous (%d matches found based on ID prefix)", ref, 2))
			}
			found = r
		}
	}
	if found == nil {
		return nil, errdefs.NotFound(fmt.Errorf("network %s not found", ref))
	}
	return found, nil
}

func (nm *netManager) createPredefinedLocked(name string) error {
	r := &netRecord{ID: newID(), Name: name, Created: time.Now().UTC(), Endpoints: map[string]*endpointRecord{}}
	switch name {
	case network.NetworkHost:
		r.Driver = driverHost
	case network.NetworkNone:
		r.Driver = driverNull
	default:
		r.Driver = driverBridge
		r.MTU = nm.cfg.MTU
		r.Options = map[string]string{
			optDefault:                             "true",
			"com.docker.network.bridge.enable_icc": "true",
			optMasquerade:                          "true",
			"com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
			optMTU: strconv.Itoa(nm.cfg.MTU),
		}
		if err := nm.addressDefaultBridgeLocked(r); err != nil {
			return err
		}
	}
	nm.nets[r.ID] = r
	return nil
}

// takenLocked lists the subnets a new network must not overlap: the other
// networks' and the host's routes (other daemons' bridges, VPNs, the
// host's own LANs) except those of our own bridges.
func (nm *netManager) takenLocked(except *netRecord) []netip.Prefix {
	var taken []netip.Prefix
	own := map[string]bool{}
	for _, r := range nm.nets {
		if r.Bridge != "" {
			own[r.Bridge] = true
		}
		if r == except || r.Subnet == "" {
			continue
		}
		if p, err := netip.ParsePrefix(r.Subnet); err == nil {
			taken = append(taken, p)
		}
	}
	if nm.host != nil {
		routes, err := jnet.Routes(own)
		if err != nil {
			nm.log.WithError(err).Warn("list host routes")
		}
		taken = append(taken, routes...)
	}
	return taken
}

func (nm *netManager) pickSubnetLocked(r *netRecord) (netip.Prefix, error) {
	sub, err := jnet.PickPoolSubnet(nm.cfg.pools(), nm.takenLocked(r))
	if err != nil {
		return netip.Prefix{}, errdefs.Forbidden(fmt.Errorf("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network: %w", err))
	}
	return sub, nil
}

// bringUpLocked makes r's bridge, addresses, rules and DNS server.
func (nm *netManager) bringUpLocked(r *netRecord) error {
	if r.Driver != driverBridge || nm.host == nil || r.pool == nil {
		return nil
	}
	if r.Bridge != "" && r.isDefaultBridge() && len(r.Endpoints) == 0 {
		// Our bridge was removed when the daemon stopped; if another
		// daemon took its name meanwhile, pick another.
		if alias, exists := jnet.LinkOwner(r.Bridge); exists && alias != r.owner() {
			r.Bridge = ""
		}
	}
	if r.Bridge == "" {
		name, err := nm.bridgeNameLocked(r)
		if err != nil {
			return err
		}
		r.Bridge = name
	}
	if _, exists := jnet.LinkOwner(r.Bridge); !exists && !r.UserIPAM && !r.FromBIP && len(r.Endpoints) == 0 {
		// Our bridge is gone (removed when the daemon stopped): if
		// meanwhile something else took the subnet, move on to a free
		// one, as a fresh dockerd would.
		own := r.pool.Subnet()
		for _, t := range nm.takenLocked(r) {
			if jnet.Overlaps(own, t) {
				sub, err := nm.pickSubnetLocked(r)
				if err != nil {
					return err
				}
				nm.log.WithFields(logrus.Fields{"network": r.Name, "old": own, "new": sub}).Warn("network's subnet is taken on the host now; moving the network")
				r.Subnet, r.Gateway, r.IPRange, r.LastIP = sub.String(), "", "", ""
				if err := nm.buildPool(r); err != nil {
					return err
				}
				break
			}
		}
	}
	if err := nm.host.EnsureBridge(r.Bridge, r.owner(), r.gatewayPrefix(), r.mtu(nm.cfg.MTU)); err != nil {
		return err
	}
	spec := jnet.FirewallSpec{Bridge: r.Bridge, Subnet: r.pool.Subnet(), Internal: r.Internal, Masquerade: r.masquerade()}
	if err := nm.host.SetupFirewall(spec); err != nil {
		return err
	}
	if nm.wantIPForward(r) {
		if err := jnet.EnableIPForward(); err != nil {
			nm.log.WithError(err).Warn("cannot enable IPv4 forwarding: containers cannot reach outside the host")
		}
	}
	r.up = true
	if !r.isDefaultBridge() && r.dns == nil {
		s, err := jnet.StartDNS(r.pool.Gateway(), nm.cfg.DNSPort, &netNames{nm: nm, id: r.ID}, nm.log.WithField("network", r.Name))
		if err != nil {
			nm.log.WithError(err).WithField("network", r.Name).Warn("embedded DNS server not available")
		} else {
			r.dns = s
		}
	}
	return nil
}

// wantIPForward reports whether bringing r up turns on the host's IPv4
// forwarding: for networks that reach outside, unless the admin keeps it
// (--ip-forward=false).
func (nm *netManager) wantIPForward(r *netRecord) bool {
	return !r.Internal && !nm.cfg.DisableIPForward
}

func (r *netRecord) mtu(def int) int {
	if v, err := strconv.Atoi(r.Options[optMTU]); err == nil && v >= 68 {
		return v
	}
	if r.MTU > 0 {
		return r.MTU
	}
	return def
}

// bridgeNameLocked picks r's bridge name: the default bridge's is
// cfg.DefaultBridge (under the default name jevm0, jevm1, jevm2... if
// another owner has it), a user network's "jevm-" and ten digits of its
// ID, or the name given with com.docker.network.bridge.name.
func (nm *netManager) bridgeNameLocked(r *netRecord) (string, error) {
	if n := r.Options[optBridgeName]; n != "" && !r.isDefaultBridge() {
		return n, nil
	}
	if !r.isDefaultBridge() {
		return "jevm-" + r.ID[:10], nil
	}
	if n := nm.cfg.DefaultBridge; nm.cfg.explicitBridge() {
		// The admin named it: that bridge or none.
		for _, o := range nm.nets {
			if o != r && (o.Bridge == n || o.Options[optBridgeName] == n) {
				return "", fmt.Errorf("bridge %s (--bridge) is the bridge of network %s", n, o.Name)
			}
		}
		if alias, exists := jnet.LinkOwner(n); exists && alias != r.owner() {
			return "", fmt.Errorf("interface %s (--bridge) exists on the host and was not made by this jevm daemon (alias %q): jevm only uses bridges it creates; remove it or name another bridge", n, alias)
		}
		return n, nil
	}
	cands := []string{nm.cfg.DefaultBridge}
	for i := 1; i < 100; i++ {
		cands = append(cands, fmt.Sprintf("jevm%d", i))
	}
	for _, n := range cands {
		if alias, exists := jnet.LinkOwner(n); !exists || alias == r.owner() {
			return n, nil
		}
	}
	return "", errors.New("no free name for the default bridge")
}

// bringDownLocked removes r's host objects (its endpoints must be gone).
func (nm *netManager) bringDownLocked(r *netRecord) {
	if r.dns != nil {
		nm.closingDNS = append(nm.closingDNS, r.dns)
		r.dns = nil
	}
	if nm.host == nil || r.Bridge == "" {
		return
	}
	if err := nm.host.TeardownFirewall(r.Bridge); err != nil {
		nm.log.WithError(err).WithField("network", r.Name).Warn("remove firewall rules")
	}
	if err := jnet.DeleteLink(r.Bridge, r.owner()); err != nil {
		nm.log.WithError(err).WithField("network", r.Name).Warn("remove bridge")
	}
	r.up = false
}

// reconcileNetworking runs after the containers were restored: endpoints
// of containers that no longer run are released (their taps removed), and
// the port proxies of the running ones are opened again.
func (d *Daemon) reconcileNetworking() {
	nm := d.net
	if nm == nil {
		return
	}
	running := map[string]bool{}
	for _, c := range d.containers.all() {
		c.mu.Lock()
		running[c.ID] = c.running()
		c.mu.Unlock()
	}
	nm.mu.Lock()
	defer nm.unlock()
	for _, r := range nm.nets {
		for _, ep := range r.Endpoints {
			if !running[ep.ContainerID] {
				nm.releaseEndpointLocked(r, ep)
			}
		}
	}
	// A configuration change initNetworking kept back because of
	// endpoints that turned out to be stale applies now.
	if changed, err := nm.syncDefaultBridgeLocked(true); err != nil {
		nm.log.WithError(err).Error("cannot apply the default bridge configuration; keeping the current one")
	} else if r := nm.byNameLocked(network.NetworkBridge); changed && r != nil {
		if err := nm.bringUpLocked(r); err != nil {
			nm.log.WithError(err).WithField("network", r.Name).Error("cannot set up network")
		}
	}
	for id, bindings := range nm.ports {
		if !running[id] {
			delete(nm.ports, id)
			continue
		}
		if _, err := nm.startProxiesLocked(id, bindings); err != nil {
			nm.log.WithError(err).WithField("container", id[:12]).Warn("cannot publish the ports of a re-adopted container again")
		}
	}
	// Leftover taps of ours that no endpoint names (a crash between
	// making a tap and recording it).
	if nm.host != nil {
		known := map[string]bool{}
		for _, r := range nm.nets {
			for _, ep := range r.Endpoints {
				known[ep.Tap] = true
			}
		}
		if owned, err := jnet.OwnedLinks(jnet.OwnerPrefix); err == nil {
			for name, alias := range owned {
				if !known[name] && strings.HasPrefix(alias, nm.tapOwnerPrefix()) {
					nm.log.WithField("tap", name).Info("removing leftover tap")
					_ = jnet.DeleteLink(name, alias)
				}
			}
		}
	}
	_ = nm.saveLocked()
}

func (nm *netManager) tapOwnerPrefix() string { return jnet.OwnerPrefix + nm.instance + ":" }

func (nm *netManager) tapOwner(ep *endpointRecord) string { return nm.tapOwnerPrefix() + ep.ID }

// instanceTag is a short hash of the data root.
func instanceTag(dataRoot string) string {
	abs, err := filepath.Abs(dataRoot)
	if err != nil {
		abs = dataRoot
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:])[:12]
}

// shutdownNetworking closes the proxies and DNS servers and removes the
// bridges and rules that no running container needs; running containers
// keep their taps and bridges for the next daemon.
func (d *Daemon) shutdownNetworking() {
	nm := d.net
	if nm == nil {
		return
	}
	nm.mu.Lock()
	defer nm.unlock()
	for id, list := range nm.proxies {
		for _, p := range list {
			nm.closingProxies = append(nm.closingProxies, p)
		}
		delete(nm.proxies, id)
	}
	for _, r := range nm.nets {
		if r.dns != nil {
			nm.closingDNS = append(nm.closingDNS, r.dns)
			r.dns = nil
		}
		if len(r.Endpoints) == 0 && r.up {
			nm.bringDownLocked(r)
		}
	}
	_ = nm.saveLocked()
}

// ---- containers ----

// netAttachment is what a starting container gets from its networks.
type netAttachment struct {
	NICs       []vmbackend.NICSpec
	Interfaces []agentproto.InterfaceConfig
	Hosts      string
	ResolvConf string
}

// containerNetworks lists the networks c is configured for, the
// NetworkMode network first. Callers hold c.mu.
func containerNetworks(c *Container) []string {
	mode := string(c.HostConfig.NetworkMode)
	if mode == "" || mode == network.NetworkDefault {
		mode = network.NetworkBridge
	}
	var names []string
	if c.NetConfig != nil {
		for n := range c.NetConfig.EndpointsConfig {
			names = append(names, n)
		}
	} else if mode != network.NetworkNone {
		names = []string{mode} // a record from before networking
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == mode) != (names[j] == mode) {
			return names[i] == mode
		}
		return names[i] < names[j]
	})
	return names
}

func endpointConfig(c *Container, name string) *network.EndpointSettings {
	if c.NetConfig != nil {
		if es := c.NetConfig.EndpointsConfig[name]; es != nil {
			return es
		}
	}
	return &network.EndpointSettings{}
}

// attachNetworks creates c's endpoints (addresses, MACs, taps on the
// bridges) and opens its published ports. Callers hold c.mu. On error
// nothing is left.
func (d *Daemon) attachNetworks(ctx context.Context, c *Container) (att *netAttachment, retErr error) {
	att = &netAttachment{Hosts: hostsFile(c)}
	nm := d.net
	if nm == nil {
		return att, nil
	}
	names := containerNetworks(c)
	nm.mu.Lock()
	defer nm.unlock()
	// A run that ended without the monitor's cleanup (e.g. a daemon
	// crash) must not leave its endpoints.
	nm.detachLocked(c.ID)
	defer func() {
		if retErr != nil {
			nm.detachLocked(c.ID)
			_ = nm.saveLocked()
		}
	}()
	var primary *endpointRecord
	var primaryNet *netRecord
	for _, name := range names {
		if nm.bridgeDisabled(name) {
			continue // -b none: no network, as dockerd
		}
		r, err := nm.getLocked(name)
		if err != nil {
			return nil, err
		}
		switch r.Driver {
		case driverNull:
			continue
		case driverHost:
			return nil, errHostNetwork()
		}
		if nm.host == nil {
			nm.log.WithField("container", c.ID[:12]).Warn("host networking unavailable: starting the container without network interfaces")
			break
		}
		ep, err := nm.newEndpointLocked(c, r, endpointConfig(c, name), fmt.Sprintf("eth%d", len(att.Interfaces)), primary == nil && !r.Internal)
		if err != nil {
			return nil, err
		}
		if primary == nil {
			primary, primaryNet = ep, r
		}
		att.NICs = append(att.NICs, vmbackend.NICSpec{TapName: ep.Tap, MAC: ep.MAC})
		att.Interfaces = append(att.Interfaces, r.interfaceConfig(ep, nm.cfg.MTU))
	}
	// Published ports go to the primary endpoint's address.
	bindings, err := jnet.ParsePortBindings(c.HostConfig.PortBindings, c.Config.ExposedPorts, c.HostConfig.PublishAllPorts)
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	if len(bindings) > 0 && primary != nil {
		bound, err := nm.startProxiesLocked(c.ID, bindings)
		if err != nil {
			return nil, err
		}
		nm.ports[c.ID] = bound
	}
	att.Hosts = containerHosts(c, primary, primaryNet)
	att.ResolvConf = nm.resolvConfFor(c, primaryNet)
	if err := nm.saveLocked(); err != nil {
		return nil, err
	}
	return att, nil
}

// detachNetworks releases c's endpoints and proxies (the VM is gone).
func (d *Daemon) detachNetworks(c *Container) {
	nm := d.net
	if nm == nil {
		return
	}
	nm.mu.Lock()
	defer nm.unlock()
	if nm.detachLocked(c.ID) {
		_ = nm.saveLocked()
	}
}

func (nm *netManager) detachLocked(cid string) bool {
	changed := false
	for _, p := range nm.proxies[cid] {
		nm.closingProxies = append(nm.closingProxies, p)
	}
	delete(nm.proxies, cid)
	if _, ok := nm.ports[cid]; ok {
		delete(nm.ports, cid)
		changed = true
	}
	for _, r := range nm.nets {
		for _, ep := range r.Endpoints {
			if ep.ContainerID == cid {
				nm.releaseEndpointLocked(r, ep)
				changed = true
			}
		}
	}
	return changed
}

func (nm *netManager) newEndpointLocked(c *Container, r *netRecord, es *network.EndpointSettings, ifName string, defaultRoute bool) (*endpointRecord, error) {
	if r.pool == nil {
		return nil, fmt.Errorf("network %s has no usable address pool", r.Name)
	}
	if !r.up {
		if err := nm.bringUpLocked(r); err != nil {
			return nil, fmt.Errorf("network %s: %w", r.Name, err)
		}
	}
	var ip netip.Addr
	if es.IPAMConfig != nil && es.IPAMConfig.IPv4Address != "" {
		a, err := netip.ParseAddr(es.IPAMConfig.IPv4Address)
		if err != nil {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid IPv4 address %q", es.IPAMConfig.IPv4Address))
		}
		if err := r.pool.Request(a); err != nil {
			return nil, errdefs.Forbidden(fmt.Errorf("failed to set up container networking: %w", err))
		}
		ip = a
	} else {
		a, err := r.pool.Allocate()
		if err != nil {
			return nil, errdefs.Forbidden(err)
		}
		ip = a
	}
	mac := jnet.MACFor(ip)
	if es.MacAddress != "" {
		mac = strings.ToLower(es.MacAddress)
	}
	id := newID()
	ep := &endpointRecord{
		ID: id, ContainerID: c.ID, IP: ip.String(), MAC: mac, Tap: "tap" + id[:12], IfName: ifName,
		Aliases: append([]string(nil), es.Aliases...), DefaultRoute: defaultRoute,
		DNS: append([]string(nil), c.HostConfig.DNS...),
	}
	if err := jnet.CreateTap(ep.Tap, nm.tapOwner(ep), r.Bridge, r.mtu(nm.cfg.MTU)); err != nil {
		r.pool.Release(ip)
		return nil, err
	}
	r.Endpoints[id] = ep
	return ep, nil
}

func (nm *netManager) releaseEndpointLocked(r *netRecord, ep *endpointRecord) {
	if nm.host != nil && ep.Tap != "" {
		if err := jnet.DeleteLink(ep.Tap, nm.tapOwner(ep)); err != nil {
			nm.log.WithError(err).WithField("tap", ep.Tap).Warn("remove tap")
		}
	}
	if r.pool != nil {
		if ip, err := netip.ParseAddr(ep.IP); err == nil {
			r.pool.Release(ip)
		}
	}
	delete(r.Endpoints, ep.ID)
}

func (r *netRecord) interfaceConfig(ep *endpointRecord, mtu int) agentproto.InterfaceConfig {
	ic := agentproto.InterfaceConfig{
		Name: ep.IfName, MAC: ep.MAC, MTU: r.mtu(mtu),
		Addresses: []string{netip.PrefixFrom(netip.MustParseAddr(ep.IP), r.pool.Subnet().Bits()).String()},
	}
	if ep.DefaultRoute {
		ic.Gateway = r.Gateway
	}
	return ic
}

// startProxiesLocked opens the port proxies of container cid.
func (nm *netManager) startProxiesLocked(cid string, bindings []jnet.PortBinding) ([]jnet.PortBinding, error) {
	backend := func() (netip.Addr, bool) {
		nm.mu.Lock()
		defer nm.mu.Unlock()
		ep, _ := nm.primaryLocked(cid)
		if ep == nil {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(ep.IP)
		return a, err == nil
	}
	var bound []jnet.PortBinding
	for _, b := range bindings {
		p, err := jnet.StartProxy(b, backend, nm.log.WithField("container", cid[:12]))
		if err != nil {
			for _, q := range nm.proxies[cid] {
				nm.closingProxies = append(nm.closingProxies, q)
			}
			delete(nm.proxies, cid)
			if errors.Is(err, jnet.ErrPortAllocated) {
				return nil, errdefs.Conflict(fmt.Errorf("driver failed programming external connectivity on endpoint: %w", err))
			}
			return nil, err
		}
		nm.proxies[cid] = append(nm.proxies[cid], p)
		bound = append(bound, p.Binding())
	}
	return bound, nil
}

// primaryLocked is the endpoint published ports and the legacy inspect
// fields use: the one with the default route, else the lowest interface.
func (nm *netManager) primaryLocked(cid string) (*endpointRecord, *netRecord) {
	var best *endpointRecord
	var bestNet *netRecord
	for _, r := range nm.nets {
		for _, ep := range r.Endpoints {
			if ep.ContainerID != cid {
				continue
			}
			if best == nil || (ep.DefaultRoute && !best.DefaultRoute) ||
				(ep.DefaultRoute == best.DefaultRoute && ifIndex(ep.IfName) < ifIndex(best.IfName)) {
				best, bestNet = ep, r
			}
		}
	}
	return best, bestNet
}

func ifIndex(name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "eth"))
	if err != nil {
		return 1 << 20
	}
	return n
}

// containerHosts is /etc/hosts with the container's own address for its
// hostname (as dockerd writes it) instead of 127.0.1.1, and host-gateway
// in --add-host resolved to the gateway.
func containerHosts(c *Container, ep *endpointRecord, r *netRecord) string {
	h := hostsFile(c)
	if ep == nil {
		return h
	}
	name := c.Config.Hostname
	if c.Config.Domainname != "" {
		name = c.Config.Hostname + "." + c.Config.Domainname + "\t" + c.Config.Hostname
	}
	h = strings.Replace(h, "127.0.1.1\t"+c.Config.Hostname+"\n", ep.IP+"\t"+name+"\n", 1)
	if r != nil && r.Gateway != "" {
		var out []string
		for _, line := range strings.SplitAfter(h, "\n") {
			if rest, ok := strings.CutPrefix(line, "host-gateway\t"); ok {
				line = r.Gateway + "\t" + rest
			}
			out = append(out, line)
		}
		h = strings.Join(out, "")
	}
	return h
}

// hostResolv is the host's resolv.conf, re-read at most every 5 s.
func (nm *netManager) hostResolv() jnet.ResolvConf {
	nm.resolvMu.Lock()
	defer nm.resolvMu.Unlock()
	if time.Since(nm.resolvTime) > 5*time.Second {
		rc, err := jnet.ReadResolvConf(nm.cfg.ResolvConf)
		if err != nil {
			nm.log.WithError(err).Warn("read host resolv.conf")
		}
		nm.resolv, nm.resolvTime = rc, time.Now()
	}
	return nm.resolv
}

// resolvConfFor is the container's /etc/resolv.conf: on a user network the
// embedded DNS server at the gateway (dockerd's 127.0.0.11), elsewhere the
// host's reachable nameservers or --dns; --dns-search and --dns-option
// replace the host's search and options. As dockerd, each of the three
// comes from the container if it gives any, else from the daemon's
// settings.
func (nm *netManager) resolvConfFor(c *Container, primary *netRecord) string {
	host := nm.hostResolv()
	rc := jnet.ResolvConf{Search: host.Search, Options: host.Options}
	dns, search, opts := nm.containerDNS(c)
	switch {
	case primary != nil && !primary.isDefaultBridge() && primary.dns != nil:
		rc.Nameservers = []string{primary.Gateway}
	case len(dns) > 0:
		rc.Nameservers = append([]string(nil), dns...)
	default:
		rc.Nameservers = jnet.ReachableNameservers(host.Nameservers)
	}
	if len(search) > 0 {
		rc.Search = search
		if len(rc.Search) == 1 && rc.Search[0] == "." {
			rc.Search = nil
		}
	}
	if len(opts) > 0 {
		rc.Options = opts
	}
	if len(rc.Nameservers) == 1 && primary != nil && rc.Nameservers[0] == primary.Gateway && primary.dns != nil {
		// As dockerd with its embedded DNS: names without dots are
		// container names, not to be tried with the search domains first.
		hasNdots := false
		for _, o := range rc.Options {
			hasNdots = hasNdots || strings.HasPrefix(o, "ndots:")
		}
		if !hasNdots {
			rc.Options = append(append([]string(nil), rc.Options...), "ndots:0")
		}
	}
	return rc.String()
}

// containerDNS is c's --dns, --dns-search and --dns-option, each falling
// back to the daemon's (dockerd's precedence).
func (nm *netManager) containerDNS(c *Container) (dns, search, opts []string) {
	pick := func(own, def []string) []string {
		if len(own) > 0 {
			return own
		}
		return def
	}
	return pick(c.HostConfig.DNS, nm.cfg.DNS), pick(c.HostConfig.DNSSearch, nm.cfg.DNSSearch), pick(c.HostConfig.DNSOptions, nm.cfg.DNSOptions)
}

// netNames answers the embedded DNS server of one network.
type netNames struct {
	nm *netManager
	id string
}

func (n *netNames) LookupName(name string) []netip.Addr {
	nm := n.nm
	nm.mu.Lock()
	defer nm.mu.Unlock()
	r := nm.nets[n.id]
	if r == nil {
		return nil
	}
	// "web.mynet" names the container web on mynet.
	if base, ok := strings.CutSuffix(name, "."+strings.ToLower(r.Name)); ok {
		name = base
	}
	cid := nm.d.containers.idByName(name)
	var out []netip.Addr
	for _, ep := range r.Endpoints {
		hit := ep.ContainerID == cid || (len(name) == 12 && strings.HasPrefix(ep.ContainerID, name)) || ep.ContainerID == name
		for _, a := range ep.Aliases {
			hit = hit || strings.EqualFold(a, name)
		}
		if hit {
			if a, err := netip.ParseAddr(ep.IP); err == nil {
				out = append(out, a)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func (n *netNames) LookupAddr(a netip.Addr) (string, bool) {
	nm := n.nm
	nm.mu.Lock()
	r := nm.nets[n.id]
	var cid string
	if r != nil {
		for _, ep := range r.Endpoints {
			if ep.IP == a.String() {
				cid = ep.ContainerID
			}
		}
	}
	netName := ""
	if r != nil {
		netName = r.Name
	}
	nm.mu.Unlock()
	if cid == "" {
		return "", false
	}
	name := nm.d.containers.nameByID(cid)
	if name == "" {
		return "", false
	}
	return name + "." + netName, true
}

func (n *netNames) Upstreams(client netip.Addr) []string {
	nm := n.nm
	nm.mu.Lock()
	r := nm.nets[n.id]
	if r == nil || r.Internal {
		nm.mu.Unlock()
		return nil
	}
	var dns []string
	for _, ep := range r.Endpoints {
		if ep.IP == client.String() {
			dns = ep.DNS
		}
	}
	nm.mu.Unlock()
	if len(dns) == 0 {
		// The daemon's --dns, as dockerd's embedded DNS forwards to
		// them; else the host's resolvers.
		dns = nm.cfg.DNS
	}
	if len(dns) == 0 {
		dns = nm.hostResolv().Nameservers
	}
	return jnet.UpstreamAddrs(dns)
}

// idByName returns the ID of the container called name ("" if none).
func (s *containerStore) idByName(name string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byName[strings.TrimPrefix(name, "/")]
}

// nameByID returns the name of container id ("" if none).
func (s *containerStore) nameByID(id string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for name, other := range s.byName {
		if other == id {
			return name
		}
	}
	return ""
}

func errHostNetwork() error {
	return errdefs.InvalidParameter(errors.New("--network host is not supported by jevm: every container runs in its own VM, which cannot share the host's network stack (publish ports with -p instead)"))
}

// prepareNetworking validates and normalises a new container's network
// settings: NetworkMode defaults to "bridge" and names the network by
// name, EndpointsConfig gets an entry for it, and what jevm cannot do is
// refused with a clear 400.
func (d *Daemon) prepareNetworking(hc *container.HostConfig, cfg *container.Config, nc *network.NetworkingConfig) (*network.NetworkingConfig, error) {
	mode := string(hc.NetworkMode)
	if mode == "" || mode == network.NetworkDefault {
		mode = network.NetworkBridge
	}
	switch {
	case mode == network.NetworkHost:
		return nil, errHostNetwork()
	case strings.HasPrefix(mode, "container:"):
		return nil, errdefs.InvalidParameter(errors.New("--network container:<name|id> is not supported by jevm: every container runs in its own VM"))
	}
	if nc == nil {
		nc = &network.NetworkingConfig{}
	}
	eps := map[string]*network.EndpointSettings{}
	nm := d.net
	if nm == nil {
		hc.NetworkMode = container.NetworkMode(mode)
		for k, v := range nc.EndpointsConfig {
			eps[k] = v
		}
		if mode != network.NetworkNone && eps[mode] == nil {
			eps[mode] = &network.EndpointSettings{}
		}
		nc.EndpointsConfig = eps
		return nc, nil
	}
	nm.mu.Lock()
	defer nm.unlock()
	if nm.bridgeDisabled(mode) {
		// -b none: the container keeps "bridge" as its network (as
		// dockerd's does) and starts without it (attachNetworks).
		mode = network.NetworkBridge
	} else {
		primary, err := nm.getLocked(mode)
		if err != nil {
			return nil, err
		}
		switch primary.Driver {
		case driverHost:
			return nil, errHostNetwork()
		case driverNull:
			for k := range nc.EndpointsConfig {
				if r, err := nm.getLocked(k); err != nil || r.Driver != driverNull {
					return nil, errdefs.InvalidParameter(errors.New("conflicting options: cannot attach both user-defined and non-user-defined network-modes"))
				}
			}
			if len(hc.PortBindings) > 0 || hc.PublishAllPorts {
				return nil, errdefs.InvalidParameter(errors.New("conflicting options: port publishing and the container type network mode (--network none)"))
			}
			hc.NetworkMode = network.NetworkNone
			nc.EndpointsConfig = nil
			return nc, nil
		}
		mode = primary.Name
	}
	hc.NetworkMode = container.NetworkMode(mode)
	for k, es := range nc.EndpointsConfig {
		if nm.bridgeDisabled(k) {
			if es == nil {
				es = &network.EndpointSettings{}
			}
			eps[network.NetworkBridge] = es
			continue
		}
		r, err := nm.getLocked(k)
		if err != nil {
			return nil, err
		}
		if r.Driver != driverBridge {
			return nil, errdefs.InvalidParameter(fmt.Errorf("container cannot be connected to network %s (driver %s) and to other networks", r.Name, r.Driver))
		}
		if es == nil {
			es = &network.EndpointSettings{}
		}
		if err := r.checkEndpointSettings(es); err != nil {
			return nil, err
		}
		eps[r.Name] = es
	}
	if eps[mode] == nil {
		eps[mode] = &network.EndpointSettings{}
	}
	nc.EndpointsConfig = eps
	if _, err := jnet.ParsePortBindings(hc.PortBindings, cfg.ExposedPorts, hc.PublishAllPorts); err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	return nc, nil
}

// checkEndpointSettings refuses what dockerd refuses for an endpoint.
func (r *netRecord) checkEndpointSettings(es *network.EndpointSettings) error {
	if es.IPAMConfig != nil && es.IPAMConfig.IPv4Address != "" {
		if !r.UserIPAM {
			return errdefs.InvalidParameter(errors.New("user specified IP address is supported only when connecting to networks with user configured subnets"))
		}
		a, err := netip.ParseAddr(es.IPAMConfig.IPv4Address)
		if err != nil || !a.Is4() {
			return errdefs.InvalidParameter(fmt.Errorf("invalid IPv4 address: %s", es.IPAMConfig.IPv4Address))
		}
		if r.pool != nil && !r.pool.Subnet().Contains(a) {
			return errdefs.InvalidParameter(fmt.Errorf("invalid endpoint settings:\nno configured subnet or ip-range contain the IP address %s", a))
		}
	}
	if es.IPAMConfig != nil && es.IPAMConfig.IPv6Address != "" {
		return errdefs.InvalidParameter(errors.New("IPv6 addresses are not supported by jevm"))
	}
	if len(es.Aliases) > 0 && r.isDefaultBridge() {
		return errdefs.InvalidParameter(errors.New("network-scoped alias is supported only for containers in user defined networks"))
	}
	if es.MacAddress != "" {
		if _, err := parseMAC(es.MacAddress); err != nil {
			return errdefs.InvalidParameter(fmt.Errorf("invalid MAC address %q", es.MacAddress))
		}
	}
	return nil
}

func parseMAC(s string) (string, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return "", errors.New("bad MAC")
	}
	for _, p := range parts {
		if len(p) != 2 {
			return "", errors.New("bad MAC")
		}
		if _, err := strconv.ParseUint(p, 16, 8); err != nil {
			return "", err
		}
	}
	return strings.ToLower(s), nil
}

// ---- inspect and ps ----

// fillNetworkSettings fills inspect's NetworkSettings and NetworkMode.
// Callers hold c.mu.
func (d *Daemon) fillNetworkSettings(c *Container, hc *container.HostConfig, ns *container.NetworkSettings) {
	mode := string(c.HostConfig.NetworkMode)
	if mode == "" || mode == network.NetworkDefault {
		mode = network.NetworkBridge
	}
	hc.NetworkMode = container.NetworkMode(mode)
	nm := d.net
	if ns.Networks == nil {
		ns.Networks = map[string]*network.EndpointSettings{}
	}
	if ns.Ports == nil {
		ns.Ports = map[nat.Port][]nat.PortBinding{}
	}
	if nm == nil {
		return
	}
	nm.mu.Lock()
	defer nm.unlock()
	running := c.running()
	if running {
		ns.Ports = jnet.PortMap(nm.ports[c.ID], c.Config.ExposedPorts)
	}
	if mode == network.NetworkNone {
		if r := nm.byNameLocked(network.NetworkNone); r != nil {
			ns.Networks[network.NetworkNone] = &network.EndpointSettings{NetworkID: r.ID}
		}
		return
	}
	for _, name := range containerNetworks(c) {
		r, err := nm.getLocked(name)
		if err != nil {
			if nm.bridgeDisabled(name) {
				// As dockerd with -b none: the network is listed, with
				// nothing attached.
				es := endpointConfig(c, name).Copy()
				es.NetworkID, es.EndpointID, es.Gateway, es.IPAddress, es.IPPrefixLen, es.DNSNames = "", "", "", "", 0, nil
				ns.Networks[network.NetworkBridge] = es
			}
			continue
		}
		es := endpointConfig(c, name).Copy()
		es.NetworkID = r.ID
		es.EndpointID, es.Gateway, es.IPAddress, es.IPPrefixLen, es.DNSNames = "", "", "", 0, nil
		if !running {
			es.MacAddress = endpointConfig(c, name).MacAddress
		}
		for _, ep := range r.Endpoints {
			if ep.ContainerID != c.ID || !running {
				continue
			}
			es.EndpointID = ep.ID
			es.Gateway = r.Gateway
			es.IPAddress = ep.IP
			es.IPPrefixLen = r.pool.Subnet().Bits()
			es.MacAddress = ep.MAC
			if !r.isDefaultBridge() {
				es.DNSNames = append(append([]string{c.Name}, ep.Aliases...), c.ID[:12])
			}
			if r.isDefaultBridge() || (ep.DefaultRoute && ns.IPAddress == "") {
				ns.DefaultNetworkSettings = container.DefaultNetworkSettings{
					EndpointID: ep.ID, Gateway: r.Gateway, IPAddress: ep.IP,
					IPPrefixLen: r.pool.Subnet().Bits(), MacAddress: ep.MAC,
				}
			}
		}
		ns.Networks[r.Name] = es
	}
	// dockerd fills the legacy top-level fields for the default bridge
	// only.
	if _, onBridge := ns.Networks[network.NetworkBridge]; !onBridge {
		ns.DefaultNetworkSettings = container.DefaultNetworkSettings{}
	}
}

// fillSummaryNetwork fills a `docker ps` row's Ports, Networks and
// NetworkMode, and applies the network, publish and expose filters (false:
// the row is filtered out). Callers hold c.mu.
func (d *Daemon) fillSummaryNetwork(c *Container, s *container.Summary, f filters.Args) bool {
	hc := &container.HostConfig{}
	ns := &container.NetworkSettings{}
	d.fillNetworkSettings(c, hc, ns)
	s.HostConfig.NetworkMode = string(hc.NetworkMode)
	s.NetworkSettings = &container.NetworkSettingsSummary{Networks: ns.Networks}
	s.Ports = []container.Port{}
	if f.Contains("network") {
		hit := false
		for name, es := range ns.Networks {
			for _, v := range f.Get("network") {
				hit = hit || v == name || (v != "" && strings.HasPrefix(es.NetworkID, v))
			}
		}
		if !hit {
			return false
		}
	}
	if f.Contains("expose") && !matchPortFilter(f.Get("expose"), c.Config.ExposedPorts, nil) {
		return false
	}
	if f.Contains("publish") && !matchPortFilter(f.Get("publish"), nil, ns.Ports) {
		return false
	}
	if !c.running() {
		return true
	}
	var keys []string
	for p := range ns.Ports {
		keys = append(keys, string(p))
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := nat.Port(k)
		binds := ns.Ports[p]
		if len(binds) == 0 {
			s.Ports = append(s.Ports, container.Port{PrivatePort: uint16(p.Int()), Type: p.Proto()})
			continue
		}
		for _, b := range binds {
			hp, _ := strconv.Atoi(b.HostPort)
			s.Ports = append(s.Ports, container.Port{IP: b.HostIP, PrivatePort: uint16(p.Int()), PublicPort: uint16(hp), Type: p.Proto()})
		}
	}
	return true
}

// matchPortFilter applies ps's expose (container ports) or publish (host
// ports) filter: "80", "80/tcp" or a range "8000-8080[/tcp]".
func matchPortFilter(vals []string, exposed nat.PortSet, published nat.PortMap) bool {
	type pp struct {
		port  int
		proto string
	}
	var have []pp
	for p := range exposed {
		have = append(have, pp{p.Int(), p.Proto()})
	}
	for _, binds := range published {
		for _, b := range binds {
			if n, err := strconv.Atoi(b.HostPort); err == nil {
				have = append(have, pp{n, ""})
			}
		}
	}
	for p, binds := range published {
		for i := range have {
			for _, b := range binds {
				if strconv.Itoa(have[i].port) == b.HostPort && have[i].proto == "" {
					have[i].proto = p.Proto()
				}
			}
		}
	}
	for _, v := range vals {
		spec, proto, _ := strings.Cut(v, "/")
		lo, hi, err := nat.ParsePortRangeToInt(spec)
		if err != nil {
			continue
		}
		for _, h := range have {
			if h.port >= lo && h.port <= hi && (proto == "" || proto == h.proto) {
				return true
			}
		}
	}
	return false
}

// fillNetworkInfo fills /info's networking fields as dockerd does:
// IPv4Forwarding is the host's setting (with dockerd's warning when it is
// off), DefaultAddressPools the configured pools (empty when the built-in
// ones apply), and FirewallBackend is reported while jevm manages
// iptables rules (not with --iptables=false, nor without host networking).
func (d *Daemon) fillNetworkInfo(info *system.Info) {
	info.IPv4Forwarding = jnet.IPForwardEnabled()
	if !info.IPv4Forwarding {
		info.Warnings = append(info.Warnings, "WARNING: IPv4 forwarding is disabled")
	}
	nm := d.net
	if nm == nil {
		return
	}
	for _, p := range nm.cfg.DefaultAddressPools {
		info.DefaultAddressPools = append(info.DefaultAddressPools, system.NetworkAddressPool{Base: p.Base.String(), Size: p.Size})
	}
	if nm.host != nil && nm.host.Firewall() {
		info.FirewallBackend = &system.FirewallInfo{Driver: "iptables"}
	}
}
