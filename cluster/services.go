package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	gogotypes "github.com/gogo/protobuf/types"
	swarmapi "github.com/moby/swarmkit/v2/api"
)

// Services and tasks: the API's service spec is turned into SwarmKit's
// and back. What jevm does not run yet is refused here, at create or
// update, rather than left for every task to fail: plugins and SCTP
// through the routing mesh.

// toServiceSpec converts and checks an API service spec.
func toServiceSpec(s swarm.ServiceSpec) (swarmapi.ServiceSpec, error) {
	bad := func(format string, a ...any) (swarmapi.ServiceSpec, error) {
		return swarmapi.ServiceSpec{}, errdefs.InvalidParameter(fmt.Errorf(format, a...))
	}
	cs := s.TaskTemplate.ContainerSpec
	if cs == nil {
		return bad("jevm runs container services only (no ContainerSpec in the task template)")
	}
	if cs.Image == "" {
		return bad("ContainerSpec: image reference must be provided")
	}
	out := swarmapi.ServiceSpec{Annotations: swarmapi.Annotations{Name: s.Name, Labels: s.Labels}}
	modes := 0
	for _, set := range []bool{s.Mode.Global != nil, s.Mode.Replicated != nil, s.Mode.ReplicatedJob != nil, s.Mode.GlobalJob != nil} {
		if set {
			modes++
		}
	}
	if modes > 1 {
		return bad("must specify only one service mode")
	}
	switch m := s.Mode; {
	case m.Global != nil:
		out.Mode = &swarmapi.ServiceSpec_Global{Global: &swarmapi.GlobalService{}}
	case m.GlobalJob != nil:
		out.Mode = &swarmapi.ServiceSpec_GlobalJob{GlobalJob: &swarmapi.GlobalJob{}}
	case m.ReplicatedJob != nil:
		// dockerd's defaults: one task at a time, as many completions as
		// may run at once.
		j := &swarmapi.ReplicatedJob{MaxConcurrent: 1}
		if m.ReplicatedJob.MaxConcurrent != nil {
			j.MaxConcurrent = *m.ReplicatedJob.MaxConcurrent
		}
		j.TotalCompletions = j.MaxConcurrent
		if m.ReplicatedJob.TotalCompletions != nil {
			j.TotalCompletions = *m.ReplicatedJob.TotalCompletions
		}
		out.Mode = &swarmapi.ServiceSpec_ReplicatedJob{ReplicatedJob: j}
	default:
		replicas := uint64(1)
		if m.Replicated != nil && m.Replicated.Replicas != nil {
			replicas = *m.Replicated.Replicas
		}
		out.Mode = &swarmapi.ServiceSpec_Replicated{Replicated: &swarmapi.ReplicatedService{Replicas: replicas}}
	}
	c := &swarmapi.ContainerSpec{
		Image: cs.Image, Labels: cs.Labels, Command: cs.Command, Args: cs.Args, Hostname: cs.Hostname,
		Env: cs.Env, Dir: cs.Dir, User: cs.User, Groups: cs.Groups, TTY: cs.TTY, OpenStdin: cs.OpenStdin,
		ReadOnly: cs.ReadOnly, StopSignal: cs.StopSignal, Hosts: cs.Hosts, Sysctls: cs.Sysctls,
		CapabilityAdd: cs.CapabilityAdd, CapabilityDrop: cs.CapabilityDrop,
	}
	if cs.Init != nil {
		c.Init = &gogotypes.BoolValue{Value: *cs.Init}
	}
	if h := cs.Healthcheck; h != nil {
		c.Healthcheck = &swarmapi.HealthConfig{
			Test: h.Test, Retries: int32(h.Retries),
			Interval: durationProto(h.Interval), Timeout: durationProto(h.Timeout),
			StartPeriod: durationProto(h.StartPeriod), StartInterval: durationProto(h.StartInterval),
		}
	}
	for _, r := range cs.Secrets {
		if r == nil {
			continue
		}
		sr := &swarmapi.SecretReference{SecretID: r.SecretID, SecretName: r.SecretName}
		if r.File != nil {
			sr.Target = &swarmapi.SecretReference_File{File: &swarmapi.FileTarget{Name: r.File.Name, UID: r.File.UID, GID: r.File.GID, Mode: r.File.Mode}}
		}
		c.Secrets = append(c.Secrets, sr)
	}
	for _, r := range cs.Configs {
		if r == nil {
			continue
		}
		cr := &swarmapi.ConfigReference{ConfigID: r.ConfigID, ConfigName: r.ConfigName}
		switch {
		case r.File != nil:
			cr.Target = &swarmapi.ConfigReference_File{File: &swarmapi.FileTarget{Name: r.File.Name, UID: r.File.UID, GID: r.File.GID, Mode: r.File.Mode}}
		case r.Runtime != nil:
			cr.Target = &swarmapi.ConfigReference_Runtime{Runtime: &swarmapi.RuntimeTarget{}}
		}
		c.Configs = append(c.Configs, cr)
	}
	if cs.StopGracePeriod != nil {
		c.StopGracePeriod = gogotypes.DurationProto(*cs.StopGracePeriod)
	}
	if d := cs.DNSConfig; d != nil {
		c.DNSConfig = &swarmapi.ContainerSpec_DNSConfig{Nameservers: d.Nameservers, Search: d.Search, Options: d.Options}
	}
	for _, m := range cs.Mounts {
		sm := swarmapi.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
		switch m.Type {
		case mount.TypeBind:
			sm.Type = swarmapi.MountTypeBind
		case mount.TypeVolume:
			sm.Type = swarmapi.MountTypeVolume
			if o := m.VolumeOptions; o != nil {
				sm.VolumeOptions = &swarmapi.Mount_VolumeOptions{NoCopy: o.NoCopy, Labels: o.Labels}
				if o.DriverConfig != nil {
					sm.VolumeOptions.DriverConfig = &swarmapi.Driver{Name: o.DriverConfig.Name, Options: o.DriverConfig.Options}
				}
			}
		case mount.TypeTmpfs:
			sm.Type = swarmapi.MountTypeTmpfs
			if o := m.TmpfsOptions; o != nil {
				sm.TmpfsOptions = &swarmapi.Mount_TmpfsOptions{SizeBytes: o.SizeBytes, Mode: o.Mode}
			}
		default:
			return bad("invalid mount type: %q", m.Type)
		}
		c.Mounts = append(c.Mounts, sm)
	}
	out.Task.Runtime = &swarmapi.TaskSpec_Container{Container: c}
	t := s.TaskTemplate
	if r := t.Resources; r != nil {
		out.Task.Resources = &swarmapi.ResourceRequirements{}
		if l := r.Limits; l != nil {
			out.Task.Resources.Limits = &swarmapi.Resources{NanoCPUs: l.NanoCPUs, MemoryBytes: l.MemoryBytes}
			c.PidsLimit = l.Pids
		}
		if rv := r.Reservations; rv != nil {
			out.Task.Resources.Reservations = &swarmapi.Resources{NanoCPUs: rv.NanoCPUs, MemoryBytes: rv.MemoryBytes}
		}
	}
	if rp := t.RestartPolicy; rp != nil {
		p := &swarmapi.RestartPolicy{}
		switch rp.Condition {
		case swarm.RestartPolicyConditionNone:
			p.Condition = swarmapi.RestartOnNone
		case swarm.RestartPolicyConditionOnFailure:
			p.Condition = swarmapi.RestartOnFailure
		case swarm.RestartPolicyConditionAny, "":
			p.Condition = swarmapi.RestartOnAny
		default:
			return bad("invalid RestartCondition: %q", rp.Condition)
		}
		if rp.Delay != nil {
			p.Delay = gogotypes.DurationProto(*rp.Delay)
		}
		if rp.MaxAttempts != nil {
			p.MaxAttempts = *rp.MaxAttempts
		}
		if rp.Window != nil {
			p.Window = gogotypes.DurationProto(*rp.Window)
		}
		out.Task.Restart = p
	}
	if pl := t.Placement; pl != nil {
		out.Task.Placement = &swarmapi.Placement{Constraints: pl.Constraints, MaxReplicas: pl.MaxReplicas}
		for _, p := range pl.Preferences {
			if p.Spread == nil {
				return bad("invalid placement preference: only spread is supported")
			}
			out.Task.Placement.Preferences = append(out.Task.Placement.Preferences, &swarmapi.PlacementPreference{
				Preference: &swarmapi.PlacementPreference_Spread{Spread: &swarmapi.SpreadOver{SpreadDescriptor: p.Spread.SpreadDescriptor}},
			})
		}
	}
	if d := t.LogDriver; d != nil {
		out.Task.LogDriver = &swarmapi.Driver{Name: d.Name, Options: d.Options}
	}
	out.Task.ForceUpdate = t.ForceUpdate
	// The top-level Networks are deprecated (API < 1.44): dockerd moves
	// them into the task template.
	nets := t.Networks
	if len(nets) == 0 {
		nets = s.Networks
	}
	for _, n := range nets {
		out.Task.Networks = append(out.Task.Networks, &swarmapi.NetworkAttachmentConfig{Target: n.Target, Aliases: n.Aliases, DriverAttachmentOpts: n.DriverOpts})
	}
	var err error
	if out.Update, err = toUpdateConfig(s.UpdateConfig); err != nil {
		return swarmapi.ServiceSpec{}, err
	}
	if out.Rollback, err = toUpdateConfig(s.RollbackConfig); err != nil {
		return swarmapi.ServiceSpec{}, err
	}
	if e := s.EndpointSpec; e != nil {
		out.Endpoint = &swarmapi.EndpointSpec{}
		if e.Mode == swarm.ResolutionModeDNSRR {
			out.Endpoint.Mode = swarmapi.ResolutionModeDNSRoundRobin
		}
		for _, p := range e.Ports {
			pc := &swarmapi.PortConfig{Name: p.Name, TargetPort: p.TargetPort, PublishedPort: p.PublishedPort, PublishMode: swarmapi.PublishModeIngress}
			if p.PublishMode == swarm.PortConfigPublishModeHost {
				pc.PublishMode = swarmapi.PublishModeHost
			}
			switch p.Protocol {
			case swarm.PortConfigProtocolUDP:
				pc.Protocol = swarmapi.ProtocolUDP
			case swarm.PortConfigProtocolSCTP:
				if pc.PublishMode == swarmapi.PublishModeIngress {
					return bad("jevm's routing mesh publishes TCP and UDP ports, not SCTP (publish it with mode=host)")
				}
				pc.Protocol = swarmapi.ProtocolSCTP
			}
			out.Endpoint.Ports = append(out.Endpoint.Ports, pc)
		}
	}
	return out, nil
}

func toUpdateConfig(u *swarm.UpdateConfig) (*swarmapi.UpdateConfig, error) {
	if u == nil {
		return nil, nil
	}
	out := &swarmapi.UpdateConfig{Parallelism: u.Parallelism, Delay: u.Delay, MaxFailureRatio: u.MaxFailureRatio}
	if u.Monitor != 0 {
		out.Monitor = gogotypes.DurationProto(u.Monitor)
	}
	switch u.FailureAction {
	case "", swarm.UpdateFailureActionPause:
		out.FailureAction = swarmapi.UpdateConfig_PAUSE
	case swarm.UpdateFailureActionContinue:
		out.FailureAction = swarmapi.UpdateConfig_CONTINUE
	case swarm.UpdateFailureActionRollback:
		out.FailureAction = swarmapi.UpdateConfig_ROLLBACK
	default:
		return nil, errdefs.InvalidParameter(fmt.Errorf("unrecognized update failure action %s", u.FailureAction))
	}
	switch u.Order {
	case "", swarm.UpdateOrderStopFirst:
		out.Order = swarmapi.UpdateConfig_STOP_FIRST
	case swarm.UpdateOrderStartFirst:
		out.Order = swarmapi.UpdateConfig_START_FIRST
	default:
		return nil, errdefs.InvalidParameter(fmt.Errorf("unrecognized update order %s", u.Order))
	}
	return out, nil
}

// fromServiceSpec is the API's view of a SwarmKit service spec.
func fromServiceSpec(s *swarmapi.ServiceSpec) swarm.ServiceSpec {
	out := swarm.ServiceSpec{Annotations: swarm.Annotations{Name: s.Annotations.Name, Labels: s.Annotations.Labels}}
	out.TaskTemplate = fromTaskSpec(s.Task)
	switch m := s.Mode.(type) {
	case *swarmapi.ServiceSpec_Global:
		out.Mode.Global = &swarm.GlobalService{}
	case *swarmapi.ServiceSpec_Replicated:
		r := m.Replicated.Replicas
		out.Mode.Replicated = &swarm.ReplicatedService{Replicas: &r}
	case *swarmapi.ServiceSpec_ReplicatedJob:
		maxConcurrent, total := m.ReplicatedJob.MaxConcurrent, m.ReplicatedJob.TotalCompletions
		out.Mode.ReplicatedJob = &swarm.ReplicatedJob{MaxConcurrent: &maxConcurrent, TotalCompletions: &total}
	case *swarmapi.ServiceSpec_GlobalJob:
		out.Mode.GlobalJob = &swarm.GlobalJob{}
	}
	out.UpdateConfig = fromUpdateConfig(s.Update)
	out.RollbackConfig = fromUpdateConfig(s.Rollback)
	if e := s.Endpoint; e != nil {
		out.EndpointSpec = &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP, Ports: fromPorts(e.Ports)}
		if e.Mode == swarmapi.ResolutionModeDNSRoundRobin {
			out.EndpointSpec.Mode = swarm.ResolutionModeDNSRR
		}
	}
	return out
}

func fromPorts(ports []*swarmapi.PortConfig) []swarm.PortConfig {
	var out []swarm.PortConfig
	for _, p := range ports {
		out = append(out, swarm.PortConfig{
			Name: p.Name, Protocol: swarm.PortConfigProtocol(strings.ToLower(p.Protocol.String())),
			TargetPort: p.TargetPort, PublishedPort: p.PublishedPort,
			PublishMode: swarm.PortConfigPublishMode(strings.ToLower(p.PublishMode.String())),
		})
	}
	return out
}

func fromTaskSpec(t swarmapi.TaskSpec) swarm.TaskSpec {
	out := swarm.TaskSpec{ForceUpdate: t.ForceUpdate}
	for _, n := range t.Networks {
		out.Networks = append(out.Networks, swarm.NetworkAttachmentConfig{Target: n.Target, Aliases: n.Aliases, DriverOpts: n.DriverAttachmentOpts})
	}
	if c := t.GetContainer(); c != nil {
		cs := &swarm.ContainerSpec{
			Image: c.Image, Labels: c.Labels, Command: c.Command, Args: c.Args, Hostname: c.Hostname,
			Env: c.Env, Dir: c.Dir, User: c.User, Groups: c.Groups, TTY: c.TTY, OpenStdin: c.OpenStdin,
			ReadOnly: c.ReadOnly, StopSignal: c.StopSignal, Hosts: c.Hosts, Sysctls: c.Sysctls,
			CapabilityAdd: c.CapabilityAdd, CapabilityDrop: c.CapabilityDrop,
		}
		if c.Init != nil {
			v := c.Init.Value
			cs.Init = &v
		}
		if c.StopGracePeriod != nil {
			d := duration(c.StopGracePeriod)
			cs.StopGracePeriod = &d
		}
		for _, m := range c.Mounts {
			if mt, err := toMount(m); err == nil {
				cs.Mounts = append(cs.Mounts, mt)
			}
		}
		if h := c.Healthcheck; h != nil {
			cs.Healthcheck = toHealthConfig(h)
		}
		for _, r := range c.Secrets {
			sr := &swarm.SecretReference{SecretID: r.SecretID, SecretName: r.SecretName}
			if f := r.GetFile(); f != nil {
				sr.File = &swarm.SecretReferenceFileTarget{Name: f.Name, UID: f.UID, GID: f.GID, Mode: f.Mode}
			}
			cs.Secrets = append(cs.Secrets, sr)
		}
		for _, r := range c.Configs {
			cr := &swarm.ConfigReference{ConfigID: r.ConfigID, ConfigName: r.ConfigName}
			if f := r.GetFile(); f != nil {
				cr.File = &swarm.ConfigReferenceFileTarget{Name: f.Name, UID: f.UID, GID: f.GID, Mode: f.Mode}
			} else if r.GetRuntime() != nil {
				cr.Runtime = &swarm.ConfigReferenceRuntimeTarget{}
			}
			cs.Configs = append(cs.Configs, cr)
		}
		out.ContainerSpec = cs
		if c.PidsLimit > 0 {
			out.Resources = &swarm.ResourceRequirements{Limits: &swarm.Limit{Pids: c.PidsLimit}}
		}
	}
	if r := t.Resources; r != nil {
		if out.Resources == nil {
			out.Resources = &swarm.ResourceRequirements{}
		}
		if l := r.Limits; l != nil {
			if out.Resources.Limits == nil {
				out.Resources.Limits = &swarm.Limit{}
			}
			out.Resources.Limits.NanoCPUs, out.Resources.Limits.MemoryBytes = l.NanoCPUs, l.MemoryBytes
		}
		if rv := r.Reservations; rv != nil {
			out.Resources.Reservations = &swarm.Resources{NanoCPUs: rv.NanoCPUs, MemoryBytes: rv.MemoryBytes}
		}
	}
	if p := t.Restart; p != nil {
		rp := &swarm.RestartPolicy{MaxAttempts: &p.MaxAttempts}
		switch p.Condition {
		case swarmapi.RestartOnNone:
			rp.Condition = swarm.RestartPolicyConditionNone
		case swarmapi.RestartOnFailure:
			rp.Condition = swarm.RestartPolicyConditionOnFailure
		default:
			rp.Condition = swarm.RestartPolicyConditionAny
		}
		if p.Delay != nil {
			d := duration(p.Delay)
			rp.Delay = &d
		}
		if p.Window != nil {
			w := duration(p.Window)
			rp.Window = &w
		}
		out.RestartPolicy = rp
	}
	if pl := t.Placement; pl != nil {
		out.Placement = &swarm.Placement{Constraints: pl.Constraints, MaxReplicas: pl.MaxReplicas}
		for _, p := range pl.Preferences {
			if s := p.GetSpread(); s != nil {
				out.Placement.Preferences = append(out.Placement.Preferences, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: s.SpreadDescriptor}})
			}
		}
	}
	if d := t.LogDriver; d != nil {
		out.LogDriver = &swarm.Driver{Name: d.Name, Options: d.Options}
	}
	return out
}

func fromUpdateConfig(u *swarmapi.UpdateConfig) *swarm.UpdateConfig {
	if u == nil {
		return nil
	}
	out := &swarm.UpdateConfig{Parallelism: u.Parallelism, Delay: u.Delay, Monitor: duration(u.Monitor), MaxFailureRatio: u.MaxFailureRatio}
	switch u.FailureAction {
	case swarmapi.UpdateConfig_CONTINUE:
		out.FailureAction = swarm.UpdateFailureActionContinue
	case swarmapi.UpdateConfig_ROLLBACK:
		out.FailureAction = swarm.UpdateFailureActionRollback
	default:
		out.FailureAction = swarm.UpdateFailureActionPause
	}
	out.Order = swarm.UpdateOrderStopFirst
	if u.Order == swarmapi.UpdateConfig_START_FIRST {
		out.Order = swarm.UpdateOrderStartFirst
	}
	return out
}

// toService is the API's view of a service.
func toService(s *swarmapi.Service) swarm.Service {
	out := swarm.Service{ID: s.ID, Meta: toMeta(s.Meta), Spec: fromServiceSpec(&s.Spec)}
	if s.PreviousSpec != nil {
		prev := fromServiceSpec(s.PreviousSpec)
		out.PreviousSpec = &prev
	}
	if e := s.Endpoint; e != nil {
		out.Endpoint.Ports = fromPorts(e.Ports)
		for _, v := range e.VirtualIPs {
			out.Endpoint.VirtualIPs = append(out.Endpoint.VirtualIPs, swarm.EndpointVirtualIP{NetworkID: v.NetworkID, Addr: v.Addr})
		}
		if e.Spec != nil {
			spec := fromServiceSpec(&swarmapi.ServiceSpec{Endpoint: e.Spec})
			out.Endpoint.Spec = *spec.EndpointSpec
		}
	}
	if j := s.JobStatus; j != nil {
		out.JobStatus = &swarm.JobStatus{JobIteration: swarm.Version{Index: j.JobIteration.Index}}
		if t, err := gogotypes.TimestampFromProto(j.LastExecution); err == nil {
			out.JobStatus.LastExecution = t
		}
	}
	if u := s.UpdateStatus; u != nil {
		out.UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateState(strings.ToLower(strings.TrimPrefix(u.State.String(), "UpdateStatus_"))), Message: u.Message}
		if t, err := gogotypes.TimestampFromProto(u.StartedAt); err == nil {
			out.UpdateStatus.StartedAt = &t
		}
		if t, err := gogotypes.TimestampFromProto(u.CompletedAt); err == nil {
			out.UpdateStatus.CompletedAt = &t
		}
	}
	return out
}

// toTask is the API's view of a task.
func toTask(t *swarmapi.Task) swarm.Task {
	out := swarm.Task{
		ID: t.ID, Meta: toMeta(t.Meta), Annotations: swarm.Annotations{Name: t.Annotations.Name, Labels: t.Annotations.Labels},
		Spec: fromTaskSpec(t.Spec), ServiceID: t.ServiceID, Slot: int(t.Slot), NodeID: t.NodeID,
		DesiredState: swarm.TaskState(strings.ToLower(t.DesiredState.String())),
		Status: swarm.TaskStatus{
			State: swarm.TaskState(strings.ToLower(t.Status.State.String())), Message: t.Status.Message, Err: t.Status.Err,
		},
	}
	if t.JobIteration != nil {
		out.JobIteration = &swarm.Version{Index: t.JobIteration.Index}
	}
	if ts, err := gogotypes.TimestampFromProto(t.Status.Timestamp); err == nil {
		out.Status.Timestamp = ts
	}
	if cs := t.Status.GetContainer(); cs != nil {
		out.Status.ContainerStatus = &swarm.ContainerStatus{ContainerID: cs.ContainerID, PID: int(cs.PID), ExitCode: int(cs.ExitCode)}
	}
	if ps := t.Status.PortStatus; ps != nil {
		out.Status.PortStatus.Ports = fromPorts(ps.Ports)
	}
	for _, na := range t.Networks {
		if na.Network == nil {
			continue
		}
		ni := ToNetworkInspect(na.Network)
		out.NetworksAttachments = append(out.NetworksAttachments, swarm.NetworkAttachment{
			Network: swarm.Network{
				ID: ni.ID, Meta: toMeta(na.Network.Meta),
				Spec: swarm.NetworkSpec{
					Annotations:         swarm.Annotations{Name: ni.Name, Labels: ni.Labels},
					DriverConfiguration: &swarm.Driver{Name: ni.Driver},
					Internal:            ni.Internal, Attachable: ni.Attachable, Ingress: ni.Ingress,
				},
				DriverState: swarm.Driver{Name: ni.Driver, Options: ni.Options},
			},
			Addresses: na.Addresses,
		})
	}
	return out
}

// CreateService creates a service (POST /services/create).
func (c *Cluster) CreateService(ctx context.Context, spec swarm.ServiceSpec) (swarm.ServiceCreateResponse, error) {
	control, err := c.controlClient()
	if err != nil {
		return swarm.ServiceCreateResponse{}, err
	}
	s, err := toServiceSpec(spec)
	if err != nil {
		return swarm.ServiceCreateResponse{}, err
	}
	if err := c.resolveServiceNetworks(ctx, control, &s); err != nil {
		return swarm.ServiceCreateResponse{}, err
	}
	r, err := control.CreateService(ctx, &swarmapi.CreateServiceRequest{Spec: &s})
	if err != nil {
		return swarm.ServiceCreateResponse{}, fromGRPC(err)
	}
	return swarm.ServiceCreateResponse{ID: r.Service.ID}, nil
}

// Services lists services (GET /services), with their task counts when
// status is asked for.
func (c *Cluster) Services(ctx context.Context, f filters.Args, status bool) ([]swarm.Service, error) {
	if err := f.Validate(map[string]bool{"id": true, "name": true, "label": true, "mode": true}); err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	control, err := c.controlClient()
	if err != nil {
		return nil, err
	}
	r, err := control.ListServices(ctx, &swarmapi.ListServicesRequest{})
	if err != nil {
		return nil, fromGRPC(err)
	}
	var statuses map[string]*swarm.ServiceStatus
	if status {
		if statuses, err = serviceStatuses(ctx, control, r.Services); err != nil {
			return nil, err
		}
	}
	out := []swarm.Service{}
	for _, s := range r.Services {
		svc := toService(s)
		if f.Contains("id") && !prefixMatch(f.Get("id"), svc.ID) {
			continue
		}
		if f.Contains("name") && !prefixMatch(f.Get("name"), svc.Spec.Name) {
			continue
		}
		if f.Contains("label") && !f.MatchKVList("label", svc.Spec.Labels) {
			continue
		}
		if f.Contains("mode") && !f.ExactMatch("mode", serviceMode(svc)) {
			continue
		}
		if status {
			svc.ServiceStatus = statuses[s.ID]
		}
		out = append(out, svc)
	}
	return out, nil
}

func serviceMode(s swarm.Service) string {
	switch m := s.Spec.Mode; {
	case m.Global != nil:
		return "global"
	case m.ReplicatedJob != nil:
		return "replicated-job"
	case m.GlobalJob != nil:
		return "global-job"
	}
	return "replicated"
}

// serviceStatuses counts each service's tasks as SwarmKit does for
// dockerd: running and desired, and for a job the tasks of its current
// iteration that completed.
func serviceStatuses(ctx context.Context, control swarmapi.ControlClient, services []*swarmapi.Service) (map[string]*swarm.ServiceStatus, error) {
	ids := make([]string, 0, len(services))
	for _, s := range services {
		ids = append(ids, s.ID)
	}
	r, err := control.ListServiceStatuses(ctx, &swarmapi.ListServiceStatusesRequest{Services: ids})
	if err != nil {
		return nil, fromGRPC(err)
	}
	out := make(map[string]*swarm.ServiceStatus, len(r.Statuses))
	for _, st := range r.Statuses {
		out[st.ServiceID] = &swarm.ServiceStatus{RunningTasks: st.RunningTasks, DesiredTasks: st.DesiredTasks, CompletedTasks: st.CompletedTasks}
	}
	return out, nil
}

// serviceByRef finds a service by ID, name or ID prefix.
func (c *Cluster) serviceByRef(ctx context.Context, control swarmapi.ControlClient, ref string) (*swarmapi.Service, error) {
	return byRef("service", ref,
		func() (*swarmapi.Service, error) {
			r, err := control.GetService(ctx, &swarmapi.GetServiceRequest{ServiceID: ref})
			if err != nil {
				return nil, err
			}
			return r.Service, nil
		},
		func() ([]*swarmapi.Service, error) {
			r, err := control.ListServices(ctx, &swarmapi.ListServicesRequest{})
			if err != nil {
				return nil, fromGRPC(err)
			}
			return r.Services, nil
		},
		func(s *swarmapi.Service) string { return s.ID },
		func(s *swarmapi.Service) string { return s.Spec.Annotations.Name })
}

// Service returns one service (GET /services/{id}).
func (c *Cluster) Service(ctx context.Context, ref string) (swarm.Service, error) {
	control, err := c.controlClient()
	if err != nil {
		return swarm.Service{}, err
	}
	s, err := c.serviceByRef(ctx, control, ref)
	if err != nil {
		return swarm.Service{}, err
	}
	return toService(s), nil
}

// UpdateService replaces a service's spec at version, or rolls it back to
// its previous spec (POST /services/{id}/update).
func (c *Cluster) UpdateService(ctx context.Context, ref string, version uint64, spec swarm.ServiceSpec, rollback bool) (swarm.ServiceUpdateResponse, error) {
	control, err := c.controlClient()
	if err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	s, err := c.serviceByRef(ctx, control, ref)
	if err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	var newSpec swarmapi.ServiceSpec
	if rollback {
		if s.PreviousSpec == nil {
			return swarm.ServiceUpdateResponse{}, errdefs.InvalidParameter(errors.New("service does not have a previous specification to roll back to"))
		}
		newSpec = *s.PreviousSpec
	} else if newSpec, err = toServiceSpec(spec); err != nil {
		return swarm.ServiceUpdateResponse{}, err
	} else if err := c.resolveServiceNetworks(ctx, control, &newSpec); err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	req := &swarmapi.UpdateServiceRequest{ServiceID: s.ID, ServiceVersion: &swarmapi.Version{Index: version}, Spec: &newSpec}
	if rollback {
		req.Rollback = swarmapi.UpdateServiceRequest_PREVIOUS
	}
	if _, err := control.UpdateService(ctx, req); err != nil {
		return swarm.ServiceUpdateResponse{}, fromGRPC(err)
	}
	return swarm.ServiceUpdateResponse{}, nil
}

// RemoveService removes a service (DELETE /services/{id}); SwarmKit
// shuts its tasks down.
func (c *Cluster) RemoveService(ctx context.Context, ref string) error {
	control, err := c.controlClient()
	if err != nil {
		return err
	}
	s, err := c.serviceByRef(ctx, control, ref)
	if err != nil {
		return err
	}
	_, err = control.RemoveService(ctx, &swarmapi.RemoveServiceRequest{ServiceID: s.ID})
	return fromGRPC(err)
}

// Tasks lists tasks (GET /tasks): filters id, name, service, node,
// desired-state, label.
func (c *Cluster) Tasks(ctx context.Context, f filters.Args) ([]swarm.Task, error) {
	// _up-to-date is the CLI's, while it follows a service converging
	// (create or update without --detach): only the tasks of the
	// service's current spec.
	if err := f.Validate(map[string]bool{"id": true, "name": true, "service": true, "node": true, "desired-state": true, "label": true, "_up-to-date": true}); err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	control, err := c.controlClient()
	if err != nil {
		return nil, err
	}
	var serviceIDs []string
	for _, ref := range f.Get("service") {
		s, err := c.serviceByRef(ctx, control, ref)
		if err != nil {
			return nil, err
		}
		serviceIDs = append(serviceIDs, s.ID)
	}
	var nodeIDs []string
	for _, ref := range f.Get("node") {
		n, err := c.Node(ctx, ref)
		if err != nil {
			return nil, err
		}
		nodeIDs = append(nodeIDs, n.ID)
	}
	upToDate := f.Contains("_up-to-date")
	r, err := control.ListTasks(ctx, &swarmapi.ListTasksRequest{Filters: &swarmapi.ListTasksRequest_Filters{ServiceIDs: serviceIDs, NodeIDs: nodeIDs, UpToDate: upToDate}})
	if err != nil {
		return nil, fromGRPC(err)
	}
	out := []swarm.Task{}
	for _, t := range r.Tasks {
		task := toTask(t)
		if f.Contains("id") && !prefixMatch(f.Get("id"), task.ID) {
			continue
		}
		if f.Contains("name") && !f.ExactMatch("name", task.Name) {
			continue
		}
		if f.Contains("desired-state") && !f.ExactMatch("desired-state", string(task.DesiredState)) {
			continue
		}
		if f.Contains("label") && !f.MatchKVList("label", task.Labels) {
			continue
		}
		out = append(out, task)
	}
	return out, nil
}

// Task returns one task (GET /tasks/{id}).
func (c *Cluster) Task(ctx context.Context, id string) (swarm.Task, error) {
	control, err := c.controlClient()
	if err != nil {
		return swarm.Task{}, err
	}
	r, err := control.GetTask(ctx, &swarmapi.GetTaskRequest{TaskID: id})
	if err != nil {
		return swarm.Task{}, fromGRPC(err)
	}
	return toTask(r.Task), nil
}

// durationProto is d as SwarmKit's protobuf duration, nil for 0.
func durationProto(d time.Duration) *gogotypes.Duration {
	if d == 0 {
		return nil
	}
	return gogotypes.DurationProto(d)
}

// toHealthConfig is a SwarmKit health check as the API's (and a
// container's) health config.
func toHealthConfig(h *swarmapi.HealthConfig) *container.HealthConfig {
	return &container.HealthConfig{
		Test: h.Test, Retries: int(h.Retries),
		Interval: duration(h.Interval), Timeout: duration(h.Timeout),
		StartPeriod: duration(h.StartPeriod), StartInterval: duration(h.StartInterval),
	}
}
