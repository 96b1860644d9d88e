package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/errdefs"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/cluster"
)

// Swarm mode: the cluster component (cluster/) beside the daemon, as the
// builder is.

func (e engine) SwarmInit(ctx context.Context, req swarm.InitRequest) (string, error) {
	return e.c.Init(ctx, req)
}

func (e engine) SwarmJoin(ctx context.Context, req swarm.JoinRequest) error {
	return e.c.Join(ctx, req)
}

func (e engine) SwarmUnlock(ctx context.Context, key string) error { return e.c.Unlock(ctx, key) }

func (e engine) SwarmLeave(ctx context.Context, force bool) error { return e.c.Leave(ctx, force) }

func (e engine) SwarmInspect(ctx context.Context) (swarm.Swarm, error) { return e.c.Inspect(ctx) }

func (e engine) SwarmUnlockKey(ctx context.Context) (string, error) { return e.c.UnlockKey(ctx) }

func (e engine) SwarmNodes(ctx context.Context, f filters.Args) ([]swarm.Node, error) {
	return e.c.Nodes(ctx, f)
}

func (e engine) SwarmNode(ctx context.Context, ref string) (swarm.Node, error) {
	return e.c.Node(ctx, ref)
}

func (e engine) SwarmStatus() string { return e.c.Status() }

func (e engine) SwarmUpdate(ctx context.Context, spec swarm.Spec, opts backend.SwarmUpdateOptions) error {
	return e.c.Update(ctx, spec, opts)
}

func (e engine) SwarmNodeUpdate(ctx context.Context, ref string, version uint64, spec swarm.NodeSpec) error {
	return e.c.UpdateNode(ctx, ref, version, spec)
}

func (e engine) SwarmNodeRemove(ctx context.Context, ref string, force bool) error {
	return e.c.RemoveNode(ctx, ref, force)
}

// SystemInfo adds the swarm's state to the daemon's answer.
func (e engine) SystemInfo(ctx context.Context) (*system.Info, error) {
	info, err := e.Daemon.SystemInfo(ctx)
	if err != nil {
		return nil, err
	}
	info.Swarm = e.c.Info(ctx)
	return info, nil
}

func (e engine) ServiceCreate(ctx context.Context, spec swarm.ServiceSpec) (swarm.ServiceCreateResponse, error) {
	return e.c.CreateService(ctx, spec)
}

func (e engine) Services(ctx context.Context, f filters.Args, status bool) ([]swarm.Service, error) {
	return e.c.Services(ctx, f, status)
}

func (e engine) Service(ctx context.Context, ref string) (swarm.Service, error) {
	return e.c.Service(ctx, ref)
}

func (e engine) ServiceUpdate(ctx context.Context, ref string, version uint64, spec swarm.ServiceSpec, rollback bool) (swarm.ServiceUpdateResponse, error) {
	return e.c.UpdateService(ctx, ref, version, spec, rollback)
}

func (e engine) ServiceRemove(ctx context.Context, ref string) error {
	return e.c.RemoveService(ctx, ref)
}

func (e engine) Tasks(ctx context.Context, f filters.Args) ([]swarm.Task, error) {
	return e.c.Tasks(ctx, f)
}

func (e engine) Task(ctx context.Context, id string) (swarm.Task, error) { return e.c.Task(ctx, id) }

func (e engine) ServiceLogs(ctx context.Context, services, tasks []string, opts container.LogsOptions) (<-chan backend.LogMessage, error) {
	return e.c.ServiceLogs(ctx, services, tasks, opts)
}

func (e engine) SecretCreate(ctx context.Context, spec swarm.SecretSpec) (string, error) {
	return e.c.CreateSecret(ctx, spec)
}

func (e engine) Secrets(ctx context.Context, f filters.Args) ([]swarm.Secret, error) {
	return e.c.Secrets(ctx, f)
}

func (e engine) Secret(ctx context.Context, ref string) (swarm.Secret, error) {
	return e.c.Secret(ctx, ref)
}

func (e engine) SecretUpdate(ctx context.Context, ref string, version uint64, spec swarm.SecretSpec) error {
	return e.c.UpdateSecret(ctx, ref, version, spec)
}

func (e engine) SecretRemove(ctx context.Context, ref string) error {
	return e.c.RemoveSecret(ctx, ref)
}

func (e engine) ConfigCreate(ctx context.Context, spec swarm.ConfigSpec) (string, error) {
	return e.c.CreateConfig(ctx, spec)
}

func (e engine) Configs(ctx context.Context, f filters.Args) ([]swarm.Config, error) {
	return e.c.Configs(ctx, f)
}

func (e engine) Config(ctx context.Context, ref string) (swarm.Config, error) {
	return e.c.Config(ctx, ref)
}

func (e engine) ConfigUpdate(ctx context.Context, ref string, version uint64, spec swarm.ConfigSpec) error {
	return e.c.UpdateConfig(ctx, ref, version, spec)
}

func (e engine) ConfigRemove(ctx context.Context, ref string) error {
	return e.c.RemoveConfig(ctx, ref)
}

// The networks API spans both: local networks are the daemon's, swarm
// networks (the overlay driver) the managers', as in dockerd. A node
// shows the swarm networks its tasks use as local records of scope swarm;
// a manager lists and inspects every swarm network.

func (e engine) NetworkCreate(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error) {
	if req.Driver == cluster.DriverOverlay || req.Scope == "swarm" {
		switch e.c.Status() {
		case "active/manager":
			return e.c.CreateNetwork(ctx, req)
		case "active/worker":
			return network.CreateResponse{}, errdefs.Forbidden(errors.New("Cannot create a multi-host network from a worker node. Please create the network from a manager node."))
		}
		return network.CreateResponse{}, errdefs.Unavailable(errors.New(`This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`))
	}
	if e.c.Status() == "active/manager" {
		if _, err := e.c.SwarmNetwork(ctx, req.Name); err == nil {
			return network.CreateResponse{}, errdefs.Conflict(fmt.Errorf("network with name %s already exists", req.Name))
		}
	}
	return e.Daemon.NetworkCreate(ctx, req)
}

func (e engine) NetworkList(ctx context.Context, f filters.Args) ([]network.Summary, error) {
	local, err := e.Daemon.NetworkList(ctx, f)
	if err != nil || e.c.Status() != "active/manager" {
		return local, err
	}
	swarmNets, err := e.c.Networks(ctx, f)
	if err != nil {
		return local, nil // the manager is busy: this node's view
	}
	seen := map[string]bool{}
	for _, n := range swarmNets {
		seen[n.ID] = true
	}
	out := swarmNets
	for _, n := range local {
		if !seen[n.ID] {
			out = append(out, n)
		}
	}
	return out, nil
}

func (e engine) NetworkInspect(ctx context.Context, ref string, opts network.InspectOptions) (network.Inspect, error) {
	ni, err := e.Daemon.NetworkInspect(ctx, ref, opts)
	if err == nil || !errdefs.IsNotFound(err) || e.c.Status() != "active/manager" || (opts.Scope != "" && opts.Scope != "swarm") {
		return ni, err
	}
	return e.c.SwarmNetwork(ctx, ref)
}

func (e engine) NetworkRemove(ctx context.Context, ref string) error {
	if e.c.Status() == "active/manager" {
		if _, err := e.c.SwarmNetwork(ctx, ref); err == nil {
			return e.c.RemoveNetwork(ctx, ref)
		}
	}
	return e.Daemon.NetworkRemove(ctx, ref)
}

// ContainerCreate refuses, as dockerd does on a manager, a container on a
// swarm network that is not attachable (on a worker, the start does).
// Tasks' containers are made by the swarm executor directly.
func (e engine) ContainerCreate(ctx context.Context, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig, platform *ocispec.Platform) (container.CreateResponse, error) {
	if e.c.Status() == "active/manager" {
		var refs []string
		if hostCfg != nil && hostCfg.NetworkMode.IsUserDefined() {
			refs = append(refs, string(hostCfg.NetworkMode))
		}
		if netCfg != nil {
			for k := range netCfg.EndpointsConfig {
				refs = append(refs, k)
			}
		}
		for _, ref := range refs {
			if e.Daemon.LocalNetwork(ref) {
				continue
			}
			ni, err := e.c.SwarmNetwork(ctx, ref)
			if err != nil {
				continue
			}
			if !ni.Attachable {
				return container.CreateResponse{}, errdefs.Forbidden(fmt.Errorf("Could not attach to network %s: rpc error: code = PermissionDenied desc = network %s not manually attachable", ref, ni.ID))
			}
		}
	}
	return e.Daemon.ContainerCreate(ctx, name, cfg, hostCfg, netCfg, platform)
}
