package daemon

// The /networks API (docker network create/ls/inspect/rm/prune/connect/
// disconnect): the network controller's, with the containers resolved
// and recorded here.

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/network/controller"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

func (d *Daemon) netOrErr() (networkController, error) {
	if d.net == nil {
		return nil, errdefs.Unavailable(errors.New("networking is not initialised"))
	}
	return d.net, nil
}

// NetworkCreate makes a bridge network: its subnet (given, or the next
// free default pool), its bridge, NAT rules and DNS server.
func (d *Daemon) NetworkCreate(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error) {
	nc, err := d.netOrErr()
	if err != nil {
		return network.CreateResponse{}, err
	}
	return nc.Create(ctx, req)
}

// NetworkInspect serves `docker network inspect`.
func (d *Daemon) NetworkInspect(ctx context.Context, ref string, opts network.InspectOptions) (network.Inspect, error) {
	nc, err := d.netOrErr()
	if err != nil {
		return network.Inspect{}, err
	}
	return nc.Inspect(ctx, ref, opts)
}

// NetworkList serves `docker network ls` with dockerd's filters.
func (d *Daemon) NetworkList(ctx context.Context, f filters.Args) ([]network.Summary, error) {
	nc, err := d.netOrErr()
	if err != nil {
		return nil, err
	}
	return nc.List(ctx, f)
}

// NetworkRemove serves `docker network rm`.
func (d *Daemon) NetworkRemove(ctx context.Context, ref string) error {
	nc, err := d.netOrErr()
	if err != nil {
		return err
	}
	return nc.Remove(ctx, ref)
}

// NetworksPrune removes the user-defined networks no running container
// uses.
func (d *Daemon) NetworksPrune(ctx context.Context, f filters.Args) (*network.PruneReport, error) {
	nc, err := d.netOrErr()
	if err != nil {
		return nil, err
	}
	return nc.Prune(ctx, f)
}

// EnsureOverlay makes a swarm network on this node for its tasks.
func (d *Daemon) EnsureOverlay(spec controller.OverlaySpec) error {
	nc, err := d.netOrErr()
	if err != nil {
		return err
	}
	return nc.EnsureOverlay(spec)
}

// SetOverlayPeers connects the overlay networks to the swarm's gossip.
func (d *Daemon) SetOverlayPeers(p controller.OverlayPeers) {
	if d.net != nil {
		d.net.SetOverlayPeers(p)
	}
}

// SetOverlayKeys gives the encrypted overlay networks the swarm's data
// encryption keys.
func (d *Daemon) SetOverlayKeys(keys []controller.OverlayKey, primary uint64) {
	if d.net != nil {
		d.net.SetOverlayKeys(keys, primary)
	}
}

// OverlayChanged tells the overlay networks that other nodes' endpoints
// changed.
func (d *Daemon) OverlayChanged() {
	if d.net != nil {
		d.net.OverlayChanged()
	}
}

// LocalNetwork reports whether ref names one of this engine's local
// networks.
func (d *Daemon) LocalNetwork(ref string) bool {
	if d.net == nil {
		return false
	}
	ni, err := d.net.Inspect(context.Background(), ref, network.InspectOptions{})
	return err == nil && ni.Scope == "local"
}

// vmNICs plugs NICs into a running container's VM and configures them
// through its agent (controller.NICPlugger).
type vmNICs struct {
	vmbackend.NICHotplugger
	agent *agentclient.Client
}

func (v vmNICs) InterfaceUp(ctx context.Context, ic agentproto.InterfaceConfig) error {
	return v.agent.InterfaceUp(ctx, ic)
}

// nicPlugger is c's VM as a controller.NICPlugger, nil if c has no VM or
// one that cannot hot-plug NICs. Callers hold c.mu.
func nicPlugger(c *Container) controller.NICPlugger {
	if c.run == nil {
		return nil
	}
	hp, ok := c.run.machine.(vmbackend.NICHotplugger)
	if !ok {
		return nil
	}
	return vmNICs{hp, c.run.agent}
}

// NetworkConnect serves `docker network connect`: recorded in the
// container's configuration, and for a running container a NIC is
// hot-plugged and configured at once.
func (d *Daemon) NetworkConnect(ctx context.Context, ref string, opts network.ConnectOptions) error {
	nc, err := d.netOrErr()
	if err != nil {
		return err
	}
	c, err := d.containers.get(opts.Container)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, joins := joinsVM(c.HostConfig); joins {
		// dockerd's answer; with jevm the network is the VM's (pods.go).
		return errdefs.InvalidParameter(errors.New("container sharing network namespace with another container or host cannot be connected to any other network"))
	}
	record := func(netName string, es *network.EndpointSettings) error {
		if c.NetConfig == nil {
			c.NetConfig = &network.NetworkingConfig{}
		}
		if c.NetConfig.EndpointsConfig == nil {
			c.NetConfig.EndpointsConfig = map[string]*network.EndpointSettings{}
		}
		c.NetConfig.EndpointsConfig[netName] = es
		return c.save()
	}
	nctr := netContainer(c)
	// Hot-plugged only into a VM this daemon runs.
	nctr.Running = c.run != nil && c.running()
	if a := d.swarmAttacher(); a != nil && a.InSwarm() {
		if ni, err := nc.Inspect(ctx, ref, network.InspectOptions{}); err != nil || ni.Scope == "swarm" {
			done, err := d.connectSwarm(ctx, nc, a, c, nctr, ref, opts.EndpointConfig, record)
			if done || err != nil {
				return err
			}
		}
	}
	return nc.Connect(ctx, nctr, ref, opts.EndpointConfig, nicPlugger(c), record)
}

// connectSwarm connects c to ref if it is a swarm network, as dockerd:
// a stopped container only records it (its next start asks the swarm for
// an address, which also says whether ref is an attachable swarm
// network); a running one gets an attachment from the swarm at once, the
// node makes the network, and a NIC with the swarm's address is
// hot-plugged. done is false when ref is no swarm network (the local
// networks answer). Callers hold c.mu.
func (d *Daemon) connectSwarm(ctx context.Context, nc networkController, a SwarmAttacher, c *Container, nctr *controller.Container, ref string, user *network.EndpointSettings, record func(string, *network.EndpointSettings) error) (done bool, err error) {
	if user == nil {
		user = &network.EndpointSettings{}
	}
	if !nctr.Running {
		key := ref
		if ni, err := nc.Inspect(ctx, ref, network.InspectOptions{}); err == nil {
			key = ni.Name
		}
		if c.NetConfig != nil && c.NetConfig.EndpointsConfig[key] != nil {
			return true, errdefs.Forbidden(fmt.Errorf("endpoint with name %s already exists in network %s", c.Name, key))
		}
		return true, record(key, user.Copy())
	}
	eps, err := a.AttachContainer(ctx, c.ID, []string{ref})
	if err != nil {
		return true, err
	}
	es := eps[ref]
	if es == nil {
		return false, nil
	}
	merged := es.Copy()
	merged.Aliases = append(merged.Aliases, user.Aliases...)
	// What is kept is what the user asked: each start asks the swarm for
	// an address again.
	err = nc.Connect(ctx, nctr, es.NetworkID, merged, nicPlugger(c), func(netName string, _ *network.EndpointSettings) error {
		return record(netName, user.Copy())
	})
	if err != nil {
		a.DetachContainer(c.ID, es.NetworkID)
	}
	return true, err
}

// NetworkDisconnect serves `docker network disconnect`.
func (d *Daemon) NetworkDisconnect(ctx context.Context, ref string, opts network.DisconnectOptions) error {
	nc, err := d.netOrErr()
	if err != nil {
		return err
	}
	c, err := d.containers.get(opts.Container)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	swarmNet := ""
	a := d.swarmAttacher()
	if a != nil && a.InSwarm() {
		if ni, err := nc.Inspect(ctx, ref, network.InspectOptions{}); err == nil && ni.Scope == "swarm" {
			swarmNet = ni.ID
		}
	}
	err = nc.Disconnect(ctx, netContainer(c), ref, opts.Force, nicPlugger(c), func(netName string) error {
		delete(c.NetConfig.EndpointsConfig, netName)
		return c.save()
	})
	if errdefs.IsNotFound(err) && c.NetConfig != nil && c.NetConfig.EndpointsConfig[ref] != nil {
		// A swarm network recorded for a stopped container, which this
		// node does not have.
		delete(c.NetConfig.EndpointsConfig, ref)
		return c.save()
	}
	if err == nil && swarmNet != "" {
		a.DetachContainer(c.ID, swarmNet)
	}
	return err
}
