package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	swarmapi "github.com/moby/swarmkit/v2/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jevm/jevm/api/types/backend"
)

// Update changes the swarm's spec at version (POST /swarm/update): the
// spec the client read with inspect and changed, so autolock is taken as
// it says; the join tokens and the unlock key are rotated on request.
func (c *Cluster) Update(ctx context.Context, spec swarm.Spec, opts backend.SwarmUpdateOptions) error {
	if err := checkSpec(spec); err != nil {
		return err
	}
	control, err := c.controlClient()
	if err != nil {
		return err
	}
	cl, err := c.cluster(ctx, control)
	if err != nil {
		return err
	}
	merged := cl.Spec
	mergeSpec(&merged, spec)
	merged.EncryptionConfig.AutoLockManagers = spec.EncryptionConfig.AutoLockManagers
	_, err = control.UpdateCluster(ctx, &swarmapi.UpdateClusterRequest{
		ClusterID:      cl.ID,
		ClusterVersion: &swarmapi.Version{Index: opts.Version},
		Spec:           &merged,
		Rotation: swarmapi.KeyRotation{
			WorkerJoinToken:  opts.RotateWorkerToken,
			ManagerJoinToken: opts.RotateManagerToken,
			ManagerUnlockKey: opts.RotateManagerUnlockKey,
		},
	})
	return fromGRPC(err)
}

// UpdateNode changes a node's spec at version (POST /nodes/{id}/update):
// name, labels, role and availability.
func (c *Cluster) UpdateNode(ctx context.Context, ref string, version uint64, spec swarm.NodeSpec) error {
	n, err := c.Node(ctx, ref)
	if err != nil {
		return err
	}
	s := swarmapi.NodeSpec{Annotations: swarmapi.Annotations{Name: spec.Name, Labels: spec.Labels}}
	switch spec.Role {
	case swarm.NodeRoleManager:
		s.DesiredRole = swarmapi.NodeRoleManager
	case swarm.NodeRoleWorker:
		s.DesiredRole = swarmapi.NodeRoleWorker
	default:
		return errdefs.InvalidParameter(fmt.Errorf("invalid Role: %q", spec.Role))
	}
	if s.Availability, err = toNodeAvailability(spec.Availability); err != nil {
		return err
	}
	control, err := c.controlClient()
	if err != nil {
		return err
	}
	_, err = control.UpdateNode(ctx, &swarmapi.UpdateNodeRequest{
		NodeID: n.ID, NodeVersion: &swarmapi.Version{Index: version}, Spec: &s,
	})
	return fromGRPC(err)
}

// RemoveNode removes a node from the swarm (DELETE /nodes/{id}).
func (c *Cluster) RemoveNode(ctx context.Context, ref string, force bool) error {
	n, err := c.Node(ctx, ref)
	if err != nil {
		return err
	}
	control, err := c.controlClient()
	if err != nil {
		return err
	}
	_, err = control.RemoveNode(ctx, &swarmapi.RemoveNodeRequest{NodeID: n.ID, Force: force})
	return fromGRPC(err)
}

// fromGRPC gives a SwarmKit error the kind its gRPC code says, so the API
// answers with the status dockerd would.
func fromGRPC(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := errors.New(st.Message())
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return errdefs.InvalidParameter(msg)
	case codes.NotFound:
		return errdefs.NotFound(msg)
	case codes.AlreadyExists:
		return errdefs.Conflict(msg)
	case codes.PermissionDenied:
		return errdefs.Forbidden(msg)
	case codes.Unavailable:
		return errdefs.Unavailable(msg)
	case codes.Unimplemented:
		return errdefs.NotImplemented(msg)
	}
	return errdefs.System(msg)
}
