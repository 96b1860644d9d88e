package controller

// Overlay networks (swarm mode). A swarm network lives in the managers'
// store; a node makes it here when one of its tasks needs it
// (EnsureOverlay, from the swarm executor) and removes it when the last of
// its endpoints goes. On the node it is a bridge like a user network's,
// with a VXLAN port to the other nodes (network/vxlan_linux.go), and:
//   - the bridge's address is the node's own address on the network
//     (SwarmKit's node attachment), unique per node: the VMs' gateway out
//     of the host (masqueraded, as from a user network) and their DNS
//     server;
//   - the task addresses are SwarmKit's (the endpoint's IPAMConfig);
//   - the other nodes' endpoints come from OverlayPeers (the swarm's
//     gossip): they are programmed on the VXLAN device and answered by
//     the network's DNS server, with the services' names;
//   - a service's virtual IP is balanced by the node (vip_linux.go).

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	jnet "github.com/jevm/jevm/network"
	"github.com/jevm/jevm/network/secureoverlay"
)

const driverOverlay = "overlay"

// Endpoint driver options the swarm executor sets on a task's endpoint:
// the task's service and, in VIP mode, its virtual IP on the network.
const (
	OptSwarmService = "com.jevm.swarm.service"
	OptSwarmVIP     = "com.jevm.swarm.vip"
	// OptSwarmPorts, on a task's ingress endpoint: its service's ports
	// published through the routing mesh, "proto:target:published"
	// separated by commas.
	OptSwarmPorts = "com.jevm.swarm.ports"
	// OptSwarmAttachment, on a container's endpoint on an attachable
	// swarm network: the swarm's attachment (its address came with it).
	OptSwarmAttachment = "com.jevm.swarm.attachment"
)

// OverlaySpec is a swarm network as this node makes it.
type OverlaySpec struct {
	ID, Name                      string
	Labels, Options               map[string]string
	Internal, Attachable, Ingress bool
	Subnet                        netip.Prefix
	// Gateway is the allocator's gateway address: reserved, shown by
	// inspect.
	Gateway netip.Addr
	// NodeAddr is this node's address on the network.
	NodeAddr netip.Addr
	// VNI and VXLANPort are the network's VXLAN ID and the swarm's UDP
	// port; DataAddr is this node's data path address.
	VNI       int
	VXLANPort int
	DataAddr  netip.Addr
}

// OverlayEndpoint is an endpoint on an overlay network, of any node: a
// container (a task or not), or a node's own address (Node set, no
// names).
type OverlayEndpoint struct {
	Network string   `json:"n"`
	IP      string   `json:"ip"`
	Name    string   `json:"name,omitempty"`
	Aliases []string `json:"aliases,omitempty"`
	Service string   `json:"svc,omitempty"`
	VIP     string   `json:"vip,omitempty"`
	// Ports are, on the ingress network, the service's ports published
	// through the routing mesh (OptSwarmPorts).
	Ports string `json:"ports,omitempty"`
	// NodeAddr marks a node's own address on the network.
	NodeAddr bool `json:"node,omitempty"`
	// Host is the data address of the endpoint's node (filled in by
	// the receiver).
	Host string `json:"-"`
}

// OverlayPeers is what the swarm tells this node about the others.
type OverlayPeers interface {
	// Publish announces this node's endpoints; it must not block.
	Publish(eps []OverlayEndpoint)
	// Remote lists the other nodes' endpoints on network id.
	Remote(id string) []OverlayEndpoint
}

// SetOverlayPeers connects the controller to the swarm's gossip (nil
// when the node leaves).
func (nm *Controller) SetOverlayPeers(p OverlayPeers) {
	nm.mu.Lock()
	defer nm.unlock()
	nm.peers = p
	if p == nil && nm.removeIdleOverlaysLocked() {
		_ = nm.saveLocked()
	}
	nm.overlayChangedLocked(true)
}

// OverlayChanged is called when other nodes' endpoints changed: the
// VXLAN devices and VIP rules follow.
func (nm *Controller) OverlayChanged() {
	nm.mu.Lock()
	defer nm.unlock()
	nm.overlayChangedLocked(false)
}

func (nm *Controller) overlayChangedLocked(publish bool) {
	for _, r := range nm.nets {
		if r.Driver == driverOverlay && r.up {
			nm.syncOverlayLocked(r)
		}
	}
	nm.syncMeshLocked()
	if publish {
		nm.publishLocked()
	}
}

// EnsureOverlay makes (or keeps) swarm network spec on this node.
func (nm *Controller) EnsureOverlay(spec OverlaySpec) error {
	if !spec.Subnet.Addr().Is4() || !spec.NodeAddr.IsValid() || !spec.Subnet.Contains(spec.NodeAddr) {
		return fmt.Errorf("overlay network %s: node address %s not in subnet %s", spec.Name, spec.NodeAddr, spec.Subnet)
	}
	nm.mu.Lock()
	defer nm.unlock()
	if nm.host == nil {
		return fmt.Errorf("overlay network %s: host networking is unavailable", spec.Name)
	}
	r := nm.nets[spec.ID]
	if r != nil && r.Driver != driverOverlay {
		return fmt.Errorf("network %s exists and is not an overlay network", spec.ID)
	}
	if r != nil && (r.Subnet != spec.Subnet.String() || r.VNI != spec.VNI || r.DataAddr != spec.DataAddr.String() ||
		(r.Gateway != spec.NodeAddr.String() && len(r.Endpoints) == 0)) {
		// Made again in the swarm, or this node's address changed while
		// nothing used it here: start afresh.
		if len(r.Endpoints) > 0 {
			return fmt.Errorf("overlay network %s changed in the swarm while this node's containers use it", spec.Name)
		}
		nm.bringDownLocked(r)
		delete(nm.nets, r.ID)
		r = nil
	}
	if r == nil {
		if o := nm.byNameLocked(spec.Name); o != nil && o.ID != spec.ID {
			return fmt.Errorf("swarm network %s: a local network has the same name (%s)", spec.Name, o.ID[:12])
		}
		r = &netRecord{
			ID: spec.ID, Name: spec.Name, Driver: driverOverlay, Scope: "swarm", Created: time.Now().UTC(),
			Internal: spec.Internal, Attachable: spec.Attachable, Ingress: spec.Ingress,
			Labels: spec.Labels, Options: spec.Options,
			Subnet: spec.Subnet.String(), Gateway: spec.NodeAddr.String(), UserIPAM: true,
			VNI: spec.VNI, VXLANPort: spec.VXLANPort, DataAddr: spec.DataAddr.String(),
			Endpoints: map[string]*endpointRecord{},
			// VXLAN's 50 bytes of headers, as dockerd's overlay.
			MTU: nm.cfg.MTU - 50,
		}
		if r.encrypted() {
			// An Ethernet header, the seal's and UDP/IP's.
			r.MTU = nm.cfg.MTU - 14 - secureoverlay.Overhead - 8 - 20
		}
		if spec.Gateway.IsValid() {
			r.SwarmGateway = spec.Gateway.String()
			r.Aux = map[string]string{"swarm-gateway": spec.Gateway.String()}
		}
		if r.Options == nil {
			r.Options = map[string]string{}
		}
		if err := nm.buildPool(r); err != nil {
			return fmt.Errorf("overlay network %s: %w", spec.Name, err)
		}
		nm.nets[r.ID] = r
		if err := nm.bringUpLocked(r); err != nil {
			nm.bringDownLocked(r)
			delete(nm.nets, r.ID)
			return fmt.Errorf("overlay network %s: %w", spec.Name, err)
		}
		if err := nm.saveLocked(); err != nil {
			return err
		}
		nm.log.WithFields(logrus.Fields{"network": r.Name, "id": r.ID[:12], "vni": r.VNI, "address": r.Gateway}).Info("overlay network up")
		nm.event(r, events.ActionCreate, nil)
	}
	return nil
}

func vxlanName(r *netRecord) string { return "jvx-" + r.ID[:10] }

// bringUpOverlayLocked adds what an overlay network has beyond a
// bridge's: the bridge's MAC derived from its address (so that other
// nodes know it without asking), the VXLAN port and the peers.
func (nm *Controller) bringUpOverlayLocked(r *netRecord) error {
	gw, _ := netip.ParseAddr(r.Gateway)
	mac, _ := net.ParseMAC(jnet.MACFor(gw))
	if err := jnet.SetLinkMAC(r.Bridge, mac); err != nil {
		return fmt.Errorf("bridge %s: set MAC: %w", r.Bridge, err)
	}
	local, err := netip.ParseAddr(r.DataAddr)
	if err != nil {
		return fmt.Errorf("data path address %q: %w", r.DataAddr, err)
	}
	port := r.VXLANPort
	if port == 0 {
		port = 4789
	}
	if r.encrypted() {
		if err := nm.sealLocked(r, local, port+1); err != nil {
			return err
		}
	} else if err := jnet.EnsureVXLAN(vxlanName(r), r.owner(), r.Bridge, r.VNI, port, local, r.mtu(nm.cfg.MTU)); err != nil {
		return err
	}
	nm.syncOverlayLocked(r)
	return nil
}

// encrypted reports whether r is an encrypted overlay network (the
// driver option "encrypted", any value, as dockerd's).
func (r *netRecord) encrypted() bool {
	_, ok := r.Options[optEncrypted]
	return r.Driver == driverOverlay && ok
}

const optEncrypted = "encrypted"

// sealLocked gives encrypted network r a tap as its bridge's port
// instead of a VXLAN device, and attaches it to the node's Tunnel (made
// with the first encrypted network, on UDP port of the data path
// address: the data path port + 1).
func (nm *Controller) sealLocked(r *netRecord, local netip.Addr, port int) error {
	if nm.sealed != nil {
		if a, p := nm.sealed.Local(); a != local.Unmap() || p != port {
			if nm.sealed.Networks() > 0 {
				return fmt.Errorf("encrypted overlay %s: the node's encrypted data path is on %s:%d, not %s:%d", r.Name, a, p, local, port)
			}
			nm.sealed.Close()
			nm.sealed = nil
		}
	}
	if nm.sealed == nil {
		t, err := secureoverlay.New(local, port, nm.log.WithField("part", "secure-overlay"))
		if err != nil {
			return err
		}
		if err := t.SetKeys(nm.sealKeys, nm.sealPrim); err != nil {
			nm.log.WithError(err).Warn("encrypted overlays: the swarm's keys")
		}
		nm.sealed = t
	}
	if err := jnet.CreateTap(vxlanName(r), r.owner(), r.Bridge, r.mtu(nm.cfg.MTU)); err != nil {
		nm.closeIdleSealLocked()
		return err
	}
	if err := nm.sealed.Attach(uint32(r.VNI), vxlanName(r)); err != nil {
		_ = jnet.DeleteLink(vxlanName(r), r.owner())
		nm.closeIdleSealLocked()
		return err
	}
	return nil
}

// unsealLocked detaches encrypted network r from the Tunnel (its tap is
// deleted with the network's other links).
func (nm *Controller) unsealLocked(r *netRecord) {
	if nm.sealed != nil {
		nm.sealed.Detach(uint32(r.VNI))
		nm.closeIdleSealLocked()
	}
}

func (nm *Controller) closeIdleSealLocked() {
	if nm.sealed != nil && nm.sealed.Networks() == 0 {
		nm.sealed.Close()
		nm.sealed = nil
	}
}

// OverlayKey is one of the swarm's data encryption keys.
type OverlayKey = secureoverlay.Key

// SetOverlayKeys gives the encrypted overlay networks the swarm's data
// encryption keys: frames are sealed with primary's, opened with any.
func (nm *Controller) SetOverlayKeys(keys []OverlayKey, primary uint64) {
	nm.mu.Lock()
	defer nm.unlock()
	nm.sealKeys, nm.sealPrim = append([]OverlayKey(nil), keys...), primary
	if nm.sealed != nil {
		if err := nm.sealed.SetKeys(keys, primary); err != nil {
			nm.log.WithError(err).Warn("encrypted overlays: the swarm's keys")
		}
	}
}

// overlayEndpointsLocked lists r's endpoints, this node's (with its own
// address) and, with all, the other nodes'.
func (nm *Controller) overlayEndpointsLocked(r *netRecord, all bool) []OverlayEndpoint {
	out := []OverlayEndpoint{{Network: r.ID, IP: r.Gateway, NodeAddr: true}}
	for _, ep := range r.Endpoints {
		if ep.IP == "" {
			continue
		}
		name := ""
		if nm.names != nil {
			name = nm.names.NameByID(ep.ContainerID)
		}
		out = append(out, OverlayEndpoint{Network: r.ID, IP: ep.IP, Name: name, Aliases: ep.Aliases, Service: ep.Service, VIP: ep.VIP, Ports: ep.Ports})
	}
	if all && nm.peers != nil {
		out = append(out, nm.peers.Remote(r.ID)...)
	}
	return out
}

// syncOverlayLocked programs r's VXLAN device with the other nodes'
// endpoints, and its bridge's addresses and VIP rules with the services'
// virtual IPs.
func (nm *Controller) syncOverlayLocked(r *netRecord) {
	log := nm.log.WithField("network", r.Name)
	var remote []OverlayEndpoint
	if nm.peers != nil {
		remote = nm.peers.Remote(r.ID)
	}
	var peers []jnet.VXLANPeer
	for _, e := range remote {
		ip, err1 := netip.ParseAddr(e.IP)
		host, err2 := netip.ParseAddr(e.Host)
		if err1 != nil || err2 != nil || !ip.Is4() {
			continue
		}
		mac, _ := net.ParseMAC(jnet.MACFor(ip))
		peers = append(peers, jnet.VXLANPeer{IP: ip, MAC: mac, Node: host})
	}
	if r.encrypted() {
		if nm.sealed != nil {
			sp := make([]secureoverlay.Peer, 0, len(peers))
			for _, p := range peers {
				sp = append(sp, secureoverlay.Peer{IP: p.IP, MAC: p.MAC, Node: p.Node})
			}
			nm.sealed.SetPeers(uint32(r.VNI), sp)
		}
	} else if err := jnet.SetVXLANPeers(vxlanName(r), peers); err != nil {
		log.WithError(err).Warn("program the overlay's peers")
	}
	// Every task of a VIP-mode service, wherever it runs, is a backend
	// of its VIP.
	vips := map[netip.Addr][]netip.Addr{}
	for _, e := range nm.overlayEndpointsLocked(r, true) {
		vip, err1 := netip.ParseAddr(e.VIP)
		ip, err2 := netip.ParseAddr(e.IP)
		if err1 == nil && err2 == nil {
			vips[vip] = append(vips[vip], ip)
		}
	}
	for _, b := range vips {
		sort.Slice(b, func(i, j int) bool { return b[i].Less(b[j]) })
	}
	if nm.host != nil {
		prefixes := r.gatewayPrefixes()
		for vip := range vips {
			prefixes = append(prefixes, netip.PrefixFrom(vip, 32))
		}
		if err := nm.host.EnsureBridge(r.Bridge, r.owner(), prefixes, r.mtu(nm.cfg.MTU)); err != nil {
			log.WithError(err).Warn("set the overlay bridge's addresses")
		}
		gw, _ := netip.ParseAddr(r.Gateway)
		if err := nm.host.SetVIPRules(r.Bridge, gw, vips); err != nil {
			log.WithError(err).Warn("set the services' virtual IP rules")
		}
	}
}

// publishLocked announces this node's endpoints on its overlay networks.
func (nm *Controller) publishLocked() {
	if nm.peers == nil {
		return
	}
	var out []OverlayEndpoint
	for _, r := range nm.nets {
		if r.Driver == driverOverlay && r.up {
			out = append(out, nm.overlayEndpointsLocked(r, false)...)
		}
	}
	nm.peers.Publish(out)
}

// removeIdleOverlaysLocked removes the overlay networks none of this
// node's containers uses any more; the ingress network stays while the
// node is in the swarm (the routing mesh reaches the other nodes' tasks
// through it).
func (nm *Controller) removeIdleOverlaysLocked() bool {
	removed := false
	for _, r := range nm.nets {
		if r.Driver == driverOverlay && len(r.Endpoints) == 0 && !(r.Ingress && nm.peers != nil) {
			nm.bringDownLocked(r)
			delete(nm.nets, r.ID)
			nm.log.WithFields(logrus.Fields{"network": r.Name, "id": r.ID[:12]}).Info("overlay network removed: no container here uses it")
			removed = true
		}
	}
	return removed
}

// overlayLookupLocked answers a DNS name on overlay network r, from every
// node's endpoints, as dockerd's embedded DNS does in swarm mode: a
// task's or container's name and its aliases (outside services) name its
// address; a service's name and aliases name its VIP (or, in dnsrr mode,
// its tasks' addresses); tasks.<service> names its tasks' addresses.
func (nm *Controller) overlayLookupLocked(r *netRecord, name string) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	tasksOf, isTasks := strings.CutPrefix(name, "tasks.")
	for _, e := range nm.overlayEndpointsLocked(r, true) {
		if e.NodeAddr {
			continue
		}
		if strings.EqualFold(e.Name, name) {
			add(e.IP)
			continue
		}
		names := e.Aliases
		if e.Service != "" {
			names = append([]string{e.Service}, e.Aliases...)
		}
		for _, n := range names {
			if isTasks && e.Service != "" && strings.EqualFold(n, tasksOf) {
				add(e.IP)
				break
			}
			if strings.EqualFold(n, name) {
				if e.VIP != "" {
					add(e.VIP)
				} else {
					add(e.IP)
				}
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// overlayNameOfLocked is the PTR answer for a on overlay network r.
func (nm *Controller) overlayNameOfLocked(r *netRecord, a netip.Addr) (string, bool) {
	for _, e := range nm.overlayEndpointsLocked(r, true) {
		if e.IP == a.String() && e.Name != "" {
			return e.Name + "." + r.Name, true
		}
	}
	return "", false
}

// checkOverlayEndpoint refuses, at create, a container on a swarm network
// that is not attachable (a task's endpoint is the swarm's); on an
// attachable one the swarm gives the container its address at each start
// (the daemon's SwarmAttacher).
func checkOverlayEndpoint(r *netRecord, es *network.EndpointSettings) error {
	if es.DriverOpts[OptSwarmService] != "" || es.DriverOpts[OptSwarmAttachment] != "" || r.Attachable {
		return nil
	}
	return errdefs.Forbidden(fmt.Errorf("Could not attach to network %s: rpc error: code = PermissionDenied desc = network %s not manually attachable", r.Name, r.ID))
}

// swarmAddress refuses an endpoint on a swarm network without the
// address the swarm gave it: an address of the node's own picking could
// be another node's.
func swarmAddress(r *netRecord, es *network.EndpointSettings) error {
	if r.Driver == driverOverlay && (es.IPAMConfig == nil || es.IPAMConfig.IPv4Address == "") {
		return errdefs.InvalidParameter(fmt.Errorf("network %s is a swarm network: the swarm gives its addresses (is this node still in the swarm?)", r.Name))
	}
	return nil
}

// meshPort is a port published through the routing mesh.
type meshPort struct {
	proto             string
	target, published uint16
}

// parseMeshPorts reads OptSwarmPorts.
func parseMeshPorts(s string) []meshPort {
	var out []meshPort
	for _, f := range strings.Split(s, ",") {
		parts := strings.Split(f, ":")
		if len(parts) != 3 {
			continue
		}
		t, err1 := strconv.ParseUint(parts[1], 10, 16)
		p, err2 := strconv.ParseUint(parts[2], 10, 16)
		if err1 != nil || err2 != nil || p == 0 || (parts[0] != "tcp" && parts[0] != "udp") {
			continue
		}
		out = append(out, meshPort{proto: parts[0], target: uint16(t), published: uint16(p)})
	}
	return out
}

// meshBackendsLocked lists, for each published port, the ingress
// addresses of the tasks that serve it, on every node.
func (nm *Controller) meshBackendsLocked() map[meshPort][]netip.Addr {
	out := map[meshPort][]netip.Addr{}
	for _, r := range nm.nets {
		if r.Driver != driverOverlay || !r.Ingress || !r.up {
			continue
		}
		for _, e := range nm.overlayEndpointsLocked(r, true) {
			ip, err := netip.ParseAddr(e.IP)
			if err != nil || e.NodeAddr {
				continue
			}
			for _, mp := range parseMeshPorts(e.Ports) {
				out[mp] = append(out[mp], ip)
			}
		}
	}
	return out
}

// syncMeshLocked makes the routing mesh's proxies those of the ports the
// swarm's services publish through it: every node listens on each, and
// relays every connection (or UDP flow) to one of the service's tasks,
// at random, wherever it runs, over the ingress network.
func (nm *Controller) syncMeshLocked() {
	want := nm.meshBackendsLocked()
	if nm.mesh == nil {
		nm.mesh = map[meshPort]*jnet.Proxy{}
	}
	for mp, p := range nm.mesh {
		if _, ok := want[mp]; !ok || nm.host == nil {
			nm.closingProxies = append(nm.closingProxies, p)
			delete(nm.mesh, mp)
		}
	}
	if nm.host == nil {
		return
	}
	for mp := range want {
		if nm.mesh[mp] != nil {
			continue
		}
		mp := mp
		backend := func() (netip.Addr, bool) {
			nm.mu.Lock()
			defer nm.mu.Unlock()
			list := nm.meshBackendsLocked()[mp]
			if len(list) == 0 {
				return netip.Addr{}, false
			}
			return list[rand.IntN(len(list))], true
		}
		b := jnet.PortBinding{Proto: mp.proto, ContainerPort: mp.target, HostPort: mp.published}
		p, err := jnet.StartProxy(b, backend, nm.log.WithField("part", "routing-mesh"))
		if err != nil {
			nm.log.WithError(err).WithField("port", mp.published).Warn("routing mesh: cannot publish the port on this node")
			continue
		}
		nm.mesh[mp] = p
	}
}
