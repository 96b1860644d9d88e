package controller

// A container's endpoints: Prepare at create, Attach at start, Detach at
// exit, inspect's settings, /etc/hosts and resolv.conf, and the names the
// embedded DNS servers answer.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"

	jnet "github.com/jevm/jevm/network"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Attachment is what a starting container gets from its networks: the
// VM's NICs, the guest's interfaces (eth0, eth1, ...), /etc/hosts and
// /etc/resolv.conf.
type Attachment struct {
	NICs       []vmbackend.NICSpec
	Interfaces []agentproto.InterfaceConfig
	Hosts      string
	ResolvConf string
}

// containerNetworks lists the networks c is configured for, the
// NetworkMode network first.
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

// Attach creates c's endpoints (addresses, MACs, taps on the bridges)
// and opens its published ports, at the container's start. On error
// nothing is left.
func (nm *Controller) Attach(ctx context.Context, c *Container) (att *Attachment, retErr error) {
	att = &Attachment{Hosts: HostsFile(c)}
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
	// Every network must exist before any endpoint is made: one named at
	// create may never have been made, or be gone.
	type named struct {
		name string
		r    *netRecord
	}
	nets := make([]named, 0, len(names))
	for _, name := range names {
		if nm.bridgeDisabled(name) {
			continue // -b none: no network, as dockerd
		}
		r, err := nm.getLocked(name)
		if err != nil {
			return nil, err
		}
		nets = append(nets, named{name, r})
	}
	type made struct {
		ep *endpointRecord
		r  *netRecord
	}
	var eps []made
	for _, n := range nets {
		name, r := n.name, n.r
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
		ep, err := nm.newEndpointLocked(c, r, endpointConfig(c, name), fmt.Sprintf("eth%d", len(eps)), false)
		if err != nil {
			return nil, err
		}
		eps = append(eps, made{ep, r})
	}
	// The default route goes through the endpoint dockerd would pick
	// (gateway priority, then non-internal, then dual stack, then the
	// network's name).
	gwEP, _ := nm.gatewayEndpointLocked(c.ID)
	if gwEP != nil {
		gwEP.DefaultRoute = true
	}
	var primary *endpointRecord
	var primaryNet *netRecord
	for _, m := range eps {
		if primary == nil || m.ep == gwEP {
			primary, primaryNet = m.ep, m.r
		}
		att.NICs = append(att.NICs, vmbackend.NICSpec{TapName: m.ep.Tap, MAC: m.ep.MAC})
		att.Interfaces = append(att.Interfaces, m.r.interfaceConfig(m.ep, nm.cfg.MTU))
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
	for _, m := range eps {
		if m.r.Driver == driverOverlay {
			nm.overlayChangedLocked(true)
			break
		}
	}
	return att, nil
}

// Detach releases the endpoints and proxies of container cid (its VM is
// gone).
func (nm *Controller) Detach(cid string) {
	nm.mu.Lock()
	defer nm.unlock()
	overlay := false
	for _, r := range nm.nets {
		for _, ep := range r.Endpoints {
			overlay = overlay || (ep.ContainerID == cid && r.Driver == driverOverlay)
		}
	}
	if nm.detachLocked(cid) {
		if overlay {
			// The other nodes forget its addresses; the VIPs and the
			// routing mesh lose it as a backend.
			nm.removeIdleOverlaysLocked()
			nm.overlayChangedLocked(true)
		}
		_ = nm.saveLocked()
	}
}

// Announce tells this host where container cid's addresses are (a guest
// that arrived by live migration, with the addresses and MACs it had):
// a neighbour entry for each on its network's bridge.
func (nm *Controller) Announce(cid string) {
	type neigh struct {
		bridge, mac string
		ip          netip.Addr
	}
	var ns []neigh
	nm.mu.Lock()
	for _, r := range nm.nets {
		for _, ep := range r.Endpoints {
			if ep.ContainerID != cid || r.Bridge == "" {
				continue
			}
			for _, s := range []string{ep.IP, ep.IP6} {
				if a, err := netip.ParseAddr(s); err == nil {
					ns = append(ns, neigh{r.Bridge, ep.MAC, a})
				}
			}
		}
	}
	nm.mu.Unlock()
	for _, n := range ns {
		if err := jnet.AnnounceNeighbor(n.bridge, n.ip, n.mac); err != nil {
			nm.log.WithError(err).Warn("announce a migrated container's address")
		}
	}
}

func (nm *Controller) detachLocked(cid string) bool {
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

func (nm *Controller) newEndpointLocked(c *Container, r *netRecord, es *network.EndpointSettings, ifName string, defaultRoute bool) (*endpointRecord, error) {
	if !r.hasPool() {
		return nil, fmt.Errorf("network %s has no usable address pool", r.Name)
	}
	if !r.up {
		if err := nm.bringUpLocked(r); err != nil {
			return nil, fmt.Errorf("network %s: %w", r.Name, err)
		}
	}
	if err := swarmAddress(r, es); err != nil {
		return nil, err
	}
	var ip netip.Addr
	if r.pool == nil {
		// IPv6 only: no IPv4 address.
	} else if es.IPAMConfig != nil && es.IPAMConfig.IPv4Address != "" {
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
	var ip6 netip.Addr
	if r.pool6 != nil {
		if es.IPAMConfig != nil && es.IPAMConfig.IPv6Address != "" {
			a, err := netip.ParseAddr(es.IPAMConfig.IPv6Address)
			if err == nil {
				err = r.pool6.Request(a)
			}
			if err != nil {
				r.releaseIP(ip)
				return nil, errdefs.Forbidden(fmt.Errorf("failed to set up container networking: %w", err))
			}
			ip6 = a
		} else {
			a, err := r.pool6.Allocate()
			if err != nil {
				r.releaseIP(ip)
				return nil, errdefs.Forbidden(err)
			}
			ip6 = a
		}
	}
	mac := jnet.RandomMAC() // IPv6 only, as dockerd
	if ip.IsValid() {
		mac = jnet.MACFor(ip)
	}
	if es.MacAddress != "" {
		mac = strings.ToLower(es.MacAddress)
	}
	id := newID()
	ipStr := ""
	if ip.IsValid() {
		ipStr = ip.String()
	}
	ep := &endpointRecord{
		ID: id, ContainerID: c.ID, IP: ipStr, MAC: mac, Tap: "tap" + id[:12], IfName: ifName,
		Aliases: append([]string(nil), es.Aliases...), DefaultRoute: defaultRoute, GwPriority: es.GwPriority,
		DNS: append([]string(nil), c.HostConfig.DNS...),
	}
	if ip6.IsValid() {
		ep.IP6 = ip6.String()
	}
	if r.Driver == driverOverlay {
		ep.Service, ep.VIP, ep.Ports = es.DriverOpts[OptSwarmService], es.DriverOpts[OptSwarmVIP], es.DriverOpts[OptSwarmPorts]
	}
	if c.Config != nil {
		ep.Hostname = c.Config.Hostname
	}
	if err := jnet.CreateTap(ep.Tap, nm.tapOwner(ep), r.Bridge, r.mtu(nm.cfg.MTU)); err != nil {
		r.releaseIP(ip)
		if ip6.IsValid() {
			r.pool6.Release(ip6)
		}
		return nil, err
	}
	r.Endpoints[id] = ep
	return ep, nil
}

func (nm *Controller) releaseEndpointLocked(r *netRecord, ep *endpointRecord) {
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
	if r.pool6 != nil {
		if ip, err := netip.ParseAddr(ep.IP6); err == nil {
			r.pool6.Release(ip)
		}
	}
	delete(r.Endpoints, ep.ID)
}

// gatewayOf is the address host-gateway names for a container whose
// primary network is r: its IPv4 gateway, or its IPv6 one on an IPv6-only
// network ("" without a network).
func gatewayOf(r *netRecord) string {
	switch {
	case r == nil:
		return ""
	case r.Gateway != "" && !r.NoIPv4:
		return r.Gateway
	default:
		return r.Gateway6
	}
}

// releaseIP gives an IPv4 address back (none on an IPv6-only network).
func (r *netRecord) releaseIP(ip netip.Addr) {
	if r.pool != nil && ip.IsValid() {
		r.pool.Release(ip)
	}
}

func (r *netRecord) interfaceConfig(ep *endpointRecord, mtu int) agentproto.InterfaceConfig {
	ic := agentproto.InterfaceConfig{Name: ep.IfName, MAC: ep.MAC, MTU: r.mtu(mtu)}
	if ep.IP != "" && r.pool != nil {
		ic.Addresses = append(ic.Addresses, netip.PrefixFrom(netip.MustParseAddr(ep.IP), r.pool.Subnet().Bits()).String())
	}
	if ep.IP6 != "" && r.pool6 != nil {
		ic.Addresses = append(ic.Addresses, netip.PrefixFrom(netip.MustParseAddr(ep.IP6), r.pool6.Subnet().Bits()).String())
	}
	if ep.DefaultRoute {
		if ep.IP != "" {
			ic.Gateway = r.Gateway
		}
		if ep.IP6 != "" && r.pool6 != nil {
			ic.Gateway6 = r.Gateway6
		}
	}
	return ic
}

// startProxiesLocked opens the port proxies of container cid.
func (nm *Controller) startProxiesLocked(cid string, bindings []jnet.PortBinding) ([]jnet.PortBinding, error) {
	backend := func() (netip.Addr, bool) {
		nm.mu.Lock()
		defer nm.mu.Unlock()
		ep, _ := nm.primaryLocked(cid)
		if ep == nil {
			return netip.Addr{}, false
		}
		s := ep.IP
		if s == "" {
			s = ep.IP6 // IPv6 only
		}
		a, err := netip.ParseAddr(s)
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

// gatewayEndpointLocked is the endpoint of container cid that provides
// its default routes, as dockerd 28 chooses it (libnetwork's endpoint
// order): the highest GwPriority; then a non-internal network; then one
// with both IPv4 and IPv6; then the network whose name sorts first. Nil
// if the best is on an internal network (no default route) or there is
// no endpoint.
func (nm *Controller) gatewayEndpointLocked(cid string) (*endpointRecord, *netRecord) {
	var best *endpointRecord
	var bestNet *netRecord
	for _, r := range nm.nets {
		for _, ep := range r.Endpoints {
			if ep.ContainerID == cid && (best == nil || gatewayLess(ep, r, best, bestNet)) {
				best, bestNet = ep, r
			}
		}
	}
	if best == nil || bestNet.Internal {
		return nil, nil
	}
	return best, bestNet
}

// gatewayLess reports whether endpoint a (on network ra) comes before b
// (on rb) for providing the default route.
func gatewayLess(a *endpointRecord, ra *netRecord, b *endpointRecord, rb *netRecord) bool {
	if a.GwPriority != b.GwPriority {
		return a.GwPriority > b.GwPriority
	}
	if ra.Internal != rb.Internal {
		return rb.Internal
	}
	gws := func(ep *endpointRecord) int {
		if ep.IP6 != "" {
			return 2
		}
		return 1
	}
	if gws(a) != gws(b) {
		return gws(a) > gws(b)
	}
	return ra.Name < rb.Name
}

// primaryLocked is the endpoint published ports and the legacy inspect
// fields use: the one with the default route, else the lowest interface.
func (nm *Controller) primaryLocked(cid string) (*endpointRecord, *netRecord) {
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
	h := HostsFile(c)
	if ep == nil {
		return h
	}
	name := c.Config.Hostname
	if c.Config.Domainname != "" {
		name = c.Config.Hostname + "." + c.Config.Domainname + "\t" + c.Config.Hostname
	}
	own := ""
	if ep.IP != "" {
		own = ep.IP + "\t" + name + "\n"
	}
	if ep.IP6 != "" {
		// As dockerd: the IPv6 address names the container too.
		own += ep.IP6 + "\t" + name + "\n"
	}
	h = strings.Replace(h, "127.0.1.1\t"+c.Config.Hostname+"\n", own, 1)
	if gw := gatewayOf(r); gw != "" {
		var out []string
		for _, line := range strings.SplitAfter(h, "\n") {
			if rest, ok := strings.CutPrefix(line, "host-gateway\t"); ok {
				line = gw + "\t" + rest
			}
			out = append(out, line)
		}
		h = strings.Join(out, "")
	}
	return h
}

// hostResolv is the host's resolv.conf, re-read at most every 5 s.
func (nm *Controller) hostResolv() jnet.ResolvConf {
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
func (nm *Controller) resolvConfFor(c *Container, primary *netRecord) string {
	host := nm.hostResolv()
	rc := jnet.ResolvConf{Search: host.Search, Options: host.Options}
	dns, search, opts := nm.containerDNS(c)
	switch {
	case primary != nil && !primary.isDefaultBridge() && primary.dns != nil:
		rc.Nameservers = []string{primary.dnsAddr().String()}
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
	if len(rc.Nameservers) == 1 && primary != nil && primary.dns != nil && rc.Nameservers[0] == primary.dnsAddr().String() {
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
func (nm *Controller) containerDNS(c *Container) (dns, search, opts []string) {
	pick := func(own, def []string) []string {
		if len(own) > 0 {
			return own
		}
		return def
	}
	return pick(c.HostConfig.DNS, nm.cfg.DNS), pick(c.HostConfig.DNSSearch, nm.cfg.DNSSearch), pick(c.HostConfig.DNSOptions, nm.cfg.DNSOptions)
}

// dnsNames are the names ep answers to on a user network, in dockerd's
// order (the first one is the PTR answer): the container's name, its
// aliases, its short ID and its hostname, without repeats.
func dnsNames(c *Container, ep *endpointRecord) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range append(append([]string{c.Name}, ep.Aliases...), c.ID[:12], ep.Hostname) {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// netNames answers the embedded DNS server of one network.
type netNames struct {
	nm *Controller
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
	if r.Driver == driverOverlay {
		return nm.overlayLookupLocked(r, name)
	}
	cid := nm.names.IDByName(name)
	var out []netip.Addr
	for _, ep := range r.Endpoints {
		// DNS names are case-insensitive, container names are not: a
		// container "Web" answers to "web" (the query is lower case).
		hit := ep.ContainerID == cid || (len(name) == 12 && strings.HasPrefix(ep.ContainerID, name)) || ep.ContainerID == name ||
			strings.EqualFold(nm.names.NameByID(ep.ContainerID), name)
		// As dockerd: a container's hostname is one of its DNS names.
		hit = hit || (ep.Hostname != "" && strings.EqualFold(ep.Hostname, name))
		for _, a := range ep.Aliases {
			hit = hit || strings.EqualFold(a, name)
		}
		if hit {
			for _, s := range []string{ep.IP, ep.IP6} {
				if a, err := netip.ParseAddr(s); err == nil {
					out = append(out, a)
				}
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
	if r != nil && r.Driver == driverOverlay {
		defer nm.mu.Unlock()
		return nm.overlayNameOfLocked(r, a)
	}
	var cid string
	if r != nil {
		for _, ep := range r.Endpoints {
			if ep.IP == a.String() || (ep.IP6 != "" && ep.IP6 == a.String()) {
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
	name := nm.names.NameByID(cid)
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
		if ep.IP == client.String() || (ep.IP6 != "" && ep.IP6 == client.String()) {
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

func errHostNetwork() error {
	return errdefs.InvalidParameter(errors.New("--network host is not supported by jevm: every container runs in its own VM, which cannot share the host's network stack (publish ports with -p instead)"))
}

// Prepare validates and normalises a new container's network settings:
// NetworkMode defaults to "bridge" and names the network by name,
// EndpointsConfig gets an entry for it, and what jevm cannot do is
// refused with a clear 400.
func (nm *Controller) Prepare(hc *container.HostConfig, cfg *container.Config, nc *network.NetworkingConfig) (*network.NetworkingConfig, error) {
	return prepare(nm, hc, cfg, nc)
}

// PrepareUnmanaged normalises a container's network settings where no
// controller runs (a daemon without networking, in unit tests): the
// mode's network is recorded as given, without lookups.
func PrepareUnmanaged(hc *container.HostConfig, nc *network.NetworkingConfig) (*network.NetworkingConfig, error) {
	return prepare(nil, hc, nil, nc)
}

func prepare(nm *Controller, hc *container.HostConfig, cfg *container.Config, nc *network.NetworkingConfig) (*network.NetworkingConfig, error) {
	mode := string(hc.NetworkMode)
	if mode == "" || mode == network.NetworkDefault {
		mode = network.NetworkBridge
	}
	switch {
	case mode == network.NetworkHost:
		return nil, errHostNetwork()
	case strings.HasPrefix(mode, "container:"):
		// A pod: the container runs in the other container's VM and
		// shares its network (daemon/pods.go); it has no endpoints of
		// its own. The daemon checked the combinations dockerd refuses.
		hc.NetworkMode = container.NetworkMode(mode)
		return &network.NetworkingConfig{}, nil
	}
	if nc == nil {
		nc = &network.NetworkingConfig{}
	}
	eps := map[string]*network.EndpointSettings{}
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
	} else if primary, err := nm.getLocked(mode); errdefs.IsNotFound(err) {
		// As dockerd: the network may be made after the create; the
		// mode is kept as given and the start fails if it still does
		// not exist.
	} else if err != nil {
		return nil, err
	} else {
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
		if errdefs.IsNotFound(err) {
			// Likewise a network named in EndpointsConfig: kept by the
			// given name.
			if es == nil {
				es = &network.EndpointSettings{}
			}
			eps[k] = es
			continue
		}
		if err != nil {
			return nil, err
		}
		if es == nil {
			es = &network.EndpointSettings{}
		}
		if r.Driver == driverOverlay {
			if err := checkOverlayEndpoint(r, es); err != nil {
				return nil, err
			}
		} else if r.Driver != driverBridge {
			return nil, errdefs.InvalidParameter(fmt.Errorf("container cannot be connected to network %s (driver %s) and to other networks", r.Name, r.Driver))
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
		a, err := netip.ParseAddr(es.IPAMConfig.IPv6Address)
		if err != nil || !a.Is6() || a.Is4In6() {
			return errdefs.InvalidParameter(fmt.Errorf("invalid IPv6 address: %s", es.IPAMConfig.IPv6Address))
		}
		if !r.UserIPAM6 {
			return errdefs.InvalidParameter(errors.New("user specified IP address is supported only when connecting to networks with user configured subnets"))
		}
		if r.pool6 != nil && !r.pool6.Subnet().Contains(a) {
			return errdefs.InvalidParameter(fmt.Errorf("invalid endpoint settings:\nno configured subnet or ip-range contain the IP address %s", a))
		}
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

// FillUnmanagedSettings fills what inspect shows of c's networking without a
// controller (daemons built by hand in unit tests): the mode, and empty
// maps where dockerd never sends null.
func FillUnmanagedSettings(c *Container, hc *container.HostConfig, ns *container.NetworkSettings) {
	mode := string(c.HostConfig.NetworkMode)
	if mode == "" || mode == network.NetworkDefault {
		mode = network.NetworkBridge
	}
	hc.NetworkMode = container.NetworkMode(mode)
	if ns.Networks == nil {
		ns.Networks = map[string]*network.EndpointSettings{}
	}
	if ns.Ports == nil {
		ns.Ports = map[nat.Port][]nat.PortBinding{}
	}
}

// FillSettings fills inspect's NetworkSettings (networks, endpoints,
// ports) and NetworkMode for c.
func (nm *Controller) FillSettings(c *Container, hc *container.HostConfig, ns *container.NetworkSettings) {
	FillUnmanagedSettings(c, hc, ns)
	nm.mu.Lock()
	defer nm.unlock()
	running := c.Running
	if running {
		ns.Ports = jnet.PortMap(nm.ports[c.ID], c.Config.ExposedPorts)
	}
	if string(hc.NetworkMode) == network.NetworkNone {
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
			} else if errdefs.IsNotFound(err) {
				// A network named at create that does not exist (yet):
				// listed as given, as dockerd does; the start fails.
				es := endpointConfig(c, name).Copy()
				es.NetworkID, es.EndpointID, es.Gateway, es.IPAddress, es.IPPrefixLen, es.DNSNames = "", "", "", "", 0, nil
				ns.Networks[name] = es
			}
			continue
		}
		es := endpointConfig(c, name).Copy()
		es.NetworkID = r.ID
		es.EndpointID, es.Gateway, es.IPAddress, es.IPPrefixLen, es.DNSNames = "", "", "", 0, nil
		es.GlobalIPv6Address, es.GlobalIPv6PrefixLen, es.IPv6Gateway = "", 0, ""
		if !running {
			es.MacAddress = endpointConfig(c, name).MacAddress
		}
		for _, ep := range r.Endpoints {
			if ep.ContainerID != c.ID || !running {
				continue
			}
			es.EndpointID = ep.ID
			if ep.IP != "" && r.pool != nil {
				es.Gateway = r.Gateway
				es.IPAddress = ep.IP
				es.IPPrefixLen = r.pool.Subnet().Bits()
			}
			es.MacAddress = ep.MAC
			if ep.IP6 != "" && r.pool6 != nil {
				es.GlobalIPv6Address = ep.IP6
				es.GlobalIPv6PrefixLen = r.pool6.Subnet().Bits()
				es.IPv6Gateway = r.Gateway6
			}
			if !r.isDefaultBridge() {
				es.DNSNames = dnsNames(c, ep)
			}
			if r.isDefaultBridge() || (ep.DefaultRoute && ns.IPAddress == "" && r.pool != nil) {
				ns.DefaultNetworkSettings = container.DefaultNetworkSettings{
					EndpointID: ep.ID, Gateway: r.Gateway, IPAddress: ep.IP,
					IPPrefixLen: r.pool.Subnet().Bits(), MacAddress: ep.MAC,
					GlobalIPv6Address: es.GlobalIPv6Address, GlobalIPv6PrefixLen: es.GlobalIPv6PrefixLen,
					IPv6Gateway: es.IPv6Gateway,
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

// IPOn is the address of container cid's endpoint on network ref (a name
// or ID), for legacy links.
func (nm *Controller) IPOn(cid, ref string) (string, bool) {
	nm.mu.Lock()
	defer nm.unlock()
	r, err := nm.getLocked(ref)
	if err != nil {
		return "", false
	}
	for _, ep := range r.Endpoints {
		if ep.ContainerID == cid && ep.IP != "" {
			return ep.IP, true
		}
	}
	return "", false
}
