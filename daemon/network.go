package daemon

// Container networking (docs/NETWORKING.md) is network/controller's: the
// daemon makes the controller at start and calls it through
// networkController along a container's life (prepare at create, attach
// at start, detach at exit, inspect, restore after a restart, shutdown)
// and for the /networks API (network_api.go). It gives the controller the
// containers' names (containerNames), its events (networkEvent) and, for
// network connect/disconnect, the VM's NICs (vmNICs).
//
// Locking: c.mu (a container) may be held when calling the controller,
// never the other way round. The embedded DNS servers read the container
// store's name index (its own lock), never c.mu.

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/go-connections/nat"

	jnet "github.com/jevm/jevm/network"
	"github.com/jevm/jevm/network/controller"
)

// NetworkConfig is the daemon's networking configuration (dockerd's
// network settings), controller.Config.
type NetworkConfig = controller.Config

// AddressPool is one entry of NetworkConfig.DefaultAddressPools: Base
// split into subnets of prefix length Size.
type AddressPool = jnet.AddressPool

// networkController is what the daemon uses of the network controller
// (*controller.Controller).
type networkController interface {
	// Prepare validates and normalises a new container's network
	// settings (create).
	Prepare(hc *container.HostConfig, cfg *container.Config, nc *network.NetworkingConfig) (*network.NetworkingConfig, error)
	// Attach makes a starting container's endpoints and published
	// ports: its NICs, guest interfaces, /etc/hosts and resolv.conf.
	Attach(ctx context.Context, c *controller.Container) (*controller.Attachment, error)
	// Detach releases them when the VM is gone.
	Detach(containerID string)
	// Announce records where a migrated container's addresses are.
	Announce(containerID string)
	// FillSettings fills inspect's network settings.
	FillSettings(c *controller.Container, hc *container.HostConfig, ns *container.NetworkSettings)
	// IPOn is a running container's address on a network (legacy links).
	IPOn(containerID, network string) (string, bool)
	// FillInfo fills /info's address pools and firewall backend.
	FillInfo(info *system.Info)
	// Restore releases the endpoints of containers that no longer run
	// after a daemon restart and publishes the running ones' ports again.
	Restore(running map[string]bool)
	Shutdown()

	// The /networks API.
	Create(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error)
	Inspect(ctx context.Context, ref string, opts network.InspectOptions) (network.Inspect, error)
	List(ctx context.Context, f filters.Args) ([]network.Summary, error)
	Remove(ctx context.Context, ref string) error
	Prune(ctx context.Context, f filters.Args) (*network.PruneReport, error)
	Connect(ctx context.Context, c *controller.Container, ref string, es *network.EndpointSettings, plug controller.NICPlugger, record func(netName string, es *network.EndpointSettings) error) error
	Disconnect(ctx context.Context, c *controller.Container, ref string, force bool, plug controller.NICPlugger, forget func(netName string) error) error

	// Swarm mode's overlay networks (cluster's Overlays).
	EnsureOverlay(spec controller.OverlaySpec) error
	SetOverlayPeers(p controller.OverlayPeers)
	OverlayChanged()
	SetOverlayKeys(keys []controller.OverlayKey, primary uint64)
}

var _ networkController = (*controller.Controller)(nil)

// initNetworking makes the network controller: it loads the networks
// (making the predefined ones on the first start) and brings their
// bridges, rules and DNS servers up.
func (d *Daemon) initNetworking(cfg NetworkConfig) error {
	nc, err := controller.New(cfg, controller.Options{
		DataRoot: d.cfg.DataRoot, Log: d.log,
		Names: containerNames{d.containers}, Events: d.networkEvent,
	})
	if err != nil {
		return err
	}
	d.net = nc
	return nil
}

// reconcileNetworking runs after the containers were restored: the
// controller releases the endpoints of containers that no longer run and
// opens the port proxies of the running ones again.
func (d *Daemon) reconcileNetworking() {
	if d.net == nil {
		return
	}
	running := map[string]bool{}
	for _, c := range d.containers.all() {
		c.mu.Lock()
		running[c.ID] = c.running()
		c.mu.Unlock()
	}
	d.net.Restore(running)
}

// shutdownNetworking closes the proxies and DNS servers and removes what
// no running container needs.
func (d *Daemon) shutdownNetworking() {
	if d.net != nil {
		d.net.Shutdown()
	}
}

// netContainer is what the controller sees of c. Callers hold c.mu.
func netContainer(c *Container) *controller.Container {
	return &controller.Container{
		ID: c.ID, Name: c.Name, Config: c.Config, HostConfig: c.HostConfig,
		NetConfig: c.NetConfig, Running: c.running(),
	}
}

// SwarmAttacher gives a container addresses on swarm networks (attachable
// overlay networks), as dockerd's cluster does for docker run --network:
// the swarm allocates an address for the container at each start, and
// the node makes the network.
type SwarmAttacher interface {
	// AttachContainer returns, for each of refs that names a swarm
	// network, the endpoint settings of container id's attachment to it
	// (the network is then made on this node); refs that name no swarm
	// network are left out.
	AttachContainer(ctx context.Context, id string, refs []string) (map[string]*network.EndpointSettings, error)
	// DetachContainer gives back the container's attachments to
	// networkIDs (none named: all of them).
	DetachContainer(id string, networkIDs ...string)
	// InSwarm reports whether this node is in a swarm (else there is
	// nothing to attach to).
	InSwarm() bool
}

// SetSwarmAttacher connects the daemon to the swarm (nil: none).
func (d *Daemon) SetSwarmAttacher(a SwarmAttacher) {
	d.swarmMu.Lock()
	defer d.swarmMu.Unlock()
	d.swarmNets = a
}

func (d *Daemon) swarmAttacher() SwarmAttacher {
	d.swarmMu.Lock()
	defer d.swarmMu.Unlock()
	return d.swarmNets
}

// attachNetworks creates c's endpoints (addresses, MACs, taps on the
// bridges) and opens its published ports. Callers hold c.mu. On error
// nothing is left.
func (d *Daemon) attachNetworks(ctx context.Context, c *Container, linkHosts []string) (att *controller.Attachment, retErr error) {
	nc := netContainer(c)
	nc.LinkHosts = linkHosts // legacy links' /etc/hosts entries (links.go)
	if d.net == nil {
		return &controller.Attachment{Hosts: controller.HostsFile(nc)}, nil
	}
	if a := d.swarmAttacher(); a != nil && nc.NetConfig != nil && a.InSwarm() {
		// Networks this node does not have, or has as swarm networks,
		// may be the swarm's: it gives this start's addresses.
		var refs []string
		for ref, es := range nc.NetConfig.EndpointsConfig {
			if es != nil && es.DriverOpts[controller.OptSwarmService] != "" {
				continue // a task's: the swarm executor attached it
			}
			if ni, err := d.net.Inspect(ctx, ref, network.InspectOptions{}); err != nil || ni.Scope == "swarm" {
				refs = append(refs, ref)
			}
		}
		if len(refs) > 0 {
			swarmEPs, err := a.AttachContainer(ctx, c.ID, refs)
			defer func() {
				if retErr != nil {
					a.DetachContainer(c.ID)
				}
			}()
			if err != nil {
				return nil, err
			}
			if len(swarmEPs) > 0 {
				ncfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
				for k, v := range nc.NetConfig.EndpointsConfig {
					ncfg.EndpointsConfig[k] = v
				}
				for k, v := range swarmEPs {
					es := v.Copy()
					if own := ncfg.EndpointsConfig[k]; own != nil {
						es.Aliases = append(es.Aliases, own.Aliases...)
					}
					ncfg.EndpointsConfig[k] = es
				}
				nc.NetConfig = ncfg
			}
		}
	}
	return d.net.Attach(ctx, nc)
}

// detachNetworks releases c's endpoints and proxies (the VM is gone), and
// its swarm networks' attachments.
func (d *Daemon) detachNetworks(c *Container) {
	if d.net != nil {
		d.net.Detach(c.ID)
	}
	if a := d.swarmAttacher(); a != nil {
		a.DetachContainer(c.ID)
	}
}

// prepareNetworking validates and normalises a new container's network
// settings (controller.Prepare).
func (d *Daemon) prepareNetworking(hc *container.HostConfig, cfg *container.Config, nc *network.NetworkingConfig) (*network.NetworkingConfig, error) {
	if d.net == nil {
		return controller.PrepareUnmanaged(hc, nc)
	}
	return d.net.Prepare(hc, cfg, nc)
}

// ---- inspect, ps, info ----

// fillNetworkSettings fills inspect's NetworkSettings and NetworkMode.
// Callers hold c.mu.
func (d *Daemon) fillNetworkSettings(c *Container, hc *container.HostConfig, ns *container.NetworkSettings) {
	if d.net != nil {
		d.net.FillSettings(netContainer(c), hc, ns)
		return
	}
	controller.FillUnmanagedSettings(netContainer(c), hc, ns)
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
// off); the controller adds DefaultAddressPools and FirewallBackend.
func (d *Daemon) fillNetworkInfo(info *system.Info) {
	info.IPv4Forwarding = jnet.IPForwardEnabled()
	if !info.IPv4Forwarding {
		info.Warnings = append(info.Warnings, "WARNING: IPv4 forwarding is disabled")
	}
	if d.net != nil {
		d.net.FillInfo(info)
	}
}

// networkEvent publishes a network event (docker events --filter
// type=network) for the controller.
func (d *Daemon) networkEvent(action events.Action, networkID string, attrs map[string]string) {
	if d.events == nil {
		return
	}
	d.logEvent(events.NetworkEventType, action, networkID, attrs)
}

// containerNames gives the controller the container store's names
// (controller.ContainerNames): the store's own lock, never c.mu.
type containerNames struct{ s *containerStore }

// IDByName returns the ID of the container called name ("" if none).
func (n containerNames) IDByName(name string) string {
	n.s.mu.RLock()
	defer n.s.mu.RUnlock()
	return n.s.byName[strings.TrimPrefix(name, "/")]
}

// NameByID returns the name of container id ("" if none).
func (n containerNames) NameByID(id string) string {
	n.s.mu.RLock()
	defer n.s.mu.RUnlock()
	for name, other := range n.s.byName {
		if other == id {
			return name
		}
	}
	return ""
}
