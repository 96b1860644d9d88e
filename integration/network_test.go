package integration

// Networking (docs/NETWORKING.md) with the real docker CLI: user networks
// with the embedded DNS, published TCP and UDP ports, --network none,
// connect/disconnect of a running container, and that nothing is left on
// the host afterwards.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const webIndex = "jevm web test image"

// newNetwork creates a network removed when the test ends (after the
// test's containers: cleanups run last-in first-out).
func newNetwork(t *testing.T, suffix string, args ...string) string {
	t.Helper()
	name := uniqueName(t, suffix)
	mustDocker(t, append(append([]string{"network", "create"}, args...), name)...)
	t.Cleanup(func() { docker(t, "network", "rm", name) })
	return name
}

// httpGet fetches url, retrying while the server in the VM starts.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	var last error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == 200 {
				return string(b)
			}
			err = fmt.Errorf("status %d, %v", resp.StatusCode, rerr)
		}
		last = err
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, last)
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	addr, err := freeTCPAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// bridgeOf is the host bridge of a network: the name given with -o
// com.docker.network.bridge.name, else the bridge whose alias is
// jevm:<network ID> (a user network's options show only what its creator
// set, as dockerd's do).
func bridgeOf(t *testing.T, netName string) string {
	t.Helper()
	if b := inspectNetwork(t, netName, `{{index .Options "com.docker.network.bridge.name"}}`); b != "" {
		return b
	}
	id := inspectNetwork(t, netName, "{{.ID}}")
	out, err := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		for i := 2; i+1 < len(f); i++ {
			if f[i] == "alias" && f[i+1] == "jevm:"+id {
				return strings.TrimSuffix(f[1], ":")
			}
		}
	}
	t.Fatalf("no bridge with alias jevm:%s:\n%s", id, out)
	return ""
}

func inspectNetwork(t *testing.T, name, format string) string {
	t.Helper()
	return strings.TrimSpace(mustDocker(t, "network", "inspect", "-f", format, name))
}

// linksOn lists the interfaces enslaved to bridge (the VMs' taps).
func linksOn(t *testing.T, bridge string) []string {
	out, _ := exec.Command("ip", "-o", "link", "show", "master", bridge).Output()
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			names = append(names, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	return names
}

func hostHasLink(name string) bool {
	return exec.Command("ip", "link", "show", name).Run() == nil
}

func natRules() string {
	out, _ := exec.Command("iptables", "-t", "nat", "-S").Output()
	fwd, _ := exec.Command("iptables", "-S", "FORWARD").Output()
	return string(out) + string(fwd)
}

// Two containers on a user network find each other by name, network
// alias and short ID through the embedded DNS server at the gateway.
func TestNetworkUserDefinedDNS(t *testing.T) {
	netName := newNetwork(t, "net", "--label", "team=net")
	web := uniqueName(t, "web")
	rmOnCleanup(t, web)
	id := strings.TrimSpace(mustDocker(t, "run", "-d", "--network", netName, "--name", web, "--network-alias", "www", "web"))
	gw := inspectNetwork(t, netName, "{{(index .IPAM.Config 0).Gateway}}")

	out := mustDocker(t, "run", "--rm", "--network", netName, "busybox", "sh", "-c",
		"ping -c1 -W5 "+web+" >/dev/null && echo ping-ok; wget -qO- http://www; nslookup "+id[:12]+" >/dev/null && echo short-ok; cat /etc/resolv.conf")
	for _, want := range []string{"ping-ok", webIndex, "short-ok", "nameserver " + gw} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}

	// inspect: the endpoint on the network.
	var nets map[string]struct {
		IPAddress, Gateway, MacAddress, NetworkID, EndpointID string
		IPPrefixLen                                           int
		Aliases, DNSNames                                     []string
	}
	if err := json.Unmarshal([]byte(inspectField(t, web, "{{json .NetworkSettings.Networks}}")), &nets); err != nil {
		t.Fatal(err)
	}
	ep, ok := nets[netName]
	if !ok || len(nets) != 1 {
		t.Fatalf("networks = %+v", nets)
	}
	if ep.Gateway != gw || ep.IPPrefixLen != 16 || !strings.HasPrefix(ep.MacAddress, "02:42:") || ep.EndpointID == "" ||
		!strings.HasPrefix(ep.NetworkID, inspectNetwork(t, netName, "{{.Id}}")) || !contains(ep.Aliases, "www") || !contains(ep.DNSNames, web) {
		t.Fatalf("endpoint = %+v", ep)
	}
	if mode := inspectField(t, web, "{{.HostConfig.NetworkMode}}"); mode != netName {
		t.Fatalf("NetworkMode = %q", mode)
	}
	// network inspect lists the container.
	got := inspectNetwork(t, netName, `{{range $id, $c := .Containers}}{{$c.Name}} {{$c.IPv4Address}} {{$c.MacAddress}}{{end}}`)
	if got != fmt.Sprintf("%s %s/16 %s", web, ep.IPAddress, ep.MacAddress) {
		t.Fatalf("network inspect containers = %q", got)
	}
	if l := mustDocker(t, "network", "ls", "--filter", "label=team=net", "--format", "{{.Name}} {{.Driver}}"); strings.TrimSpace(l) != netName+" bridge" {
		t.Fatalf("network ls = %q", l)
	}
	// In use: dockerd's 409.
	r := docker(t, "network", "rm", netName)
	if r.code == 0 || !strings.Contains(r.stderr, "has active endpoints") {
		t.Fatalf("rm of a network in use:\n%s", r)
	}
}

// -p with a fixed host port and -P with random ones: the web image in a
// jeVM answers on the host's loopback; docker port and ps show the
// bindings; the port closes when the container stops.
func TestPublishTCP(t *testing.T) {
	fixed, all := uniqueName(t, "fixed"), uniqueName(t, "all")
	rmOnCleanup(t, fixed, all)
	port := freePort(t)
	fixedID := strings.TrimSpace(mustDocker(t, "run", "-d", "--name", fixed, "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "web"))
	mustDocker(t, "run", "-d", "--name", all, "-P", "web")

	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); !strings.Contains(body, webIndex) {
		t.Fatalf("fixed port served %q", body)
	}
	if ps := strings.TrimSpace(mustDocker(t, "ps", "--filter", "name="+fixed, "--format", "{{.Ports}}")); ps != fmt.Sprintf("127.0.0.1:%d->80/tcp", port) {
		t.Fatalf("ps ports = %q", ps)
	}
	pm := strings.TrimSpace(mustDocker(t, "port", all, "80/tcp"))
	host, p, err := net.SplitHostPort(strings.Fields(pm)[0])
	if err != nil || host != "0.0.0.0" || p == "" || p == "0" {
		t.Fatalf("docker port = %q", pm)
	}
	if body := httpGet(t, "http://127.0.0.1:"+p+"/"); !strings.Contains(body, webIndex) {
		t.Fatalf("random port served %q", body)
	}
	if got := inspectField(t, all, `{{json .NetworkSettings.Ports}}`); got != fmt.Sprintf(`{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"%s"}]}`, p) {
		t.Fatalf("inspect ports = %s", got)
	}
	// ps filters on published and exposed ports and networks.
	if got := strings.TrimSpace(mustDocker(t, "ps", "-q", "--no-trunc", "--filter", fmt.Sprintf("publish=%d/tcp", port))); got != fixedID {
		t.Fatalf("ps --filter publish=%d = %q", port, got)
	}
	if got := mustDocker(t, "ps", "-q", "--filter", "expose=80", "--filter", "network=bridge", "--filter", "name="+fixed); strings.TrimSpace(got) != fixedID[:12] {
		t.Fatalf("ps --filter expose/network = %q", got)
	}
	mustDocker(t, "stop", "-t", "1", fixed)
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("the published port is still open after stop")
	}
}

// A UDP port (perl in the debian image echoes datagrams; busybox's nc has
// no UDP mode here) is reachable through the UDP proxy.
func TestPublishUDP(t *testing.T) {
	name := uniqueName(t, "udp")
	rmOnCleanup(t, name)
	port := freePort(t)
	mustDocker(t, "run", "-d", "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:5353/udp", port), "debian",
		"perl", "-MIO::Socket::INET", "-e", `$|=1; $s=IO::Socket::INET->new(LocalPort=>5353,Proto=>"udp") or die "socket: $!"; print "ready\n"; while($s->recv($m,1024)){ $s->send("got:$m") }`)
	waitFor(t, 30*time.Second, "the UDP server", func() bool { return strings.Contains(mustDocker(t, "logs", name), "ready") })
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	var got string
	for i := 0; i < 10 && got == ""; i++ {
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(buf); err == nil {
			got = string(buf[:n])
		}
	}
	if got != "got:ping" {
		t.Fatalf("UDP reply %q", got)
	}
	if pm := strings.TrimSpace(mustDocker(t, "port", name)); pm != fmt.Sprintf("5353/udp -> 127.0.0.1:%d", port) {
		t.Fatalf("docker port = %q", pm)
	}
}

// --network none: loopback only; host networking is refused clearly.
func TestNetworkNoneAndHost(t *testing.T) {
	out := mustDocker(t, "run", "--rm", "--network", "none", "busybox", "sh", "-c", "cat /proc/net/dev; ip -o link; cat /etc/hosts")
	if !strings.Contains(out, "lo:") || strings.Contains(out, "eth") || !strings.Contains(out, "127.0.1.1") {
		t.Fatalf("--network none has more than loopback:\n%s", out)
	}
	r := docker(t, "run", "--rm", "--network", "host", "busybox", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "--network host is not supported by jevm") {
		t.Fatalf("--network host:\n%s", r)
	}
	r = docker(t, "run", "--rm", "--network", "nosuchnet", "busybox", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "network nosuchnet not found") {
		t.Fatalf("unknown network:\n%s", r)
	}
	if r := docker(t, "network", "rm", "bridge"); r.code == 0 || !strings.Contains(r.stderr, "pre-defined network") {
		t.Fatalf("rm bridge:\n%s", r)
	}
}

// Connecting a running container hot-plugs a NIC that works at once;
// disconnecting unplugs it.
func TestNetworkConnectRunning(t *testing.T) {
	netName := newNetwork(t, "net")
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sleep", "300")
	mustDocker(t, "network", "connect", "--alias", "second", netName, name)

	ip := inspectField(t, name, fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, netName))
	if ip == "" || inspectField(t, name, "{{.NetworkSettings.Networks.bridge.IPAddress}}") == "" {
		t.Fatalf("networks after connect: %s", inspectField(t, name, "{{json .NetworkSettings.Networks}}"))
	}
	// The container's side: a second interface with that address.
	if out := mustDocker(t, "exec", name, "ip", "-o", "-4", "addr", "show", "eth1"); !strings.Contains(out, ip+"/") {
		t.Fatalf("eth1 in the container: %s", out)
	}
	// And it works both ways.
	gw := inspectNetwork(t, netName, "{{(index .IPAM.Config 0).Gateway}}")
	mustDocker(t, "exec", name, "ping", "-c1", "-W5", gw)
	out := mustDocker(t, "run", "--rm", "--network", netName, "busybox", "sh", "-c", "ping -c1 -W5 second >/dev/null && echo alias-ok")
	if !strings.Contains(out, "alias-ok") {
		t.Fatalf("ping of the connected container: %s", out)
	}

	mustDocker(t, "network", "disconnect", netName, name)
	if out := docker(t, "exec", name, "ip", "-o", "link", "show", "eth1"); out.code == 0 {
		t.Fatalf("eth1 still there after disconnect: %s", out)
	}
	if n := inspectField(t, name, "{{len .NetworkSettings.Networks}}"); n != "1" {
		t.Fatalf("networks after disconnect: %s", inspectField(t, name, "{{json .NetworkSettings.Networks}}"))
	}
	if got := inspectNetwork(t, netName, "{{len .Containers}}"); got != "0" {
		t.Fatalf("network still lists %s containers", got)
	}
}

// --subnet/--gateway/--ip-range, --internal and --ip; overlapping and
// refused settings.
func TestNetworkCreateOptions(t *testing.T) {
	netName := newNetwork(t, "int", "--internal", "--subnet", "10.213.7.0/24", "--gateway", "10.213.7.254", "--ip-range", "10.213.7.128/25")
	cfg := inspectNetwork(t, netName, "{{.Internal}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}} {{.IPRange}}{{end}}")
	if cfg != "true 10.213.7.0/24 10.213.7.254 10.213.7.128/25" {
		t.Fatalf("network = %q", cfg)
	}
	out := mustDocker(t, "run", "--rm", "--network", netName, "--ip", "10.213.7.50", "busybox", "sh", "-c", "ip -o -4 addr show eth0; ip route")
	if !strings.Contains(out, "10.213.7.50/24") || strings.Contains(out, "default") {
		t.Fatalf("internal network container: %s", out)
	}
	// Dynamic addresses come from the ip-range.
	out = mustDocker(t, "run", "--rm", "--network", netName, "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
	if !strings.Contains(out, "10.213.7.128/24") {
		t.Fatalf("dynamic address not from the ip-range: %s", out)
	}
	if r := docker(t, "network", "create", "--subnet", "10.213.0.0/16", uniqueName(t, "overlap")); r.code == 0 || !strings.Contains(r.stderr, "overlaps") {
		t.Fatalf("overlapping subnet:\n%s", r)
	}
	if r := docker(t, "run", "--rm", "--ip", "172.17.0.99", "busybox", "true"); r.code == 0 || !strings.Contains(r.stderr, "user configured subnets") {
		t.Fatalf("--ip on the default bridge:\n%s", r)
	}
	// Overlay networks are the swarm's (swarm_overlay_test.go): outside
	// one, dockerd's answer.
	if r := docker(t, "network", "create", "-d", "overlay", uniqueName(t, "ov")); r.code == 0 || !strings.Contains(r.stderr, "not a swarm manager") {
		t.Fatalf("overlay:\n%s", r)
	}
	if l := mustDocker(t, "network", "ls", "--filter", "type=custom", "--filter", "name="+netName, "-q"); strings.TrimSpace(l) == "" {
		t.Fatal("network ls type=custom misses the network")
	}
}

// Containers, networks and ports leave nothing behind: the bridge, the
// taps and the NAT rules go with them. Other daemons on the host may
// change its interfaces meanwhile, so only our names are checked.
func TestNetworkCleanupLeavesHostAsBefore(t *testing.T) {
	netName := uniqueName(t, "net")
	mustDocker(t, "network", "create", netName)
	bridge := bridgeOf(t, netName)
	if !hostHasLink(bridge) || !strings.Contains(natRules(), "jevm:"+bridge) {
		t.Fatalf("bridge %s or its NAT rule missing:\n%s", bridge, natRules())
	}
	name := uniqueName(t, "c")
	port := freePort(t)
	mustDocker(t, "run", "-d", "--name", name, "--network", netName, "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "web")
	taps := linksOn(t, bridge)
	if len(taps) != 1 || !strings.HasPrefix(taps[0], "tap") {
		t.Fatalf("taps on %s: %v", bridge, taps)
	}
	httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	mustDocker(t, "rm", "-f", name)
	checkNetworkLeavesNothing(t, netName, bridge, port, taps)
}

// checkNetworkLeavesNothing checks, once the network's containers were
// removed, that their taps and the port proxy on port are gone, then
// removes the network and checks that its bridge and NAT rules went too.
func checkNetworkLeavesNothing(t *testing.T, netName, bridge string, port int, taps []string) {
	t.Helper()
	for _, tap := range taps {
		if hostHasLink(tap) {
			t.Errorf("tap %s left after rm", tap)
		}
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		c.Close()
		t.Error("proxy still listening after rm")
	}
	mustDocker(t, "network", "rm", netName)
	if hostHasLink(bridge) {
		t.Errorf("bridge %s left after network rm", bridge)
	}
	if rules := natRules(); strings.Contains(rules, bridge) {
		t.Errorf("rules for %s left:\n%s", bridge, rules)
	}
}

// Networks, endpoints and published ports survive a daemon restart: the
// running container keeps its address, its port is served again and the
// network's DNS answers.
func TestNetworkSurvivesDaemonRestart(t *testing.T) {
	netName := newNetwork(t, "net")
	name := uniqueName(t, "web")
	rmOnCleanup(t, name)
	port := freePort(t)
	mustDocker(t, "run", "-d", "--name", name, "--network", netName, "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "web")
	httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	ip := inspectField(t, name, fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, netName))

	restartDaemon(t)

	if got := inspectField(t, name, fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, netName)); got != ip {
		t.Fatalf("address after restart %q, want %q", got, ip)
	}
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); !strings.Contains(body, webIndex) {
		t.Fatalf("after restart: %q", body)
	}
	out := mustDocker(t, "run", "--rm", "--network", netName, "busybox", "wget", "-qO-", "http://"+name)
	if !strings.Contains(out, webIndex) {
		t.Fatalf("DNS after restart: %q", out)
	}
}

// Containers on different networks cannot reach each other, as with
// dockerd's isolation rules; on one network they can. (busybox's `wget -T`
// crashes in Debian's busybox 1.35, hence `timeout`.)
func TestNetworkIsolationBetweenNetworks(t *testing.T) {
	netA := newNetwork(t, "a")
	netB := newNetwork(t, "b")
	target := uniqueName(t, "target")
	rmOnCleanup(t, target)
	mustDocker(t, "run", "-d", "--network", netB, "--name", target, "web")
	ip := inspectField(t, target, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
	if ip == "" {
		t.Fatal("the target has no address")
	}
	same := mustDocker(t, "run", "--rm", "--network", netB, "busybox", "sh", "-c", "timeout 10 wget -qO- http://"+ip+" >/dev/null && echo reached")
	if !strings.Contains(same, "reached") {
		t.Fatalf("a container on the same network could not reach %s: %q", ip, same)
	}
	other := docker(t, "run", "--rm", "--network", netA, "busybox", "sh", "-c", "timeout 5 wget -qO- http://"+ip+" >/dev/null && echo reached || echo blocked")
	if !strings.Contains(other.stdout, "blocked") {
		t.Fatalf("a container on another network reached %s:\n%s", ip, other)
	}
}
