package controller

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"

	jnet "github.com/jevm/jevm/network"
)

func boolPtr(b bool) *bool { return &b }

func createReq(name string, ipv6 bool, subnets ...string) network.CreateRequest {
	req := network.CreateRequest{Name: name}
	if ipv6 {
		req.EnableIPv6 = boolPtr(true)
	}
	if len(subnets) > 0 {
		req.IPAM = &network.IPAM{}
		for _, s := range subnets {
			req.IPAM.Config = append(req.IPAM.Config, network.IPAMConfig{Subnet: s})
		}
	}
	return req
}

func TestIPv6NetworkCreate(t *testing.T) {
	d := netTestEnv(t)
	ctx := context.Background()
	ula := jnet.ULAPool("test").Base

	// Dual stack with both subnets given.
	r, err := d.net.Create(ctx, createReq("v6", true, "10.100.20.0/24", "fd54:7a1b:8269::/64"))
	if err != nil {
		t.Fatal(err)
	}
	ni, _ := d.net.Inspect(ctx, r.ID, network.InspectOptions{})
	if !ni.EnableIPv6 || !ni.EnableIPv4 || len(ni.IPAM.Config) != 2 ||
		ni.IPAM.Config[1].Subnet != "fd54:7a1b:8269::/64" || ni.IPAM.Config[1].Gateway != "fd54:7a1b:8269::1" {
		t.Fatalf("inspect = %+v", ni)
	}
	// --ipv6 alone: the IPv4 subnet from the pools, a /64 of the ULA
	// pool, as dockerd; the next network the next /64.
	r2, err := d.net.Create(ctx, createReq("auto6", true))
	if err != nil {
		t.Fatal(err)
	}
	ni, _ = d.net.Inspect(ctx, r2.ID, network.InspectOptions{})
	first := netip.PrefixFrom(ula.Addr(), 64)
	if len(ni.IPAM.Config) != 2 || ni.IPAM.Config[0].Subnet != "172.18.0.0/16" || ni.IPAM.Config[1].Subnet != first.String() {
		t.Fatalf("auto6 IPAM = %+v (ULA pool %v)", ni.IPAM.Config, ula)
	}
	r3, err := d.net.Create(ctx, createReq("auto6b", true))
	if err != nil {
		t.Fatal(err)
	}
	ni, _ = d.net.Inspect(ctx, r3.ID, network.InspectOptions{})
	second := netip.PrefixFrom(jnet.LastAddr(first).Next(), 64)
	if ni.IPAM.Config[1].Subnet != second.String() {
		t.Fatalf("second auto /64 = %v, want %v", ni.IPAM.Config[1].Subnet, second)
	}
	// A given IPv6 subnet that overlaps another network's: dockerd's 403.
	if _, err := d.net.Create(ctx, createReq("dup6", true, "fd54:7a1b:8269::/48")); !errdefs.IsForbidden(err) || !strings.Contains(err.Error(), "Pool overlaps") {
		t.Fatalf("overlapping IPv6 subnet: %v", err)
	}
	// Without --ipv6 an IPv6 subnet is ignored, as by dockerd.
	r4, err := d.net.Create(ctx, createReq("no6", false, "fd99::/64"))
	if err != nil {
		t.Fatal(err)
	}
	ni, _ = d.net.Inspect(ctx, r4.ID, network.InspectOptions{})
	if ni.EnableIPv6 || len(ni.IPAM.Config) != 1 || !strings.HasPrefix(ni.IPAM.Config[0].Subnet, "172.") {
		t.Fatalf("IPv6 subnet without --ipv6: %+v", ni)
	}
	// Neither family: dockerd's message.
	req := createReq("none", false)
	req.EnableIPv4 = boolPtr(false)
	if _, err := d.net.Create(ctx, req); !errdefs.IsInvalidParameter(err) || err.Error() != "IPv4 or IPv6 must be enabled" {
		t.Fatalf("no family: %v", err)
	}
	// Persisted: the pools come back with the IPv6 subnet.
	nm2 := &Controller{names: d.names, log: d.log, path: d.net.path, nets: map[string]*netRecord{}, ports: map[string][]jnet.PortBinding{}}
	if err := nm2.load(); err != nil {
		t.Fatal(err)
	}
	if rec := nm2.byNameLocked("v6"); rec == nil || rec.pool6 == nil || rec.pool6.Subnet().String() != "fd54:7a1b:8269::/64" {
		t.Fatalf("reloaded v6 network: %+v", rec)
	}
}

func TestIPv6EndpointSettings(t *testing.T) {
	d := netTestEnv(t)
	ctx := context.Background()
	if _, err := d.net.Create(ctx, createReq("user6", true, "10.77.0.0/24", "fd00:77::/64")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.net.Create(ctx, createReq("auto6", true)); err != nil {
		t.Fatal(err)
	}
	cfg := &container.Config{}
	for _, tc := range []struct {
		net, ip6, want string
	}{
		{"user6", "fd00:77::99", ""},
		{"user6", "fd00:78::99", "no configured subnet or ip-range contain the IP address fd00:78::99"},
		{"user6", "10.77.0.9", "invalid IPv6 address"},
		{"auto6", "fd00:77::99", "user specified IP address is supported only when connecting to networks with user configured subnets"},
	} {
		hc := &container.HostConfig{NetworkMode: container.NetworkMode(tc.net)}
		_, err := d.net.Prepare(hc, cfg, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			tc.net: {IPAMConfig: &network.EndpointIPAMConfig{IPv6Address: tc.ip6}},
		}})
		if tc.want == "" && err != nil || tc.want != "" && (!errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("--ip6 %s on %s: %v, want %q", tc.ip6, tc.net, err, tc.want)
		}
	}

	// What a running container on user6 gets (the endpoint made as
	// newEndpointLocked does, without a host to make taps on).
	r := d.net.byNameLocked("user6")
	ip6 := netip.MustParseAddr("fd00:77::99")
	if err := r.pool6.Request(ip6); err != nil {
		t.Fatal(err)
	}
	c := testContainer(t, d, "web")
	c.Running = true
	c.Config.Hostname = "webhost"
	c.HostConfig.NetworkMode = "user6"
	c.NetConfig = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"user6": {}}}
	ep := &endpointRecord{ID: strings.Repeat("e", 64), ContainerID: c.ID, IP: "10.77.0.2", IP6: ip6.String(), MAC: "02:42:0a:4d:00:02", IfName: "eth0", DefaultRoute: true}
	r.Endpoints[ep.ID] = ep
	ic := r.interfaceConfig(ep, 1500)
	if strings.Join(ic.Addresses, ",") != "10.77.0.2/24,fd00:77::99/64" || ic.Gateway != "10.77.0.1" || ic.Gateway6 != "fd00:77::1" {
		t.Fatalf("interface config = %+v", ic)
	}
	ns := &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{}}
	d.net.FillSettings(c, &container.HostConfig{NetworkMode: "user6"}, ns)
	es := ns.Networks["user6"]
	if es == nil || es.GlobalIPv6Address != "fd00:77::99" || es.GlobalIPv6PrefixLen != 64 || es.IPv6Gateway != "fd00:77::1" {
		t.Fatalf("inspect endpoint = %+v", es)
	}
	ni, _ := d.net.Inspect(ctx, "user6", network.InspectOptions{})
	if got := ni.Containers[c.ID].IPv6Address; got != "fd00:77::99/64" {
		t.Fatalf("network inspect IPv6Address = %q", got)
	}
	// The embedded DNS answers both families, and PTR of the IPv6 address.
	names := &netNames{nm: d.net, id: r.ID}
	if got := fmt.Sprint(names.LookupName("web")); got != "[10.77.0.2 fd00:77::99]" {
		t.Fatalf("LookupName = %v", got)
	}
	if n, ok := names.LookupAddr(ip6); !ok || n != "web.user6" {
		t.Fatalf("LookupAddr = %q %v", n, ok)
	}
	if h := containerHosts(c, ep, r); !strings.Contains(h, "10.77.0.2\twebhost\n") || !strings.Contains(h, "fd00:77::99\twebhost\n") {
		t.Fatalf("hosts:\n%s", h)
	}
	// Released with the endpoint.
	d.net.releaseEndpointLocked(r, ep)
	if r.pool6.InUse(ip6) {
		t.Fatal("IPv6 address still in use after the endpoint went")
	}
}

// TestNetworkPoolsDoNotLeak creates and removes many networks (with and
// without IPv6, and creates that fail half-way) and checks that every
// subnet comes back: the next network gets the first pool again, and
// the pools run out exactly where dockerd's do, with dockerd's error.
func TestNetworkPoolsDoNotLeak(t *testing.T) {
	d := netTestEnv(t)
	ctx := context.Background()
	before := len(d.net.nets)
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("n%d", i)
		r, err := d.net.Create(ctx, createReq(name, i%2 == 0))
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		// A create that fails after its subnets were picked (bad aux
		// address) leaves nothing.
		bad := createReq(name+"-bad", true)
		bad.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256), AuxAddress: map[string]string{"x": "192.0.2.1"}}}}
		if _, err := d.net.Create(ctx, bad); !errdefs.IsInvalidParameter(err) {
			t.Fatalf("bad create %d: %v", i, err)
		}
		if err := d.net.Remove(ctx, r.ID); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
	if len(d.net.nets) != before {
		t.Fatalf("%d networks left, want %d", len(d.net.nets), before)
	}
	r, err := d.net.Create(ctx, createReq("again", true))
	if err != nil {
		t.Fatal(err)
	}
	ni, _ := d.net.Inspect(ctx, r.ID, network.InspectOptions{})
	if ni.IPAM.Config[0].Subnet != "172.18.0.0/16" || ni.IPAM.Config[1].Subnet != netip.PrefixFrom(jnet.ULAPool("test").Base.Addr(), 64).String() {
		t.Fatalf("after 300 creates and removes: %+v", ni.IPAM.Config)
	}
	if err := d.net.Remove(ctx, r.ID); err != nil {
		t.Fatal(err)
	}

	// The default pools hold 31 networks; the default bridge has one,
	// so 30 user networks fit and the 31st fails as with dockerd.
	var ids []string
	for i := 0; ; i++ {
		r, err := d.net.Create(ctx, createReq(fmt.Sprintf("fill%d", i), false))
		if err != nil {
			if i != 30 || !errdefs.IsInvalidParameter(err) || err.Error() != "all predefined address pools have been fully subnetted" {
				t.Fatalf("create %d: %v", i, err)
			}
			break
		}
		ids = append(ids, r.ID)
	}
	// Freeing one in the middle makes exactly that one free again.
	mid, _ := d.net.Inspect(ctx, ids[20], network.InspectOptions{})
	if err := d.net.Remove(ctx, ids[20]); err != nil {
		t.Fatal(err)
	}
	r, err = d.net.Create(ctx, createReq("refill", false))
	if err != nil {
		t.Fatal(err)
	}
	ni, _ = d.net.Inspect(ctx, r.ID, network.InspectOptions{})
	if ni.IPAM.Config[0].Subnet != mid.IPAM.Config[0].Subnet || mid.IPAM.Config[0].Subnet != "192.168.96.0/20" {
		t.Fatalf("refill got %s, freed %s", ni.IPAM.Config[0].Subnet, mid.IPAM.Config[0].Subnet)
	}
}

// TestGatewayEndpointOrder is dockerd 28's choice of the endpoint that
// provides a container's default route (TestConnectWithPriority's steps).
func TestGatewayEndpointOrder(t *testing.T) {
	d := netTestEnv(t)
	ctx := context.Background()
	add := func(name string, internal bool, prio int, ip6 string) *endpointRecord {
		req := createReq(name, ip6 != "")
		req.Internal = internal
		if _, err := d.net.Create(ctx, req); err != nil {
			t.Fatal(err)
		}
		ep := &endpointRecord{ID: name + "-ep", ContainerID: "c", IP: "10.0.0.1", IP6: ip6, GwPriority: prio}
		d.net.byNameLocked(name).Endpoints[ep.ID] = ep
		return ep
	}
	remove := func(ep *endpointRecord) {
		for _, r := range d.net.nets {
			delete(r.Endpoints, ep.ID)
		}
	}
	gw := func() string {
		ep, _ := d.net.gatewayEndpointLocked("c")
		if ep == nil {
			return ""
		}
		return strings.TrimSuffix(ep.ID, "-ep")
	}
	if gw() != "" {
		t.Fatal("a gateway without endpoints")
	}
	add("aaa-internal", true, 0, "")
	if gw() != "" {
		t.Fatalf("an internal network gives the default route: %s", gw())
	}
	n1 := add("testnet1", false, 0, "fd00::2")
	n5 := add("testnet5", false, -100, "fd00::3")
	if gw() != "testnet1" {
		t.Fatalf("gateway = %s, want testnet1", gw())
	}
	n2 := add("testnet2", false, 100, "fd00::4")
	if gw() != "testnet2" {
		t.Fatalf("gateway = %s, want testnet2", gw())
	}
	n3 := add("testnet3", false, 10, "fd00::5")
	n4 := add("testnet4", false, 10, "fd00::6")
	if gw() != "testnet2" {
		t.Fatalf("gateway = %s, want testnet2", gw())
	}
	remove(n2)
	if gw() != "testnet3" {
		t.Fatalf("gateway = %s, want testnet3 (ties: the name that sorts first)", gw())
	}
	remove(n3)
	if gw() != "testnet4" {
		t.Fatalf("gateway = %s, want testnet4", gw())
	}
	remove(n4)
	if gw() != "testnet1" {
		t.Fatalf("gateway = %s, want testnet1", gw())
	}
	// Dual stack before IPv4 only at equal priority.
	remove(n1)
	remove(n5)
	add("aaa-v4only", false, 0, "")
	add("zzz-dual", false, 0, "fd00::9")
	if gw() != "zzz-dual" {
		t.Fatalf("gateway = %s, want zzz-dual", gw())
	}
}

func TestIPv6OnlyNetwork(t *testing.T) {
	d := netTestEnv(t)
	ctx := context.Background()
	req := createReq("only6", true, "10.9.0.0/24", "fd00:66::/64")
	req.EnableIPv4 = boolPtr(false)
	res, err := d.net.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ni, _ := d.net.Inspect(ctx, res.ID, network.InspectOptions{})
	if ni.EnableIPv4 || !ni.EnableIPv6 || len(ni.IPAM.Config) != 1 || ni.IPAM.Config[0].Subnet != "fd00:66::/64" {
		t.Fatalf("IPv6-only inspect = %+v", ni)
	}
	// The IPv4 subnet was ignored, so the next network takes the first
	// pool as if none existed.
	r2, err := d.net.Create(ctx, createReq("v4", false))
	if err != nil {
		t.Fatal(err)
	}
	if ni, _ := d.net.Inspect(ctx, r2.ID, network.InspectOptions{}); ni.IPAM.Config[0].Subnet != "172.18.0.0/16" {
		t.Fatalf("next IPv4 network = %v", ni.IPAM.Config)
	}
	r := d.net.byNameLocked("only6")
	if r.pool != nil || r.pool6 == nil || r.dnsAddr().String() != "fd00:66::1" || len(r.gatewayPrefixes()) != 1 {
		t.Fatalf("record = %+v", r)
	}
	c := testContainer(t, d, "web")
	c.Running = true
	c.Config.Hostname = "webhost"
	c.HostConfig.NetworkMode = "only6"
	c.NetConfig = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"only6": {}}}
	ip6, _ := r.pool6.Allocate()
	ep := &endpointRecord{ID: strings.Repeat("f", 64), ContainerID: c.ID, IP6: ip6.String(), MAC: jnet.RandomMAC(), IfName: "eth0", DefaultRoute: true}
	r.Endpoints[ep.ID] = ep
	ic := r.interfaceConfig(ep, 1500)
	if strings.Join(ic.Addresses, ",") != "fd00:66::2/64" || ic.Gateway != "" || ic.Gateway6 != "fd00:66::1" {
		t.Fatalf("interface config = %+v", ic)
	}
	ns := &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{}}
	d.net.FillSettings(c, &container.HostConfig{NetworkMode: "only6"}, ns)
	if es := ns.Networks["only6"]; es == nil || es.IPAddress != "" || es.GlobalIPv6Address != "fd00:66::2" || es.IPv6Gateway != "fd00:66::1" {
		t.Fatalf("inspect endpoint = %+v", es)
	}
	if h := containerHosts(c, ep, r); !strings.Contains(h, "fd00:66::2\twebhost\n") || strings.Contains(h, "127.0.1.1") {
		t.Fatalf("hosts:\n%s", h)
	}
	if ni, _ := d.net.Inspect(ctx, "only6", network.InspectOptions{}); ni.Containers[c.ID].IPv4Address != "" || ni.Containers[c.ID].IPv6Address != "fd00:66::2/64" {
		t.Fatalf("network inspect containers = %+v", ni.Containers)
	}
	d.net.releaseEndpointLocked(r, ep)
	if r.pool6.InUse(ip6) {
		t.Fatal("address kept")
	}
}
