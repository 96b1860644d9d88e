package controller

// The /networks API (docker network create/ls/inspect/rm/prune/connect/
// disconnect) on top of the networks (controller.go).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/internal/filterutil"
	jnet "github.com/jevm/jevm/network"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Create makes a bridge network: its subnet (given, or the next free
// default pool), its bridge, NAT rules and DNS server.
func (nm *Controller) Create(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error) {
	// dockerd refuses only an empty name (libnetwork's message): names
	// with spaces or other characters are fine, since bridges and taps are
	// named from the network's ID.
	if req.Name == "" {
		return network.CreateResponse{}, errdefs.InvalidParameter(errors.New("invalid name: name is empty"))
	}
	driver := req.Driver
	if driver == "" {
		driver = driverBridge
	}
	switch {
	case driver != driverBridge:
		return network.CreateResponse{}, errdefs.InvalidParameter(fmt.Errorf("network driver %q is not supported by jevm (only %q)", driver, driverBridge))
	case req.Scope != "" && req.Scope != "local":
		return network.CreateResponse{}, errdefs.InvalidParameter(fmt.Errorf("scope %q is not supported by jevm (only \"local\")", req.Scope))
	case req.EnableIPv4 != nil && !*req.EnableIPv4 && !(req.EnableIPv6 != nil && *req.EnableIPv6):
		return network.CreateResponse{}, errdefs.InvalidParameter(errors.New("IPv4 or IPv6 must be enabled"))
	case req.ConfigOnly || req.ConfigFrom != nil || req.Ingress:
		return network.CreateResponse{}, errdefs.InvalidParameter(errors.New("config-only, config-from and ingress networks are not supported by jevm"))
	}
	if req.IPAM != nil && req.IPAM.Driver != "" && req.IPAM.Driver != "default" {
		return network.CreateResponse{}, errdefs.InvalidParameter(fmt.Errorf("IPAM driver %q is not supported by jevm", req.IPAM.Driver))
	}
	if n := req.Options[optBridgeName]; n != "" && (len(n) > jnet.MaxIfNameLen || strings.ContainsAny(n, "/: \t")) {
		return network.CreateResponse{}, errdefs.InvalidParameter(fmt.Errorf("invalid bridge name %q", n))
	}

	if nm.bridgeDisabled(req.Name) {
		// -b none leaves the name free, but it stays dockerd's
		// predefined network's.
		return network.CreateResponse{}, errdefs.Forbidden(fmt.Errorf("%s is a pre-defined network and cannot be created", req.Name))
	}
	nm.mu.Lock()
	defer nm.unlock()
	if nm.byNameLocked(req.Name) != nil {
		return network.CreateResponse{}, errdefs.Conflict(fmt.Errorf("network with name %s already exists", req.Name))
	}
	r := &netRecord{
		ID: newID(), Name: req.Name, Driver: driverBridge, Created: time.Now().UTC(),
		Internal: req.Internal, Attachable: req.Attachable,
		Labels: maps.Clone(req.Labels), Options: maps.Clone(req.Options),
		Endpoints: map[string]*endpointRecord{}, MTU: nm.cfg.MTU,
	}
	if r.Options == nil {
		r.Options = map[string]string{}
	}
	if n := r.Options[optBridgeName]; n != "" {
		for _, o := range nm.nets {
			if o.Bridge == n || o.Options[optBridgeName] == n {
				return network.CreateResponse{}, errdefs.Conflict(fmt.Errorf("bridge name %s is used by network %s", n, o.Name))
			}
		}
		if alias, exists := jnet.LinkOwner(n); exists && alias != r.owner() {
			return network.CreateResponse{}, errdefs.Conflict(fmt.Errorf("interface %s already exists on the host", n))
		}
	}
	enable6 := req.EnableIPv6 != nil && *req.EnableIPv6
	if req.EnableIPv6 == nil {
		// The driver option of older clients, as dockerd reads it.
		if v, ok := req.Options["com.docker.network.enable_ipv6"]; ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return network.CreateResponse{}, errdefs.InvalidParameter(fmt.Errorf("driver-opt %q is not a valid bool", "com.docker.network.enable_ipv6"))
			}
			enable6 = b
		}
	}
	delete(r.Options, "com.docker.network.enable_ipv6")
	r.EnableIPv6 = enable6
	r.NoIPv4 = req.EnableIPv4 != nil && !*req.EnableIPv4
	var cfgs []network.IPAMConfig
	if req.IPAM != nil {
		cfgs = req.IPAM.Config
	}
	var v4, v6 []network.IPAMConfig
	for _, c := range cfgs {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Addr().Is6() {
			// As dockerd: IPv6 subnets of a network without IPv6
			// are ignored.
			if enable6 {
				v6 = append(v6, c)
			}
			continue
		}
		v4 = append(v4, c)
	}
	if len(v4) > 1 {
		return network.CreateResponse{}, errdefs.InvalidParameter(errors.New("jevm supports one IPv4 subnet per network"))
	}
	if len(v6) > 1 {
		return network.CreateResponse{}, errdefs.InvalidParameter(errors.New("jevm supports one IPv6 subnet per network"))
	}
	if r.NoIPv4 {
		// IPv6 only: IPv4 subnets are ignored, as by dockerd.
	} else if len(v4) == 1 && v4[0].Subnet != "" {
		c := v4[0]
		sub, err := netip.ParsePrefix(c.Subnet)
		if err != nil {
			return network.CreateResponse{}, errdefs.InvalidParameter(fmt.Errorf("invalid subnet %s: invalid CIDR block notation", c.Subnet))
		}
		if err := nm.checkOverlapLocked(sub); err != nil {
			return network.CreateResponse{}, err
		}
		r.Subnet, r.Gateway, r.IPRange, r.Aux, r.UserIPAM = c.Subnet, c.Gateway, c.IPRange, maps.Clone(c.AuxAddress), true
	} else {
		if len(v4) == 1 && (v4[0].Gateway != "" || v4[0].IPRange != "") {
			return network.CreateResponse{}, errdefs.InvalidParameter(errors.New("--gateway and --ip-range need --subnet"))
		}
		sub, err := nm.pickSubnetLocked(r)
		if err != nil {
			return network.CreateResponse{}, err
		}
		r.Subnet = sub.String()
	}
	if enable6 {
		if len(v6) == 1 {
			c := v6[0]
			sub, err := netip.ParsePrefix(c.Subnet)
			if err != nil {
				return network.CreateResponse{}, errdefs.InvalidParameter(fmt.Errorf("invalid subnet %s: invalid CIDR block notation", c.Subnet))
			}
			if err := nm.checkOverlapLocked(sub); err != nil {
				return network.CreateResponse{}, err
			}
			r.Subnet6, r.Gateway6, r.IPRange6, r.Aux6, r.UserIPAM6 = c.Subnet, c.Gateway, c.IPRange, maps.Clone(c.AuxAddress), true
		} else {
			sub, err := nm.pickSubnet6Locked(r)
			if err != nil {
				return network.CreateResponse{}, err
			}
			r.Subnet6 = sub.String()
		}
	}
	if err := nm.buildPool(r); err != nil {
		return network.CreateResponse{}, errdefs.InvalidParameter(err)
	}
	for name, a := range r.Aux {
		ip, err := netip.ParseAddr(a)
		if err != nil || !r.pool.Subnet().Contains(ip) {
			return network.CreateResponse{}, errdefs.InvalidParameter(fmt.Errorf("invalid auxiliary address %s=%s", name, a))
		}
	}
	for name, a := range r.Aux6 {
		ip, err := netip.ParseAddr(a)
		if err != nil || !r.pool6.Subnet().Contains(ip) {
			return network.CreateResponse{}, errdefs.InvalidParameter(fmt.Errorf("invalid auxiliary address %s=%s", name, a))
		}
	}
	nm.nets[r.ID] = r
	if err := nm.bringUpLocked(r); err != nil {
		nm.bringDownLocked(r)
		delete(nm.nets, r.ID)
		return network.CreateResponse{}, fmt.Errorf("create network %s: %w", r.Name, err)
	}
	if err := nm.saveLocked(); err != nil {
		nm.bringDownLocked(r)
		delete(nm.nets, r.ID)
		return network.CreateResponse{}, err
	}
	nm.log.WithFields(logrus.Fields{"network": r.Name, "id": r.ID[:12], "subnet": r.Subnet, "subnet6": r.Subnet6, "bridge": r.Bridge, "internal": r.Internal}).Info("network created")
	nm.event(r, events.ActionCreate, nil)
	return network.CreateResponse{ID: r.ID}, nil
}

// checkOverlapLocked refuses a user-given subnet that overlaps another
// network's (dockerd's IPAM message, 403).
func (nm *Controller) checkOverlapLocked(sub netip.Prefix) error {
	for _, o := range nm.nets {
		for _, s := range []string{o.Subnet, o.Subnet6} {
			if op, err := netip.ParsePrefix(s); err == nil && jnet.Overlaps(op, sub) {
				return errdefs.Forbidden(errors.New("invalid pool request: Pool overlaps with other one on this address space"))
			}
		}
	}
	return nil
}

// event publishes a network event (docker events --filter type=network).
func (nm *Controller) event(r *netRecord, action events.Action, extra map[string]string) {
	if nm.events == nil {
		return
	}
	attrs := map[string]string{"name": r.Name, "type": r.Driver}
	for k, v := range extra {
		attrs[k] = v
	}
	nm.events(action, r.ID, attrs)
}

// inspectLocked renders r; containers maps endpoint container IDs to
// names (looked up without nm.mu held).
func (r *netRecord) inspectLocked() network.Inspect {
	ni := network.Inspect{
		Name: r.Name, ID: r.ID, Created: r.Created, Scope: "local", Driver: r.Driver,
		EnableIPv4: r.Driver == driverBridge && !r.NoIPv4, EnableIPv6: r.EnableIPv6, Internal: r.Internal, Attachable: r.Attachable,
		IPAM:       network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{}},
		ConfigFrom: network.ConfigReference{},
		Containers: map[string]network.EndpointResource{},
		Options:    maps.Clone(r.Options),
		Labels:     maps.Clone(r.Labels),
	}
	if ni.Options == nil {
		ni.Options = map[string]string{}
	}
	if ni.Labels == nil {
		ni.Labels = map[string]string{}
	}
	if r.Driver == driverOverlay {
		ni.Scope, ni.EnableIPv4, ni.Ingress = r.Scope, true, r.Ingress
		ni.IPAM.Config = []network.IPAMConfig{{Subnet: r.Subnet, Gateway: r.SwarmGateway}}
		ni.Options["com.docker.network.driver.overlay.vxlanid_list"] = strconv.Itoa(r.VNI)
	}
	if r.Driver == driverBridge {
		if !r.NoIPv4 {
			ni.IPAM.Config = []network.IPAMConfig{{Subnet: r.Subnet, Gateway: r.Gateway, IPRange: r.IPRange, AuxAddress: maps.Clone(r.Aux)}}
		}
		if r.EnableIPv6 && r.Subnet6 != "" {
			ni.IPAM.Config = append(ni.IPAM.Config, network.IPAMConfig{Subnet: r.Subnet6, Gateway: r.Gateway6, IPRange: r.IPRange6, AuxAddress: maps.Clone(r.Aux6)})
		}
		// A user network shows only the options its creator gave, as
		// dockerd's do: compose v1 compares them with the file's
		// driver_opts and wants the network recreated on any
		// difference. Its bridge is found by its alias (jevm:<ID>).
		if r.isDefaultBridge() && r.Bridge != "" {
			ni.Options[optBridgeName] = r.Bridge
		}
	}
	bits := 0
	if r.pool != nil {
		bits = r.pool.Subnet().Bits()
	}
	for _, ep := range r.Endpoints {
		er := network.EndpointResource{EndpointID: ep.ID, MacAddress: ep.MAC}
		if ep.IP != "" {
			er.IPv4Address = fmt.Sprintf("%s/%d", ep.IP, bits)
		}
		if ep.IP6 != "" && r.pool6 != nil {
			er.IPv6Address = fmt.Sprintf("%s/%d", ep.IP6, r.pool6.Subnet().Bits())
		}
		ni.Containers[ep.ContainerID] = er
	}
	return ni
}

func (nm *Controller) withContainerNames(ni network.Inspect) network.Inspect {
	for id, er := range ni.Containers {
		er.Name = nm.names.NameByID(id)
		ni.Containers[id] = er
	}
	return ni
}

// Inspect serves `docker network inspect`.
func (nm *Controller) Inspect(ctx context.Context, ref string, opts network.InspectOptions) (network.Inspect, error) {
	if opts.Scope != "" && opts.Scope != "local" {
		return network.Inspect{}, errdefs.NotFound(fmt.Errorf("network %s not found", ref))
	}
	nm.mu.Lock()
	r, err := nm.getLocked(ref)
	var ni network.Inspect
	if err == nil {
		ni = r.inspectLocked()
	}
	nm.unlock()
	if err != nil {
		return network.Inspect{}, err
	}
	return nm.withContainerNames(ni), nil
}

// List serves `docker network ls` with dockerd's filters.
func (nm *Controller) List(ctx context.Context, f filters.Args) ([]network.Summary, error) {
	if err := network.ValidateFilters(f); err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	for _, t := range f.Get("type") {
		if t != "custom" && t != "builtin" {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid filter: 'type'='%s'", t))
		}
	}
	if f.Contains("dangling") {
		for _, v := range f.Get("dangling") {
			if v != "true" && v != "false" && v != "1" && v != "0" {
				return nil, errdefs.InvalidParameter(fmt.Errorf("invalid filter: 'dangling'='%s'", v))
			}
		}
	}
	nm.mu.Lock()
	var out []network.Summary
	for _, r := range nm.sortedLocked() {
		if !r.matches(f) {
			continue
		}
		out = append(out, r.inspectLocked())
	}
	nm.unlock()
	if out == nil {
		out = []network.Summary{}
	}
	for i := range out {
		// dockerd's list does not show the endpoints (API >= 1.28).
		out[i].Containers = map[string]network.EndpointResource{}
	}
	return out, nil
}

func (r *netRecord) matches(f filters.Args) bool {
	scope := "local"
	if r.Scope != "" {
		scope = r.Scope
	}
	return MatchNetwork(f, r.ID, r.Name, r.Driver, scope, r.Labels, r.predefined(), len(r.Endpoints) == 0 && !r.predefined())
}

// MatchNetwork applies dockerd's network list filters (ValidateFilters
// checked them) to one network: the local ones here, the swarm's in
// cluster/.
func MatchNetwork(f filters.Args, id, name, driver, scope string, labels map[string]string, predefined, dangling bool) bool {
	if f.Contains("driver") && !f.ExactMatch("driver", driver) {
		return false
	}
	if f.Contains("name") && !f.Match("name", name) {
		return false
	}
	if f.Contains("id") {
		hit := false
		for _, v := range f.Get("id") {
			hit = hit || strings.HasPrefix(id, v)
		}
		if !hit {
			return false
		}
	}
	if f.Contains("scope") && !f.ExactMatch("scope", scope) {
		return false
	}
	if f.Contains("type") {
		want := "custom"
		if predefined {
			want = "builtin"
		}
		if !f.ExactMatch("type", want) {
			return false
		}
	}
	if f.Contains("dangling") {
		want := f.ExactMatch("dangling", "true") || f.ExactMatch("dangling", "1")
		if dangling != want {
			return false
		}
	}
	return filterutil.MatchLabels(f, labels)
}

// Remove serves `docker network rm`.
func (nm *Controller) Remove(ctx context.Context, ref string) error {
	nm.mu.Lock()
	defer nm.unlock()
	r, err := nm.getLocked(ref)
	if err != nil {
		return err
	}
	return nm.removeLocked(r)
}

func (nm *Controller) removeLocked(r *netRecord) error {
	if r.predefined() {
		return errdefs.Forbidden(fmt.Errorf("%s is a pre-defined network and cannot be removed", r.Name))
	}
	if len(r.Endpoints) > 0 {
		return errdefs.Conflict(fmt.Errorf("error while removing network: network %s id %s has active endpoints", r.Name, r.ID))
	}
	nm.bringDownLocked(r)
	delete(nm.nets, r.ID)
	if err := nm.saveLocked(); err != nil {
		return err
	}
	nm.log.WithFields(logrus.Fields{"network": r.Name, "id": r.ID[:12]}).Info("network removed")
	nm.event(r, events.ActionDestroy, nil)
	return nil
}

// Prune removes the user-defined networks no running container uses.
func (nm *Controller) Prune(ctx context.Context, f filters.Args) (*network.PruneReport, error) {
	if err := f.Validate(map[string]bool{"label": true, "label!": true, "until": true}); err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	var until time.Time
	if vals := f.Get("until"); len(vals) > 0 {
		var err error
		if until, err = filterutil.ParseTime(vals[0], time.Now()); err != nil {
			return nil, err
		}
	}
	report := &network.PruneReport{NetworksDeleted: []string{}}
	nm.mu.Lock()
	defer nm.unlock()
	for _, r := range nm.sortedLocked() {
		if r.predefined() || len(r.Endpoints) > 0 || !filterutil.MatchLabels(f, r.Labels) || (!until.IsZero() && r.Created.After(until)) {
			continue
		}
		if err := nm.removeLocked(r); err == nil {
			report.NetworksDeleted = append(report.NetworksDeleted, r.Name)
		}
	}
	sort.Strings(report.NetworksDeleted)
	return report, nil
}

// Connect serves `docker network connect` for c: the network and the
// endpoint settings are checked, a running container (c.Running) gets a
// NIC hot-plugged through plug (nil: the VM cannot, NotImplemented) and
// configured at once, then record keeps the settings in the container's
// configuration (under the network's name) and the event follows.
func (nm *Controller) Connect(ctx context.Context, c *Container, ref string, es *network.EndpointSettings, plug NICPlugger, record func(netName string, es *network.EndpointSettings) error) error {
	if es == nil {
		es = &network.EndpointSettings{}
	}
	nm.mu.Lock()
	r, err := nm.getLocked(ref)
	if err != nil {
		nm.unlock()
		return err
	}
	mode := string(c.HostConfig.NetworkMode)
	switch {
	case r.Driver == driverHost || r.Driver == driverNull:
		nm.unlock()
		return errdefs.Forbidden(fmt.Errorf("container cannot be disconnected from host network or connected to host network"))
	case mode == network.NetworkNone:
		nm.unlock()
		return errdefs.Forbidden(fmt.Errorf("container %s uses --network none and cannot be connected to a network", c.Name))
	}
	if err := r.checkEndpointSettings(es); err != nil {
		nm.unlock()
		return err
	}
	if c.NetConfig != nil && c.NetConfig.EndpointsConfig[r.Name] != nil {
		nm.unlock()
		return errdefs.Forbidden(fmt.Errorf("endpoint with name %s already exists in network %s", c.Name, r.Name))
	}
	netName := r.Name
	nm.unlock()

	if c.Running {
		if err := nm.hotConnect(ctx, c, netName, es, plug); err != nil {
			return err
		}
	}
	saved := es.Copy()
	saved.NetworkID, saved.EndpointID, saved.IPAddress, saved.Gateway = "", "", "", ""
	if err := record(netName, saved); err != nil {
		return err
	}
	nm.mu.Lock()
	if r, err := nm.getLocked(netName); err == nil {
		nm.event(r, events.ActionConnect, map[string]string{"container": c.ID})
	}
	nm.unlock()
	return nil
}

// hotConnect attaches a running container to a network (nm.mu not held).
func (nm *Controller) hotConnect(ctx context.Context, c *Container, netName string, es *network.EndpointSettings, plug NICPlugger) error {
	if plug == nil || nm.host == nil {
		return errdefs.NotImplemented(errors.New("connecting a running container to a network is not supported by this VM backend"))
	}
	nm.mu.Lock()
	r, err := nm.getLocked(netName)
	if err != nil {
		nm.unlock()
		return err
	}
	used := map[int]bool{}
	for _, o := range nm.nets {
		for _, ep := range o.Endpoints {
			if ep.ContainerID == c.ID {
				used[ifIndex(ep.IfName)] = true
			}
		}
	}
	idx := 0
	for used[idx] {
		idx++
	}
	oldGW, _ := nm.gatewayEndpointLocked(c.ID)
	ep, err := nm.newEndpointLocked(c, r, es, fmt.Sprintf("eth%d", idx), false)
	if err != nil {
		nm.unlock()
		return err
	}
	// The new endpoint takes the default route if it comes first now
	// (its gateway priority); the guest replaces the old route.
	movedFrom := oldGW
	if gw, _ := nm.gatewayEndpointLocked(c.ID); gw == ep {
		ep.DefaultRoute = true
		if oldGW != nil {
			oldGW.DefaultRoute = false
		}
	} else {
		movedFrom = nil
	}
	ic := r.interfaceConfig(ep, nm.cfg.MTU)
	_ = nm.saveLocked()
	nm.unlock()
	overlay := r.Driver == driverOverlay
	undo := func() {
		nm.mu.Lock()
		if r, err := nm.getLocked(netName); err == nil {
			if e := r.Endpoints[ep.ID]; e != nil {
				nm.releaseEndpointLocked(r, e)
			}
		}
		if movedFrom != nil {
			movedFrom.DefaultRoute = true
		}
		if overlay {
			nm.removeIdleOverlaysLocked()
		}
		_ = nm.saveLocked()
		nm.unlock()
	}
	if err := plug.AddNIC(ctx, vmbackend.NICSpec{TapName: ep.Tap, MAC: ep.MAC}); err != nil {
		undo()
		return fmt.Errorf("connect container to network %s: %w", netName, err)
	}
	if err := plug.InterfaceUp(ctx, ic); err != nil {
		_ = plug.RemoveNIC(context.Background(), ep.MAC)
		undo()
		return fmt.Errorf("connect container to network %s: %w", netName, err)
	}
	if overlay {
		// The other nodes learn the new address.
		nm.mu.Lock()
		nm.overlayChangedLocked(true)
		nm.unlock()
	}
	nm.log.WithFields(logrus.Fields{"container": c.ID[:12], "network": netName, "ip": ep.IP, "interface": ep.IfName}).Info("container connected to network")
	return nil
}

// Disconnect serves `docker network disconnect` for c: its NIC on the
// network is unplugged through plug (nil: the container has no VM, or one
// that cannot; an error stops the disconnect unless force), its endpoint
// released, the event published, and forget drops the network from the
// container's configuration if it was there.
func (nm *Controller) Disconnect(ctx context.Context, c *Container, ref string, force bool, plug NICPlugger, forget func(netName string) error) error {
	nm.mu.Lock()
	r, err := nm.getLocked(ref)
	if err != nil {
		nm.unlock()
		return err
	}
	if r.Driver == driverHost || r.Driver == driverNull {
		nm.unlock()
		return errdefs.Forbidden(fmt.Errorf("container cannot be disconnected from host network or connected to host network"))
	}
	var ep *endpointRecord
	for _, e := range r.Endpoints {
		if e.ContainerID == c.ID {
			ep = e
		}
	}
	configured := c.NetConfig != nil && c.NetConfig.EndpointsConfig[r.Name] != nil
	if ep == nil && !configured {
		nm.unlock()
		return errdefs.Forbidden(fmt.Errorf("container %s is not connected to network %s", c.ID, r.Name))
	}
	netName := r.Name
	var mac string
	if ep != nil {
		mac = ep.MAC
	}
	nm.unlock()

	if ep != nil && plug != nil {
		if err := plug.RemoveNIC(ctx, mac); err != nil && !force {
			return fmt.Errorf("disconnect container from network %s: %w", netName, err)
		}
	}
	nm.mu.Lock()
	var reroute *agentproto.InterfaceConfig
	if r, err := nm.getLocked(netName); err == nil {
		if e := r.Endpoints[ep.idOrEmpty()]; e != nil {
			hadRoute := e.DefaultRoute
			nm.releaseEndpointLocked(r, e)
			if r.Driver == driverOverlay {
				// The other nodes forget the address; the network goes
				// with this node's last endpoint on it.
				nm.removeIdleOverlaysLocked()
				nm.overlayChangedLocked(true)
			}
			// The default route went with the NIC: the next endpoint in
			// dockerd's order provides it now.
			if gw, gwNet := nm.gatewayEndpointLocked(c.ID); hadRoute && gw != nil {
				gw.DefaultRoute = true
				ic := gwNet.interfaceConfig(gw, nm.cfg.MTU)
				reroute = &ic
			}
		}
		_ = nm.saveLocked()
		nm.event(r, events.ActionDisconnect, map[string]string{"container": c.ID})
	}
	nm.unlock()
	if reroute != nil && plug != nil {
		if err := plug.InterfaceUp(ctx, *reroute); err != nil {
			nm.log.WithError(err).WithField("container", c.ID[:12]).Warn("cannot move the default route to the next network")
		}
	}
	if configured {
		return forget(netName)
	}
	return nil
}

func (ep *endpointRecord) idOrEmpty() string {
	if ep == nil {
		return ""
	}
	return ep.ID
}
