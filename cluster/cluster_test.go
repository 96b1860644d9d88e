package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	gogotypes "github.com/gogo/protobuf/types"
	swarmapi "github.com/moby/swarmkit/v2/api"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/api/types/backend"
)

func TestResolveAddrs(t *testing.T) {
	for _, c := range []struct {
		listen, advertise string
		want              nodeState
		bad               string
	}{
		{listen: "127.0.0.1:3000", want: nodeState{ListenAddr: "127.0.0.1:3000", AdvertiseAddr: "127.0.0.1:3000"}},
		{listen: "127.0.0.1", want: nodeState{ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1:2377"}},
		{advertise: "10.1.2.3", want: nodeState{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "10.1.2.3:2377"}},
		{listen: "0.0.0.0:4000", advertise: "10.1.2.3:5000", want: nodeState{ListenAddr: "0.0.0.0:4000", AdvertiseAddr: "10.1.2.3:5000"}},
		{advertise: "lo", want: nodeState{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "127.0.0.1:2377"}},
		{advertise: "0.0.0.0", bad: "non-zero IP address"},
		{advertise: "no-such-if0", bad: "neither an IP address nor an interface"},
	} {
		got, err := resolveAddrs(swarm.InitRequest{ListenAddr: c.listen, AdvertiseAddr: c.advertise})
		if c.bad != "" {
			if err == nil || !strings.Contains(err.Error(), c.bad) || !errdefs.IsInvalidParameter(err) {
				t.Errorf("%q/%q: %v, want an invalid parameter saying %q", c.listen, c.advertise, err, c.bad)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q/%q: %+v %v, want %+v", c.listen, c.advertise, got, err, c.want)
		}
	}
}

func TestMergeSpec(t *testing.T) {
	limit, keep := int64(7), uint64(2)
	dst := swarmapi.ClusterSpec{
		Orchestration: swarmapi.OrchestrationConfig{TaskHistoryRetentionLimit: 5},
		Raft:          swarmapi.RaftConfig{SnapshotInterval: 10000, LogEntriesForSlowFollowers: 500},
		Dispatcher:    swarmapi.DispatcherConfig{HeartbeatPeriod: gogotypes.DurationProto(5 * time.Second)},
	}
	mergeSpec(&dst, swarm.Spec{
		Annotations:   swarm.Annotations{Labels: map[string]string{"a": "b"}},
		Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: &limit},
		Raft:          swarm.RaftConfig{KeepOldSnapshots: &keep},
		CAConfig:      swarm.CAConfig{NodeCertExpiry: time.Hour},
	})
	if dst.Orchestration.TaskHistoryRetentionLimit != 7 || dst.Raft.KeepOldSnapshots != 2 || dst.Raft.SnapshotInterval != 10000 ||
		dst.Annotations.Labels["a"] != "b" || duration(dst.CAConfig.NodeCertExpiry) != time.Hour || duration(dst.Dispatcher.HeartbeatPeriod) != 5*time.Second {
		t.Errorf("merged: %+v", dst)
	}
	if err := checkSpec(swarm.Spec{Annotations: swarm.Annotations{Name: "other"}}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("a spec named other: %v", err)
	}
}

// A real SwarmKit node: init, inspect, list, leave, on a free port.
func TestInitInspectLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a SwarmKit manager")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	c := New(Config{Root: filepath.Join(dir, "swarm"), ControlSocket: filepath.Join(dir, "c.sock"), EngineVersion: "test", Containers: &fakeContainers{}, Log: logrus.NewEntry(log)})
	ctx := context.Background()
	if _, err := c.Inspect(ctx); !errdefs.IsUnavailable(err) {
		t.Fatalf("inspect outside a swarm: %v", err)
	}
	if c.Status() != "inactive" || c.Info(ctx).LocalNodeState != swarm.LocalNodeStateInactive {
		t.Fatalf("status outside a swarm: %s", c.Status())
	}
	id, err := c.Init(ctx, swarm.InitRequest{ListenAddr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)
	sw, err := c.Inspect(ctx)
	if err != nil || !strings.HasPrefix(sw.JoinTokens.Worker, "SWMTKN-1-") || sw.Spec.Name != "default" {
		t.Fatalf("inspect: %+v %v", sw, err)
	}
	nodes, err := c.Nodes(ctx, filters.NewArgs(filters.Arg("role", "manager")))
	if err != nil || len(nodes) != 1 || nodes[0].ID != id || nodes[0].ManagerStatus == nil || nodes[0].Description.Engine.EngineVersion != "test" {
		t.Fatalf("nodes: %+v %v", nodes, err)
	}
	if nodes, _ := c.Nodes(ctx, filters.NewArgs(filters.Arg("role", "worker"))); len(nodes) != 0 {
		t.Fatalf("workers: %+v", nodes)
	}
	if n, err := c.Node(ctx, id[:6]); err != nil || n.ID != id {
		t.Fatalf("node by prefix: %+v %v", n, err)
	}
	if _, err := c.Node(ctx, "nosuchnode"); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown node: %v", err)
	}
	if info := c.Info(ctx); info.LocalNodeState != swarm.LocalNodeStateActive || info.NodeID != id || info.NodeAddr != "127.0.0.1" || info.Managers != 1 {
		t.Fatalf("info: %+v", info)
	}
	// Node and swarm updates, at the version read.
	n := nodes[0]
	n.Spec.Availability, n.Spec.Labels = swarm.NodeAvailabilityDrain, map[string]string{"zone": "a"}
	if err := c.UpdateNode(ctx, id, n.Version.Index, n.Spec); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateNode(ctx, id, n.Version.Index, n.Spec); err == nil {
		t.Fatal("an update at a stale version was taken")
	}
	if got, _ := c.Node(ctx, id); got.Spec.Availability != swarm.NodeAvailabilityDrain || got.Spec.Labels["zone"] != "a" {
		t.Fatalf("node after update: %+v", got.Spec)
	}
	if got, _ := c.Nodes(ctx, filters.NewArgs(filters.Arg("node.label", "zone=a"))); len(got) != 1 {
		t.Fatalf("node.label filter: %+v", got)
	}
	limit := int64(9)
	sw.Spec.Orchestration.TaskHistoryRetentionLimit = &limit
	if err := c.Update(ctx, sw.Spec, backend.SwarmUpdateOptions{Version: sw.Version.Index, RotateWorkerToken: true}); err != nil {
		t.Fatal(err)
	}
	if sw2, _ := c.Inspect(ctx); *sw2.Spec.Orchestration.TaskHistoryRetentionLimit != 9 || sw2.JoinTokens.Worker == sw.JoinTokens.Worker || sw2.JoinTokens.Manager != sw.JoinTokens.Manager {
		t.Fatalf("swarm after update: %+v", sw2)
	}
	if err := c.RemoveNode(ctx, id, false); err == nil {
		t.Fatal("removed the node itself")
	}
	if _, err := c.Init(ctx, swarm.InitRequest{ListenAddr: addr}); !errdefs.IsUnavailable(err) {
		t.Fatalf("second init: %v", err)
	}
	if err := c.Leave(ctx, false); !errdefs.IsUnavailable(err) {
		t.Fatalf("leave without force: %v", err)
	}
	if err := c.Leave(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "swarm")); !os.IsNotExist(err) {
		t.Fatalf("state after leave: %v", err)
	}
	if c.Status() != "inactive" {
		t.Fatalf("status after leave: %s", c.Status())
	}
}

// fakeContainers answers the executor's and leave's calls: list returns
// what list has; removals are recorded. It holds no containers or images,
// so a task the nodes schedule fails to prepare (its image cannot be
// pulled) and a stop or kill finds nothing: SwarmKit's executor runs
// asynchronously, so any of its calls can come while a test runs.
type fakeContainers struct {
	mu      sync.Mutex
	list    []container.Summary
	listed  []filters.Args
	removed []string
}

var errFakeNoSuchContainer = errdefs.NotFound(errors.New("no such container (the fake holds none)"))

func (f *fakeContainers) ContainerCreate(context.Context, string, *container.Config, *container.HostConfig, *network.NetworkingConfig, *ocispec.Platform) (container.CreateResponse, error) {
	return container.CreateResponse{}, errdefs.Unavailable(errors.New("the fake creates no containers"))
}

func (f *fakeContainers) ContainerStart(context.Context, string) error {
	return errFakeNoSuchContainer
}

func (f *fakeContainers) ContainerStop(context.Context, string, container.StopOptions) error {
	return errFakeNoSuchContainer
}

func (f *fakeContainers) ContainerKill(context.Context, string, string) error {
	return errFakeNoSuchContainer
}

func (f *fakeContainers) ContainerWait(context.Context, string, container.WaitCondition) (<-chan container.WaitResponse, error) {
	return nil, errFakeNoSuchContainer
}

func (f *fakeContainers) ContainerInspect(context.Context, string, bool) (*container.InspectResponse, error) {
	return nil, errFakeNoSuchContainer
}

func (f *fakeContainers) ContainerLogs(context.Context, string, container.LogsOptions) (<-chan backend.LogMessage, bool, error) {
	return nil, false, errFakeNoSuchContainer
}

func (f *fakeContainers) SetContainerFiles(context.Context, string, []backend.ContainerFile) error {
	return errFakeNoSuchContainer
}

func (f *fakeContainers) PullImage(context.Context, string, string, *registry.AuthConfig, io.Writer) error {
	return errdefs.Unavailable(errors.New("the fake has no registry"))
}

func (f *fakeContainers) ImageInspect(context.Context, string) (*image.InspectResponse, error) {
	return nil, errdefs.NotFound(errors.New("no such image (the fake holds none)"))
}

func (f *fakeContainers) ContainerList(_ context.Context, opts container.ListOptions) ([]container.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed = append(f.listed, opts.Filters)
	return f.list, nil
}

func (f *fakeContainers) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, id)
	return nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testNode is a Cluster of its own, as one engine of a swarm.
func testNode(t *testing.T, fc *fakeContainers) *Cluster {
	dir, err := os.MkdirTemp("", "jevm-swarm-") // short: the control socket's path
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	c := New(Config{Root: filepath.Join(dir, "swarm"), ControlSocket: filepath.Join(dir, "c.sock"), EngineVersion: "test", Containers: fc, Log: logrus.NewEntry(log)})
	t.Cleanup(func() { c.Stop(context.Background()); os.RemoveAll(dir) })
	return c
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Three real SwarmKit nodes in one process: a wrong token is refused, a
// worker and a second manager join, the worker is promoted and demoted,
// the worker leaves (removing its tasks' containers), a manager's leave
// without force says what the swarm would lose.
func TestJoinPromoteLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("starts SwarmKit managers")
	}
	ctx := context.Background()
	lead := testNode(t, &fakeContainers{})
	if _, err := lead.Init(ctx, swarm.InitRequest{ListenAddr: freeAddr(t)}); err != nil {
		t.Fatal(err)
	}
	sw, err := lead.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	remote := lead.state.AdvertiseAddr

	workerCtrs := &fakeContainers{list: []container.Summary{{ID: "c1"}, {ID: "c2"}}}
	worker := testNode(t, workerCtrs)
	if err := worker.Join(ctx, swarm.JoinRequest{RemoteAddrs: nil, JoinToken: sw.JoinTokens.Worker}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("join without a remote address: %v", err)
	}
	bad := sw.JoinTokens.Worker[:len(sw.JoinTokens.Worker)-4] + "aaaa"
	err = worker.Join(ctx, swarm.JoinRequest{ListenAddr: freeAddr(t), RemoteAddrs: []string{remote}, JoinToken: bad})
	if err == nil || !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "join token") {
		t.Fatalf("join with a wrong token: %v", err)
	}
	if worker.Status() != "inactive" {
		t.Fatalf("status after a refused join: %s", worker.Status())
	}
	if err := worker.Join(ctx, swarm.JoinRequest{ListenAddr: freeAddr(t), RemoteAddrs: []string{remote}, JoinToken: sw.JoinTokens.Worker}); err != nil {
		t.Fatal(err)
	}
	if worker.Status() != "active/worker" {
		t.Fatalf("worker's status: %s", worker.Status())
	}
	if info := worker.Info(ctx); info.ControlAvailable || info.NodeAddr != "127.0.0.1" || len(info.RemoteManagers) == 0 {
		t.Fatalf("worker's info: %+v", info)
	}
	if _, err := worker.Nodes(ctx, filters.NewArgs()); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "not a swarm manager") {
		t.Fatalf("node ls on a worker: %v", err)
	}
	if err := worker.Join(ctx, swarm.JoinRequest{RemoteAddrs: []string{remote}, JoinToken: sw.JoinTokens.Worker}); !errdefs.IsUnavailable(err) {
		t.Fatalf("a second join: %v", err)
	}

	second := testNode(t, &fakeContainers{})
	if err := second.Join(ctx, swarm.JoinRequest{ListenAddr: freeAddr(t), AdvertiseAddr: "127.0.0.1", RemoteAddrs: []string{remote}, JoinToken: sw.JoinTokens.Manager}); err != nil {
		t.Fatal(err)
	}
	if second.Status() != "active/manager" {
		t.Fatalf("second manager's status: %s", second.Status())
	}
	nodes, err := second.Nodes(ctx, filters.NewArgs()) // through the leader
	if err != nil || len(nodes) != 3 {
		t.Fatalf("node ls on the second manager: %d %v", len(nodes), err)
	}

	// Promote the worker, then demote it.
	setRole := func(role swarm.NodeRole) {
		t.Helper()
		n, err := lead.Node(ctx, worker.node.NodeID())
		if err != nil {
			t.Fatal(err)
		}
		n.Spec.Role = role
		if err := lead.UpdateNode(ctx, n.ID, n.Version.Index, n.Spec); err != nil {
			t.Fatal(err)
		}
	}
	setRole(swarm.NodeRoleManager)
	waitUntil(t, "the promoted worker's control API", func() bool {
		_, err := worker.Nodes(ctx, filters.NewArgs())
		return err == nil && worker.Status() == "active/manager"
	})
	if err := worker.Leave(ctx, false); err == nil || !strings.Contains(err.Error(), "Removing this node leaves 2 managers out of 3") && !strings.Contains(err.Error(), "--force") {
		t.Fatalf("a manager's leave without force: %v", err)
	}
	setRole(swarm.NodeRoleWorker)
	waitUntil(t, "the demoted manager to be a worker", func() bool {
		_, err := worker.Nodes(ctx, filters.NewArgs())
		return errdefs.IsUnavailable(err) && worker.Status() == "active/worker"
	})

	if err := second.Leave(ctx, false); err == nil || !strings.Contains(err.Error(), "Removing this node leaves 1 managers out of 2") {
		t.Fatalf("the second manager's leave without force: %v", err)
	}
	id := worker.node.NodeID()
	if err := worker.Leave(ctx, false); err != nil {
		t.Fatal(err)
	}
	if strings.Join(workerCtrs.removed, " ") != "c1 c2" || len(workerCtrs.listed) != 1 || !workerCtrs.listed[0].ExactMatch("label", labelNodeID+"="+id) {
		t.Fatalf("after the worker left: listed %v, removed %v", workerCtrs.listed, workerCtrs.removed)
	}
	waitUntil(t, "the worker to be down", func() bool {
		n, err := lead.Node(ctx, id)
		return err == nil && n.Status.State == swarm.NodeStateDown
	})
}

// An autolocked manager restarted without its key is locked: manager
// calls, init and leave are refused as dockerd refuses them, a wrong key
// leaves it locked, the right key brings it back.
func TestLockedNodeUnlock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a SwarmKit manager")
	}
	ctx := context.Background()
	c := testNode(t, &fakeContainers{})
	id, err := c.Init(ctx, swarm.InitRequest{ListenAddr: freeAddr(t), AutoLockManagers: true})
	if err != nil {
		t.Fatal(err)
	}
	key, err := c.UnlockKey(ctx)
	if err != nil || !strings.HasPrefix(key, "SWMKEY-1-") {
		t.Fatalf("unlock key: %q %v", key, err)
	}
	if err := c.Unlock(ctx, key); !errdefs.IsConflict(err) {
		t.Fatalf("unlock of an unlocked node: %v", err)
	}
	c.Stop(ctx)

	// jevmd again, on the same state.
	log := logrus.New()
	log.SetOutput(io.Discard)
	c = New(Config{Root: c.cfg.Root, ControlSocket: c.cfg.ControlSocket, EngineVersion: "test", Containers: &fakeContainers{}, Log: logrus.NewEntry(log)})
	t.Cleanup(func() { c.Stop(ctx) })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the node to be locked", func() bool { return c.Status() == "locked" })
	if info := c.Info(ctx); info.LocalNodeState != swarm.LocalNodeStateLocked {
		t.Fatalf("info of a locked node: %+v", info)
	}
	if _, err := c.Nodes(ctx, filters.NewArgs()); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "docker swarm unlock") {
		t.Fatalf("node ls on a locked node: %v", err)
	}
	if _, err := c.Init(ctx, swarm.InitRequest{ListenAddr: freeAddr(t)}); !errdefs.IsUnavailable(err) {
		t.Fatalf("init on a locked node: %v", err)
	}
	if err := c.Leave(ctx, false); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("leave of a locked node without force: %v", err)
	}
	if err := c.Unlock(ctx, "SWMKEY-1-!!!"); !errdefs.IsInvalidParameter(err) || c.Status() != "locked" {
		t.Fatalf("a malformed key: %v, %s", err, c.Status())
	}
	// A key of the right length but wrong, and a short one: the node
	// stays locked either way.
	for _, bad := range []string{"SWMKEY-1-" + strings.Repeat("A", len(key)-len("SWMKEY-1-")), "SWMKEY-1-nonsense"} {
		if err := c.Unlock(ctx, bad); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "could not be unlocked") {
			t.Fatalf("a wrong key %s: %v", bad, err)
		}
		if c.Status() != "locked" {
			t.Fatalf("status after the wrong key %s: %s", bad, c.Status())
		}
	}
	if err := c.Unlock(ctx, key); err != nil {
		t.Fatal(err)
	}
	if nodes, err := c.Nodes(ctx, filters.NewArgs()); err != nil || len(nodes) != 1 || nodes[0].ID != id {
		t.Fatalf("nodes after unlock: %+v %v", nodes, err)
	}
}

// Secrets and configs in a real manager's store: created, found by name
// and ID prefix, listed by filters, a secret's data never returned, a
// config's returned, labels updated at the version read, removal refused
// while a service uses them.
func TestSecretsConfigs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a SwarmKit manager")
	}
	ctx := context.Background()
	c := testNode(t, &fakeContainers{})
	if _, err := c.CreateSecret(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: "x"}}); !errdefs.IsUnavailable(err) {
		t.Fatalf("a secret outside a swarm: %v", err)
	}
	if _, err := c.Init(ctx, swarm.InitRequest{ListenAddr: freeAddr(t)}); err != nil {
		t.Fatal(err)
	}
	sid, err := c.CreateSecret(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db-pw", Labels: map[string]string{"a": "1"}}, Data: []byte("hunter2")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSecret(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db-pw"}, Data: []byte("x")}); !errdefs.IsConflict(err) {
		t.Fatalf("a second secret of that name: %v", err)
	}
	if _, err := c.CreateSecret(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: "empty"}}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("a secret without data: %v", err)
	}
	for _, ref := range []string{sid, sid[:5], "db-pw"} {
		s, err := c.Secret(ctx, ref)
		if err != nil || s.ID != sid || s.Spec.Data != nil || s.Spec.Labels["a"] != "1" {
			t.Fatalf("secret %q: %+v %v", ref, s, err)
		}
	}
	if _, err := c.Secret(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("an unknown secret: %v", err)
	}
	if l, err := c.Secrets(ctx, filters.NewArgs(filters.Arg("name", "db"))); err != nil || len(l) != 1 {
		t.Fatalf("secrets by name prefix: %+v %v", l, err)
	}
	if l, err := c.Secrets(ctx, filters.NewArgs(filters.Arg("label", "a=2"))); err != nil || len(l) != 0 {
		t.Fatalf("secrets by another label: %+v %v", l, err)
	}
	s, _ := c.Secret(ctx, sid)
	if err := c.UpdateSecret(ctx, sid, s.Version.Index, swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db-pw", Labels: map[string]string{"a": "2"}}, Data: []byte("hunter2")}); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.Secret(ctx, sid); s.Spec.Labels["a"] != "2" {
		t.Fatalf("labels after update: %+v", s.Spec.Labels)
	}
	cid, err := c.CreateConfig(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "app.conf"}, Data: []byte("k=v\n")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := c.Config(ctx, "app.conf"); err != nil || cfg.ID != cid || string(cfg.Spec.Data) != "k=v\n" {
		t.Fatalf("config: %+v %v", cfg, err)
	}
	svc, err := c.CreateService(ctx, swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "user"}, TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox",
		Secrets: []*swarm.SecretReference{{SecretID: sid, SecretName: "db-pw", File: &swarm.SecretReferenceFileTarget{Name: "db-pw", UID: "0", GID: "0", Mode: 0o444}}},
		Configs: []*swarm.ConfigReference{{ConfigID: cid, ConfigName: "app.conf", File: &swarm.ConfigReferenceFileTarget{Name: "/app.conf", UID: "0", GID: "0", Mode: 0o444}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveSecret(ctx, "db-pw"); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("removing a secret in use: %v", err)
	}
	if err := c.RemoveService(ctx, svc.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveSecret(ctx, "db-pw"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveConfig(ctx, cid[:6]); err != nil {
		t.Fatal(err)
	}
	if l, _ := c.Configs(ctx, filters.NewArgs()); len(l) != 0 {
		t.Fatalf("configs after removal: %+v", l)
	}
}

// Bad service input is refused by SwarmKit's checks as dockerd refuses
// it: a constraint without an operator (SwarmKit's plain error, which
// dockerd answers with 500), an unknown secret (400).
func TestServiceBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a SwarmKit manager")
	}
	ctx := context.Background()
	c := testNode(t, &fakeContainers{})
	if _, err := c.Init(ctx, swarm.InitRequest{ListenAddr: freeAddr(t)}); err != nil {
		t.Fatal(err)
	}
	spec := func() swarm.ServiceSpec {
		return swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "bad"}, TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox"}}}
	}
	s := spec()
	s.TaskTemplate.Placement = &swarm.Placement{Constraints: []string{"node.role=manager"}}
	if _, err := c.CreateService(ctx, s); !errdefs.IsSystem(err) || !strings.Contains(err.Error(), "constraint expected one operator") {
		t.Fatalf("a constraint without an operator: %v", err)
	}
	s = spec()
	s.TaskTemplate.ContainerSpec.Secrets = []*swarm.SecretReference{{SecretID: "nosuchsecret", SecretName: "x", File: &swarm.SecretReferenceFileTarget{Name: "x"}}}
	if _, err := c.CreateService(ctx, s); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("an unknown secret: %v", err)
	}
}
