package main

import (
	"context"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"

	"github.com/jevm/jevm/api/types/backend"
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
