package controller

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
)

type fakePeers struct{ remote []OverlayEndpoint }

func (f *fakePeers) Publish([]OverlayEndpoint) {}
func (f *fakePeers) Remote(id string) []OverlayEndpoint {
	var out []OverlayEndpoint
	for _, e := range f.remote {
		if e.Network == id {
			out = append(out, e)
		}
	}
	return out
}

type fakeNames map[string]string // ID -> name

func (f fakeNames) NameByID(id string) string { return f[id] }
func (f fakeNames) IDByName(name string) string {
	for id, n := range f {
		if n == name {
			return id
		}
	}
	return ""
}

// The names an overlay network's DNS server answers, from this node's
// endpoints and the other nodes': a VIP service's name and aliases are
// its VIP, a dnsrr service's its tasks', tasks.<service> its tasks'; a
// task's name is its address.
func TestOverlayLookup(t *testing.T) {
	const id = "ov1"
	r := &netRecord{ID: id, Name: "app_default", Driver: driverOverlay, Gateway: "10.0.1.9", Endpoints: map[string]*endpointRecord{
		"e1": {ID: "e1", ContainerID: "c1", IP: "10.0.1.3", Service: "app_web", VIP: "10.0.1.2", Aliases: []string{"web"}},
		"e2": {ID: "e2", ContainerID: "c2", IP: "10.0.1.6", Service: "app_db"},
	}}
	nm := &Controller{nets: map[string]*netRecord{id: r}, names: fakeNames{"c1": "app_web.1.aaa", "c2": "app_db.1.bbb"}}
	nm.peers = &fakePeers{remote: []OverlayEndpoint{
		{Network: id, IP: "10.0.1.4", Name: "app_web.2.ccc", Service: "app_web", VIP: "10.0.1.2", Aliases: []string{"web"}, Host: "192.0.2.2"},
		{Network: id, IP: "10.0.1.7", Name: "app_db.2.ddd", Service: "app_db", Host: "192.0.2.2"},
		{Network: id, IP: "10.0.1.8", NodeAddr: true, Host: "192.0.2.2"},
		{Network: "other", IP: "10.0.9.5", Name: "elsewhere", Service: "app_web", Host: "192.0.2.2"},
	}}
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	for name, want := range map[string][]netip.Addr{
		"app_web":       addrs("10.0.1.2"),
		"web":           addrs("10.0.1.2"),
		"tasks.app_web": addrs("10.0.1.3", "10.0.1.4"),
		"tasks.web":     addrs("10.0.1.3", "10.0.1.4"),
		"app_db":        addrs("10.0.1.6", "10.0.1.7"),
		"tasks.app_db":  addrs("10.0.1.6", "10.0.1.7"),
		"app_web.2.ccc": addrs("10.0.1.4"),
		"APP_WEB.1.AAA": addrs("10.0.1.3"),
		"elsewhere":     nil,
		"nosuch":        nil,
	} {
		if got := nm.overlayLookupLocked(r, name); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if n, ok := nm.overlayNameOfLocked(r, netip.MustParseAddr("10.0.1.4")); !ok || n != "app_web.2.ccc.app_default" {
		t.Errorf("PTR of 10.0.1.4: %q %v", n, ok)
	}
	if _, ok := nm.overlayNameOfLocked(r, netip.MustParseAddr("10.0.1.8")); ok {
		t.Errorf("a node's own address has a name")
	}
}

// Containers on swarm networks: tasks, and others only on attachable
// networks, with the swarm's address.
func TestCheckOverlayEndpoint(t *testing.T) {
	r := &netRecord{ID: "ov1", Name: "closed", Driver: driverOverlay}
	task := &network.EndpointSettings{DriverOpts: map[string]string{OptSwarmService: "web"}}
	if err := checkOverlayEndpoint(r, task); err != nil {
		t.Fatalf("a task: %v", err)
	}
	if err := checkOverlayEndpoint(r, &network.EndpointSettings{}); !errdefs.IsForbidden(err) {
		t.Fatalf("a container on a network that is not attachable: %v", err)
	}
	r.Attachable = true
	if err := checkOverlayEndpoint(r, &network.EndpointSettings{}); err != nil {
		t.Fatalf("a container on an attachable network: %v", err)
	}
	// At start, an address from the swarm or nothing.
	if err := swarmAddress(r, &network.EndpointSettings{}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("an endpoint without the swarm's address: %v", err)
	}
	if err := swarmAddress(r, &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.0.1.9"}}); err != nil {
		t.Fatal(err)
	}
}
