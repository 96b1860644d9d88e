package cluster

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	"github.com/moby/swarmkit/v2/agent"
	swarmapi "github.com/moby/swarmkit/v2/api"

	"github.com/jevm/jevm/api/types/backend"
)

// A service spec goes to SwarmKit and comes back the same.
func TestServiceSpecRoundTrip(t *testing.T) {
	replicas, attempts := uint64(3), uint64(4)
	grace, delay, window := 7*time.Second, 2*time.Second, time.Minute
	yes := true
	in := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "web", Labels: map[string]string{"tier": "front"}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image: "busybox", Labels: map[string]string{"c": "d"}, Command: []string{"sh"}, Args: []string{"-c", "sleep 1"},
				Hostname: "h", Env: []string{"A=1"}, Dir: "/tmp", User: "nobody", TTY: true, ReadOnly: true,
				StopSignal: "SIGINT", StopGracePeriod: &grace, Init: &yes, Hosts: []string{"1.2.3.4 x"},
				Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: "v", Target: "/v", ReadOnly: true}, {Type: mount.TypeBind, Source: "/src", Target: "/b"}},
				CapabilityAdd: []string{"CAP_NET_ADMIN"},
				Healthcheck:   &container.HealthConfig{Test: []string{"CMD", "true"}, Interval: time.Second, Timeout: 2 * time.Second, Retries: 3, StartPeriod: 4 * time.Second},
				Secrets:       []*swarm.SecretReference{{SecretID: "s1", SecretName: "db", File: &swarm.SecretReferenceFileTarget{Name: "db", UID: "0", GID: "0", Mode: 0o444}}},
				Configs:       []*swarm.ConfigReference{{ConfigID: "c1", ConfigName: "app", File: &swarm.ConfigReferenceFileTarget{Name: "/app.conf", UID: "1", GID: "2", Mode: 0o400}}},
			},
			Resources:     &swarm.ResourceRequirements{Limits: &swarm.Limit{NanoCPUs: 5e8, MemoryBytes: 64 << 20, Pids: 100}, Reservations: &swarm.Resources{MemoryBytes: 32 << 20}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, Delay: &delay, MaxAttempts: &attempts, Window: &window},
			Placement:     &swarm.Placement{Constraints: []string{"node.role==manager"}, Preferences: []swarm.PlacementPreference{{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.labels.zone"}}}, MaxReplicas: 2},
			ForceUpdate:   1,
		},
		Mode:           swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		UpdateConfig:   &swarm.UpdateConfig{Parallelism: 1, Delay: time.Second, FailureAction: swarm.UpdateFailureActionRollback, Monitor: 5 * time.Second, Order: swarm.UpdateOrderStartFirst},
		RollbackConfig: &swarm.UpdateConfig{Parallelism: 2, FailureAction: swarm.UpdateFailureActionPause, Order: swarm.UpdateOrderStopFirst},
		EndpointSpec:   &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR, Ports: []swarm.PortConfig{{Protocol: swarm.PortConfigProtocolUDP, TargetPort: 53, PublishedPort: 5353, PublishMode: swarm.PortConfigPublishModeHost}}},
	}
	s, err := toServiceSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	out := fromServiceSpec(&s)
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\nin  %+v\nout %+v", in, out)
	}
	if !reflect.DeepEqual(in.TaskTemplate.ContainerSpec, out.TaskTemplate.ContainerSpec) {
		t.Errorf("container spec:\nin  %+v\nout %+v", *in.TaskTemplate.ContainerSpec, *out.TaskTemplate.ContainerSpec)
	}
}

// What jevm does not run yet is refused when the service is made.
func TestServiceSpecRefusals(t *testing.T) {
	base := func() swarm.ServiceSpec {
		return swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox"}}}
	}
	for name, change := range map[string]func(*swarm.ServiceSpec){
		"no container": func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec = nil },
		"no image":     func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Image = "" },
		"two modes": func(s *swarm.ServiceSpec) {
			s.Mode.Global, s.Mode.ReplicatedJob = &swarm.GlobalService{}, &swarm.ReplicatedJob{}
		},
		"sctp through the mesh": func(s *swarm.ServiceSpec) {
			s.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{Protocol: swarm.PortConfigProtocolSCTP, TargetPort: 80, PublishedPort: 8080}}}
		},
		"bad restart": func(s *swarm.ServiceSpec) {
			s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: "sometimes"}
		},
		"bad order": func(s *swarm.ServiceSpec) { s.UpdateConfig = &swarm.UpdateConfig{Order: "sideways"} },
	} {
		s := base()
		change(&s)
		if _, err := toServiceSpec(s); !errdefs.IsInvalidParameter(err) {
			t.Errorf("%s: %v, want an invalid parameter", name, err)
		}
	}
	// One replica by default.
	s, err := toServiceSpec(base())
	if err != nil || s.GetReplicated().Replicas != 1 {
		t.Errorf("default mode: %+v %v", s.Mode, err)
	}
}

// Job modes go to SwarmKit with dockerd's defaults and come back.
func TestServiceSpecJobs(t *testing.T) {
	base := swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox"}}}
	u := func(n uint64) *uint64 { return &n }
	for _, c := range []struct {
		in, want swarm.ServiceMode
		mode     string
	}{
		{swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}}, swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}}, "global-job"},
		{swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{}}, swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: u(1), TotalCompletions: u(1)}}, "replicated-job"},
		{swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: u(3)}}, swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: u(3), TotalCompletions: u(3)}}, "replicated-job"},
		{swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: u(2), TotalCompletions: u(5)}}, swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: u(2), TotalCompletions: u(5)}}, "replicated-job"},
	} {
		in := base
		in.Mode = c.in
		s, err := toServiceSpec(in)
		if err != nil {
			t.Fatal(err)
		}
		out := fromServiceSpec(&s)
		if !reflect.DeepEqual(out.Mode, c.want) {
			t.Errorf("%+v came back as %+v, want %+v", c.in, out.Mode, c.want)
		}
		if m := serviceMode(swarm.Service{Spec: out}); m != c.mode {
			t.Errorf("%+v: mode %q, want %q", c.in, m, c.mode)
		}
	}
}

// A task's container: labels, resources, host-mode ports.
func TestTaskContainerConfig(t *testing.T) {
	task := &swarmapi.Task{
		ID: "task1", ServiceID: "svc1", NodeID: "node1", Slot: 2,
		ServiceAnnotations: swarmapi.Annotations{Name: "web"},
		Spec: swarmapi.TaskSpec{
			Runtime:   &swarmapi.TaskSpec_Container{Container: &swarmapi.ContainerSpec{Image: "busybox", Args: []string{"sleep", "1"}}},
			Resources: &swarmapi.ResourceRequirements{Limits: &swarmapi.Resources{MemoryBytes: 64 << 20}},
		},
		// As SwarmKit's orchestrator makes it: the spec's ports only.
		Endpoint: &swarmapi.Endpoint{Spec: &swarmapi.EndpointSpec{Ports: []*swarmapi.PortConfig{{TargetPort: 80, PublishedPort: 8080, PublishMode: swarmapi.PublishModeHost}}}},
	}
	r, err := newController(nil, task, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.name != "web.2.task1" {
		t.Errorf("name %q", r.name)
	}
	cfg, hostCfg, err := r.containerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Labels[labelServiceName] != "web" || cfg.Labels[labelTaskID] != "task1" || cfg.Labels[labelNodeID] != "node1" || hostCfg.Memory != 64<<20 {
		t.Errorf("config: %+v %+v", cfg, hostCfg)
	}
	if b := hostCfg.PortBindings["80/tcp"]; len(b) != 1 || b[0].HostPort != "8080" {
		t.Errorf("port bindings: %+v", hostCfg.PortBindings)
	}
}

// A task's secrets and configs as files: where dockerd puts them, with
// the reference's owner and mode, data from the task's dependencies.
func TestTaskFiles(t *testing.T) {
	deps := agent.NewDependencyManager(nil)
	deps.Secrets().Add(swarmapi.Secret{ID: "s1", Spec: swarmapi.SecretSpec{Annotations: swarmapi.Annotations{Name: "db"}, Data: []byte("pw")}})
	deps.Configs().Add(swarmapi.Config{ID: "c1", Spec: swarmapi.ConfigSpec{Annotations: swarmapi.Annotations{Name: "app"}, Data: []byte("cfg")}})
	task := &swarmapi.Task{ID: "t1", ServiceAnnotations: swarmapi.Annotations{Name: "web"}, Spec: swarmapi.TaskSpec{
		Runtime: &swarmapi.TaskSpec_Container{Container: &swarmapi.ContainerSpec{Image: "busybox",
			Secrets: []*swarmapi.SecretReference{
				{SecretID: "s1", SecretName: "db", Target: &swarmapi.SecretReference_File{File: &swarmapi.FileTarget{Name: "db", UID: "0", GID: "0", Mode: 0o444}}},
				{SecretID: "s1", SecretName: "db", Target: &swarmapi.SecretReference_File{File: &swarmapi.FileTarget{Name: "/etc/app/pw", UID: "1000", GID: "50", Mode: 0o400}}},
			},
			Configs: []*swarmapi.ConfigReference{
				{ConfigID: "c1", ConfigName: "app", Target: &swarmapi.ConfigReference_File{File: &swarmapi.FileTarget{Name: "app.conf", Mode: 0o444}}},
			},
		}},
	}}
	r, err := newController(nil, task, agent.Restrict(deps, task))
	if err != nil {
		t.Fatal(err)
	}
	files, err := r.taskFiles()
	if err != nil {
		t.Fatal(err)
	}
	want := []backend.ContainerFile{
		{Target: "/run/secrets/db", Data: []byte("pw"), Mode: 0o444},
		{Target: "/etc/app/pw", Data: []byte("pw"), UID: 1000, GID: 50, Mode: 0o400},
		{Target: "/app.conf", Data: []byte("cfg"), Mode: 0o444},
	}
	if !reflect.DeepEqual(files, want) {
		t.Fatalf("files %+v, want %+v", files, want)
	}
	// A secret the task was not given is not there.
	task.Spec.GetContainer().Secrets[0].SecretID = "s2"
	r, _ = newController(nil, task, agent.Restrict(deps, task))
	if _, err := r.taskFiles(); err == nil || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("a missing secret: %v", err)
	}
}
