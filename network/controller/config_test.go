package controller

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"

	jnet "github.com/jevm/jevm/network"
)

// netTestManager is a controller with cfg and no host networking,
// its state in dir, set up as a daemon start does (predefined networks,
// the default bridge following cfg).
func netTestManager(t *testing.T, d *testEnv, dir string, cfg Config) *Controller {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(rc, []byte("search corp.example\nnameserver 127.0.0.53\noptions edns0\n"), 0o644)
	cfg.ResolvConf = rc
	cfg.setDefaults()
	nm := &Controller{
		names: d.names, cfg: cfg, log: d.log, path: filepath.Join(dir, "state.json"), instance: "test",
		nets: map[string]*netRecord{}, ports: map[string][]jnet.PortBinding{}, proxies: map[string][]*jnet.Proxy{},
	}
	if err := nm.load(); err != nil {
		t.Fatal(err)
	}
	nm.mu.Lock()
	defer nm.unlock()
	if err := nm.setUpNetworksLocked(); err != nil {
		t.Fatal(err)
	}
	if err := nm.saveLocked(); err != nil {
		t.Fatal(err)
	}
	d.net = nm
	return nm
}

func bridgeIPAM(t *testing.T, d *testEnv) string {
	t.Helper()
	ni, err := d.net.Inspect(context.Background(), "bridge", network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ni.IPAM.Config[0].Subnet + " " + ni.IPAM.Config[0].Gateway
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero value: %v", err)
	}
	good := Config{
		DefaultBridge: "br-admin", BridgeIP: netip.MustParsePrefix("172.30.0.1/16"),
		DefaultAddressPools: []AddressPool{{Base: netip.MustParsePrefix("10.10.0.0/16"), Size: 24}},
		DNS:                 []string{"10.0.0.53", "2001:db8::53"}, DNSSearch: []string{"corp.example", "."}, DNSOptions: []string{"ndots:2", "rotate"},
		DisableIPTables: true, DisableIPForward: true,
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{DefaultBridge: "a-very-long-bridge-name"}, "invalid --bridge"},
		{Config{DefaultBridge: "br/0"}, "invalid --bridge"},
		{Config{BridgeIP: netip.MustParsePrefix("2001:db8::1/64")}, "invalid --bip"},
		{Config{BridgeIP: netip.MustParsePrefix("172.30.0.1/31")}, "at most /30"},
		{Config{BridgeIP: netip.MustParsePrefix("172.30.0.0/16")}, "network or broadcast address"},
		{Config{BridgeIP: netip.MustParsePrefix("172.30.255.255/16")}, "network or broadcast address"},
		{Config{NoDefaultBridge: true, BridgeIP: netip.MustParsePrefix("172.30.0.1/16")}, "mutually exclusive"},
		{Config{DefaultBridge: "none", BridgeIP: netip.MustParsePrefix("172.30.0.1/16")}, "mutually exclusive"},
		{Config{DefaultAddressPools: []AddressPool{{Base: netip.MustParsePrefix("10.10.0.0/16"), Size: 8}}}, "invalid --default-address-pool base=10.10.0.0/16,size=8: size 8 is smaller"},
		{Config{DefaultAddressPools: []AddressPool{{Base: netip.MustParsePrefix("10.10.0.0/16"), Size: 31}}}, "larger than 30"},
		{Config{DefaultAddressPools: []AddressPool{{Base: netip.MustParsePrefix("fd00::/48"), Size: 127}}}, "larger than 126"},
		{Config{DNS: []string{"dns.example"}}, `invalid --dns "dns.example"`},
		{Config{DNSSearch: []string{"-bad.example"}}, "invalid --dns-search"},
		{Config{DNSOptions: []string{"ndots: 2"}}, "invalid --dns-opt"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	// Every problem at once.
	err := Config{DNS: []string{"x"}, DNSSearch: []string{"-y"}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "--dns ") || !strings.Contains(err.Error(), "--dns-search") {
		t.Errorf("two problems: %v", err)
	}
	// "-b none" given as the bridge name.
	cfg := Config{DefaultBridge: "none"}
	cfg.setDefaults()
	if !cfg.NoDefaultBridge || cfg.explicitBridge() {
		t.Errorf("-b none: %+v", cfg)
	}
}

func TestNetworkDefaultAddressPools(t *testing.T) {
	d := newTestEnv(t)
	cfg := Config{DefaultAddressPools: []AddressPool{
		{Base: netip.MustParsePrefix("10.10.0.0/16"), Size: 24},
		{Base: netip.MustParsePrefix("10.0.0.0/8"), Size: 30}, // four million subnets
	}}
	netTestManager(t, d, t.TempDir(), cfg)
	if got := bridgeIPAM(t, d); got != "10.10.0.0/24 10.10.0.1" {
		t.Fatalf("default bridge = %s", got)
	}
	r, err := d.net.Create(context.Background(), network.CreateRequest{Name: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if s := d.net.nets[r.ID].Subnet; s != "10.10.1.0/24" {
		t.Fatalf("user network = %s", s)
	}
	// The first pool used up (a wide network taken by hand): on to the
	// next, past the subnets inside 10.10.0.0/16.
	if _, err := d.net.Create(context.Background(), network.CreateRequest{Name: "wide", CreateOptions: network.CreateOptions{IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.10.128.0/17"}}}}}); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 128; i++ {
		id := fmt.Sprintf("fill%d", i)
		d.net.nets[id] = &netRecord{ID: id, Name: id, Subnet: fmt.Sprintf("10.10.%d.0/24", i)}
	}
	r, err = d.net.Create(context.Background(), network.CreateRequest{Name: "next"})
	if err != nil {
		t.Fatal(err)
	}
	if s := d.net.nets[r.ID].Subnet; s != "10.0.0.0/30" {
		t.Fatalf("next pool = %s", s)
	}
	info := &system.Info{}
	d.net.FillInfo(info)
	if len(info.DefaultAddressPools) != 2 || info.DefaultAddressPools[0] != (system.NetworkAddressPool{Base: "10.10.0.0/16", Size: 24}) || info.FirewallBackend != nil {
		t.Fatalf("info: pools %v, firewall %v", info.DefaultAddressPools, info.FirewallBackend)
	}
}

func TestNetworkPoolsChangeMovesIdleDefaultBridge(t *testing.T) {
	d := newTestEnv(t)
	dir := t.TempDir()
	netTestManager(t, d, dir, Config{})
	if got := bridgeIPAM(t, d); got != "172.17.0.0/16 172.17.0.1" {
		t.Fatalf("default = %s", got)
	}
	// Restart with address pools: the unused default bridge is made from
	// them, as dockerd re-creates it; user networks stay.
	u, _ := d.net.Create(context.Background(), network.CreateRequest{Name: "u"})
	pools := []AddressPool{{Base: netip.MustParsePrefix("10.10.0.0/16"), Size: 24}}
	netTestManager(t, d, dir, Config{DefaultAddressPools: pools})
	if got := bridgeIPAM(t, d); got != "10.10.0.0/24 10.10.0.1" {
		t.Fatalf("after pools = %s", got)
	}
	if s := d.net.nets[u.ID].Subnet; s != "172.18.0.0/16" {
		t.Fatalf("user network moved to %s", s)
	}
	// Same configuration again: nothing moves.
	netTestManager(t, d, dir, Config{DefaultAddressPools: pools})
	if got := bridgeIPAM(t, d); got != "10.10.0.0/24 10.10.0.1" {
		t.Fatalf("second start = %s", got)
	}
}

func TestNetworkBridgeIP(t *testing.T) {
	d := newTestEnv(t)
	dir := t.TempDir()
	netTestManager(t, d, dir, Config{})
	if got := bridgeIPAM(t, d); got != "172.17.0.0/16 172.17.0.1" {
		t.Fatalf("default = %s", got)
	}
	// --bip at the next start: the unused default bridge takes it.
	bip := Config{BridgeIP: netip.MustParsePrefix("172.30.0.1/16")}
	nm := netTestManager(t, d, dir, bip)
	br := nm.byNameLocked("bridge")
	if got := bridgeIPAM(t, d); got != "172.30.0.0/16 172.30.0.1" || !br.FromBIP {
		t.Fatalf("--bip = %s (fromBip %v)", got, br.FromBIP)
	}
	// User networks go around it.
	r, _ := d.net.Create(context.Background(), network.CreateRequest{Name: "u"})
	if s := d.net.nets[r.ID].Subnet; s != "172.17.0.0/16" {
		t.Fatalf("user network = %s", s)
	}
	// A running container on the bridge keeps the old address with a
	// warning; once it is gone, the next start applies the new one.
	br.Endpoints["e1"] = &endpointRecord{ID: "e1", ContainerID: "c1", IP: "172.30.0.2"}
	nm.mu.Lock()
	nm.saveLocked()
	nm.mu.Unlock()
	nm = netTestManager(t, d, dir, Config{BridgeIP: netip.MustParsePrefix("172.29.0.1/24")})
	if got := bridgeIPAM(t, d); got != "172.30.0.0/16 172.30.0.1" {
		t.Fatalf("in use: %s", got)
	}
	nm.mu.Lock()
	nm.releaseEndpointLocked(nm.byNameLocked("bridge"), nm.byNameLocked("bridge").Endpoints["e1"])
	changed, err := nm.syncDefaultBridgeLocked(true) // as Restore does
	nm.saveLocked()
	nm.mu.Unlock()
	if err != nil || !changed {
		t.Fatalf("sync after release: %v %v", changed, err)
	}
	if got := bridgeIPAM(t, d); got != "172.29.0.0/24 172.29.0.1" {
		t.Fatalf("after release: %s", got)
	}
	// --bip dropped: back to the pools.
	netTestManager(t, d, dir, Config{})
	if got := bridgeIPAM(t, d); got != "172.18.0.0/16 172.18.0.1" || d.net.byNameLocked("bridge").FromBIP {
		t.Fatalf("--bip dropped: %s", got)
	}
	// --bip over a user network's subnet: the daemon does not start.
	nm = &Controller{names: d.names, cfg: Config{BridgeIP: netip.MustParsePrefix("172.17.5.1/24")}, log: d.log, path: filepath.Join(dir, "state.json"), nets: map[string]*netRecord{}, ports: map[string][]jnet.PortBinding{}}
	nm.cfg.setDefaults()
	if err := nm.load(); err != nil {
		t.Fatal(err)
	}
	if err := nm.setUpNetworksLocked(); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "overlaps the subnet 172.17.0.0/16 of network u") {
		t.Fatalf("overlapping --bip: %v", err)
	}
}

func TestNetworkNoDefaultBridge(t *testing.T) {
	d := newTestEnv(t)
	dir := t.TempDir()
	netTestManager(t, d, dir, Config{})
	// -b none at the next start: the unused bridge network goes.
	netTestManager(t, d, dir, Config{NoDefaultBridge: true})
	ctx := context.Background()
	if _, err := d.net.Inspect(ctx, "bridge", network.InspectOptions{}); !errdefs.IsNotFound(err) {
		t.Fatalf("bridge network: %v", err)
	}
	if _, err := d.net.Create(ctx, network.CreateRequest{Name: "bridge"}); !errdefs.IsForbidden(err) {
		t.Fatalf("create bridge: %v", err)
	}
	if _, err := d.net.Create(ctx, network.CreateRequest{Name: "user"}); err != nil {
		t.Fatal(err)
	}
	// docker run without --network: "bridge", as dockerd records it.
	cfg := &container.Config{ExposedPorts: nat.PortSet{"80/tcp": {}}}
	hc := &container.HostConfig{NetworkMode: "default", PublishAllPorts: true}
	nc, err := d.net.Prepare(hc, cfg, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"default": {}}})
	if err != nil {
		t.Fatal(err)
	}
	if hc.NetworkMode != "bridge" || len(nc.EndpointsConfig) != 1 || nc.EndpointsConfig["bridge"] == nil {
		t.Fatalf("mode %q, endpoints %v", hc.NetworkMode, nc.EndpointsConfig)
	}
	// It starts without a network (host networking absent here makes
	// the user network attach nothing either, but the bridge is skipped
	// before any lookup), and no ports are published.
	c := &Container{ID: strings.Repeat("b", 64), Config: cfg, HostConfig: hc, NetConfig: nc}
	att, err := d.net.Attach(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(att.NICs) != 0 || len(d.net.ports) != 0 || !strings.Contains(att.Hosts, "127.0.1.1") {
		t.Fatalf("attachment %+v, ports %v", att, d.net.ports)
	}
	// Inspect lists the network with nothing attached, as dockerd.
	c.Running = true
	ns := &container.NetworkSettings{}
	d.net.FillSettings(c, &container.HostConfig{}, ns)
	if es := ns.Networks["bridge"]; len(ns.Networks) != 1 || es == nil || es.NetworkID != "" || es.IPAddress != "" {
		t.Fatalf("networks %v", ns.Networks)
	}
	// With a user network too, only the user network is looked up.
	hc = &container.HostConfig{NetworkMode: "bridge"}
	nc, err = d.net.Prepare(hc, cfg, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"bridge": {}, "user": {}}})
	if err != nil || len(nc.EndpointsConfig) != 2 {
		t.Fatalf("bridge and user: %v %v", nc, err)
	}
	// Bridge enabled again: the network is made anew (the user network
	// made meanwhile has 172.17.0.0/16).
	netTestManager(t, d, dir, Config{})
	if got := bridgeIPAM(t, d); got != "172.18.0.0/16 172.18.0.1" {
		t.Fatalf("re-enabled: %s", got)
	}
}

func TestNetworkNoDefaultBridgeKeepsBusyBridge(t *testing.T) {
	d := newTestEnv(t)
	dir := t.TempDir()
	nm := netTestManager(t, d, dir, Config{})
	nm.byNameLocked("bridge").Endpoints["e1"] = &endpointRecord{ID: "e1", ContainerID: "c1", IP: "172.17.0.2"}
	nm.mu.Lock()
	nm.saveLocked()
	nm.mu.Unlock()
	nm = netTestManager(t, d, dir, Config{NoDefaultBridge: true})
	if nm.byNameLocked("bridge") == nil {
		t.Fatal("a bridge network with a running container was removed")
	}
	// New containers still get no network from it.
	if !nm.bridgeDisabled("bridge") || !nm.bridgeDisabled("default") || nm.bridgeDisabled("user") {
		t.Fatal("bridgeDisabled")
	}
	nm.mu.Lock()
	nm.releaseEndpointLocked(nm.byNameLocked("bridge"), nm.byNameLocked("bridge").Endpoints["e1"])
	changed, err := nm.syncDefaultBridgeLocked(true)
	nm.mu.Unlock()
	if err != nil || !changed || nm.byNameLocked("bridge") != nil {
		t.Fatalf("after release: %v %v", changed, err)
	}
}

func TestNetworkExplicitBridgeName(t *testing.T) {
	d := newTestEnv(t)
	dir := t.TempDir()
	nm := netTestManager(t, d, dir, Config{})
	r := nm.byNameLocked("bridge")
	r.Bridge = "jevm0" // as if it had been brought up
	nm.mu.Lock()
	nm.saveLocked()
	nm.mu.Unlock()
	if !nm.defaultBridgeNameOK("jevm0") || !nm.defaultBridgeNameOK("jevm7") || nm.defaultBridgeNameOK("jevm-abc") || nm.defaultBridgeNameOK("br0") {
		t.Fatal("defaultBridgeNameOK with the default name")
	}
	// The admin names a bridge: the record follows at the next start.
	nm = netTestManager(t, d, dir, Config{DefaultBridge: "jevmtst9z"})
	r = nm.byNameLocked("bridge")
	if r.Bridge != "" || !nm.defaultBridgeNameOK("jevmtst9z") || nm.defaultBridgeNameOK("jevm0") {
		t.Fatalf("bridge %q after naming one", r.Bridge)
	}
	// That name or nothing: a free name is taken ...
	if n, err := nm.bridgeNameLocked(r); err != nil || n != "jevmtst9z" {
		t.Fatalf("free explicit name: %q %v", n, err)
	}
	// ... a link of another owner (lo has no jevm alias) is an error,
	// not a fall back to another name ...
	nm.cfg.DefaultBridge = "lo"
	if n, err := nm.bridgeNameLocked(r); err == nil || !strings.Contains(err.Error(), "not made by this jevm daemon") {
		t.Fatalf("taken explicit name: %q %v", n, err)
	}
	// ... and so is another network's bridge.
	if _, err := d.net.Create(context.Background(), network.CreateRequest{Name: "u", CreateOptions: network.CreateOptions{Options: map[string]string{optBridgeName: "br-u"}}}); err != nil {
		t.Fatal(err)
	}
	nm.cfg.DefaultBridge = "br-u"
	if _, err := nm.bridgeNameLocked(r); err == nil || !strings.Contains(err.Error(), "is the bridge of network u") {
		t.Fatalf("another network's bridge: %v", err)
	}
	// Without an explicit name the fallback stays.
	nm.cfg.DefaultBridge = defaultBridgeName
	if n, err := nm.bridgeNameLocked(r); err != nil || !strings.HasPrefix(n, "jevm") {
		t.Fatalf("default name: %q %v", n, err)
	}
}

func TestNetworkIPTablesAndForwardSwitches(t *testing.T) {
	// --iptables=false: a host that runs no iptables (and needs none).
	h, err := newNetHost(Config{DisableIPTables: true}, 0)
	if err != nil || h.Firewall() {
		t.Fatalf("--iptables=false: %v, firewall %v", err, h != nil && h.Firewall())
	}
	if err := h.SetupFirewall(jnet.FirewallSpec{Bridge: "jevm-x", Subnet: netip.MustParsePrefix("10.1.0.0/24"), Masquerade: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := newNetHost(Config{DisableIPTables: true}, 1000); err == nil {
		t.Fatal("host networking without root")
	}
	d := newTestEnv(t)
	nm := netTestManager(t, d, t.TempDir(), Config{DisableIPTables: true})
	nm.host = h
	info := &system.Info{}
	d.net.FillInfo(info)
	if info.FirewallBackend != nil || info.DefaultAddressPools != nil {
		t.Fatalf("info: firewall %v, pools %v", info.FirewallBackend, info.DefaultAddressPools)
	}
	nm.host = nil

	// --ip-forward=false: no network turns forwarding on.
	pub := &netRecord{Name: "u"}
	internal := &netRecord{Name: "i", Internal: true}
	if !nm.wantIPForward(pub) || nm.wantIPForward(internal) {
		t.Fatal("default forwarding decision")
	}
	nm.cfg.DisableIPForward = true
	if nm.wantIPForward(pub) {
		t.Fatal("--ip-forward=false still turns forwarding on")
	}
}

func TestDaemonDNSDefaults(t *testing.T) {
	d := newTestEnv(t)
	nm := netTestManager(t, d, t.TempDir(), Config{
		DNS: []string{"10.0.0.53", "10.0.0.54"}, DNSSearch: []string{"svc.example"}, DNSOptions: []string{"ndots:3", "timeout:2"},
	})
	br := nm.byNameLocked("bridge")
	user := &netRecord{Name: "u", Gateway: "10.1.0.1", dns: &jnet.DNSServer{}}
	c := &Container{ID: strings.Repeat("a", 64), Config: &container.Config{}, HostConfig: &container.HostConfig{}}

	// Default bridge: the daemon's servers, search and options.
	if rc := nm.resolvConfFor(c, br); rc != "search svc.example\nnameserver 10.0.0.53\nnameserver 10.0.0.54\noptions ndots:3 timeout:2\n" {
		t.Fatalf("bridge, daemon defaults:\n%s", rc)
	}
	// No network: the same.
	if rc := nm.resolvConfFor(c, nil); !strings.Contains(rc, "nameserver 10.0.0.53\n") {
		t.Fatalf("no network:\n%s", rc)
	}
	// User network: the embedded DNS server, the daemon's search and
	// options (they have ndots, so no ndots:0).
	if rc := nm.resolvConfFor(c, user); rc != "search svc.example\nnameserver 10.1.0.1\noptions ndots:3 timeout:2\n" {
		t.Fatalf("user network, daemon defaults:\n%s", rc)
	}
	// The container's own settings win, each on its own.
	c.HostConfig.DNS = []string{"192.0.2.53"}
	if rc := nm.resolvConfFor(c, br); rc != "search svc.example\nnameserver 192.0.2.53\noptions ndots:3 timeout:2\n" {
		t.Fatalf("bridge, container --dns:\n%s", rc)
	}
	c.HostConfig.DNSSearch = []string{"."}
	c.HostConfig.DNSOptions = []string{"edns0"}
	if rc := nm.resolvConfFor(c, br); rc != "nameserver 192.0.2.53\noptions edns0\n" {
		t.Fatalf("bridge, container overrides:\n%s", rc)
	}
	if rc := nm.resolvConfFor(c, user); rc != "nameserver 10.1.0.1\noptions edns0 ndots:0\n" {
		t.Fatalf("user network, container overrides:\n%s", rc)
	}

	// The embedded DNS forwards for containers without --dns to the
	// daemon's servers, for those with --dns to theirs.
	r, err := d.net.Create(context.Background(), network.CreateRequest{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	ur := nm.nets[r.ID]
	ur.Endpoints["e1"] = &endpointRecord{ID: "e1", ContainerID: "c1", IP: "172.18.0.2"}
	ur.Endpoints["e2"] = &endpointRecord{ID: "e2", ContainerID: "c2", IP: "172.18.0.3", DNS: []string{"192.0.2.53"}}
	names := &netNames{nm: nm, id: r.ID}
	if up := names.Upstreams(netip.MustParseAddr("172.18.0.2")); strings.Join(up, ",") != "10.0.0.53:53,10.0.0.54:53" {
		t.Errorf("daemon --dns upstreams = %v", up)
	}
	if up := names.Upstreams(netip.MustParseAddr("172.18.0.3")); strings.Join(up, ",") != "192.0.2.53:53" {
		t.Errorf("container --dns upstreams = %v", up)
	}
	// Without daemon --dns, the host's (as before).
	nm.cfg.DNS = nil
	if up := names.Upstreams(netip.MustParseAddr("172.18.0.2")); strings.Join(up, ",") != "127.0.0.53:53" {
		t.Errorf("host upstreams = %v", up)
	}
}
