package cluster

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	gogotypes "github.com/gogo/protobuf/types"
	swarmapi "github.com/moby/swarmkit/v2/api"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/api/types/backend"
)

func TestResolveAddrs(t *testing.T) {
	for _, c := range []struct {
		listen, advertise string
		want              nodeState
		bad               string
	}{
		{listen: "127.0.0.1:3000", want: nodeState{"127.0.0.1:3000", "127.0.0.1:3000"}},
		{listen: "127.0.0.1", want: nodeState{"127.0.0.1:2377", "127.0.0.1:2377"}},
		{advertise: "10.1.2.3", want: nodeState{"0.0.0.0:2377", "10.1.2.3:2377"}},
		{listen: "0.0.0.0:4000", advertise: "10.1.2.3:5000", want: nodeState{"0.0.0.0:4000", "10.1.2.3:5000"}},
		{advertise: "lo", want: nodeState{"0.0.0.0:2377", "127.0.0.1:2377"}},
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
	c := New(Config{Root: filepath.Join(dir, "swarm"), ControlSocket: filepath.Join(dir, "c.sock"), EngineVersion: "test", Log: logrus.NewEntry(log)})
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
