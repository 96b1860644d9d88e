package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	gogotypes "github.com/gogo/protobuf/types"
	swarmapi "github.com/moby/swarmkit/v2/api"
)

// clusterName is the name of the only cluster object SwarmKit makes.
const clusterName = "default"

// checkSpec refuses what SwarmKit would not take, with dockerd's words.
func checkSpec(s swarm.Spec) error {
	if s.Name != "" && s.Name != clusterName {
		return errdefs.InvalidParameter(fmt.Errorf(`swarm spec must be named "default"`))
	}
	if l := s.Orchestration.TaskHistoryRetentionLimit; l != nil && *l < 0 {
		return errdefs.InvalidParameter(errors.New("task history retention limit must be at least 0"))
	}
	if s.Dispatcher.HeartbeatPeriod < 0 || s.CAConfig.NodeCertExpiry < 0 {
		return errdefs.InvalidParameter(errors.New("durations in the swarm spec must not be negative"))
	}
	return nil
}

// mergeSpec sets in dst what src says (zero values: keep dst's, as
// dockerd does for a spec the CLI filled only with the flags given).
func mergeSpec(dst *swarmapi.ClusterSpec, src swarm.Spec) {
	if src.Labels != nil {
		dst.Annotations.Labels = src.Labels
	}
	if l := src.Orchestration.TaskHistoryRetentionLimit; l != nil {
		dst.Orchestration.TaskHistoryRetentionLimit = *l
	}
	if v := src.Raft.SnapshotInterval; v != 0 {
		dst.Raft.SnapshotInterval = v
	}
	if v := src.Raft.KeepOldSnapshots; v != nil {
		dst.Raft.KeepOldSnapshots = *v
	}
	if v := src.Raft.LogEntriesForSlowFollowers; v != 0 {
		dst.Raft.LogEntriesForSlowFollowers = v
	}
	if v := src.Dispatcher.HeartbeatPeriod; v != 0 {
		dst.Dispatcher.HeartbeatPeriod = gogotypes.DurationProto(v)
	}
	if v := src.CAConfig.NodeCertExpiry; v != 0 {
		dst.CAConfig.NodeCertExpiry = gogotypes.DurationProto(v)
	}
	if d := src.TaskDefaults.LogDriver; d != nil {
		dst.TaskDefaults.LogDriver = &swarmapi.Driver{Name: d.Name, Options: d.Options}
	}
}

// cluster reads the cluster object.
func (c *Cluster) cluster(ctx context.Context, control swarmapi.ControlClient) (*swarmapi.Cluster, error) {
	r, err := control.ListClusters(ctx, &swarmapi.ListClustersRequest{Filters: &swarmapi.ListClustersRequest_Filters{Names: []string{clusterName}}})
	if err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	if len(r.Clusters) != 1 {
		return nil, errdefs.System(fmt.Errorf("swarm: %d cluster objects named %q", len(r.Clusters), clusterName))
	}
	return r.Clusters[0], nil
}

// updateSpec merges spec into the cluster's (autolock is set when the
// node is made: swarmnode.Config.AutoLockManagers).
func (c *Cluster) updateSpec(ctx context.Context, spec swarm.Spec) error {
	control, err := c.controlClient()
	if err != nil {
		return err
	}
	// The cluster object appears a moment after the manager is ready.
	var cl *swarmapi.Cluster
	for {
		if cl, err = c.cluster(ctx, control); err == nil {
			break
		}
		if !strings.Contains(err.Error(), "cluster objects") {
			return err
		}
		select { // not a busy loop on the manager
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
	merged := cl.Spec
	mergeSpec(&merged, spec)
	_, err = control.UpdateCluster(ctx, &swarmapi.UpdateClusterRequest{
		ClusterID: cl.ID, ClusterVersion: &cl.Meta.Version, Spec: &merged,
	})
	if err != nil {
		return fmt.Errorf("swarm: update the cluster spec: %w", err)
	}
	return nil
}

// toNodeAvailability maps the API's availability.
func toNodeAvailability(a swarm.NodeAvailability) (swarmapi.NodeSpec_Availability, error) {
	switch a {
	case swarm.NodeAvailabilityActive:
		return swarmapi.NodeAvailabilityActive, nil
	case swarm.NodeAvailabilityPause:
		return swarmapi.NodeAvailabilityPause, nil
	case swarm.NodeAvailabilityDrain:
		return swarmapi.NodeAvailabilityDrain, nil
	}
	return 0, errdefs.InvalidParameter(fmt.Errorf("invalid Availability: %q", a))
}
