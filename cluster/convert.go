package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	gogotypes "github.com/gogo/protobuf/types"
	swarmapi "github.com/moby/swarmkit/v2/api"
	"github.com/moby/swarmkit/v2/manager/encryption"
)

// Inspect returns the swarm (GET /swarm).
func (c *Cluster) Inspect(ctx context.Context) (swarm.Swarm, error) {
	control, err := c.controlClient()
	if err != nil {
		return swarm.Swarm{}, err
	}
	cl, err := c.cluster(ctx, control)
	if err != nil {
		return swarm.Swarm{}, err
	}
	return swarm.Swarm{
		ClusterInfo: clusterInfo(cl),
		JoinTokens:  swarm.JoinTokens{Worker: cl.RootCA.JoinTokens.Worker, Manager: cl.RootCA.JoinTokens.Manager},
	}, nil
}

// Info is /info's Swarm section.
func (c *Cluster) Info(ctx context.Context) swarm.Info {
	c.mu.Lock()
	n, st, locked := c.node, c.state, c.locked != nil
	c.mu.Unlock()
	info := swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive}
	if locked {
		info.LocalNodeState = swarm.LocalNodeStateLocked
		return info
	}
	if n == nil {
		return info
	}
	info.LocalNodeState = swarm.LocalNodeStatePending
	select {
	case <-n.Ready():
		info.LocalNodeState = swarm.LocalNodeStateActive
	default:
	}
	info.NodeID = n.NodeID()
	if host, _, err := splitHostPort(st.AdvertiseAddr, ""); err == nil {
		info.NodeAddr = host
	}
	for _, p := range n.Remotes() {
		info.RemoteManagers = append(info.RemoteManagers, swarm.Peer{NodeID: p.NodeID, Addr: p.Addr})
		if info.NodeAddr == "" {
			// Joined without an advertise address: the managers see the
			// node at the address it reaches them from.
			info.NodeAddr = localAddrTo(p.Addr)
		}
	}
	control, err := c.controlClient()
	if err != nil {
		return info
	}
	info.ControlAvailable = true
	if cl, err := c.cluster(ctx, control); err == nil {
		ci := clusterInfo(cl)
		info.Cluster = &ci
	}
	if r, err := control.ListNodes(ctx, &swarmapi.ListNodesRequest{}); err == nil {
		info.Nodes = len(r.Nodes)
		for _, node := range r.Nodes {
			if node.ManagerStatus != nil {
				info.Managers++
			}
		}
	}
	return info
}

// Status is the /_ping Swarm header: "inactive", "pending",
// "active/manager" or "active/worker".
func (c *Cluster) Status() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.locked != nil {
		return string(swarm.LocalNodeStateLocked)
	}
	if c.node == nil {
		return string(swarm.LocalNodeStateInactive)
	}
	select {
	case <-c.node.Ready():
	default:
		return string(swarm.LocalNodeStatePending)
	}
	if c.node.Manager() != nil {
		return "active/manager"
	}
	return "active/worker"
}

// Nodes lists the swarm's nodes (GET /nodes), filtered as dockerd filters
// them: id, name, label, node.label, membership, role.
func (c *Cluster) Nodes(ctx context.Context, f filters.Args) ([]swarm.Node, error) {
	if err := f.Validate(map[string]bool{"id": true, "label": true, "name": true, "membership": true, "role": true, "node.label": true}); err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	control, err := c.controlClient()
	if err != nil {
		return nil, err
	}
	r, err := control.ListNodes(ctx, &swarmapi.ListNodesRequest{})
	if err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	out := []swarm.Node{}
	for _, n := range r.Nodes {
		node := toNode(n)
		if nodeMatches(node, strings.ToLower(n.Spec.Membership.String()), f) {
			out = append(out, node)
		}
	}
	return out, nil
}

func nodeMatches(n swarm.Node, membership string, f filters.Args) bool {
	if f.Contains("id") && !f.ExactMatch("id", n.ID) && !prefixMatch(f.Get("id"), n.ID) {
		return false
	}
	if f.Contains("name") && !f.ExactMatch("name", n.Spec.Name) && !f.ExactMatch("name", n.Description.Hostname) {
		return false
	}
	if f.Contains("role") && !f.ExactMatch("role", string(n.Spec.Role)) {
		return false
	}
	if f.Contains("membership") && !f.ExactMatch("membership", membership) {
		return false
	}
	if f.Contains("node.label") && !f.MatchKVList("node.label", n.Spec.Labels) {
		return false
	}
	if f.Contains("label") && !f.MatchKVList("label", n.Description.Engine.Labels) {
		return false
	}
	return true
}

func prefixMatch(prefixes []string, id string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

// Node returns one node by ID, ID prefix or hostname (GET /nodes/{id}).
func (c *Cluster) Node(ctx context.Context, ref string) (swarm.Node, error) {
	nodes, err := c.Nodes(ctx, filters.NewArgs())
	if err != nil {
		return swarm.Node{}, err
	}
	var found []swarm.Node
	for _, n := range nodes {
		if n.ID == ref {
			return n, nil
		}
	}
	for _, n := range nodes {
		if n.Description.Hostname == ref || n.Spec.Name == ref || strings.HasPrefix(n.ID, ref) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return swarm.Node{}, errdefs.NotFound(fmt.Errorf("node %s not found", ref))
	}
	return swarm.Node{}, errdefs.InvalidParameter(errors.New("node " + ref + " is ambiguous (" + fmt.Sprint(len(found)) + " matches found)"))
}

func clusterInfo(cl *swarmapi.Cluster) swarm.ClusterInfo {
	ci := swarm.ClusterInfo{
		ID:   cl.ID,
		Meta: toMeta(cl.Meta),
		Spec: swarm.Spec{
			Annotations: swarm.Annotations{Name: cl.Spec.Annotations.Name, Labels: cl.Spec.Annotations.Labels},
			Orchestration: swarm.OrchestrationConfig{
				TaskHistoryRetentionLimit: &cl.Spec.Orchestration.TaskHistoryRetentionLimit,
			},
			Raft: swarm.RaftConfig{
				SnapshotInterval:           cl.Spec.Raft.SnapshotInterval,
				KeepOldSnapshots:           &cl.Spec.Raft.KeepOldSnapshots,
				LogEntriesForSlowFollowers: cl.Spec.Raft.LogEntriesForSlowFollowers,
				HeartbeatTick:              int(cl.Spec.Raft.HeartbeatTick),
				ElectionTick:               int(cl.Spec.Raft.ElectionTick),
			},
			Dispatcher:       swarm.DispatcherConfig{HeartbeatPeriod: duration(cl.Spec.Dispatcher.HeartbeatPeriod)},
			CAConfig:         swarm.CAConfig{NodeCertExpiry: duration(cl.Spec.CAConfig.NodeCertExpiry), ForceRotate: cl.Spec.CAConfig.ForceRotate},
			EncryptionConfig: swarm.EncryptionConfig{AutoLockManagers: cl.Spec.EncryptionConfig.AutoLockManagers},
		},
		TLSInfo: swarm.TLSInfo{
			TrustRoot: string(cl.RootCA.CACert),
		},
		RootRotationInProgress: cl.RootCA.RootRotation != nil,
		DefaultAddrPool:        cl.DefaultAddressPool,
		SubnetSize:             cl.SubnetSize,
		DataPathPort:           cl.VXLANUDPPort,
	}
	if d := cl.Spec.TaskDefaults.LogDriver; d != nil {
		ci.Spec.TaskDefaults.LogDriver = &swarm.Driver{Name: d.Name, Options: d.Options}
	}
	return ci
}

func toNode(n *swarmapi.Node) swarm.Node {
	out := swarm.Node{
		ID:   n.ID,
		Meta: toMeta(n.Meta),
		Spec: swarm.NodeSpec{
			Annotations:  swarm.Annotations{Name: n.Spec.Annotations.Name, Labels: n.Spec.Annotations.Labels},
			Role:         swarm.NodeRole(strings.ToLower(n.Spec.DesiredRole.String())),
			Availability: swarm.NodeAvailability(strings.ToLower(n.Spec.Availability.String())),
		},
		Status: swarm.NodeStatus{
			State:   swarm.NodeState(strings.ToLower(n.Status.State.String())),
			Message: n.Status.Message,
			Addr:    n.Status.Addr,
		},
	}
	if d := n.Description; d != nil {
		out.Description.Hostname = d.Hostname
		if d.Platform != nil {
			out.Description.Platform = swarm.Platform{Architecture: d.Platform.Architecture, OS: d.Platform.OS}
		}
		if d.Resources != nil {
			out.Description.Resources = swarm.Resources{NanoCPUs: d.Resources.NanoCPUs, MemoryBytes: d.Resources.MemoryBytes}
		}
		if d.Engine != nil {
			out.Description.Engine = swarm.EngineDescription{EngineVersion: d.Engine.EngineVersion, Labels: d.Engine.Labels}
		}
		if d.TLSInfo != nil {
			out.Description.TLSInfo = swarm.TLSInfo{TrustRoot: string(d.TLSInfo.TrustRoot), CertIssuerSubject: d.TLSInfo.CertIssuerSubject, CertIssuerPublicKey: d.TLSInfo.CertIssuerPublicKey}
		}
	}
	if m := n.ManagerStatus; m != nil {
		out.ManagerStatus = &swarm.ManagerStatus{
			Leader:       m.Leader,
			Reachability: swarm.Reachability(strings.ToLower(m.Reachability.String())),
			Addr:         m.Addr,
		}
	}
	return out
}

func toMeta(m swarmapi.Meta) swarm.Meta {
	out := swarm.Meta{Version: swarm.Version{Index: m.Version.Index}}
	if t, err := gogotypes.TimestampFromProto(m.CreatedAt); err == nil {
		out.CreatedAt = t
	}
	if t, err := gogotypes.TimestampFromProto(m.UpdatedAt); err == nil {
		out.UpdatedAt = t
	}
	return out
}

func duration(d *gogotypes.Duration) time.Duration {
	if d == nil {
		return 0
	}
	v, _ := gogotypes.DurationFromProto(d)
	return v
}

// UnlockKey is the swarm's unlock key as users type it, "" when
// autolock is off (GET /swarm/unlockkey).
func (c *Cluster) UnlockKey(ctx context.Context) (string, error) {
	conn, err := c.managerConn()
	if err != nil {
		return "", err
	}
	r, err := swarmapi.NewCAClient(conn).GetUnlockKey(ctx, &swarmapi.GetUnlockKeyRequest{})
	if err != nil {
		return "", fmt.Errorf("swarm: %w", err)
	}
	if len(r.UnlockKey) == 0 {
		return "", nil
	}
	return encryption.HumanReadableKey(r.UnlockKey), nil
}
