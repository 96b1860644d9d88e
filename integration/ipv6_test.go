package integration

// IPv6 networks (docs/NETWORKING.md "IPv6") with the real docker CLI:
// a dual-stack network, containers that reach each other by name over
// IPv6, --ip6, inspect's IPv6 fields, a port published over IPv6, and
// nothing left on the host afterwards.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func ip6tablesRules() string {
	out, _ := exec.Command("ip6tables", "-t", "nat", "-S").Output()
	fwd, _ := exec.Command("ip6tables", "-S", "FORWARD").Output()
	return string(out) + string(fwd)
}

func TestNetworkIPv6(t *testing.T) {
	sub := fmt.Sprintf("fd7e:%x:%x::", os.Getpid()&0xffff, time.Now().Unix()&0xffff)
	netName := uniqueName(t, "v6")
	mustDocker(t, "network", "create", "--ipv6", "--subnet", sub+"/64", netName)
	t.Cleanup(func() { docker(t, "network", "rm", netName) })
	bridge := bridgeOf(t, netName)
	if got := inspectNetwork(t, netName, `{{.EnableIPv6}} {{len .IPAM.Config}} {{(index .IPAM.Config 1).Subnet}} {{(index .IPAM.Config 1).Gateway}}`); got != fmt.Sprintf("true 2 %s/64 %s1", sub, sub) {
		t.Fatalf("network inspect = %q", got)
	}
	addrs, _ := exec.Command("ip", "-6", "addr", "show", "dev", bridge).Output()
	if !strings.Contains(string(addrs), sub+"1/64") {
		t.Fatalf("bridge %s lacks its IPv6 gateway address:\n%s", bridge, addrs)
	}
	if rules := ip6tablesRules(); !strings.Contains(rules, "-s "+sub+"/64") || !strings.Contains(rules, "jevm:"+bridge) {
		t.Fatalf("ip6tables rules for %s missing:\n%s", bridge, rules)
	}

	a, web := uniqueName(t, "a"), uniqueName(t, "web")
	rmOnCleanup(t, a, web)
	mustDocker(t, "run", "-d", "--name", a, "--network", netName, "--ip6", sub+"10", "busybox", "sleep", "300")
	if got := inspectField(t, a, fmt.Sprintf(`{{with index .NetworkSettings.Networks %q}}{{.GlobalIPv6Address}}/{{.GlobalIPv6PrefixLen}} {{.IPv6Gateway}}{{end}}`, netName)); got != sub+"10/64 "+sub+"1" {
		t.Fatalf("inspect IPv6 = %q", got)
	}
	out := mustDocker(t, "run", "--rm", "--network", netName, "busybox", "sh", "-c",
		"ping -6 -c1 -W5 "+a+" >/dev/null && echo ping6-ok; nslookup -type=AAAA "+a+"; ip -6 addr show dev eth0; ip -6 route")
	for _, want := range []string{"ping6-ok", "Address: " + sub + "10", "default via " + sub + "1 dev eth0", "inet6 " + sub} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	// The host reaches a container's IPv6 address over the bridge, and
	// a published port answers on the host's IPv6 loopback too.
	port := freePort(t)
	mustDocker(t, "run", "-d", "--name", web, "--network", netName, "--ip6", sub+"20", "-p", fmt.Sprintf("%d:80", port), "web")
	if body := httpGet(t, fmt.Sprintf("http://[%s20]:80/", sub)); !strings.Contains(body, webIndex) {
		t.Fatalf("GET of the container's IPv6 address = %q", body)
	}
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		ln.Close()
		if body := httpGet(t, fmt.Sprintf("http://[::1]:%d/", port)); !strings.Contains(body, webIndex) {
			t.Fatalf("GET over IPv6 = %q", body)
		}
	}

	// An IPv6 network without a subnet gets a /64 of the daemon's ULA pool.
	auto := newNetwork(t, "auto6", "--ipv6")
	if s := inspectNetwork(t, auto, `{{(index .IPAM.Config 1).Subnet}}`); !strings.HasPrefix(s, "fd") || !strings.HasSuffix(s, "::/64") {
		t.Fatalf("automatic IPv6 subnet = %q", s)
	}

	// IPv6 only (--ipv4=false): no IPv4 address, names and the embedded
	// DNS over IPv6.
	sub2 := fmt.Sprintf("fd7f:%x:%x::", os.Getpid()&0xffff, time.Now().Unix()&0xffff)
	only := newNetwork(t, "only6", "--ipv4=false", "--ipv6", "--subnet", sub2+"/64")
	b := uniqueName(t, "b")
	rmOnCleanup(t, b)
	mustDocker(t, "run", "-d", "--name", b, "--network", only, "busybox", "sleep", "300")
	out = mustDocker(t, "run", "--rm", "--network", only, "busybox", "sh", "-c",
		"ping -6 -c1 -W5 "+b+" >/dev/null && echo ping6-ok; cat /etc/resolv.conf; ip -4 addr show dev eth0 | grep -c inet; true")
	for _, want := range []string{"ping6-ok", "nameserver " + sub2 + "1", "\n0\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("IPv6-only output lacks %q:\n%s", want, out)
		}
	}
	if got := inspectNetwork(t, only, `{{.EnableIPv4}} {{.EnableIPv6}} {{len .IPAM.Config}}`); got != "false true 1" {
		t.Fatalf("IPv6-only network inspect = %q", got)
	}
	mustDocker(t, "rm", "-f", b)

	mustDocker(t, "rm", "-f", a, web)
	mustDocker(t, "network", "rm", netName)
	if hostHasLink(bridge) {
		t.Fatalf("bridge %s left after network rm", bridge)
	}
	if rules := ip6tablesRules(); strings.Contains(rules, "jevm:"+bridge) {
		t.Fatalf("ip6tables rules for %s left:\n%s", bridge, rules)
	}
	if out, _ := exec.Command("ip", "-6", "addr").Output(); strings.Contains(string(out), sub) {
		t.Fatalf("address of %s left on the host:\n%s", sub, out)
	}
}
