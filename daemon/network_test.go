package daemon

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/network"

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
