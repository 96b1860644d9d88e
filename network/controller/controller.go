// Package controller is jevm's network controller (docs/NETWORKING.md):
// the networks and the endpoints of running containers, persisted in
// DATA_ROOT/network/state.json, on top of the host-level pieces of package
// network (IPAM, bridges, taps, firewall, DNS server, port proxies). The
// daemon keeps its containers and calls the controller: Prepare at create,
// Attach at start, Detach at exit, Restore after a restart, Shutdown, the
// /networks operations, and Connect/Disconnect with a NICPlugger for the
// container's VM. Container names come through ContainerNames, events
// through Options.Events; the controller knows nothing of the daemon.
//
// Locking: the daemon may hold a container's lock when calling the
// controller (which takes nm.mu), never the other way round. The embedded
// DNS servers take nm.mu and call ContainerNames, which must not wait for
// a container's lock.
package controller

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/internal/atomicfile"
	jnet "github.com/jevm/jevm/network"
	"github.com/jevm/jevm/network/secureoverlay"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Container is what the controller needs of a container: the daemon
// fills it from its record under the container's lock and holds that lock
// for the call.
type Container struct {
	ID         string
	Name       string // without the leading "/"
	Config     *container.Config
	HostConfig *container.HostConfig
	NetConfig  *network.NetworkingConfig
	// Running: the container's VM is up (running or paused).
	Running bool
	// LinkHosts are legacy links' /etc/hosts entries ("names:ip", as
	// HostConfig.ExtraHosts), resolved by the daemon at start.
	LinkHosts []string
}

// ContainerNames resolves container names and IDs for the embedded DNS
// servers and for inspect's Containers map. It is called with the
// controller's lock held and must not wait for a container's lock.
type ContainerNames interface {
	// IDByName returns the ID of the container called name ("" if
	// none); name may have a leading "/".
	IDByName(name string) string
	// NameByID returns the name of container id ("" if none).
	NameByID(id string) string
}

// NICPlugger hot-plugs NICs into a running container's VM and configures
// them in the guest (docker network connect/disconnect). The daemon
// implements it for the container's machine and agent.
type NICPlugger interface {
	vmbackend.NICHotplugger
	// InterfaceUp configures a hot-plugged NIC in the guest.
	InterfaceUp(ctx context.Context, ic agentproto.InterfaceConfig) error
}

// Options are what the controller needs of the daemon besides Config.
type Options struct {
	// DataRoot: the state is DataRoot/network/state.json, and taps are
	// tagged with a hash of it.
	DataRoot string
	Log      *logrus.Entry
	Names    ContainerNames
	// Events, if set, publishes a network event (create, destroy,
	// connect, disconnect) with its attributes.
	Events func(action events.Action, networkID string, attrs map[string]string)
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
	UserIPAM bool `json:"userIpam,omitempty"`
	// IPv6 configuration (--ipv6): the subnet (given, or a /64 of the
	// IPv6 pools), its gateway on the bridge, range and aux addresses.
	EnableIPv6 bool `json:"enableIpv6,omitempty"`
	// NoIPv4: an IPv6-only network (--ipv4=false): no IPv4 subnet.
	NoIPv4    bool              `json:"noIpv4,omitempty"`
	Subnet6   string            `json:"subnet6,omitempty"`
	Gateway6  string            `json:"gateway6,omitempty"`
	IPRange6  string            `json:"ipRange6,omitempty"`
	Aux6      map[string]string `json:"aux6,omitempty"`
	UserIPAM6 bool              `json:"userIpam6,omitempty"`
	LastIP6   string            `json:"lastIp6,omitempty"`
	Bridge    string            `json:"bridge,omitempty"`
	MTU       int               `json:"mtu,omitempty"`
	LastIP    string            `json:"lastIp,omitempty"`
	// Endpoints are the running containers' attachments, by endpoint ID.
	Endpoints map[string]*endpointRecord `json:"endpoints,omitempty"`

	// FromBIP: the default bridge's subnet and gateway came from the
	// daemon's --bip (kept as is; picked anew when --bip is dropped).
	FromBIP bool `json:"fromBip,omitempty"`

	// A swarm network (driver overlay, overlay.go): Gateway is this
	// node's address on it, SwarmGateway the allocator's.
	Scope        string `json:"scope,omitempty"`
	Ingress      bool   `json:"ingress,omitempty"`
	VNI          int    `json:"vni,omitempty"`
	VXLANPort    int    `json:"vxlanPort,omitempty"`
	DataAddr     string `json:"dataAddr,omitempty"`
	SwarmGateway string `json:"swarmGateway,omitempty"`

	pool  *jnet.Pool
	pool6 *jnet.Pool // with EnableIPv6
	dns   *jnet.DNSServer
	up    bool // bridge and rules exist
}

// endpointRecord is one running container's attachment to a network.
type endpointRecord struct {
	ID          string   `json:"id"`
	ContainerID string   `json:"containerId"`
	IP          string   `json:"ip"`
	IP6         string   `json:"ip6,omitempty"` // on an IPv6 network
	MAC         string   `json:"mac"`
	Tap         string   `json:"tap"`
	IfName      string   `json:"ifName"`
	Aliases     []string `json:"aliases,omitempty"`
	// Hostname is the container's hostname at the endpoint's creation,
	// one of its DNS names (as dockerd).
	Hostname string `json:"hostname,omitempty"`
	// DefaultRoute: the container's default route goes through this
	// endpoint's gateway.
	DefaultRoute bool `json:"defaultRoute,omitempty"`
	// GwPriority is the endpoint's --gw-priority (API 1.48): the
	// endpoint that provides the default route is the one with the
	// highest (gatewayLess).
	GwPriority int `json:"gwPriority,omitempty"`
	// DNS are the container's --dns servers (forwarding targets of the
	// embedded DNS for queries from this endpoint).
	DNS []string `json:"dns,omitempty"`
	// Service and VIP: a swarm task's service and its virtual IP on an
	// overlay network (OptSwarmService, OptSwarmVIP).
	Service string `json:"service,omitempty"`
	VIP     string `json:"vip,omitempty"`
	// Ports are a task's ports published through the routing mesh, on
	// the ingress network (OptSwarmPorts).
	Ports string `json:"ports,omitempty"`
}

func (r *netRecord) predefined() bool {
	return r.Name == network.NetworkBridge || r.Name == network.NetworkHost || r.Name == network.NetworkNone
}

func (r *netRecord) isDefaultBridge() bool { return r.Name == network.NetworkBridge }

func (r *netRecord) owner() string { return jnet.OwnerPrefix + r.ID }

// gatewayPrefixes are the bridge's addresses: the IPv4 gateway and, on an
// IPv6 network, the IPv6 one, each with its subnet's length.
func (r *netRecord) gatewayPrefixes() []netip.Prefix {
	var out []netip.Prefix
	if r.pool != nil {
		out = append(out, netip.PrefixFrom(r.pool.Gateway(), r.pool.Subnet().Bits()))
	}
	if r.pool6 != nil {
		out = append(out, netip.PrefixFrom(r.pool6.Gateway(), r.pool6.Subnet().Bits()))
	}
	return out
}

// hasPool reports whether r has addresses to hand out (an IPv4 pool, or
// an IPv6 one on an IPv6-only network).
func (r *netRecord) hasPool() bool { return r.pool != nil || r.pool6 != nil }

// dnsAddr is where r's embedded DNS server listens and what resolv.conf
// names: the IPv4 gateway, or the IPv6 one on an IPv6-only network.
func (r *netRecord) dnsAddr() netip.Addr {
	gw := r.Gateway
	if r.NoIPv4 {
		gw = r.Gateway6
	}
	a, _ := netip.ParseAddr(gw)
	return a
}

func (r *netRecord) masquerade() bool {
	return !r.Internal && r.Options[optMasquerade] != "false"
}

// Controller owns the networks.
type Controller struct {
	cfg    Config
	names  ContainerNames
	events func(action events.Action, networkID string, attrs map[string]string)
	log    *logrus.Entry
	path   string
	// instance tags this daemon's taps: "jevm:<instance>:<endpoint ID>"
	// (a hash of the data root), so that leftovers can be told from other
	// daemons' taps.
	instance string
	// host is nil where host networking cannot be used (no iptables):
	// containers then start without NICs, as with --network none.
	host *jnet.Host

	mu    sync.Mutex
	peers OverlayPeers // the swarm's other nodes, in swarm mode
	// sealed carries the encrypted overlay networks' frames (nil while
	// there is none), with sealKeys, the swarm's data encryption keys.
	sealed   *secureoverlay.Tunnel
	sealKeys []secureoverlay.Key
	sealPrim uint64
	mesh     map[meshPort]*jnet.Proxy // the routing mesh's published ports
	nets     map[string]*netRecord
	ports    map[string][]jnet.PortBinding // running containers' bound ports
	proxies  map[string][]*jnet.Proxy
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
func (nm *Controller) unlock() {
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

// New loads the networks (making the predefined ones on the first
// start) and brings their bridges, rules and DNS servers up. Restore
// follows once the daemon knows which containers still run.
func New(cfg Config, o Options) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("network configuration: %w", err))
	}
	cfg.setDefaults()
	nm := &Controller{
		cfg: cfg, names: o.Names, events: o.Events, log: o.Log.WithField("part", "network"),
		path:     filepath.Join(o.DataRoot, "network", "state.json"),
		instance: instanceTag(o.DataRoot),
		nets:     map[string]*netRecord{},
		ports:    map[string][]jnet.PortBinding{},
		proxies:  map[string][]*jnet.Proxy{},
	}
	if err := os.MkdirAll(filepath.Dir(nm.path), 0o700); err != nil {
		return nil, err
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
		return nil, err
	}
	nm.mu.Lock()
	defer nm.unlock()
	if err := nm.setUpNetworksLocked(); err != nil {
		return nil, err
	}
	if err := nm.saveLocked(); err != nil {
		return nil, err
	}
	return nm, nil
}

// setUpNetworksLocked makes the predefined networks that are missing,
// applies the configuration to the default bridge and brings every
// network up.
func (nm *Controller) setUpNetworksLocked() error {
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
func newNetHost(cfg Config, euid int) (*jnet.Host, error) {
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
func (nm *Controller) bridgeDisabled(ref string) bool {
	return nm.cfg.NoDefaultBridge && (ref == network.NetworkBridge || ref == network.NetworkDefault)
}

// defaultBridgeNameOK reports whether the default bridge may keep the
// host bridge name: the admin's name if one was given, else jevm0 or one
// of its fallbacks.
func (nm *Controller) defaultBridgeNameOK(name string) bool {
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
func (nm *Controller) defaultBridgeChangeLocked(r *netRecord) (remove, name, addr string) {
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
// while endpoints are on it; Restore tries again once the
// endpoints of containers that no longer run are gone (final: the last
// try of this start, which warns if the change stays pending). It reports
// whether the record changed.
func (nm *Controller) syncDefaultBridgeLocked(final bool) (bool, error) {
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
func (nm *Controller) addressDefaultBridgeLocked(r *netRecord) error {
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

func (nm *Controller) load() error {
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
		if r.Driver == driverBridge || r.Driver == driverOverlay {
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
func (nm *Controller) buildPool(r *netRecord) error {
	r.pool = nil
	if r.NoIPv4 {
		return nm.buildPool6(r)
	}
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
	return nm.buildPool6(r)
}

// buildPool6 makes r's IPv6 pool (none without IPv6).
func (nm *Controller) buildPool6(r *netRecord) error {
	r.pool6 = nil
	if !r.EnableIPv6 || r.Subnet6 == "" {
		return nil
	}
	p6, err := buildFamilyPool(r.Subnet6, r.IPRange6, r.Gateway6, r.Aux6, r.LastIP6)
	if err != nil {
		return err
	}
	for _, ep := range r.Endpoints {
		if ip, err := netip.ParseAddr(ep.IP6); err == nil {
			_ = p6.Request(ip)
		}
	}
	r.pool6 = p6
	r.Gateway6 = p6.Gateway().String()
	return nil
}

// buildFamilyPool makes the pool of an IPv6 subnet from its record.
func buildFamilyPool(subnet, ipRange, gateway string, aux map[string]string, last string) (*jnet.Pool, error) {
	sub, err := netip.ParsePrefix(subnet)
	if err != nil {
		return nil, err
	}
	var rng netip.Prefix
	if ipRange != "" {
		if rng, err = netip.ParsePrefix(ipRange); err != nil {
			return nil, err
		}
	}
	var gw netip.Addr
	if gateway != "" {
		if gw, err = netip.ParseAddr(gateway); err != nil {
			return nil, err
		}
	}
	p, err := jnet.NewPool(sub, rng, gw)
	if err != nil {
		return nil, err
	}
	for _, a := range aux {
		if ip, err := netip.ParseAddr(a); err == nil {
			_ = p.Reserve(ip)
		}
	}
	if ip, err := netip.ParseAddr(last); err == nil {
		p.SetLast(ip)
	}
	return p, nil
}

func (nm *Controller) saveLocked() error {
	st := netStateFile{Networks: nm.sortedLocked(), Ports: nm.ports}
	for _, r := range st.Networks {
		if r.pool != nil && r.pool.Last().IsValid() {
			r.LastIP = r.pool.Last().String()
		}
		if r.pool6 != nil && r.pool6.Last().IsValid() {
			r.LastIP6 = r.pool6.Last().String()
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

func (nm *Controller) sortedLocked() []*netRecord {
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

func (nm *Controller) byNameLocked(name string) *netRecord {
	for _, r := range nm.nets {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// getLocked resolves a network as dockerd does: full ID, then name, then a
// unique ID prefix.
func (nm *Controller) getLocked(ref string) (*netRecord, error) {
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

func (nm *Controller) createPredefinedLocked(name string) error {
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
func (nm *Controller) takenLocked(except *netRecord) []netip.Prefix {
	var taken []netip.Prefix
	own := map[string]bool{}
	for _, r := range nm.nets {
		if r.Bridge != "" {
			own[r.Bridge] = true
		}
		if r == except {
			continue
		}
		for _, s := range []string{r.Subnet, r.Subnet6} {
			if p, err := netip.ParsePrefix(s); err == nil {
				taken = append(taken, p)
			}
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

// pickSubnetLocked is the first free subnet of the IPv4 pools for r. As
// dockerd 28 (libnetwork's ErrNoMoreSubnets): when every pool is taken the
// error is "all predefined address pools have been fully subnetted", an
// invalid parameter (400).
func (nm *Controller) pickSubnetLocked(r *netRecord) (netip.Prefix, error) {
	sub, err := jnet.PickPoolSubnet(nm.cfg.pools(), nm.takenLocked(r))
	if err != nil {
		return netip.Prefix{}, errdefs.InvalidParameter(err)
	}
	return sub, nil
}

// pickSubnet6Locked is the first free /64 of the IPv6 pools for r: the
// admin's IPv6 --default-address-pool entries, else (as dockerd) a ULA
// /48 derived from this daemon.
func (nm *Controller) pickSubnet6Locked(r *netRecord) (netip.Prefix, error) {
	sub, err := jnet.PickPoolSubnet6(nm.pools6(), nm.takenLocked(r))
	if err != nil {
		return netip.Prefix{}, errdefs.InvalidParameter(err)
	}
	return sub, nil
}

func (nm *Controller) pools6() []AddressPool {
	var out []AddressPool
	for _, p := range nm.cfg.DefaultAddressPools {
		if p.Is6() {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = []AddressPool{jnet.ULAPool(nm.instance)}
	}
	return out
}

// bringUpLocked makes r's bridge, addresses, rules and DNS server.
func (nm *Controller) bringUpLocked(r *netRecord) error {
	if (r.Driver != driverBridge && r.Driver != driverOverlay) || nm.host == nil || !r.hasPool() {
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
	if _, exists := jnet.LinkOwner(r.Bridge); !exists && r.pool != nil && !r.UserIPAM && !r.FromBIP && len(r.Endpoints) == 0 {
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
	if err := nm.host.EnsureBridge(r.Bridge, r.owner(), r.gatewayPrefixes(), r.mtu(nm.cfg.MTU)); err != nil {
		return err
	}
	spec := jnet.FirewallSpec{Bridge: r.Bridge, Internal: r.Internal, Masquerade: r.masquerade()}
	if r.pool != nil {
		spec.Subnet = r.pool.Subnet()
	}
	if r.pool6 != nil {
		spec.Subnet6 = r.pool6.Subnet()
	}
	if err := nm.host.SetupFirewall(spec); err != nil {
		return err
	}
	if nm.wantIPForward(r) {
		if err := jnet.EnableIPForward(); err != nil {
			nm.log.WithError(err).Warn("cannot enable IPv4 forwarding: containers cannot reach outside the host")
		}
		if r.pool6 != nil {
			// As dockerd for an IPv6 network.
			if err := jnet.EnableIP6Forward(); err != nil {
				nm.log.WithError(err).Warn("cannot enable IPv6 forwarding: containers cannot reach outside the host over IPv6")
			}
		}
	}
	if r.Driver == driverOverlay {
		if err := nm.bringUpOverlayLocked(r); err != nil {
			return err
		}
	}
	r.up = true
	if !r.isDefaultBridge() && r.dns == nil {
		s, err := jnet.StartDNS(r.dnsAddr(), nm.cfg.DNSPort, &netNames{nm: nm, id: r.ID}, nm.log.WithField("network", r.Name))
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
func (nm *Controller) wantIPForward(r *netRecord) bool {
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
func (nm *Controller) bridgeNameLocked(r *netRecord) (string, error) {
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
func (nm *Controller) bringDownLocked(r *netRecord) {
	if r.dns != nil {
		nm.closingDNS = append(nm.closingDNS, r.dns)
		r.dns = nil
	}
	if nm.host == nil || r.Bridge == "" {
		return
	}
	if r.Driver == driverOverlay {
		if r.encrypted() {
			nm.unsealLocked(r)
		}
		if err := jnet.DeleteLink(vxlanName(r), r.owner()); err != nil {
			nm.log.WithError(err).WithField("network", r.Name).Warn("remove the VXLAN device")
		}
	}
	if err := nm.host.TeardownFirewall(r.Bridge); err != nil {
		nm.log.WithError(err).WithField("network", r.Name).Warn("remove firewall rules")
	}
	if err := jnet.DeleteLink(r.Bridge, r.owner()); err != nil {
		nm.log.WithError(err).WithField("network", r.Name).Warn("remove bridge")
	}
	r.up = false
}

// Restore runs after the daemon restored its containers (re-adopting the
// running VMs, whose endpoints the state file kept): endpoints of
// containers that no longer run (not in running) are released (their taps
// removed), a pending default bridge change applies, and the port proxies
// of the running ones are opened again.
func (nm *Controller) Restore(running map[string]bool) {
	nm.mu.Lock()
	defer nm.unlock()
	for _, r := range nm.nets {
		for _, ep := range r.Endpoints {
			if !running[ep.ContainerID] {
				nm.releaseEndpointLocked(r, ep)
			}
		}
	}
	nm.removeIdleOverlaysLocked()
	// A configuration change New kept back because of
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

func (nm *Controller) tapOwnerPrefix() string { return jnet.OwnerPrefix + nm.instance + ":" }

func (nm *Controller) tapOwner(ep *endpointRecord) string { return nm.tapOwnerPrefix() + ep.ID }

// instanceTag is a short hash of the data root.
func instanceTag(dataRoot string) string {
	abs, err := filepath.Abs(dataRoot)
	if err != nil {
		abs = dataRoot
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:])[:12]
}

// Shutdown closes the proxies and DNS servers and removes the bridges
// and rules that no running container needs; running containers keep
// their taps and bridges for the next daemon.
func (nm *Controller) Shutdown() {
	nm.mu.Lock()
	defer nm.unlock()
	for id, list := range nm.proxies {
		for _, p := range list {
			nm.closingProxies = append(nm.closingProxies, p)
		}
		delete(nm.proxies, id)
	}
	for mp, p := range nm.mesh {
		nm.closingProxies = append(nm.closingProxies, p)
		delete(nm.mesh, mp)
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
	if nm.sealed != nil {
		// The encrypted networks' frames stop with the daemon (their
		// taps stay, and the next start takes them up again).
		nm.sealed.Close()
		nm.sealed = nil
	}
	_ = nm.saveLocked()
}

// FillInfo fills /info's DefaultAddressPools (the configured pools; empty
// when the built-in ones apply, as dockerd) and FirewallBackend (reported
// while jevm manages iptables rules: not with --iptables=false, nor
// without host networking).
func (nm *Controller) FillInfo(info *system.Info) {
	for _, p := range nm.cfg.DefaultAddressPools {
		info.DefaultAddressPools = append(info.DefaultAddressPools, system.NetworkAddressPool{Base: p.Base.String(), Size: p.Size})
	}
	if nm.host != nil && nm.host.Firewall() {
		info.FirewallBackend = &system.FirewallInfo{Driver: "iptables"}
	}
}

// HostsFile is the /etc/hosts of a container without a network address:
// localhost, its hostname on 127.0.1.1, its --add-host entries.
func HostsFile(c *Container) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	fmt.Fprintf(&b, "127.0.1.1\t%s\n", c.Config.Hostname)
	for _, hosts := range [][]string{c.HostConfig.ExtraHosts, c.LinkHosts} {
		for _, h := range hosts {
			if name, ip, ok := strings.Cut(h, ":"); ok {
				fmt.Fprintf(&b, "%s\t%s\n", ip, name)
			}
		}
	}
	return b.String()
}

func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}
