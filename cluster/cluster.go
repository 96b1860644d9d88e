// Package cluster is jevm's Swarm mode: it embeds SwarmKit
// (github.com/moby/swarmkit/v2), the orchestrator dockerd embeds, as one
// node of a swarm, and answers the Engine API's swarm and node calls from
// its control API. jevm writes no scheduler, raft or CA of its own.
//
// What works (issue 17, in progress), over several hosts: `docker swarm
// init` (listen and advertise addresses, autolock, the cluster spec's
// settings), `join` (worker or manager), `update`, `leave`, `unlock`,
// `join-token`, `unlock-key`; `docker node ls`, `inspect`, `update`
// (promote, demote, drain), `rm`; services, tasks and their logs
// (logs.go), each task run by the executor as a container of the engine
// (controller.go), so a jeVM; secrets and configs (secrets.go), given
// to tasks as in-memory files; /info's Swarm section and /_ping's Swarm
// header; the node is started again when jevmd restarts. Overlay
// networks (networks.go, overlay.go, gossip.go), the routing mesh and
// stacks are served too.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/libnetwork/cnmallocator"
	"github.com/moby/swarmkit/v2/agent"
	swarmapi "github.com/moby/swarmkit/v2/api"
	"github.com/moby/swarmkit/v2/manager/allocator/networkallocator"
	"github.com/moby/swarmkit/v2/manager/encryption"
	swarmnode "github.com/moby/swarmkit/v2/node"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/grpclog"
)

// Errors as dockerd words them.
var (
	errNoSwarm     = errdefs.Unavailable(errors.New("This node is not part of a swarm"))
	errSwarmExists = errdefs.Unavailable(errors.New(`This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.`))
	errLocked      = errdefs.Unavailable(errors.New(`Swarm is encrypted and needs to be unlocked before it can be used. Please use "docker swarm unlock" to unlock it.`))
	errLockedLeave = errdefs.Unavailable(errors.New("Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message."))
	errNotLocked   = errdefs.Conflict(errors.New("swarm is not locked"))
	errBadKey      = errdefs.InvalidParameter(errors.New("swarm could not be unlocked: invalid key provided"))
	errLastManager = errdefs.Unavailable(errors.New("You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message."))
)

const (
	defaultListenAddr = "0.0.0.0:2377"
	// stateFileName keeps, beside SwarmKit's state, what jevmd needs to
	// start the node again after a restart.
	stateFileName = "jevm-node.json"
	// readyTimeout bounds how long init waits for the new manager.
	readyTimeout = 30 * time.Second
)

// Config is what the cluster needs from jevmd.
type Config struct {
	// Root holds SwarmKit's state (certificates, raft log): the data
	// root's "swarm" directory.
	Root string
	// ControlSocket is the unix socket of SwarmKit's control API (in the
	// exec root: its path must be short).
	ControlSocket string
	// EngineVersion is reported in the node's description.
	EngineVersion string
	// Containers runs the tasks given to this node.
	Containers Containers
	// LocalNetwork reports whether ref names a local network (which a
	// service cannot use: dockerd's error says so).
	LocalNetwork func(ref string) bool
	// Overlays makes the tasks' overlay networks (none: tasks with
	// networks fail).
	Overlays Overlays
	Log      *logrus.Entry
}

// nodeState is stateFileName's content.
type nodeState struct {
	ListenAddr    string
	AdvertiseAddr string
	// DataPathAddr is the address the node's overlay traffic (VXLAN and
	// gossip) uses (--data-path-addr); empty: the advertise address.
	DataPathAddr string `json:",omitempty"`
}

// Cluster is this engine's swarm node (none until init).
type Cluster struct {
	cfg Config

	mu      sync.Mutex // serialises init, leave and restart
	node    *swarmnode.Node
	state   nodeState
	conn    *grpc.ClientConn // to the manager's APIs while it is one
	stopped chan error       // receives the node's error once it stops
	exe     *executor        // the node's executor
	// running is node and exe for the engine's calls on its container
	// paths (attach.go), read without mu: a leave holds mu while it
	// removes the task containers, whose exits call in.
	running atomic.Pointer[runningNode]
	cancel  context.CancelFunc // stops the node's context
	// locked is the state of a node that would not start without the
	// swarm's unlock key (autolock, after a restart): no node runs until
	// Unlock is given the key.
	locked *nodeState
}

// runningNode is a started node and its executor.
type runningNode struct {
	node *swarmnode.Node
	exe  *executor
}

// New returns the cluster component; Start brings back a node a previous
// jevmd ran.
func New(cfg Config) *Cluster {
	quietGRPC.Do(func() {
		// SwarmKit sends gRPC's own log, dozens of lines per connection
		// at info level, to the standard logger: keep its warnings and
		// errors only (it must be set before gRPC is used).
		l := cfg.Log.WithField("module", "grpc")
		grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, l.WriterLevel(logrus.WarnLevel), l.WriterLevel(logrus.ErrorLevel)))
	})
	return &Cluster{cfg: cfg}
}

var quietGRPC sync.Once

// Start starts the node again if this engine was part of a swarm when
// jevmd stopped. It does not wait for the node to be ready.
func (c *Cluster) Start(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(c.cfg.Root, stateFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st nodeState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("swarm: %s: %w", stateFileName, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.startNode(st, swarmnode.Config{}); err != nil {
		return err
	}
	go func() {
		rctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		if err := c.waitControl(rctx); err != nil {
			c.cfg.Log.WithError(err).Warn("swarm node not ready after the restart")
			return
		}
		c.cfg.Log.Info("swarm node started again")
	}()
	return nil
}

// Stop stops the node (its state stays for the next Start).
func (c *Cluster) Stop(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopNode(ctx)
}

// startNode starts a SwarmKit node with st's addresses and extra's other
// settings. Callers hold mu.
func (c *Cluster) startNode(st nodeState, extra swarmnode.Config) error {
	if err := os.MkdirAll(c.cfg.Root, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.cfg.ControlSocket), 0o700); err != nil {
		return err
	}
	hostname, _ := os.Hostname()
	cfg := extra
	cfg.Hostname = hostname
	cfg.StateDir = c.cfg.Root
	cfg.ListenControlAPI = c.cfg.ControlSocket
	cfg.ListenRemoteAPI = st.ListenAddr
	cfg.AdvertiseRemoteAPI = st.AdvertiseAddr
	var n *swarmnode.Node
	exe := &executor{
		engineVersion: c.cfg.EngineVersion, hostname: hostname, containers: c.cfg.Containers, dependencies: agent.NewDependencyManager(nil),
		nets: newNodeNets(), overlays: c.cfg.Overlays, attach: newAttachments(),
		dataAddr: func() string { return dataAddr(n, st) },
	}
	if c.cfg.Overlays != nil {
		exe.gossip = newGossip(func() string { return n.NodeID() }, exe.dataAddr, func() []string {
			var out []string
			for _, p := range n.Remotes() {
				if h, _, err := splitHostPort(p.Addr, ""); err == nil {
					out = append(out, h)
				}
			}
			return out
		}, c.cfg.Overlays.OverlayChanged, c.cfg.Log)
		c.cfg.Overlays.SetOverlayPeers(exe.gossip)
	}
	cfg.Executor = exe
	// dockerd's allocator: overlay subnets, VXLAN IDs, task and node
	// addresses, virtual IPs (no plugins: jevm has none).
	cfg.NetworkProvider = cnmallocator.NewProvider(nil)
	cfg.ElectionTick = 10 // dockerd's: 10 ticks of a second
	cfg.HeartbeatTick = 1
	n, err := swarmnode.New(&cfg)
	if err != nil {
		exe.closeGossip(c.cfg.Overlays)
		return fmt.Errorf("swarm: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := n.Start(ctx); err != nil {
		cancel()
		exe.closeGossip(c.cfg.Overlays)
		return fmt.Errorf("swarm: start the node: %w", err)
	}
	stopped := make(chan error, 1)
	c.node, c.state, c.cancel, c.stopped, c.exe = n, st, cancel, stopped, exe
	c.running.Store(&runningNode{node: n, exe: exe})
	go func() {
		<-n.Ready()
		c.cfg.Log.WithField("node", n.NodeID()).Info("swarm node ready")
	}()
	go func() {
		err := n.Err(ctx)
		if errors.Is(err, swarmnode.ErrInvalidUnlockKey) {
			c.mu.Lock()
			if c.node == n {
				c.cfg.Log.Warn(`the swarm is locked: unlock it with "docker swarm unlock"`)
				c.stopNode(context.Background())
				c.locked = &st
			}
			c.mu.Unlock()
		} else if err != nil && !errors.Is(err, context.Canceled) {
			c.cfg.Log.WithError(err).Warn("swarm node stopped")
		}
		stopped <- err
	}()
	go c.followControl(ctx, n)
	return nil
}

// followControl keeps conn the node's connection to its manager's APIs:
// one when the node is (or is promoted to) a manager, none when it is a
// worker or demoted, until the node's context ends.
func (c *Cluster) followControl(ctx context.Context, n *swarmnode.Node) {
	for conn := range n.ListenControlSocket(ctx) {
		c.mu.Lock()
		if c.node == n {
			c.conn = conn
		}
		c.mu.Unlock()
	}
}

// waitControl waits for the node to be ready and, if it is a manager,
// for its control API to be connected. A node that stops first returns
// its error.
func (c *Cluster) waitControl(ctx context.Context) error {
	c.mu.Lock()
	n, stopped := c.node, c.stopped
	c.mu.Unlock()
	if n == nil {
		return errNoSwarm
	}
	select {
	case <-n.Ready():
	case err := <-stopped:
		stopped <- err // for the next reader
		if err == nil {
			err = errors.New("the node stopped")
		}
		return fromGRPC(err)
	case <-ctx.Done():
		return fmt.Errorf("swarm: the node is not ready: %w", ctx.Err())
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c.mu.Lock()
		done := c.node != n || n.Manager() == nil || c.conn != nil
		c.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("swarm: no control API: %w", ctx.Err())
		}
	}
}

// stopNode stops the node. Callers hold mu.
func (c *Cluster) stopNode(ctx context.Context) {
	if c.node == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := c.node.Stop(sctx); err != nil && !errors.Is(err, context.Canceled) {
		c.cfg.Log.WithError(err).Warn("stop the swarm node")
	}
	c.cancel()
	c.exe.closeGossip(c.cfg.Overlays)
	c.node, c.conn, c.cancel, c.stopped, c.exe = nil, nil, nil, nil, nil
	c.running.Store(nil)
}

// initNetworkConfig checks and converts init's network settings as
// dockerd takes them: the swarm's address pools and subnet size
// (--default-addr-pool, --default-addr-pool-mask-length) and its data
// path port (--data-path-port: the VXLAN UDP port of every node; SwarmKit
// keeps it in the cluster object and gives it to each node that joins).
func initNetworkConfig(req swarm.InitRequest) (*networkallocator.Config, error) {
	port := req.DataPathPort
	if port == 0 {
		port = defaultVXLANPort
	}
	if port < 1024 || port > 49151 {
		return nil, errdefs.InvalidParameter(fmt.Errorf("Datapath port number is not in valid range (1024-49151) : %d", req.DataPathPort))
	}
	cfg := &networkallocator.Config{SubnetSize: req.SubnetSize, VXLANUDPPort: port}
	for _, p := range req.DefaultAddrPool {
		pfx, err := netip.ParsePrefix(p)
		if err != nil || !pfx.Addr().Is4() {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid default address pool %q: an IPv4 CIDR is needed", p))
		}
		cfg.DefaultAddrPool = append(cfg.DefaultAddrPool, pfx.Masked().String())
	}
	if req.SubnetSize != 0 && (req.SubnetSize < 8 || req.SubnetSize > 29) {
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid subnet size %d: between 8 and 29", req.SubnetSize))
	}
	return cfg, nil
}

// dataAddr is node n's data path address: the one it was given, its
// advertise address, or the one it reaches its managers from.
func dataAddr(n *swarmnode.Node, st nodeState) string {
	if st.DataPathAddr != "" {
		return st.DataPathAddr
	}
	if host, _, err := splitHostPort(st.AdvertiseAddr, ""); err == nil && host != "" {
		return host
	}
	if n == nil {
		return ""
	}
	for _, p := range n.Remotes() {
		if a := localAddrTo(p.Addr); a != "" {
			return a
		}
	}
	return ""
}

// Init makes this engine the first manager of a new swarm and returns its
// node ID.
func (c *Cluster) Init(ctx context.Context, req swarm.InitRequest) (string, error) {
	c.mu.Lock()
	if c.node != nil || c.locked != nil {
		c.mu.Unlock()
		return "", errSwarmExists
	}
	st, err := resolveAddrs(req)
	if err == nil {
		st.DataPathAddr, err = resolveDataPathAddr(req.DataPathAddr)
	}
	if err != nil {
		c.mu.Unlock()
		return "", err
	}
	if err := checkSpec(req.Spec); err != nil {
		c.mu.Unlock()
		return "", err
	}
	// What an earlier swarm left (a leave that failed half way).
	if err := os.RemoveAll(c.cfg.Root); err != nil {
		c.mu.Unlock()
		return "", err
	}
	availability := swarmapi.NodeAvailabilityActive
	if req.Availability != "" {
		if availability, err = toNodeAvailability(req.Availability); err != nil {
			c.mu.Unlock()
			return "", err
		}
	}
	netCfg, err := initNetworkConfig(req)
	if err != nil {
		c.mu.Unlock()
		return "", err
	}
	err = c.startNode(st, swarmnode.Config{
		ForceNewCluster:  req.ForceNewCluster,
		AutoLockManagers: req.AutoLockManagers,
		Availability:     availability,
		NetworkConfig:    netCfg,
	})
	c.mu.Unlock()
	if err != nil {
		return "", err
	}
	fail := func(err error) (string, error) {
		c.mu.Lock()
		c.stopNode(context.Background())
		os.RemoveAll(c.cfg.Root)
		c.mu.Unlock()
		return "", err
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := c.waitControl(rctx); err != nil {
		return fail(err)
	}
	if err := c.updateSpec(rctx, req.Spec); err != nil {
		return fail(err)
	}
	c.mu.Lock()
	n := c.node
	c.mu.Unlock()
	if err := c.saveState(n, st); err != nil {
		return fail(err)
	}
	id := n.NodeID()
	c.cfg.Log.WithFields(logrus.Fields{"node": id, "listen": st.ListenAddr, "advertise": st.AdvertiseAddr}).Info("swarm initialised")
	return id, nil
}

// joinTimeout is how long join waits for the node to be admitted before
// it answers and lets the attempt go on in the background, as dockerd.
const joinTimeout = 20 * time.Second

var errJoinTimeout = errors.New(`Timeout was reached before node joined. The attempt to join the swarm will continue in the background. Use the "docker info" command to see the current swarm status of your node.`)

// Join makes this engine a node of the swarm a manager at one of
// req.RemoteAddrs runs, as a worker or a manager as the token says.
func (c *Cluster) Join(ctx context.Context, req swarm.JoinRequest) error {
	c.mu.Lock()
	if c.node != nil || c.locked != nil {
		c.mu.Unlock()
		return errSwarmExists
	}
	st, remote, err := resolveJoinAddrs(req)
	if err == nil {
		st.DataPathAddr, err = resolveDataPathAddr(req.DataPathAddr)
	}
	if err != nil {
		c.mu.Unlock()
		return err
	}
	availability := swarmapi.NodeAvailabilityActive
	if req.Availability != "" {
		if availability, err = toNodeAvailability(req.Availability); err != nil {
			c.mu.Unlock()
			return err
		}
	}
	if err := os.RemoveAll(c.cfg.Root); err != nil {
		c.mu.Unlock()
		return err
	}
	err = c.startNode(st, swarmnode.Config{JoinAddr: remote, JoinToken: req.JoinToken, Availability: availability})
	n := c.node
	c.mu.Unlock()
	if err != nil {
		return err
	}
	// The node's state is kept once it is admitted, so that a restarted
	// jevmd starts it again; it goes on in the background after a
	// timeout, as dockerd's does.
	admitted := make(chan error, 1)
	go func() {
		err := c.waitControl(context.Background())
		if err == nil {
			err = c.saveState(n, st)
		}
		if err != nil {
			c.mu.Lock()
			if c.node == n {
				c.stopNode(context.Background())
				os.RemoveAll(c.cfg.Root)
			}
			c.mu.Unlock()
		} else {
			c.cfg.Log.WithFields(logrus.Fields{"node": n.NodeID(), "manager": remote}).Info("joined the swarm")
		}
		admitted <- err
	}()
	timer := time.NewTimer(joinTimeout)
	defer timer.Stop()
	select {
	case err := <-admitted:
		return err
	case <-timer.C:
		return errdefs.Unavailable(errJoinTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// saveState writes stateFileName for node n, if it is still this
// engine's node.
func (c *Cluster) saveState(n *swarmnode.Node, st nodeState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.node != n {
		return errors.New("swarm: the node stopped")
	}
	b, _ := json.Marshal(st)
	return os.WriteFile(filepath.Join(c.cfg.Root, stateFileName), b, 0o600)
}

// Leave stops the node, forgets the swarm and removes the containers of
// the node's tasks, as dockerd. A manager leaves only with force:
// without, dockerd's message says what the swarm would lose.
func (c *Cluster) Leave(ctx context.Context, force bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.locked != nil {
		if !force {
			return errLockedLeave
		}
		c.locked = nil
		if err := os.RemoveAll(c.cfg.Root); err != nil {
			return err
		}
		c.cfg.Log.Info("left the locked swarm")
		return nil
	}
	if c.node == nil {
		return errNoSwarm
	}
	if !force && c.node.Manager() != nil {
		return c.managerLeaveError(ctx)
	}
	nodeID := c.node.NodeID()
	c.stopNode(ctx)
	if err := os.RemoveAll(c.cfg.Root); err != nil {
		return err
	}
	c.cfg.Log.Info("left the swarm")
	c.removeTaskContainers(ctx, nodeID)
	return nil
}

// managerLeaveError is dockerd's refusal of a manager's leave without
// force. Callers hold mu.
func (c *Cluster) managerLeaveError(ctx context.Context) error {
	msg := "You are attempting to leave the swarm on a node that is participating as a manager. "
	if c.conn == nil {
		msg += "Doing so may lose the consensus of your cluster. "
	} else {
		reachable, unreachable, err := managerCounts(ctx, swarmapi.NewControlClient(c.conn))
		if err == nil && reachable-1 <= (reachable+unreachable)/2 {
			if reachable == 1 && unreachable == 0 {
				return errLastManager
			}
			msg += fmt.Sprintf("Removing this node leaves %v managers out of %v. Without a Raft quorum your swarm will be inaccessible. ", reachable-1, reachable+unreachable)
		}
	}
	msg += "The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message."
	return errdefs.Unavailable(errors.New(msg))
}

// managerCounts counts the swarm's reachable and unreachable managers.
func managerCounts(ctx context.Context, control swarmapi.ControlClient) (reachable, unreachable int, err error) {
	r, err := control.ListNodes(ctx, &swarmapi.ListNodesRequest{Filters: &swarmapi.ListNodesRequest_Filters{Roles: []swarmapi.NodeRole{swarmapi.NodeRoleManager}}})
	if err != nil {
		return 0, 0, err
	}
	for _, n := range r.Nodes {
		if n.ManagerStatus == nil {
			continue
		}
		if n.ManagerStatus.Reachability == swarmapi.RaftMemberStatus_REACHABLE {
			reachable++
		} else {
			unreachable++
		}
	}
	return reachable, unreachable, nil
}

// removeTaskContainers removes the containers of the tasks node nodeID
// ran: they belong to a swarm this engine left.
func (c *Cluster) removeTaskContainers(ctx context.Context, nodeID string) {
	list, err := c.cfg.Containers.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelNodeID+"="+nodeID))})
	if err != nil {
		c.cfg.Log.WithError(err).Warn("list the swarm's task containers")
		return
	}
	for _, ctr := range list {
		if err := c.cfg.Containers.ContainerRemove(ctx, ctr.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !errdefs.IsNotFound(err) {
			c.cfg.Log.WithError(err).WithField("container", ctr.ID).Warn("remove a task's container after leaving the swarm")
		}
	}
}

// Unlock starts a locked node with the swarm's unlock key (POST
// /swarm/unlock).
func (c *Cluster) Unlock(ctx context.Context, humanKey string) error {
	c.mu.Lock()
	if c.locked == nil {
		defer c.mu.Unlock()
		if c.node == nil {
			return errNoSwarm
		}
		return errNotLocked
	}
	key, err := encryption.ParseHumanReadableKey(humanKey)
	if err != nil {
		c.mu.Unlock()
		return errdefs.InvalidParameter(err)
	}
	st := *c.locked
	c.locked = nil
	err = c.startNode(st, swarmnode.Config{UnlockKey: key})
	c.mu.Unlock()
	if err != nil {
		c.mu.Lock()
		c.locked = &st
		c.mu.Unlock()
		return err
	}
	c.mu.Lock()
	n := c.node
	c.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := c.waitControl(rctx); err != nil {
		// Whatever stopped the node with this key (a wrong key, or one
		// of the wrong length that fails otherwise), the node stays
		// locked for the next try.
		c.mu.Lock()
		if c.node == n {
			c.stopNode(context.Background())
		}
		if c.node == nil {
			c.locked = &st
		}
		c.mu.Unlock()
		c.cfg.Log.WithError(err).Warn("swarm unlock failed")
		return errBadKey
	}
	c.cfg.Log.Info("swarm unlocked")
	return nil
}

// controlClient returns the control API, or the error that says why there
// is none.
func (c *Cluster) controlClient() (swarmapi.ControlClient, error) {
	conn, err := c.managerConn()
	if err != nil {
		return nil, err
	}
	return swarmapi.NewControlClient(conn), nil
}

// managerConn is the connection to this node's manager.
func (c *Cluster) managerConn() (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.locked != nil:
		return nil, errLocked
	case c.node == nil:
		return nil, errNoSwarm
	case c.conn == nil || c.node.Manager() == nil:
		return nil, errdefs.Unavailable(errors.New("This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."))
	}
	return c.conn, nil
}

// resolveAddrs fills in the listen and advertise addresses as dockerd
// does: listen on 0.0.0.0:2377 by default; advertise the given address
// (an IP or an interface name, with the listen port unless it has one), or
// the listen address if it is a specific IP, or the address of the
// interface of the default route.
func resolveAddrs(req swarm.InitRequest) (nodeState, error) {
	listen := req.ListenAddr
	if listen == "" {
		listen = defaultListenAddr
	}
	lhost, lport, err := splitHostPort(listen, "2377")
	if err != nil {
		return nodeState{}, errdefs.InvalidParameter(fmt.Errorf("invalid listen address %q: %w", req.ListenAddr, err))
	}
	if ip := net.ParseIP(lhost); ip == nil {
		if lhost, err = interfaceAddr(lhost); err != nil {
			return nodeState{}, errdefs.InvalidParameter(err)
		}
	}
	st := nodeState{ListenAddr: net.JoinHostPort(lhost, lport)}
	adv := req.AdvertiseAddr
	if adv == "" {
		if ip := net.ParseIP(lhost); ip != nil && !ip.IsUnspecified() {
			st.AdvertiseAddr = st.ListenAddr
			return st, nil
		}
		ip, err := defaultRouteAddr()
		if err != nil {
			return nodeState{}, errdefs.InvalidParameter(fmt.Errorf("could not choose an IP address to advertise (%v) - specify one with --advertise-addr", err))
		}
		st.AdvertiseAddr = net.JoinHostPort(ip, lport)
		return st, nil
	}
	ahost, aport, err := splitHostPort(adv, lport)
	if err != nil {
		return nodeState{}, errdefs.InvalidParameter(fmt.Errorf("invalid advertise address %q: %w", adv, err))
	}
	if ip := net.ParseIP(ahost); ip == nil {
		if ahost, err = interfaceAddr(ahost); err != nil {
			return nodeState{}, errdefs.InvalidParameter(err)
		}
	} else if ip.IsUnspecified() {
		return nodeState{}, errdefs.InvalidParameter(fmt.Errorf("advertise address must be a non-zero IP address or network interface (with optional port number)"))
	}
	st.AdvertiseAddr = net.JoinHostPort(ahost, aport)
	return st, nil
}

// resolveJoinAddrs checks a join request's addresses as dockerd does and
// returns the node's addresses and the manager to join. Without an
// advertise address the managers take the one they see the node at.
func resolveJoinAddrs(req swarm.JoinRequest) (nodeState, string, error) {
	if len(req.RemoteAddrs) == 0 {
		return nodeState{}, "", errdefs.InvalidParameter(errors.New("at least 1 RemoteAddr is required to join"))
	}
	remotes := make([]string, 0, len(req.RemoteAddrs))
	for _, a := range req.RemoteAddrs {
		h, p, err := splitHostPort(a, "2377")
		if err != nil || h == "" {
			return nodeState{}, "", errdefs.InvalidParameter(fmt.Errorf("invalid remoteAddr %q: %v", a, err))
		}
		remotes = append(remotes, net.JoinHostPort(h, p))
	}
	st, err := resolveAddrs(swarm.InitRequest{ListenAddr: req.ListenAddr, AdvertiseAddr: req.AdvertiseAddr})
	if req.AdvertiseAddr == "" || err != nil {
		// dockerd ignores an advertise address it cannot resolve here.
		st, err = resolveAddrs(swarm.InitRequest{ListenAddr: req.ListenAddr, AdvertiseAddr: "127.0.0.1"})
		if err != nil {
			return nodeState{}, "", err
		}
		st.AdvertiseAddr = ""
	}
	return st, remotes[0], nil
}

// resolveDataPathAddr checks --data-path-addr as dockerd does: an IP
// address that is not 0.0.0.0, or an interface's name (its IPv4
// address), never with a port; "" stays "" (the advertise address).
func resolveDataPathAddr(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	bad := errdefs.InvalidParameter(errors.New("data path address must be a non-zero IP address or network interface (without a port number)"))
	if ip := net.ParseIP(addr); ip != nil {
		if ip.IsUnspecified() {
			return "", bad
		}
		return ip.String(), nil
	}
	if strings.ContainsAny(addr, ":/") {
		return "", bad
	}
	a, err := interfaceAddr(addr)
	if err != nil {
		return "", errdefs.InvalidParameter(fmt.Errorf("data path address must be a non-zero IP address or network interface (without a port number): %w", err))
	}
	return a, nil
}

// splitHostPort splits "host[:port]", defaulting the port.
func splitHostPort(addr, defPort string) (string, string, error) {
	if h, p, err := net.SplitHostPort(addr); err == nil {
		if p == "" {
			p = defPort
		}
		return h, p, nil
	}
	if addr == "" {
		return "", "", errors.New("empty address")
	}
	return addr, defPort, nil
}

// interfaceAddr is the first IPv4 address of the interface name.
func interfaceAddr(name string) (string, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return "", fmt.Errorf("%q is neither an IP address nor an interface: %w", name, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String(), nil
		}
	}
	return "", fmt.Errorf("interface %s has no IPv4 address", name)
}

// localAddrTo is the local IP the kernel picks to reach addr (host:port),
// or "" (no packet is sent).
func localAddrTo(addr string) string {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return ""
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String()
}

// defaultRouteAddr is the local address the kernel picks to reach the
// outside (no packet is sent: a UDP socket is only connected).
func defaultRouteAddr() (string, error) {
	conn, err := net.Dial("udp4", "192.0.2.1:9") // TEST-NET-1
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String(), nil
}
