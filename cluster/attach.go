package cluster

// Containers other than tasks on attachable swarm networks (docker run
// --network), as dockerd does it: at each start the node asks the
// managers for an attachment (SwarmKit's ResourceAllocator makes a
// network attachment task for the node, which the allocator gives an
// address); the task reaches this node's executor, whose attachment
// controller hands the allocated address to the waiting start; the node
// makes the network and the container's endpoint uses the address. When
// the container stops, the attachment is given back.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/moby/swarmkit/v2/agent/exec"
	swarmapi "github.com/moby/swarmkit/v2/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	netctl "github.com/jevm/jevm/network/controller"
)

// attachWait bounds how long a start waits for the swarm's attachment.
const attachWait = 60 * time.Second

// attachments are the attachment tasks this node's executor was given,
// by task ID, and the containers' attachment IDs.
type attachments struct {
	mu      sync.Mutex
	tasks   map[string]*swarmapi.Task
	changed chan struct{}
	byCtr   map[string][]attachment // by container ID
}

// attachment is one of a container's attachments: its task's ID and its
// network's.
type attachment struct{ id, network string }

func newAttachments() *attachments {
	return &attachments{tasks: map[string]*swarmapi.Task{}, changed: make(chan struct{}), byCtr: map[string][]attachment{}}
}

func (a *attachments) put(t *swarmapi.Task) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tasks[t.ID] = t
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *attachments) drop(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.tasks, id)
}

// wait returns attachment task id once this node has it.
func (a *attachments) wait(ctx context.Context, id string) (*swarmapi.Task, error) {
	for {
		a.mu.Lock()
		t, ch := a.tasks[id], a.changed
		a.mu.Unlock()
		if t != nil {
			return t, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("the swarm's network attachment %s did not reach this node: %w", id, ctx.Err())
		}
	}
}

// attachController is SwarmKit's view of one attachment task: it is
// "running" while the container uses the address.
type attachController struct {
	a    *attachments
	task *swarmapi.Task
	done chan struct{}
	once sync.Once
}

func (r *attachController) Update(context.Context, *swarmapi.Task) error { return nil }
func (r *attachController) Prepare(context.Context) error {
	r.a.put(r.task)
	return nil
}
func (r *attachController) Start(context.Context) error { return nil }
func (r *attachController) Wait(ctx context.Context) error {
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (r *attachController) end()                                                { r.once.Do(func() { close(r.done) }) }
func (r *attachController) Shutdown(context.Context) error                      { r.end(); return nil }
func (r *attachController) Terminate(context.Context) error                     { r.end(); return nil }
func (r *attachController) Remove(context.Context) error                        { r.end(); r.a.drop(r.task.ID); return nil }
func (r *attachController) Close() error                                        { return nil }
func (r *attachController) ContainerStatus() (*swarmapi.ContainerStatus, error) { return nil, nil }

var _ exec.Controller = (*attachController)(nil)

// AttachContainer implements the daemon's SwarmAttacher. It and the
// other SwarmAttacher methods do not take c.mu: they run on containers'
// start and exit paths, which a leave (holding c.mu) waits for.
func (c *Cluster) AttachContainer(ctx context.Context, id string, refs []string) (map[string]*network.EndpointSettings, error) {
	rn := c.running.Load()
	if rn == nil || rn.node.Agent() == nil {
		return nil, nil
	}
	n, exe := rn.node, rn.exe
	if exe.overlays == nil {
		return nil, errdefs.Unavailable(fmt.Errorf("overlay networks are not available on this node"))
	}
	ra := n.Agent().ResourceAllocator()
	ctx, cancel := context.WithTimeout(ctx, attachWait)
	defer cancel()
	out := map[string]*network.EndpointSettings{}
	for _, ref := range refs {
		aID, err := ra.AttachNetwork(ctx, id, ref, nil)
		if err != nil {
			switch st, _ := status.FromError(err); st.Code() {
			case codes.NotFound:
				continue // not a swarm network: the local networks say
			case codes.PermissionDenied:
				// dockerd's words.
				return nil, errdefs.Forbidden(fmt.Errorf("Could not attach to network %s: %w", ref, err))
			}
			return nil, fmt.Errorf("attach to swarm network %s: %w", ref, err)
		}
		exe.attach.mu.Lock()
		exe.attach.byCtr[id] = append(exe.attach.byCtr[id], attachment{id: aID})
		exe.attach.mu.Unlock()
		t, err := exe.attach.wait(ctx, aID)
		if err != nil {
			return nil, err
		}
		if len(t.Networks) == 0 || t.Networks[0].Network == nil || len(t.Networks[0].Addresses) == 0 {
			return nil, fmt.Errorf("the swarm's attachment to %s has no address", ref)
		}
		na := t.Networks[0]
		exe.attach.mu.Lock()
		for i, a := range exe.attach.byCtr[id] {
			if a.id == aID {
				exe.attach.byCtr[id][i].network = na.Network.ID
			}
		}
		exe.attach.mu.Unlock()
		nodeAddr, err := exe.nets.wait(ctx, na.Network.ID)
		if err != nil {
			return nil, err
		}
		dp, err := exe.nets.dataPath(exe.dataAddr)
		if err != nil {
			return nil, err
		}
		spec, err := overlaySpec(na, nodeAddr, dp)
		if err != nil {
			return nil, err
		}
		if err := exe.overlays.EnsureOverlay(spec); err != nil {
			return nil, err
		}
		addr, err := netip.ParsePrefix(na.Addresses[0])
		if err != nil {
			return nil, fmt.Errorf("the swarm's attachment to %s: address %q: %w", ref, na.Addresses[0], err)
		}
		out[ref] = &network.EndpointSettings{
			NetworkID:  spec.ID,
			IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: addr.Addr().String()},
			DriverOpts: map[string]string{netctl.OptSwarmAttachment: aID},
		}
	}
	return out, nil
}

// DetachContainer implements the daemon's SwarmAttacher: the container's
// attachments to networkIDs (none named: all of them) go back to the
// managers, in the background (a container's exit does not wait for
// them).
func (c *Cluster) DetachContainer(id string, networkIDs ...string) {
	rn := c.running.Load()
	if rn == nil {
		return
	}
	n, exe := rn.node, rn.exe
	var ids []string
	exe.attach.mu.Lock()
	var keep []attachment
	for _, a := range exe.attach.byCtr[id] {
		if len(networkIDs) == 0 || slices.Contains(networkIDs, a.network) {
			ids = append(ids, a.id)
		} else {
			keep = append(keep, a)
		}
	}
	if len(keep) == 0 {
		delete(exe.attach.byCtr, id)
	} else {
		exe.attach.byCtr[id] = keep
	}
	exe.attach.mu.Unlock()
	if len(ids) == 0 || n.Agent() == nil {
		return
	}
	ra := n.Agent().ResourceAllocator()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, aID := range ids {
			if err := ra.DetachNetwork(ctx, aID); err != nil {
				c.cfg.Log.WithError(err).WithField("attachment", aID).Warn("give back a swarm network attachment")
			}
		}
	}()
}

// InSwarm implements the daemon's SwarmAttacher.
func (c *Cluster) InSwarm() bool { return c.running.Load() != nil }
