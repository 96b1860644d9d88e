package cluster

import (
	"context"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/swarmkit/v2/agent"
	"github.com/moby/swarmkit/v2/agent/exec"
	swarmapi "github.com/moby/swarmkit/v2/api"
	"github.com/moby/swarmkit/v2/template"

	netctl "github.com/jevm/jevm/network/controller"
)

// executor is SwarmKit's view of this engine: it describes the host so
// that the node shows and schedules as dockerd's does, and runs each task
// given to it as a container of the engine (controller.go), so as a jeVM.
type executor struct {
	engineVersion string
	hostname      string
	containers    Containers
	// dependencies holds the secrets and configs the managers sent for
	// this node's tasks (in memory only); each task sees its own.
	dependencies exec.DependencyManager
	// nets, overlays and dataAddr serve the tasks' overlay networks;
	// gossip tells the other nodes about this one's endpoints.
	nets     *nodeNets
	overlays Overlays
	dataAddr func() string
	gossip   *gossip
	// attach holds the attachment tasks of containers on attachable
	// networks (attach.go).
	attach *attachments
}

var _ exec.DependencyManager = (*executor)(nil)

// Secrets, Configs and Volumes implement exec.DependencyManager: the
// agent keeps them up to date.
func (e *executor) Secrets() exec.SecretsManager { return e.dependencies.Secrets() }
func (e *executor) Configs() exec.ConfigsManager { return e.dependencies.Configs() }
func (e *executor) Volumes() exec.VolumesManager { return e.dependencies.Volumes() }

// enginePlugins are the drivers the scheduler's plugin filter looks for
// on a node (a service on an overlay network, with volumes or a log
// driver), as dockerd names its built-in ones.
var enginePlugins = []swarmapi.PluginDescription{
	{Type: "Network", Name: "bridge"}, {Type: "Network", Name: "null"}, {Type: "Network", Name: "overlay"},
	{Type: "Volume", Name: "local"},
	{Type: "Log", Name: "json-file"}, {Type: "Log", Name: "local"},
}

// Describe implements exec.Executor.
func (e *executor) Describe(context.Context) (*swarmapi.NodeDescription, error) {
	return &swarmapi.NodeDescription{
		Hostname: e.hostname,
		Platform: &swarmapi.Platform{Architecture: unameArch(), OS: runtime.GOOS},
		Resources: &swarmapi.Resources{
			NanoCPUs:    int64(runtime.NumCPU()) * 1e9,
			MemoryBytes: memTotal(),
		},
		Engine: &swarmapi.EngineDescription{EngineVersion: e.engineVersion, Plugins: enginePlugins},
	}, nil
}

// Configure implements exec.Executor: the node's addresses on the
// swarm's networks.
func (e *executor) Configure(_ context.Context, node *swarmapi.Node) error {
	e.nets.set(node)
	e.ensureIngress(node)
	return nil
}

// Controller implements exec.Executor.
func (e *executor) Controller(t *swarmapi.Task) (exec.Controller, error) {
	desc, _ := e.Describe(context.Background())
	deps := template.NewTemplatedDependencyGetter(agent.Restrict(e.dependencies, t), t, desc)
	if t.Spec.GetAttachment() != nil {
		return &attachController{a: e.attach, task: t, done: make(chan struct{})}, nil
	}
	r, err := newController(e.containers, t, deps)
	if err != nil {
		return nil, err
	}
	r.nets, r.overlays, r.dataAddr = e.nets, e.overlays, e.dataAddr
	return r, nil
}

// SetNetworkBootstrapKeys implements exec.Executor: the swarm's gossip
// keys, which encrypt what the nodes tell each other about their overlay
// endpoints.
func (e *executor) SetNetworkBootstrapKeys(keys []*swarmapi.EncryptionKey) error {
	if e.overlays != nil {
		dataKeys, primary := dataPathKeys(keys)
		e.overlays.SetOverlayKeys(dataKeys, primary)
	}
	if e.gossip == nil {
		return nil
	}
	if err := e.gossip.setKeys(keys); err != nil {
		// Not the agent's failure (it would drop its session): the
		// node runs, without overlay peers until the next keys.
		e.gossip.log.WithError(err).Warn("gossip unavailable: overlay networks cannot reach the other nodes")
	}
	return nil
}

// unameArch is the architecture as `uname -m` and dockerd name it.
func unameArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// memTotal is the host's memory from /proc/meminfo (0 if unreadable).
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// closeGossip leaves the gossip and disconnects the engine's overlay
// networks from it.
func (e *executor) closeGossip(o Overlays) {
	if e == nil || e.gossip == nil {
		return
	}
	e.gossip.close()
	if o != nil {
		o.SetOverlayPeers(nil)
	}
}

// dataKeySubsystem names the swarm's keys for the overlay's data (which
// dockerd's IPsec uses).
const dataKeySubsystem = "networking:ipsec"

// dataPathKeys picks the data encryption keys out of the swarm's network
// keys, and the one to seal with as dockerd picks it: of the keys sorted
// by Lamport time, the second. The managers hand out a new key before
// any node seals with it, so every node opens it by the time one does.
func dataPathKeys(keys []*swarmapi.EncryptionKey) ([]netctl.OverlayKey, uint64) {
	var ks []*swarmapi.EncryptionKey
	for _, k := range keys {
		if k != nil && k.Subsystem == dataKeySubsystem && len(k.Key) > 0 {
			ks = append(ks, k)
		}
	}
	if len(ks) == 0 {
		return nil, 0
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].LamportTime < ks[j].LamportTime })
	out := make([]netctl.OverlayKey, 0, len(ks))
	for _, k := range ks {
		out = append(out, netctl.OverlayKey{Tag: k.LamportTime, Secret: append([]byte(nil), k.Key...)})
	}
	primary := ks[0].LamportTime
	if len(ks) > 1 {
		primary = ks[1].LamportTime
	}
	return out, primary
}
