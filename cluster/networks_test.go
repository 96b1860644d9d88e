package cluster

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	swarmapi "github.com/moby/swarmkit/v2/api"

	netctl "github.com/jevm/jevm/network/controller"
)

// Swarm networks on a real SwarmKit manager with dockerd's allocator: an
// overlay network gets a subnet and a VXLAN ID, a service on it a virtual
// IP, its tasks an address on it; bad references get dockerd's errors.
func TestSwarmNetworks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a SwarmKit manager")
	}
	ctx := context.Background()
	c := testNode(t, &fakeContainers{})
	c.cfg.LocalNetwork = func(ref string) bool { return ref == "mybridge" }
	for _, bad := range []swarm.InitRequest{{DataPathPort: 80}, {DataPathPort: 50000}, {DataPathAddr: "0.0.0.0"}, {DataPathAddr: "127.0.0.1:4789"}, {DataPathAddr: "no-such-if0"}} {
		bad.ListenAddr = freeAddr(t)
		if _, err := c.Init(ctx, bad); !errdefs.IsInvalidParameter(err) {
			t.Fatalf("data path port %d, address %q: %v, want an invalid parameter", bad.DataPathPort, bad.DataPathAddr, err)
		}
	}
	if _, err := c.Init(ctx, swarm.InitRequest{ListenAddr: freeAddr(t), DefaultAddrPool: []string{"10.77.0.0/16"}, SubnetSize: 26, DataPathPort: 4790, DataPathAddr: "lo"}); err != nil {
		t.Fatal(err)
	}
	if sw, err := c.Inspect(ctx); err != nil || sw.DataPathPort != 4790 {
		t.Fatalf("swarm inspect: data path port %d, %v", sw.DataPathPort, err)
	}
	// The node learns the port from SwarmKit (its Node object), as a
	// node that joins would.
	waitUntil(t, "the node's data path", func() bool {
		exe := c.running.Load().exe
		dp, err := exe.nets.dataPath(exe.dataAddr)
		return err == nil && dp.port == 4790 && dp.addr.String() == "127.0.0.1"
	})
	if _, err := c.CreateNetwork(ctx, network.CreateRequest{Name: "bridge", CreateOptions: network.CreateOptions{Driver: "overlay"}}); !errdefs.IsForbidden(err) {
		t.Fatalf("a predefined name: %v", err)
	}
	if _, err := c.CreateNetwork(ctx, network.CreateRequest{Name: "secret", CreateOptions: network.CreateOptions{Driver: "overlay", Options: map[string]string{"encrypted": ""}}}); err != nil {
		t.Fatalf("an encrypted network: %v", err)
	}
	if ni, err := c.SwarmNetwork(ctx, "secret"); err != nil || ni.Options["encrypted"] != "" || len(ni.Options) == 0 {
		t.Fatalf("the encrypted network's options: %+v %v", ni.Options, err)
	} else if _, ok := ni.Options["encrypted"]; !ok {
		t.Fatalf("the encrypted network lost its option: %+v", ni.Options)
	}
	if err := c.RemoveNetwork(ctx, "secret"); err != nil {
		t.Fatal(err)
	}
	r, err := c.CreateNetwork(ctx, network.CreateRequest{Name: "backend", CreateOptions: network.CreateOptions{Driver: "overlay", Attachable: true, Labels: map[string]string{"a": "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, network.CreateRequest{Name: "backend", CreateOptions: network.CreateOptions{Driver: "overlay"}}); !errdefs.IsConflict(err) {
		t.Fatalf("a second network backend: %v", err)
	}
	var ni network.Inspect
	waitUntil(t, "the network allocated", func() bool {
		ni, err = c.SwarmNetwork(ctx, "backend")
		return err == nil && len(ni.IPAM.Config) == 1
	})
	if ni.ID != r.ID || ni.Scope != "swarm" || ni.Driver != "overlay" || !ni.Attachable || ni.Labels["a"] != "b" {
		t.Fatalf("inspect: %+v", ni)
	}
	if len(ni.IPAM.Config) != 1 || !strings.HasPrefix(ni.IPAM.Config[0].Subnet, "10.77.") || !strings.HasSuffix(ni.IPAM.Config[0].Subnet, "/26") || ni.Options[optVXLANID] == "" {
		t.Fatalf("not allocated: %+v", ni)
	}
	list, err := c.Networks(ctx, filters.NewArgs(filters.Arg("name", "backend")))
	if err != nil || len(list) != 1 || list[0].ID != r.ID {
		t.Fatalf("list by name: %v %+v", err, list)
	}
	list, err = c.Networks(ctx, filters.NewArgs())
	if err != nil {
		t.Fatal(err)
	}
	ingress := false
	for _, n := range list {
		ingress = ingress || (n.Name == "ingress" && n.Ingress)
	}
	if !ingress || len(list) != 2 {
		t.Fatalf("list: want backend and the ingress network: %+v", list)
	}

	spec := func(target string) swarm.ServiceSpec {
		return swarm.ServiceSpec{
			Annotations:  swarm.Annotations{Name: "web"},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox"}, Networks: []swarm.NetworkAttachmentConfig{{Target: target, Aliases: []string{"www"}}}},
		}
	}
	if _, err := c.CreateService(ctx, spec("nosuch")); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "network nosuch not found") {
		t.Fatalf("an unknown network: %v", err)
	}
	if _, err := c.CreateService(ctx, spec("mybridge")); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "cannot be used with services") {
		t.Fatalf("a local network: %v", err)
	}
	if _, err := c.CreateService(ctx, spec("ingress")); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("the ingress network: %v", err)
	}
	sr, err := c.CreateService(ctx, spec("backend"))
	if err != nil {
		t.Fatal(err)
	}
	var svc swarm.Service
	waitUntil(t, "the service's VIP", func() bool {
		svc, err = c.Service(ctx, sr.ID)
		return err == nil && len(svc.Endpoint.VirtualIPs) == 1
	})
	if v := svc.Endpoint.VirtualIPs[0]; v.NetworkID != r.ID || v.Addr == "" {
		t.Fatalf("VIP: %+v", v)
	}
	if n := svc.Spec.TaskTemplate.Networks; len(n) != 1 || n[0].Target != r.ID || n[0].Aliases[0] != "www" {
		t.Fatalf("the service's networks, by ID: %+v", n)
	}
	if err := c.RemoveNetwork(ctx, "backend"); !errdefs.IsConflict(err) && !errdefs.IsInvalidParameter(err) {
		t.Fatalf("remove a network in use: %v", err)
	}
	if err := c.RemoveService(ctx, sr.ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the network removed", func() bool { return c.RemoveNetwork(ctx, r.ID) == nil })
	if _, err := c.SwarmNetwork(ctx, "backend"); !errdefs.IsNotFound(err) {
		t.Fatalf("inspect after rm: %v", err)
	}
}

// fakeOverlays records the overlay networks the node makes.
type fakeOverlays struct {
	mu      sync.Mutex
	made    map[string]netctl.OverlaySpec
	keys    []netctl.OverlayKey
	primary uint64
}

func (f *fakeOverlays) EnsureOverlay(spec netctl.OverlaySpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.made == nil {
		f.made = map[string]netctl.OverlaySpec{}
	}
	f.made[spec.Name] = spec
	return nil
}
func (f *fakeOverlays) SetOverlayPeers(netctl.OverlayPeers) {}
func (f *fakeOverlays) OverlayChanged()                     {}
func (f *fakeOverlays) SetOverlayKeys(keys []netctl.OverlayKey, primary uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys, f.primary = keys, primary
}

// A container on attachable swarm networks (docker run --network): the
// swarm gives it an address at start through an attachment task, which
// the node's executor receives; the node makes the network (with its own
// address on it); a network that is not attachable is dockerd's 403, a
// name the swarm does not know is left to the local networks; detaching
// gives the attachment back.
func TestAttachContainer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a SwarmKit manager")
	}
	ctx := context.Background()
	c := testNode(t, &fakeContainers{})
	ov := &fakeOverlays{}
	c.cfg.Overlays = ov
	if _, err := c.Init(ctx, swarm.InitRequest{ListenAddr: freeAddr(t)}); err != nil {
		t.Fatal(err)
	}
	open, err := c.CreateNetwork(ctx, network.CreateRequest{Name: "open", CreateOptions: network.CreateOptions{Driver: "overlay", Attachable: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, network.CreateRequest{Name: "closed", CreateOptions: network.CreateOptions{Driver: "overlay"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, network.CreateRequest{Name: "open2", CreateOptions: network.CreateOptions{Driver: "overlay", Attachable: true}}); err != nil {
		t.Fatal(err)
	}
	var ni network.Inspect
	waitUntil(t, "the networks allocated", func() bool {
		ni, err = c.SwarmNetwork(ctx, "open")
		n2, err2 := c.SwarmNetwork(ctx, "closed")
		n3, err3 := c.SwarmNetwork(ctx, "open2")
		return err == nil && err2 == nil && err3 == nil && len(ni.IPAM.Config) == 1 && len(n2.IPAM.Config) == 1 && len(n3.IPAM.Config) == 1
	})
	if _, err := c.AttachContainer(ctx, "ctr1", []string{"closed"}); !errdefs.IsForbidden(err) || !strings.Contains(err.Error(), "not manually attachable") {
		t.Fatalf("a network that is not attachable: %v", err)
	}
	eps, err := c.AttachContainer(ctx, "ctr1", []string{"open", "nosuch"})
	if err != nil {
		t.Fatal(err)
	}
	es := eps["open"]
	if len(eps) != 1 || es == nil || es.NetworkID != open.ID || es.IPAMConfig == nil || es.DriverOpts[netctl.OptSwarmAttachment] == "" {
		t.Fatalf("endpoints: %+v", eps)
	}
	sub := netip.MustParsePrefix(ni.IPAM.Config[0].Subnet)
	if !sub.Contains(netip.MustParseAddr(es.IPAMConfig.IPv4Address)) {
		t.Fatalf("address %s not in %s", es.IPAMConfig.IPv4Address, sub)
	}
	ov.mu.Lock()
	made := ov.made["open"]
	ov.mu.Unlock()
	if made.ID != open.ID || !sub.Contains(made.NodeAddr) || made.NodeAddr.String() == es.IPAMConfig.IPv4Address || made.VNI == 0 {
		t.Fatalf("the network made on the node: %+v", made)
	}
	aID := es.DriverOpts[netctl.OptSwarmAttachment]
	control, err := c.controlClient()
	if err != nil {
		t.Fatal(err)
	}
	taskState := func(id string) (swarmapi.TaskState, bool) {
		r, err := control.GetTask(ctx, &swarmapi.GetTaskRequest{TaskID: id})
		if err != nil {
			return 0, false
		}
		return r.Task.DesiredState, true
	}
	if st, ok := taskState(aID); !ok || st > swarmapi.TaskStateRunning {
		t.Fatalf("the attachment task: %v %v", st, ok)
	}
	// The swarm's data encryption keys reached the node's networks: the
	// managers hand out three, the second oldest seals.
	waitUntil(t, "the data encryption keys", func() bool {
		ov.mu.Lock()
		defer ov.mu.Unlock()
		return len(ov.keys) == 3
	})
	ov.mu.Lock()
	if ov.primary != ov.keys[1].Tag || len(ov.keys[1].Secret) != 16 || !(ov.keys[0].Tag < ov.keys[1].Tag && ov.keys[1].Tag < ov.keys[2].Tag) {
		t.Errorf("data keys %+v, primary %d", ov.keys, ov.primary)
	}
	ov.mu.Unlock()
	// A second network (docker network connect): given back alone.
	eps2, err := c.AttachContainer(ctx, "ctr1", []string{"open2"})
	if err != nil || eps2["open2"] == nil {
		t.Fatalf("a second attachment: %+v %v", eps2, err)
	}
	a2ID := eps2["open2"].DriverOpts[netctl.OptSwarmAttachment]
	c.DetachContainer("ctr1", eps2["open2"].NetworkID)
	waitUntil(t, "the second attachment given back", func() bool {
		st, ok := taskState(a2ID)
		return !ok || st > swarmapi.TaskStateRunning
	})
	if st, ok := taskState(aID); !ok || st > swarmapi.TaskStateRunning {
		t.Fatalf("the first attachment went with the second: %v %v", st, ok)
	}
	c.DetachContainer("ctr1")
	waitUntil(t, "the attachment given back", func() bool {
		st, ok := taskState(aID)
		return !ok || st > swarmapi.TaskStateRunning
	})
}
