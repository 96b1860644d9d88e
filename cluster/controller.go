package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
	"github.com/moby/swarmkit/v2/agent/exec"
	swarmapi "github.com/moby/swarmkit/v2/api"
	"github.com/moby/swarmkit/v2/api/naming"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
)

// Containers is what the executor needs of the engine to run a task as a
// container (a jeVM): the engine's own container calls, as the API uses
// them, so a task's container is an ordinary one (docker ps lists it).
type Containers interface {
	ContainerCreate(ctx context.Context, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig, platform *ocispec.Platform) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, nameOrID string) error
	ContainerStop(ctx context.Context, nameOrID string, opts container.StopOptions) error
	ContainerKill(ctx context.Context, nameOrID string, signal string) error
	ContainerWait(ctx context.Context, nameOrID string, cond container.WaitCondition) (<-chan container.WaitResponse, error)
	ContainerRemove(ctx context.Context, nameOrID string, opts container.RemoveOptions) error
	ContainerInspect(ctx context.Context, nameOrID string, size bool) (*container.InspectResponse, error)
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	ContainerLogs(ctx context.Context, nameOrID string, opts container.LogsOptions) (<-chan backend.LogMessage, bool, error)
	// SetContainerFiles gives a container files kept only in memory: the
	// task's secrets and configs.
	SetContainerFiles(ctx context.Context, nameOrID string, files []backend.ContainerFile) error
	PullImage(ctx context.Context, ref string, platform string, auth *registry.AuthConfig, out io.Writer) error
	ImageInspect(ctx context.Context, nameOrID string) (*image.InspectResponse, error)
}

// Labels jevm puts on a task's container, as dockerd does.
const (
	labelServiceID   = "com.docker.swarm.service.id"
	labelServiceName = "com.docker.swarm.service.name"
	labelTaskID      = "com.docker.swarm.task.id"
	labelTaskName    = "com.docker.swarm.task.name"
	labelNodeID      = "com.docker.swarm.node.id"
)

// defaultStopGrace is a task's stop timeout when its spec has none.
const defaultStopGrace = 10 * time.Second

// controller runs one task as one container.
type controller struct {
	c    Containers
	task *swarmapi.Task
	name string                // the container's: service.slot.taskID
	deps exec.DependencyGetter // the task's secrets and configs
	// The node's overlay networks (overlay.go): its addresses on them,
	// the engine's networks and its data path address.
	nets     *nodeNets
	overlays Overlays
	dataAddr func() string
}

var (
	_ exec.Controller        = (*controller)(nil)
	_ exec.ContainerStatuser = (*controller)(nil)
)

func newController(c Containers, t *swarmapi.Task, deps exec.DependencyGetter) (*controller, error) {
	if t.Spec.GetContainer() == nil {
		return nil, exec.ErrRuntimeUnsupported
	}
	return &controller{c: c, task: t, name: naming.Task(t), deps: deps}, nil
}

// Update implements exec.Controller: nothing of a running task's
// container changes in place.
func (r *controller) Update(context.Context, *swarmapi.Task) error { return nil }

// Prepare creates the container, pulling its image first if the engine
// does not have it.
func (r *controller) Prepare(ctx context.Context) error {
	if _, err := r.c.ContainerInspect(ctx, r.name, false); err == nil {
		return exec.ErrTaskPrepared
	}
	spec := r.task.Spec.GetContainer()
	if _, err := r.c.ImageInspect(ctx, spec.Image); errdefs.IsNotFound(err) {
		if err := r.c.PullImage(ctx, spec.Image, "", nil, io.Discard); err != nil {
			return fmt.Errorf("pull %s: %w", spec.Image, err)
		}
	}
	cfg, hostCfg, err := r.containerConfig()
	if err != nil {
		return err
	}
	netCfg, mode, err := r.taskNetworks(ctx)
	if err != nil {
		return err
	}
	if mode != "" {
		hostCfg.NetworkMode = container.NetworkMode(mode)
	}
	if _, err := r.c.ContainerCreate(ctx, r.name, cfg, hostCfg, netCfg, nil); err != nil {
		return fmt.Errorf("create the task's container: %w", err)
	}
	return nil
}

// containerConfig is the task's container as the engine takes it.
func (r *controller) containerConfig() (*container.Config, *container.HostConfig, error) {
	spec := r.task.Spec.GetContainer()
	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[labelServiceID] = r.task.ServiceID
	labels[labelServiceName] = r.task.ServiceAnnotations.Name
	labels[labelTaskID] = r.task.ID
	labels[labelTaskName] = r.name
	labels[labelNodeID] = r.task.NodeID
	cfg := &container.Config{
		Image:      spec.Image,
		Entrypoint: spec.Command,
		Cmd:        spec.Args,
		Env:        spec.Env,
		Hostname:   spec.Hostname,
		WorkingDir: spec.Dir,
		User:       spec.User,
		Tty:        spec.TTY,
		OpenStdin:  spec.OpenStdin,
		StopSignal: spec.StopSignal,
		Labels:     labels,
	}
	if d := duration(spec.StopGracePeriod); d > 0 {
		secs := int(d / time.Second)
		cfg.StopTimeout = &secs
	}
	if spec.Healthcheck != nil {
		cfg.Healthcheck = toHealthConfig(spec.Healthcheck)
	}
	hostCfg := &container.HostConfig{
		ReadonlyRootfs: spec.ReadOnly,
		ExtraHosts:     spec.Hosts,
		Sysctls:        spec.Sysctls,
		CapAdd:         spec.CapabilityAdd,
		CapDrop:        spec.CapabilityDrop,
		GroupAdd:       spec.Groups,
	}
	if spec.Init != nil {
		v := spec.Init.Value
		hostCfg.Init = &v
	}
	if res := r.task.Spec.Resources; res != nil && res.Limits != nil {
		hostCfg.NanoCPUs = res.Limits.NanoCPUs
		hostCfg.Memory = res.Limits.MemoryBytes
	}
	if spec.PidsLimit > 0 {
		pids := spec.PidsLimit
		hostCfg.PidsLimit = &pids
	}
	for _, m := range spec.Mounts {
		mt, err := toMount(m)
		if err != nil {
			return nil, nil, err
		}
		hostCfg.Mounts = append(hostCfg.Mounts, mt)
	}
	if spec.DNSConfig != nil {
		hostCfg.DNS, hostCfg.DNSSearch, hostCfg.DNSOptions = spec.DNSConfig.Nameservers, spec.DNSConfig.Search, spec.DNSConfig.Options
	}
	// Ports published in host mode, as a container's -p: as the
	// allocator resolved them, or (SwarmKit's allocator without a network
	// driver leaves them out) as the service's spec says.
	if e := r.task.Endpoint; e != nil {
		ports := e.Ports
		if len(ports) == 0 && e.Spec != nil {
			ports = e.Spec.Ports
		}
		for _, p := range ports {
			if p.PublishMode != swarmapi.PublishModeHost {
				continue
			}
			port := nat.Port(fmt.Sprintf("%d/%s", p.TargetPort, strings.ToLower(p.Protocol.String())))
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts, hostCfg.PortBindings = nat.PortSet{}, nat.PortMap{}
			}
			cfg.ExposedPorts[port] = struct{}{}
			hostPort := ""
			if p.PublishedPort != 0 {
				hostPort = strconv.FormatUint(uint64(p.PublishedPort), 10)
			}
			hostCfg.PortBindings[port] = append(hostCfg.PortBindings[port], nat.PortBinding{HostPort: hostPort})
		}
	}
	return cfg, hostCfg, nil
}

// toMount maps a task's mount.
func toMount(m swarmapi.Mount) (mount.Mount, error) {
	out := mount.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
	switch m.Type {
	case swarmapi.MountTypeBind:
		out.Type = mount.TypeBind
	case swarmapi.MountTypeVolume:
		out.Type = mount.TypeVolume
		if o := m.VolumeOptions; o != nil {
			out.VolumeOptions = &mount.VolumeOptions{NoCopy: o.NoCopy, Labels: o.Labels}
			if o.DriverConfig != nil {
				out.VolumeOptions.DriverConfig = &mount.Driver{Name: o.DriverConfig.Name, Options: o.DriverConfig.Options}
			}
		}
	case swarmapi.MountTypeTmpfs:
		out.Type = mount.TypeTmpfs
		if o := m.TmpfsOptions; o != nil {
			out.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: o.SizeBytes, Mode: o.Mode}
		}
	default:
		return mount.Mount{}, fmt.Errorf("jevm does not take %s mounts for swarm tasks", strings.ToLower(m.Type.String()))
	}
	return out, nil
}

// Start implements exec.Controller.
func (r *controller) Start(ctx context.Context) error {
	st, err := r.c.ContainerInspect(ctx, r.name, false)
	if err != nil {
		return err
	}
	if st.State != nil && st.State.Running {
		return exec.ErrTaskStarted
	}
	if st.State != nil && st.State.FinishedAt != "" && st.State.FinishedAt != "0001-01-01T00:00:00Z" {
		// It ran and exited: a task is not started twice.
		return exec.ErrTaskStarted
	}
	// Given at every start: the engine keeps them in memory only.
	files, err := r.taskFiles()
	if err != nil {
		return err
	}
	if len(files) > 0 {
		if err := r.c.SetContainerFiles(ctx, r.name, files); err != nil {
			return err
		}
	}
	// The node removes an overlay network when its last endpoint goes,
	// which may have happened since Prepare.
	if _, _, err := r.taskNetworks(ctx); err != nil {
		return err
	}
	if err := r.c.ContainerStart(ctx, r.name); err != nil && !errdefs.IsNotModified(err) {
		return err
	}
	// With a health check the task runs once it is healthy, as dockerd's
	// executor reports it: what gates a rolling update.
	if !hasHealthcheck(st.Config) {
		return nil
	}
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		st, err := r.c.ContainerInspect(ctx, r.name, false)
		if err != nil {
			return err
		}
		switch {
		case st.State == nil:
		case !st.State.Running:
			if st.State.ExitCode != 0 {
				return &exitError{code: st.State.ExitCode}
			}
			return nil
		case st.State.Health != nil && st.State.Health.Status == container.Healthy:
			return nil
		case st.State.Health != nil && st.State.Health.Status == container.Unhealthy:
			if err := r.Shutdown(ctx); err != nil {
				return fmt.Errorf("shut the unhealthy container down: %w", err)
			}
			return errContainerUnhealthy
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// healthPoll is how often the executor looks at a task's health.
const healthPoll = 250 * time.Millisecond

// errContainerUnhealthy fails a task whose container turned unhealthy
// (dockerd's words).
var errContainerUnhealthy = errors.New("unhealthy container")

// hasHealthcheck says whether a container's configuration (the image's
// health check merged in) has a health check.
func hasHealthcheck(cfg *container.Config) bool {
	return cfg != nil && cfg.Healthcheck != nil && len(cfg.Healthcheck.Test) > 0 && cfg.Healthcheck.Test[0] != "NONE"
}

// Wait implements exec.Controller: a non-zero exit fails the task.
func (r *controller) Wait(ctx context.Context) error {
	ch, err := r.c.ContainerWait(ctx, r.name, container.WaitConditionNotRunning)
	if err != nil {
		return err
	}
	// A container that turns unhealthy is shut down and fails the task.
	var health <-chan time.Time
	if st, err := r.c.ContainerInspect(ctx, r.name, false); err == nil && hasHealthcheck(st.Config) {
		tick := time.NewTicker(4 * healthPoll)
		defer tick.Stop()
		health = tick.C
	}
	for {
		select {
		case res := <-ch:
			if res.Error != nil && res.Error.Message != "" {
				return errors.New(res.Error.Message)
			}
			if res.StatusCode != 0 {
				return &exitError{code: int(res.StatusCode)}
			}
			return nil
		case <-health:
			st, err := r.c.ContainerInspect(ctx, r.name, false)
			if err == nil && st.State != nil && st.State.Health != nil && st.State.Health.Status == container.Unhealthy {
				if err := r.Shutdown(ctx); err != nil {
					return fmt.Errorf("shut the unhealthy container down: %w", err)
				}
				return errContainerUnhealthy
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Shutdown implements exec.Controller: a stop with the task's grace period.
func (r *controller) Shutdown(ctx context.Context) error {
	grace := defaultStopGrace
	if d := duration(r.task.Spec.GetContainer().StopGracePeriod); d > 0 {
		grace = d
	}
	secs := int(grace / time.Second)
	err := r.c.ContainerStop(ctx, r.name, container.StopOptions{Timeout: &secs})
	if errdefs.IsNotFound(err) || errdefs.IsNotModified(err) {
		return nil // gone, or stopped already
	}
	return err
}

// Terminate implements exec.Controller.
func (r *controller) Terminate(ctx context.Context) error {
	err := r.c.ContainerKill(ctx, r.name, "KILL")
	if errdefs.IsNotFound(err) || errdefs.IsConflict(err) {
		return nil // gone, or not running
	}
	return err
}

// Remove implements exec.Controller.
func (r *controller) Remove(ctx context.Context) error {
	err := r.c.ContainerRemove(ctx, r.name, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// Close implements exec.Controller.
func (r *controller) Close() error { return nil }

// ContainerStatus implements exec.ContainerStatuser.
func (r *controller) ContainerStatus(ctx context.Context) (*swarmapi.ContainerStatus, error) {
	st, err := r.c.ContainerInspect(ctx, r.name, false)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cs := &swarmapi.ContainerStatus{ContainerID: st.ID}
	if st.State != nil {
		cs.PID, cs.ExitCode = int32(st.State.Pid), int32(st.State.ExitCode)
	}
	return cs, nil
}

// exitError is a task's non-zero exit (exec.ExitCoder).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("task: non-zero exit (%d)", e.code) }
func (e *exitError) ExitCode() int { return e.code }

// taskFiles are the task's secrets and configs as files: a secret at
// /run/secrets/NAME unless its target is absolute, a config at /NAME, as
// dockerd mounts them, with the reference's owner and mode.
func (r *controller) taskFiles() ([]backend.ContainerFile, error) {
	spec := r.task.Spec.GetContainer()
	var files []backend.ContainerFile
	add := func(kind, name string, ft *swarmapi.FileTarget, data []byte, dir string) error {
		uid, err := fileOwnerID(ft.UID)
		if err != nil {
			return fmt.Errorf("%s %s: uid: %w", kind, name, err)
		}
		gid, err := fileOwnerID(ft.GID)
		if err != nil {
			return fmt.Errorf("%s %s: gid: %w", kind, name, err)
		}
		target := ft.Name
		if !path.IsAbs(target) {
			target = path.Join(dir, target)
		}
		files = append(files, backend.ContainerFile{Target: target, Data: data, UID: uid, GID: gid, Mode: ft.Mode})
		return nil
	}
	for _, ref := range spec.Secrets {
		ft := ref.GetFile()
		if ft == nil {
			continue
		}
		s, err := r.deps.Secrets().Get(ref.SecretID)
		if err != nil || s == nil {
			return nil, fmt.Errorf("secret %s (%s) is not available to the task: %v", ref.SecretName, ref.SecretID, err)
		}
		if err := add("secret", ref.SecretName, ft, s.Spec.Data, "/run/secrets"); err != nil {
			return nil, err
		}
	}
	for _, ref := range spec.Configs {
		ft := ref.GetFile()
		if ft == nil {
			continue // a runtime target (Windows credential specs)
		}
		cfg, err := r.deps.Configs().Get(ref.ConfigID)
		if err != nil || cfg == nil {
			return nil, fmt.Errorf("config %s (%s) is not available to the task: %v", ref.ConfigName, ref.ConfigID, err)
		}
		if err := add("config", ref.ConfigName, ft, cfg.Spec.Data, "/"); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// fileOwnerID parses a file target's numeric uid or gid ("" is 0).
func fileOwnerID(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a numeric id", s)
	}
	return uint32(n), nil
}
