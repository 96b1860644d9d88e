package daemon

import (
	"context"
	"errors"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/network/controller"
)

// fakeNet records what the daemon passes to the network controller
// (network/controller has the controller's own tests).
type fakeNet struct {
	networkController // nil: other calls panic
	got               *controller.Container
	plug              controller.NICPlugger
}

func (f *fakeNet) Connect(ctx context.Context, c *controller.Container, ref string, es *network.EndpointSettings, plug controller.NICPlugger, record func(string, *network.EndpointSettings) error) error {
	f.got, f.plug = c, plug
	return record("net-"+ref, &network.EndpointSettings{Aliases: es.Aliases})
}

func (f *fakeNet) Disconnect(ctx context.Context, c *controller.Container, ref string, force bool, plug controller.NICPlugger, forget func(string) error) error {
	f.got, f.plug = c, plug
	if ref == "ov" {
		return errdefs.NotFound(errors.New("network ov not found"))
	}
	return forget("net-" + ref)
}

func TestNetworkConnectRecordsInContainer(t *testing.T) {
	d := testDaemon(t)
	c := testContainer(t, d, "web")
	f := &fakeNet{}
	d.net = f
	ctx := context.Background()
	es := &network.EndpointSettings{Aliases: []string{"db"}}
	if err := d.NetworkConnect(ctx, "u", network.ConnectOptions{Container: "web", EndpointConfig: es}); err != nil {
		t.Fatal(err)
	}
	// A stopped container: no VM to plug into, and its name and ID passed.
	if f.got.ID != c.ID || f.got.Name != "web" || f.got.Running || f.plug != nil {
		t.Fatalf("controller got %+v, plug %v", f.got, f.plug)
	}
	if got := c.NetConfig.EndpointsConfig["net-u"]; got == nil || got.Aliases[0] != "db" {
		t.Fatalf("recorded %v", c.NetConfig.EndpointsConfig)
	}
	if err := d.NetworkDisconnect(ctx, "u", network.DisconnectOptions{Container: c.ID}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.NetConfig.EndpointsConfig["net-u"]; ok {
		t.Fatalf("still recorded %v", c.NetConfig.EndpointsConfig)
	}
}

// swarmNets is a fake SwarmAttacher with fakeNet: "ov" is a swarm network
// this node does not have.
type swarmNets struct{ attached, detached []string }

func (s *swarmNets) AttachContainer(ctx context.Context, id string, refs []string) (map[string]*network.EndpointSettings, error) {
	s.attached = append(s.attached, refs...)
	return nil, nil
}
func (s *swarmNets) DetachContainer(id string, networkIDs ...string) {
	s.detached = append(s.detached, networkIDs...)
}
func (s *swarmNets) InSwarm() bool { return true }

func (f *fakeNet) Inspect(ctx context.Context, ref string, opts network.InspectOptions) (network.Inspect, error) {
	return network.Inspect{}, errdefs.NotFound(errors.New("network " + ref + " not found"))
}

// In a swarm, a stopped container connected to a network the node does
// not have records it under the name given, as dockerd (the start asks
// the swarm for it); a second connect is refused; disconnect forgets it.
func TestNetworkConnectSwarmStopped(t *testing.T) {
	d := testDaemon(t)
	c := testContainer(t, d, "web")
	d.net = &fakeNet{}
	sn := &swarmNets{}
	d.SetSwarmAttacher(sn)
	ctx := context.Background()
	if err := d.NetworkConnect(ctx, "ov", network.ConnectOptions{Container: "web", EndpointConfig: &network.EndpointSettings{Aliases: []string{"a"}}}); err != nil {
		t.Fatal(err)
	}
	if got := c.NetConfig.EndpointsConfig["ov"]; got == nil || got.Aliases[0] != "a" || len(sn.attached) != 0 {
		t.Fatalf("recorded %v, attached %v", c.NetConfig.EndpointsConfig, sn.attached)
	}
	if err := d.NetworkConnect(ctx, "ov", network.ConnectOptions{Container: "web"}); !errdefs.IsForbidden(err) {
		t.Fatalf("a second connect: %v", err)
	}
	if err := d.NetworkDisconnect(ctx, "ov", network.DisconnectOptions{Container: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.NetConfig.EndpointsConfig["ov"]; ok {
		t.Fatalf("still recorded %v", c.NetConfig.EndpointsConfig)
	}
}

func TestContainerNamesForNetworks(t *testing.T) {
	d := testDaemon(t)
	c := testContainer(t, d, "web")
	n := containerNames{d.containers}
	if n.IDByName("web") != c.ID || n.IDByName("/web") != c.ID || n.IDByName("nope") != "" {
		t.Fatal("IDByName")
	}
	if n.NameByID(c.ID) != "web" || n.NameByID("x") != "" {
		t.Fatal("NameByID")
	}
}
