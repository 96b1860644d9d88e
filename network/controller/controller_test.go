package controller

import (
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
	"github.com/sirupsen/logrus"

	jnet "github.com/jevm/jevm/network"
)

// testEnv stands for the daemon: its container names and the
// controller it uses (replaced when a test "restarts" the daemon).
type testEnv struct {
	net   *Controller
	log   *logrus.Entry
	names testNames
}

func newTestEnv(t *testing.T) *testEnv {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return &testEnv{log: logrus.NewEntry(l), names: testNames{}}
}

// testNames maps container names to IDs, as the daemon's container store.
type testNames map[string]string

func (n testNames) IDByName(name string) string { return n[strings.TrimPrefix(name, "/")] }

func (n testNames) NameByID(id string) string {
	for name, other := range n {
		if other == id {
			return name
		}
	}
	return ""
}

// testContainer is a stopped container called name, known to the names.
func testContainer(t *testing.T, d *testEnv, name string) *Container {
	c := &Container{
		ID: strings.Repeat(name[:1], 64), Name: name,
		Config: &container.Config{}, HostConfig: &container.HostConfig{},
	}
	d.names[name] = c.ID
	return c
}

// netTestEnv has a controller without host networking (no bridges, taps
// or rules are made): the bookkeeping alone.
func netTestEnv(t *testing.T) *testEnv {
	d := newTestEnv(t)
	dataRoot := t.TempDir()
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(rc, []byte("search corp.example\nnameserver 127.0.0.53\noptions edns0\n"), 0o644)
	cfg := Config{ResolvConf: rc}
	cfg.setDefaults()
	nm := &Controller{
		names: d.names, cfg: cfg, log: d.log, path: filepath.Join(dataRoot, "state.json"), instance: "test",
		nets: map[string]*netRecord{}, ports: map[string][]jnet.PortBinding{}, proxies: map[string][]*jnet.Proxy{},
	}
	for _, n := range []string{network.NetworkBridge, network.NetworkHost, network.NetworkNone} {
		if err := nm.createPredefinedLocked(n); err != nil {
			t.Fatal(err)
		}
	}
	d.net = nm
	return d
}

func TestNetworkCreateListRemoveBookkeeping(t *testing.T) {
	d := netTestEnv(t)
	ctx := context.Background()
	br, _ := d.net.Inspect(ctx, "bridge", network.InspectOptions{})
	if br.IPAM.Config[0].Subnet != "172.17.0.0/16" || br.IPAM.Config[0].Gateway != "172.17.0.1" {
		t.Fatalf("default bridge = %+v", br.IPAM)
	}
	r1, err := d.net.Create(ctx, network.CreateRequest{Name: "a", CreateOptions: network.CreateOptions{Labels: map[string]string{"k": "v"}}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := d.net.Inspect(ctx, r1.ID[:6], network.InspectOptions{})
	if a.Name != "a" || a.IPAM.Config[0].Subnet != "172.18.0.0/16" {
		t.Fatalf("a = %+v", a.IPAM)
	}
	// Only the options the user gave, as dockerd: compose v1 wants a
	// network recreated whose options differ from its driver_opts.
	d.net.nets[r1.ID].Bridge = "jevm-" + r1.ID[:10]
	d.net.byNameLocked("bridge").Bridge = "jevm0"
	if a, _ = d.net.Inspect(ctx, "a", network.InspectOptions{}); len(a.Options) != 0 {
		t.Fatalf("options the user never set: %v", a.Options)
	}
	if br, _ = d.net.Inspect(ctx, "bridge", network.InspectOptions{}); br.Options[optBridgeName] == "" {
		t.Fatalf("the default bridge's options lack its bridge name: %v", br.Options)
	}
	if _, err := d.net.Create(ctx, network.CreateRequest{Name: "a"}); !errdefs.IsConflict(err) {
		t.Fatalf("duplicate name: %v", err)
	}
	_, err = d.net.Create(ctx, network.CreateRequest{Name: "b", CreateOptions: network.CreateOptions{IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: "172.18.128.0/24"}}}}})
	if !errdefs.IsForbidden(err) {
		t.Fatalf("overlapping subnet: %v", err)
	}
	_, err = d.net.Create(ctx, network.CreateRequest{Name: "c", CreateOptions: network.CreateOptions{IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.5.0.0/24", Gateway: "10.6.0.1"}}}}})
	if !errdefs.IsInvalidParameter(err) {
		t.Fatalf("gateway outside the subnet: %v", err)
	}
	if _, err := d.net.Create(ctx, network.CreateRequest{Name: "d", CreateOptions: network.CreateOptions{Driver: "macvlan"}}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("macvlan: %v", err)
	}
	list, _ := d.net.List(ctx, filters.NewArgs(filters.Arg("type", "custom")))
	if len(list) != 1 || list[0].Name != "a" {
		t.Fatalf("custom networks = %v", list)
	}
	list, _ = d.net.List(ctx, filters.NewArgs(filters.Arg("label", "k=v")))
	if len(list) != 1 {
		t.Fatalf("label filter = %v", list)
	}
	if err := d.net.Remove(ctx, "bridge"); !errdefs.IsForbidden(err) {
		t.Fatalf("rm bridge: %v", err)
	}
	// An endpoint makes it busy (409), as dockerd.
	d.net.nets[r1.ID].Endpoints["e"] = &endpointRecord{ID: "e", ContainerID: "x", IP: "172.18.0.2"}
	if err := d.net.Remove(ctx, "a"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "has active endpoints") {
		t.Fatalf("rm of a busy network: %v", err)
	}
	rep, _ := d.net.Prune(ctx, filters.NewArgs())
	if len(rep.NetworksDeleted) != 0 {
		t.Fatalf("pruned a busy network: %v", rep)
	}
	delete(d.net.nets[r1.ID].Endpoints, "e")
	rep, _ = d.net.Prune(ctx, filters.NewArgs())
	if len(rep.NetworksDeleted) != 1 || rep.NetworksDeleted[0] != "a" {
		t.Fatalf("prune = %v", rep)
	}
	// Persisted: a new manager sees the same networks.
	nm2 := &Controller{names: d.names, log: d.log, path: d.net.path, nets: map[string]*netRecord{}, ports: map[string][]jnet.PortBinding{}}
	if err := nm2.load(); err != nil {
		t.Fatal(err)
	}
	if len(nm2.nets) != 3 || nm2.byNameLocked("bridge").pool == nil {
		t.Fatalf("reloaded %d networks", len(nm2.nets))
	}
}

func TestPrepareNetworking(t *testing.T) {
	d := netTestEnv(t)
	ctx := context.Background()
	if _, err := d.net.Create(ctx, network.CreateRequest{Name: "user", CreateOptions: network.CreateOptions{IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.77.0.0/24"}}}}}); err != nil {
		t.Fatal(err)
	}
	cfg := &container.Config{ExposedPorts: nat.PortSet{"80/tcp": {}}}

	// Default: the CLI sends "default" both as the mode and the key.
	hc := &container.HostConfig{NetworkMode: "default"}
	nc, err := d.net.Prepare(hc, cfg, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"default": {}}})
	if err != nil {
		t.Fatal(err)
	}
	if hc.NetworkMode != "bridge" || len(nc.EndpointsConfig) != 1 || nc.EndpointsConfig["bridge"] == nil {
		t.Fatalf("default: mode %q, endpoints %v", hc.NetworkMode, nc.EndpointsConfig)
	}

	// Two networks, --ip and an alias on the user network.
	hc = &container.HostConfig{NetworkMode: "user"}
	nc, err = d.net.Prepare(hc, cfg, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		"user":   {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.77.0.9"}, Aliases: []string{"db"}},
		"bridge": {},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := &Container{ID: strings.Repeat("c", 64), HostConfig: hc, NetConfig: nc, Config: cfg}
	if got := containerNetworks(c); strings.Join(got, ",") != "user,bridge" {
		t.Fatalf("order = %v", got)
	}

	// Networks named at create need not exist yet (as dockerd); the
	// start is what fails.
	hc = &container.HostConfig{NetworkMode: "nope"}
	nc, err = d.net.Prepare(hc, cfg, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"user": {}}})
	if err != nil || hc.NetworkMode != "nope" || nc.EndpointsConfig["nope"] == nil || nc.EndpointsConfig["user"] == nil {
		t.Fatalf("create on a network made later: %v %q %v", err, hc.NetworkMode, nc)
	}
	hc = &container.HostConfig{}
	nc, err = d.net.Prepare(hc, cfg, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"net1": {}, "net2": nil}})
	if err != nil {
		t.Fatalf("create with networks made later: %v", err)
	}
	c = &Container{ID: strings.Repeat("d", 64), Name: "later", HostConfig: hc, NetConfig: nc, Config: cfg}
	if got := containerNetworks(c); strings.Join(got, ",") != "bridge,net1,net2" {
		t.Fatalf("networks = %v", got)
	}
	ns := &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{}}
	d.net.FillSettings(c, hc, ns)
	if ns.Networks["net1"] == nil || ns.Networks["net1"].NetworkID != "" || ns.Networks["bridge"] == nil {
		t.Fatalf("inspect of networks made later: %v", ns.Networks)
	}
	if _, err := d.net.Attach(ctx, c); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "network net1 not found") {
		t.Fatalf("start with a missing network: %v", err)
	}

	for _, bad := range []struct {
		mode string
		eps  map[string]*network.EndpointSettings
		hc   container.HostConfig
		want string
	}{
		{mode: "host", want: "--network host is not supported"},
		{mode: "bridge", eps: map[string]*network.EndpointSettings{"bridge": {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "172.17.0.9"}}}, want: "user configured subnets"},
		{mode: "bridge", eps: map[string]*network.EndpointSettings{"bridge": {Aliases: []string{"x"}}}, want: "user defined networks"},
		{mode: "user", eps: map[string]*network.EndpointSettings{"user": {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.78.0.9"}}}, want: "no configured subnet"},
		{mode: "none", eps: map[string]*network.EndpointSettings{"user": {}}, want: "conflicting options"},
		{mode: "none", hc: container.HostConfig{PublishAllPorts: true}, want: "port publishing"},
		{mode: "bridge", hc: container.HostConfig{PortBindings: nat.PortMap{"80/tcp": {{HostPort: "99999"}}}}, want: "invalid host port"},
	} {
		hc := bad.hc
		hc.NetworkMode = container.NetworkMode(bad.mode)
		_, err := d.net.Prepare(&hc, cfg, &network.NetworkingConfig{EndpointsConfig: bad.eps})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s %v: err %v, want %q", bad.mode, bad.eps, err, bad.want)
		}
	}
}

func TestContainerHostsAndResolvConf(t *testing.T) {
	d := netTestEnv(t)
	c := &Container{
		ID:     strings.Repeat("a", 64),
		Config: &container.Config{Hostname: "h1", Domainname: "example.test"},
		HostConfig: &container.HostConfig{
			ExtraHosts: []string{"foo:1.2.3.4", "gw:host-gateway"},
		},
	}
	br := d.net.byNameLocked("bridge")
	ep := &endpointRecord{IP: "172.17.0.5"}
	h := containerHosts(c, ep, br)
	for _, want := range []string{"172.17.0.5\th1.example.test\th1\n", "1.2.3.4\tfoo\n", "172.17.0.1\tgw\n"} {
		if !strings.Contains(h, want) {
			t.Fatalf("hosts lacks %q:\n%s", want, h)
		}
	}
	if strings.Contains(h, "127.0.1.1") {
		t.Fatalf("hosts keeps 127.0.1.1:\n%s", h)
	}
	// Default bridge: the host's resolvers, loopback ones replaced.
	if rc := d.net.resolvConfFor(c, br); rc != "search corp.example\nnameserver 8.8.8.8\nnameserver 8.8.4.4\noptions edns0\n" {
		t.Fatalf("bridge resolv.conf:\n%s", rc)
	}
	c.HostConfig.DNS = []string{"10.0.0.53"}
	c.HostConfig.DNSSearch = []string{"."}
	c.HostConfig.DNSOptions = []string{"ndots:2"}
	if rc := d.net.resolvConfFor(c, br); rc != "nameserver 10.0.0.53\noptions ndots:2\n" {
		t.Fatalf("--dns resolv.conf:\n%s", rc)
	}
	// A user network with its DNS server: the gateway, ndots:0.
	user := &netRecord{Name: "u", Gateway: "10.1.0.1", dns: &jnet.DNSServer{}}
	c.HostConfig = &container.HostConfig{}
	if rc := d.net.resolvConfFor(c, user); rc != "search corp.example\nnameserver 10.1.0.1\noptions edns0 ndots:0\n" {
		t.Fatalf("user network resolv.conf:\n%s", rc)
	}
}

func TestEmbeddedDNSNames(t *testing.T) {
	d := netTestEnv(t)
	ctx := context.Background()
	resp, err := d.net.Create(ctx, network.CreateRequest{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	web := testContainer(t, d, "web")
	other := testContainer(t, d, "xother")
	// A renamed container with capitals: DNS queries come lower case.
	renamed := testContainer(t, d, "zRenamed")
	r := d.net.nets[resp.ID]
	r.Endpoints["e1"] = &endpointRecord{ID: "e1", ContainerID: web.ID, IP: "172.18.0.2", Aliases: []string{"www"}, Hostname: "FooBar"}
	r.Endpoints["e2"] = &endpointRecord{ID: "e2", ContainerID: other.ID, IP: "172.18.0.3", Aliases: []string{"www"}, DNS: []string{"10.0.0.53"}}
	r.Endpoints["e3"] = &endpointRecord{ID: "e3", ContainerID: renamed.ID, IP: "172.18.0.4"}
	names := &netNames{nm: d.net, id: resp.ID}
	for q, want := range map[string]string{
		"web": "172.18.0.2", "web.app": "172.18.0.2", web.ID[:12]: "172.18.0.2",
		"www": "172.18.0.2 172.18.0.3", "nothing": "", web.ID[:5]: "",
		"foobar": "172.18.0.2", "zrenamed": "172.18.0.4", "zrenamed.app": "172.18.0.4",
	} {
		var got []string
		for _, a := range names.LookupName(q) {
			got = append(got, a.String())
		}
		if strings.Join(got, " ") != want {
			t.Errorf("LookupName(%q) = %v, want %q", q, got, want)
		}
	}
	if n, ok := names.LookupAddr(netip.MustParseAddr("172.18.0.2")); !ok || n != "web.app" {
		t.Errorf("LookupAddr = %q %v", n, ok)
	}
	if up := names.Upstreams(netip.MustParseAddr("172.18.0.3")); strings.Join(up, ",") != "10.0.0.53:53" {
		t.Errorf("--dns upstream = %v", up)
	}
	if up := names.Upstreams(netip.MustParseAddr("172.18.0.2")); strings.Join(up, ",") != "127.0.0.53:53" {
		t.Errorf("host upstream = %v", up)
	}
	r.Internal = true
	if up := names.Upstreams(netip.MustParseAddr("172.18.0.2")); len(up) != 0 {
		t.Errorf("internal network forwards to %v", up)
	}
}

// inspect's DNSNames: dockerd's order (name, aliases, short ID, hostname),
// without repeats (the default hostname is the short ID).
func TestDNSNamesOrder(t *testing.T) {
	c := &Container{ID: strings.Repeat("ab", 32), Name: "web"}
	got := dnsNames(c, &endpointRecord{Aliases: []string{"www", "web"}, Hostname: "foobar"})
	if strings.Join(got, ",") != "web,www,abababababab,foobar" {
		t.Errorf("DNSNames = %v", got)
	}
	got = dnsNames(c, &endpointRecord{Hostname: c.ID[:12]})
	if strings.Join(got, ",") != "web,abababababab" {
		t.Errorf("DNSNames with the default hostname = %v", got)
	}
}
