package cluster

// What the nodes tell each other about their overlay endpoints, as
// dockerd's libnetwork does with its networkdb: a gossip membership of
// the swarm's nodes (hashicorp/memberlist, the library under networkdb)
// on port 7946 of each node's data path address, encrypted with the
// swarm's network bootstrap keys (which the managers hand to every node
// and rotate). Each node sends its whole table (its endpoints on its
// overlay networks, a few dozen bytes each) to every other node whenever
// it changes, and memberlist's push-pull exchanges the tables every few
// seconds, so that a lost message or a node that came back catches up;
// a node that leaves or fails takes its table with it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	swarmapi "github.com/moby/swarmkit/v2/api"
	"github.com/sirupsen/logrus"

	netctl "github.com/jevm/jevm/network/controller"
)

const (
	// gossipPort is dockerd's (its networkdb's) port.
	gossipPort = 7946
	// gossipKeySubsystem names the bootstrap keys meant for gossip.
	gossipKeySubsystem = "networking:gossip"
	// maxGossipMsg and maxGossipEndpoints bound what is taken from a
	// peer.
	maxGossipMsg       = 4 << 20
	maxGossipEndpoints = 1 << 16
	// gossipRejoin is how often a node with no peers tries the managers
	// again.
	gossipRejoin = 5 * time.Second
)

// gossipTable is one node's endpoints.
type gossipTable struct {
	Node      string                   `json:"node"`
	Addr      string                   `json:"addr"` // the node's data path address
	Version   int64                    `json:"v"`
	Endpoints []netctl.OverlayEndpoint `json:"eps"`
}

// gossip is this node's member of the swarm's gossip.
type gossip struct {
	nodeIDFn, addrFn func() string   // this node's ID and data path address
	joinAddrs        func() []string // the managers' data path addresses
	// nodeID and addr are set when the member starts; port is
	// gossipPort (another in tests).
	nodeID, addr string
	port         int
	onChange     func() // other nodes' endpoints changed
	log          *logrus.Entry

	mu      sync.Mutex
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring
	local   gossipTable
	remote  map[string]gossipTable // by node ID
	stop    chan struct{}

	sendNow, changed chan struct{} // coalesced work for the loops
}

func newGossip(nodeID, addr func() string, joinAddrs func() []string, onChange func(), log *logrus.Entry) *gossip {
	return &gossip{
		nodeIDFn: nodeID, addrFn: addr, joinAddrs: joinAddrs, onChange: onChange, log: log.WithField("module", "gossip"), port: gossipPort,
		remote:  map[string]gossipTable{},
		stop:    make(chan struct{}),
		sendNow: make(chan struct{}, 1), changed: make(chan struct{}, 1),
	}
}

// setKeys installs the swarm's gossip keys (the newest is the one that
// encrypts), starting the member at the first keys.
func (g *gossip) setKeys(keys []*swarmapi.EncryptionKey) error {
	var gk []*swarmapi.EncryptionKey
	for _, k := range keys {
		if k.Subsystem == gossipKeySubsystem && len(k.Key) > 0 {
			gk = append(gk, k)
		}
	}
	if len(gk) == 0 {
		return nil
	}
	sort.Slice(gk, func(i, j int) bool { return gk[i].LamportTime < gk[j].LamportTime })
	primary := gk[len(gk)-1].Key
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ml == nil {
		return g.startLocked(gk, primary)
	}
	want := map[string]bool{}
	for _, k := range gk {
		want[string(k.Key)] = true
		if err := g.keyring.AddKey(k.Key); err != nil {
			return fmt.Errorf("gossip key: %w", err)
		}
	}
	if err := g.keyring.UseKey(primary); err != nil {
		return fmt.Errorf("gossip key: %w", err)
	}
	for _, k := range g.keyring.GetKeys() {
		if !want[string(k)] {
			_ = g.keyring.RemoveKey(k)
		}
	}
	return nil
}

func (g *gossip) startLocked(keys []*swarmapi.EncryptionKey, primary []byte) error {
	var raw [][]byte
	for _, k := range keys {
		raw = append(raw, k.Key)
	}
	kr, err := memberlist.NewKeyring(raw, primary)
	if err != nil {
		return fmt.Errorf("gossip keys: %w", err)
	}
	g.nodeID, g.addr = g.nodeIDFn(), g.addrFn()
	if g.nodeID == "" || net.ParseIP(g.addr) == nil {
		return fmt.Errorf("gossip: no node ID or data path address yet (%q, %q)", g.nodeID, g.addr)
	}
	g.local.Node, g.local.Addr = g.nodeID, g.addr
	for i := range g.local.Endpoints {
		g.local.Endpoints[i].Host = ""
	}
	cfg := memberlist.DefaultLANConfig()
	cfg.Name = g.nodeID
	cfg.BindAddr, cfg.BindPort = g.addr, g.port
	cfg.AdvertiseAddr, cfg.AdvertisePort = g.addr, g.port
	cfg.Keyring = kr
	cfg.Delegate = (*gossipDelegate)(g)
	cfg.Events = (*gossipEvents)(g)
	// Small swarms: catch up within seconds rather than LAN's 30 s.
	cfg.PushPullInterval = 5 * time.Second
	cfg.Logger = log.New(g.log.WriterLevel(logrus.DebugLevel), "", 0)
	ml, err := memberlist.Create(cfg)
	if err != nil {
		return fmt.Errorf("gossip on %s: %w", net.JoinHostPort(g.addr, strconv.Itoa(g.port)), err)
	}
	g.ml, g.keyring = ml, kr
	go g.loop(ml)
	signal(g.sendNow)
	g.log.WithField("addr", g.addr).Info("gossip started")
	return nil
}

// loop joins the others (again, while alone), sends this node's table
// when it changed and passes the others' changes on.
func (g *gossip) loop(ml *memberlist.Memberlist) {
	g.join(ml)
	rejoin := time.NewTicker(gossipRejoin)
	defer rejoin.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-rejoin.C:
			if ml.NumMembers() < 2 {
				g.join(ml)
			}
		case <-g.sendNow:
			g.sendAll(ml)
		case <-g.changed:
			g.onChange()
		}
	}
}

func (g *gossip) join(ml *memberlist.Memberlist) {
	var addrs []string
	for _, a := range g.joinAddrs() {
		if a != "" && a != g.addr {
			addrs = append(addrs, net.JoinHostPort(a, strconv.Itoa(g.port)))
		}
	}
	if len(addrs) == 0 {
		return
	}
	if _, err := ml.Join(addrs); err != nil {
		g.log.WithError(err).Debug("gossip join")
	}
}

// sendAll sends this node's table to every other member.
func (g *gossip) sendAll(ml *memberlist.Memberlist) {
	g.mu.Lock()
	b, err := json.Marshal(g.local)
	g.mu.Unlock()
	if err != nil {
		return
	}
	for _, m := range ml.Members() {
		if m.Name == g.nodeID {
			continue
		}
		if err := ml.SendReliable(m, b); err != nil {
			g.log.WithError(err).WithField("peer", m.Name).Debug("gossip send")
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Publish implements netctl.OverlayPeers.
func (g *gossip) Publish(eps []netctl.OverlayEndpoint) {
	g.mu.Lock()
	v := time.Now().UnixNano()
	if v <= g.local.Version {
		v = g.local.Version + 1
	}
	g.local = gossipTable{Node: g.nodeID, Addr: g.addr, Version: v, Endpoints: eps}
	started := g.ml != nil
	g.mu.Unlock()
	if started {
		signal(g.sendNow)
	}
}

// Remote implements netctl.OverlayPeers.
func (g *gossip) Remote(networkID string) []netctl.OverlayEndpoint {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []netctl.OverlayEndpoint
	for _, t := range g.remote {
		for _, e := range t.Endpoints {
			if e.Network == networkID {
				e.Host = t.Addr
				out = append(out, e)
			}
		}
	}
	return out
}

// merge takes a peer's table if it is newer than what this node has.
func (g *gossip) merge(b []byte) {
	if len(b) == 0 || len(b) > maxGossipMsg {
		return
	}
	var t gossipTable
	dec := json.NewDecoder(io.LimitReader(bytes.NewReader(b), maxGossipMsg))
	if err := dec.Decode(&t); err != nil || t.Node == "" || t.Node == g.nodeID || len(t.Endpoints) > maxGossipEndpoints || net.ParseIP(t.Addr) == nil {
		return
	}
	g.mu.Lock()
	old, ok := g.remote[t.Node]
	if ok && old.Version >= t.Version {
		g.mu.Unlock()
		return
	}
	g.remote[t.Node] = t
	g.mu.Unlock()
	signal(g.changed)
}

// close leaves the gossip.
func (g *gossip) close() {
	g.mu.Lock()
	ml := g.ml
	g.ml = nil
	g.mu.Unlock()
	if ml == nil {
		return
	}
	close(g.stop)
	if err := ml.Leave(2 * time.Second); err != nil {
		g.log.WithError(err).Debug("gossip leave")
	}
	if err := ml.Shutdown(); err != nil && !errors.Is(err, net.ErrClosed) {
		g.log.WithError(err).Debug("gossip shutdown")
	}
}

// gossipDelegate is memberlist's view of the tables.
type gossipDelegate gossip

func (d *gossipDelegate) NodeMeta(int) []byte               { return nil }
func (d *gossipDelegate) NotifyMsg(b []byte)                { (*gossip)(d).merge(b) }
func (d *gossipDelegate) GetBroadcasts(int, int) [][]byte   { return nil }
func (d *gossipDelegate) MergeRemoteState(b []byte, _ bool) { (*gossip)(d).merge(b) }
func (d *gossipDelegate) LocalState(bool) []byte {
	g := (*gossip)(d)
	g.mu.Lock()
	defer g.mu.Unlock()
	b, _ := json.Marshal(g.local)
	return b
}

// gossipEvents follows the membership: a new member gets this node's
// table at once, a gone one's table goes.
type gossipEvents gossip

func (e *gossipEvents) NotifyJoin(n *memberlist.Node) {
	if n.Name != e.nodeID {
		signal(e.sendNow)
	}
}

func (e *gossipEvents) NotifyLeave(n *memberlist.Node) {
	g := (*gossip)(e)
	g.mu.Lock()
	_, ok := g.remote[n.Name]
	delete(g.remote, n.Name)
	g.mu.Unlock()
	if ok {
		signal(g.changed)
	}
}

func (e *gossipEvents) NotifyUpdate(*memberlist.Node) {}
