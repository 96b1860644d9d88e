package cluster

// A task's overlay networks: the node makes each network its task is
// attached to (network/controller's overlay networks) with what SwarmKit
// allocated (the network's subnet and VXLAN ID, the task's address, this
// node's own address on the network, the service's virtual IP), and gives
// the task's container an endpoint on it.

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/network"
	swarmapi "github.com/moby/swarmkit/v2/api"
	"github.com/sirupsen/logrus"

	netctl "github.com/jevm/jevm/network/controller"
)

// Overlays is what the cluster needs of the engine's networks.
type Overlays interface {
	EnsureOverlay(spec netctl.OverlaySpec) error
	SetOverlayPeers(p netctl.OverlayPeers)
	OverlayChanged()
	// SetOverlayKeys gives the encrypted networks the swarm's data
	// encryption keys, frames sealed with primary's.
	SetOverlayKeys(keys []netctl.OverlayKey, primary uint64)
}

// optVXLANID is where the allocator puts a network's VXLAN ID.
const optVXLANID = "com.docker.network.driver.overlay.vxlanid_list"

// defaultVXLANPort is VXLAN's IANA port, the swarm's default data path
// port.
const defaultVXLANPort = 4789

// nodeAddrWait bounds how long a task waits for SwarmKit to give this
// node its address on a network the task needs (it comes with the node's
// next update, usually within a second).
const nodeAddrWait = 60 * time.Second

// nodeNets holds this node's addresses on the swarm's networks (SwarmKit's
// node attachments, from the executor's Configure) and the swarm's data
// path port (which SwarmKit gives every node in its Node object).
type nodeNets struct {
	mu        sync.Mutex
	addrs     map[string]netip.Prefix // by network ID
	vxlanPort uint32                  // 0 until known: the default
	changed   chan struct{}           // closed and replaced at every change
}

func newNodeNets() *nodeNets {
	return &nodeNets{addrs: map[string]netip.Prefix{}, changed: make(chan struct{})}
}

// set records node's attachments.
func (n *nodeNets) set(node *swarmapi.Node) {
	addrs := map[string]netip.Prefix{}
	for _, na := range node.Attachments {
		if na == nil || na.Network == nil || len(na.Addresses) == 0 {
			continue
		}
		if p, err := netip.ParsePrefix(na.Addresses[0]); err == nil {
			addrs[na.Network.ID] = p
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addrs = addrs
	if node.VXLANUDPPort != 0 {
		n.vxlanPort = node.VXLANUDPPort
	}
	close(n.changed)
	n.changed = make(chan struct{})
}

// dataPath is where this node sends and takes the overlay's VXLAN
// traffic: its data path address and the swarm's data path port.
type dataPath struct {
	addr netip.Addr
	port int
}

// dataPath resolves the node's data path with addr, the executor's
// dataAddr.
func (n *nodeNets) dataPath(addr func() string) (dataPath, error) {
	a, err := netip.ParseAddr(addr())
	if err != nil {
		return dataPath{}, fmt.Errorf("this node's data path address %q: %w", addr(), err)
	}
	n.mu.Lock()
	port := n.vxlanPort
	n.mu.Unlock()
	if port == 0 {
		port = defaultVXLANPort
	}
	return dataPath{addr: a, port: int(port)}, nil
}

// wait returns this node's address on network id, waiting for it.
func (n *nodeNets) wait(ctx context.Context, id string) (netip.Prefix, error) {
	ctx, cancel := context.WithTimeout(ctx, nodeAddrWait)
	defer cancel()
	for {
		n.mu.Lock()
		p, ok := n.addrs[id]
		ch := n.changed
		n.mu.Unlock()
		if ok {
			return p, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return netip.Prefix{}, fmt.Errorf("this node has no address on network %s yet: %w", id, ctx.Err())
		}
	}
}

// overlaySpec is na's network as this node makes it.
func overlaySpec(na *swarmapi.NetworkAttachment, nodeAddr netip.Prefix, dp dataPath) (netctl.OverlaySpec, error) {
	n := na.Network
	spec := netctl.OverlaySpec{
		ID: n.ID, Name: n.Spec.Annotations.Name, Labels: n.Spec.Annotations.Labels,
		Internal: n.Spec.Internal, Attachable: n.Spec.Attachable, Ingress: n.Spec.Ingress,
		NodeAddr: nodeAddr.Addr(), VXLANPort: dp.port, DataAddr: dp.addr,
	}
	if d := n.Spec.DriverConfig; d != nil {
		spec.Options = d.Options
	}
	if n.DriverState == nil {
		return spec, fmt.Errorf("network %s is not allocated yet", spec.Name)
	}
	vni, err := strconv.Atoi(strings.Split(n.DriverState.Options[optVXLANID], ",")[0])
	if err != nil || vni <= 0 {
		return spec, fmt.Errorf("network %s has no VXLAN ID (%q)", spec.Name, n.DriverState.Options[optVXLANID])
	}
	spec.VNI = vni
	if n.IPAM == nil || len(n.IPAM.Configs) == 0 {
		return spec, fmt.Errorf("network %s has no subnet", spec.Name)
	}
	if spec.Subnet, err = netip.ParsePrefix(n.IPAM.Configs[0].Subnet); err != nil {
		return spec, fmt.Errorf("network %s: subnet: %w", spec.Name, err)
	}
	spec.Gateway, _ = netip.ParseAddr(n.IPAM.Configs[0].Gateway)
	return spec, nil
}

// taskNetworks makes the task's overlay networks on this node and
// returns its container's endpoints and the first network's name (the
// container's network mode); nothing for a task without networks.
func (r *controller) taskNetworks(ctx context.Context) (*network.NetworkingConfig, string, error) {
	nc := &network.NetworkingConfig{}
	if len(r.task.Networks) == 0 {
		return nc, "", nil
	}
	if r.nets == nil || r.overlays == nil {
		return nil, "", fmt.Errorf("overlay networks are not available on this node")
	}
	dp, err := r.nets.dataPath(r.dataAddr)
	if err != nil {
		return nil, "", err
	}
	nc.EndpointsConfig = map[string]*network.EndpointSettings{}
	mode, ingress := "", false
	for _, na := range r.task.Networks {
		if na.Network == nil {
			continue
		}
		nodeAddr, err := r.nets.wait(ctx, na.Network.ID)
		if err != nil {
			return nil, "", err
		}
		spec, err := overlaySpec(na, nodeAddr, dp)
		if err != nil {
			return nil, "", err
		}
		if err := r.overlays.EnsureOverlay(spec); err != nil {
			return nil, "", err
		}
		es := &network.EndpointSettings{
			NetworkID:  spec.ID,
			Aliases:    append([]string(nil), na.Aliases...),
			DriverOpts: map[string]string{netctl.OptSwarmService: r.task.ServiceAnnotations.Name},
		}
		if len(na.Addresses) > 0 {
			if p, err := netip.ParsePrefix(na.Addresses[0]); err == nil {
				es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: p.Addr().String()}
			}
		}
		if spec.Ingress {
			// The routing mesh: every node relays these ports to the
			// tasks' ingress addresses.
			es.DriverOpts[netctl.OptSwarmPorts] = meshPorts(r.task.Endpoint)
		} else if e := r.task.Endpoint; e != nil {
			for _, v := range e.VirtualIPs {
				if v.NetworkID == spec.ID {
					if p, err := netip.ParsePrefix(v.Addr); err == nil {
						es.DriverOpts[netctl.OptSwarmVIP] = p.Addr().String()
					}
				}
			}
		}
		nc.EndpointsConfig[spec.Name] = es
		if mode == "" || (ingress && !spec.Ingress) {
			// The first network the service names: ingress only
			// without another.
			mode, ingress = spec.Name, spec.Ingress
		}
	}
	return nc, mode, nil
}

// meshPorts is OptSwarmPorts for a task of a service with endpoint e.
func meshPorts(e *swarmapi.Endpoint) string {
	if e == nil {
		return ""
	}
	var out []string
	for _, p := range e.Ports {
		if p.PublishMode != swarmapi.PublishModeIngress || p.PublishedPort == 0 {
			continue
		}
		proto := "tcp"
		if p.Protocol == swarmapi.ProtocolUDP {
			proto = "udp"
		}
		out = append(out, fmt.Sprintf("%s:%d:%d", proto, p.TargetPort, p.PublishedPort))
	}
	return strings.Join(out, ",")
}

// ensureIngress makes the ingress network on this node as soon as the node
// has its address on it: the routing mesh reaches every node's tasks
// through it, also from a node that runs none.
func (e *executor) ensureIngress(node *swarmapi.Node) {
	if e.overlays == nil {
		return
	}
	for _, na := range node.Attachments {
		if na == nil || na.Network == nil || !na.Network.Spec.Ingress || len(na.Addresses) == 0 {
			continue
		}
		addr, err := netip.ParsePrefix(na.Addresses[0])
		if err != nil {
			continue
		}
		dp, err := e.nets.dataPath(e.dataAddr)
		if err != nil {
			return
		}
		spec, err := overlaySpec(na, addr, dp)
		if err == nil {
			err = e.overlays.EnsureOverlay(spec)
		}
		if err != nil {
			logrus.WithError(err).WithField("module", "swarm").Warn("the ingress network (routing mesh) is not available on this node")
		}
	}
}
