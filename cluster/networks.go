package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	gogotypes "github.com/gogo/protobuf/types"
	swarmapi "github.com/moby/swarmkit/v2/api"

	netctl "github.com/jevm/jevm/network/controller"
)

// Swarm-scoped networks (docker network create -d overlay on a manager):
// kept by the managers, allocated by SwarmKit with dockerd's allocator
// (cnmallocator: subnets from the swarm's default address pool, VXLAN IDs,
// task and node addresses, virtual IPs). Each node makes the networks its
// tasks use (network/controller's overlay networks).

// DriverOverlay is the driver of swarm networks.
const DriverOverlay = "overlay"

// predefinedNetworks cannot be created, as in dockerd.
var predefinedNetworks = map[string]bool{network.NetworkBridge: true, network.NetworkHost: true, network.NetworkNone: true, network.NetworkDefault: true}

// CreateNetwork creates a swarm network (POST /networks/create with the
// overlay driver or scope swarm, on a manager).
func (c *Cluster) CreateNetwork(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error) {
	if predefinedNetworks[req.Name] {
		return network.CreateResponse{}, errdefs.Forbidden(fmt.Errorf("%s is a pre-defined network and cannot be created", req.Name))
	}
	if req.Driver != "" && req.Driver != DriverOverlay {
		return network.CreateResponse{}, errdefs.InvalidParameter(fmt.Errorf("jevm's swarm networks use the overlay driver, not %q", req.Driver))
	}
	if req.ConfigOnly || req.ConfigFrom != nil {
		return network.CreateResponse{}, errdefs.InvalidParameter(errors.New("config-only and config-from networks are not supported by jevm"))
	}
	control, err := c.controlClient()
	if err != nil {
		return network.CreateResponse{}, err
	}
	if l, err := control.ListNetworks(ctx, &swarmapi.ListNetworksRequest{Filters: &swarmapi.ListNetworksRequest_Filters{Names: []string{req.Name}}}); err == nil && len(l.Networks) > 0 {
		return network.CreateResponse{}, errdefs.Conflict(fmt.Errorf("network with name %s already exists", req.Name))
	}
	spec := &swarmapi.NetworkSpec{
		Annotations:  swarmapi.Annotations{Name: req.Name, Labels: req.Labels},
		DriverConfig: &swarmapi.Driver{Name: DriverOverlay, Options: req.Options},
		Internal:     req.Internal,
		Attachable:   req.Attachable,
		Ingress:      req.Ingress,
	}
	if req.EnableIPv6 != nil && *req.EnableIPv6 {
		return network.CreateResponse{}, errdefs.InvalidParameter(errors.New("jevm's overlay networks are IPv4 only for now"))
	}
	if ipam := req.IPAM; ipam != nil {
		spec.IPAM = &swarmapi.IPAMOptions{Driver: &swarmapi.Driver{Name: ipam.Driver, Options: ipam.Options}}
		if ipam.Driver == "" {
			spec.IPAM.Driver.Name = "default"
		}
		for _, ic := range ipam.Config {
			spec.IPAM.Configs = append(spec.IPAM.Configs, &swarmapi.IPAMConfig{
				Family: swarmapi.IPAMConfig_IPV4, Subnet: ic.Subnet, Range: ic.IPRange, Gateway: ic.Gateway, Reserved: ic.AuxAddress,
			})
		}
	}
	r, err := control.CreateNetwork(ctx, &swarmapi.CreateNetworkRequest{Spec: spec})
	if err != nil {
		return network.CreateResponse{}, fromGRPC(err)
	}
	return network.CreateResponse{ID: r.Network.ID}, nil
}

// ToNetworkInspect is the API's view of a swarm network.
func ToNetworkInspect(n *swarmapi.Network) network.Inspect {
	out := network.Inspect{
		ID: n.ID, Name: n.Spec.Annotations.Name, Scope: "swarm", Driver: DriverOverlay,
		EnableIPv4: true, EnableIPv6: n.Spec.Ipv6Enabled, Internal: n.Spec.Internal,
		Attachable: n.Spec.Attachable, Ingress: n.Spec.Ingress,
		Labels:     maps.Clone(n.Spec.Annotations.Labels),
		Options:    map[string]string{},
		IPAM:       network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{}},
		Containers: map[string]network.EndpointResource{},
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if t, err := gogotypes.TimestampFromProto(n.Meta.CreatedAt); err == nil {
		out.Created = t
	}
	if d := n.Spec.DriverConfig; d != nil {
		maps.Copy(out.Options, d.Options)
	}
	if d := n.DriverState; d != nil {
		// The allocated VXLAN ID (com.docker.network.driver.overlay.vxlanid_list).
		maps.Copy(out.Options, d.Options)
	}
	ipam := n.IPAM
	if ipam == nil {
		ipam = n.Spec.IPAM
	}
	if ipam != nil {
		if ipam.Driver != nil && ipam.Driver.Name != "" {
			out.IPAM.Driver = ipam.Driver.Name
			if ipam.Driver.Options != nil {
				out.IPAM.Options = maps.Clone(ipam.Driver.Options)
			}
		}
		for _, ic := range ipam.Configs {
			out.IPAM.Config = append(out.IPAM.Config, network.IPAMConfig{Subnet: ic.Subnet, IPRange: ic.Range, Gateway: ic.Gateway, AuxAddress: ic.Reserved})
		}
	}
	return out
}

// Networks lists the swarm's networks (a manager's part of GET
// /networks); f was validated by the local list.
func (c *Cluster) Networks(ctx context.Context, f filters.Args) ([]network.Summary, error) {
	control, err := c.controlClient()
	if err != nil {
		return nil, err
	}
	r, err := control.ListNetworks(ctx, &swarmapi.ListNetworksRequest{})
	if err != nil {
		return nil, fromGRPC(err)
	}
	var out []network.Summary
	for _, n := range r.Networks {
		if n.Spec.DriverConfig != nil && n.Spec.DriverConfig.Name != "" && n.Spec.DriverConfig.Name != DriverOverlay {
			continue // SwarmKit's own records of the nodes' bridge and host networks
		}
		ni := ToNetworkInspect(n)
		if netctl.MatchNetwork(f, ni.ID, ni.Name, ni.Driver, ni.Scope, ni.Labels, false, false) {
			out = append(out, ni)
		}
	}
	return out, nil
}

// SwarmNetwork returns one swarm network by ID, name or ID prefix.
func (c *Cluster) SwarmNetwork(ctx context.Context, ref string) (network.Inspect, error) {
	control, err := c.controlClient()
	if err != nil {
		return network.Inspect{}, err
	}
	n, err := c.networkByRef(ctx, control, ref)
	if err != nil {
		return network.Inspect{}, err
	}
	return ToNetworkInspect(n), nil
}

func (c *Cluster) networkByRef(ctx context.Context, control swarmapi.ControlClient, ref string) (*swarmapi.Network, error) {
	return byRef("network", ref,
		func() (*swarmapi.Network, error) {
			r, err := control.GetNetwork(ctx, &swarmapi.GetNetworkRequest{NetworkID: ref})
			if err != nil {
				return nil, err
			}
			return r.Network, nil
		},
		func() ([]*swarmapi.Network, error) {
			r, err := control.ListNetworks(ctx, &swarmapi.ListNetworksRequest{})
			if err != nil {
				return nil, fromGRPC(err)
			}
			var out []*swarmapi.Network
			for _, n := range r.Networks {
				if n.Spec.DriverConfig == nil || n.Spec.DriverConfig.Name == "" || n.Spec.DriverConfig.Name == DriverOverlay {
					out = append(out, n)
				}
			}
			return out, nil
		},
		func(n *swarmapi.Network) string { return n.ID },
		func(n *swarmapi.Network) string { return n.Spec.Annotations.Name })
}

// RemoveNetwork removes a swarm network (refused while services use it).
func (c *Cluster) RemoveNetwork(ctx context.Context, ref string) error {
	control, err := c.controlClient()
	if err != nil {
		return err
	}
	n, err := c.networkByRef(ctx, control, ref)
	if err != nil {
		return err
	}
	if _, err := control.RemoveNetwork(ctx, &swarmapi.RemoveNetworkRequest{NetworkID: n.ID}); err != nil {
		err = fromGRPC(err)
		if strings.Contains(err.Error(), "is in use") {
			return errdefs.Conflict(err)
		}
		return err
	}
	return nil
}

// resolveServiceNetworks names the spec's networks by ID, as dockerd
// stores them: a swarm network by name, ID or prefix; a local network
// cannot be used by services.
func (c *Cluster) resolveServiceNetworks(ctx context.Context, control swarmapi.ControlClient, spec *swarmapi.ServiceSpec) error {
	for _, na := range spec.Task.Networks {
		n, err := c.networkByRef(ctx, control, na.Target)
		if err != nil {
			if errdefs.IsNotFound(err) && c.cfg.LocalNetwork != nil && c.cfg.LocalNetwork(na.Target) {
				return errdefs.InvalidParameter(fmt.Errorf("The network %s cannot be used with services. Only networks scoped to the swarm can be used, such as those created with the overlay driver.", na.Target))
			}
			if errdefs.IsNotFound(err) {
				return errdefs.NotFound(fmt.Errorf("network %s not found", na.Target))
			}
			return err
		}
		if n.Spec.Ingress {
			return errdefs.InvalidParameter(fmt.Errorf("service cannot be explicitly attached to the ingress network %q", n.Spec.Annotations.Name))
		}
		na.Target = n.ID
	}
	return nil
}
