package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// An overlay network across two jevmd hosts, made by docker stack deploy:
// the stack's two services share its default overlay network; web's two
// tasks run on the manager (h1), probe's on the worker (h2), which
// reaches each web task at its address across the VXLAN, tasks.web names
// both, and web (its VIP) answers every request, balanced over both;
// web's port published through the routing mesh answers on both hosts,
// also on h2, which runs no web task; a plain container on the
// (attachable) network reaches web by name from the worker; stack rm
// leaves no container, network or VXLAN device. Bad input gets dockerd's
// errors.
func TestSwarmStackOverlay(t *testing.T) {
	hosts, phase := startSwarmHosts(t, 2)
	h1, h2 := hosts[0], hosts[1]
	if r := h1.docker("network", "create", "-d", "overlay", "early"); r.code == 0 || !strings.Contains(r.stderr, "not a swarm manager") {
		t.Fatalf("an overlay network outside a swarm: %s", r)
	}
	if r := h1.docker("swarm", "init", "--advertise-addr", h1.ip, "--data-path-port", "80"); r.code == 0 || !strings.Contains(r.stderr, "Datapath port number is not in valid range (1024-49151)") {
		t.Fatalf("a data path port below 1024: %s", r)
	}
	if r := h1.docker("swarm", "init", "--advertise-addr", h1.ip, "--data-path-addr", "0.0.0.0"); r.code == 0 || !strings.Contains(r.stderr, "data path address must be a non-zero IP address or network interface") {
		t.Fatalf("data path address 0.0.0.0: %s", r)
	}
	// Not VXLAN's default port: the worker learns it from the swarm. The
	// worker names its data path interface.
	const dataPathPort = "4790"
	h1.must("swarm", "init", "--advertise-addr", h1.ip, "--data-path-port", dataPathPort)
	if got := h1.must("info", "--format", "{{.Swarm.Cluster.DataPathPort}}"); got != dataPathPort+"\n" {
		t.Fatalf("docker info's data path port: %q", got)
	}
	token := strings.TrimSpace(h1.must("swarm", "join-token", "-q", "worker"))
	h2.must("swarm", "join", "--token", token, "--data-path-addr", "eth0", h1.ip)
	waitFor(t, 60*time.Second, "two ready nodes", func() bool {
		return strings.Count(h1.must("node", "ls", "--format", "{{.Status}}"), "Ready") == 2
	})
	phase("swarm of two")

	// Bad input.
	if r := h2.docker("network", "create", "-d", "overlay", "fromworker"); r.code == 0 || !strings.Contains(r.stderr, "Cannot create a multi-host network from a worker node") {
		t.Fatalf("an overlay network from a worker: %s", r)
	}
	// The CLI looks the network up in the swarm's scope first: as
	// with dockerd, a local network is not found there.
	h1.must("network", "create", "localnet")
	if r := h1.docker("service", "create", "--detach", "--network", "localnet", "busybox", "sleep", "60"); r.code == 0 || !strings.Contains(r.stderr, "network localnet not found") {
		t.Fatalf("a service on a local network: %s", r)
	}
	h1.must("network", "rm", "localnet")
	h1.must("network", "create", "-d", "overlay", "closed")
	if r := h1.docker("network", "create", "-d", "overlay", "closed"); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("a second network closed: %s", r)
	}
	if got := h1.must("network", "ls", "--filter", "name=closed", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"); got != "closed overlay swarm\n" {
		t.Fatalf("network ls: %q", got)
	}
	if r := h1.docker("run", "--rm", "--network", "closed", "busybox", "true"); r.code == 0 || !strings.Contains(r.stderr, "not manually attachable") {
		t.Fatalf("a container on a network that is not attachable: %s", r)
	}
	h1.must("network", "rm", "closed")

	dir := t.TempDir()
	meshPort := freePort(t)
	compose := `version: "3.8"
services:
  web:
    image: web
    ports: ["` + fmt.Sprint(meshPort) + `:80"]
    deploy:
      replicas: 2
      placement:
        constraints: ["node.role == manager"]
  probe:
    image: busybox
    command: ["sleep", "3600"]
    deploy:
      placement:
        constraints: ["node.role == worker"]
networks:
  default:
    attachable: true
`
	if err := os.WriteFile(filepath.Join(dir, "stack.yml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	h1.must("stack", "deploy", "--detach=true", "-c", filepath.Join(dir, "stack.yml"), "app")
	waitFor(t, 4*time.Minute, "the stack's services running", func() bool {
		out := h1.must("stack", "services", "app", "--format", "{{.Name}} {{.Replicas}}")
		return strings.Contains(out, "app_web 2/2") && strings.Contains(out, "app_probe 1/1")
	})
	phase("stack deployed")
	if got := h1.must("stack", "ls", "--format", "{{.Name}} {{.Services}}"); got != "app 2\n" {
		t.Errorf("stack ls: %q", got)
	}
	if got := h1.must("network", "inspect", "--format", "{{.Driver}} {{.Scope}}", "app_default"); got != "overlay swarm\n" {
		t.Errorf("the stack's network: %q", got)
	}
	webOn := func(h *testHost) []string {
		return strings.Fields(h.must("ps", "-q", "--filter", "label=com.docker.swarm.service.name=app_web"))
	}
	if len(webOn(h1)) != 2 || len(webOn(h2)) != 0 {
		t.Fatalf("web's tasks: %v on h1, %v on h2", webOn(h1), webOn(h2))
	}
	probe := strings.TrimSpace(h2.must("ps", "-q", "--filter", "label=com.docker.swarm.service.name=app_probe"))
	var webIPs []string
	for _, id := range webOn(h1) {
		ip := strings.TrimSpace(h1.must("inspect", "--format", `{{(index .NetworkSettings.Networks "app_default").IPAddress}}`, id))
		webIPs = append(webIPs, ip)
	}
	sort.Strings(webIPs)
	// web has a VIP on the ingress network too (the mesh's): its VIP on
	// the stack's network is the one its name answers.
	netID := strings.TrimSpace(h1.must("network", "inspect", "--format", "{{.Id}}", "app_default"))
	vip := ""
	for _, line := range strings.Split(h1.must("service", "inspect", "--format", `{{range .Endpoint.VirtualIPs}}{{.NetworkID}} {{.Addr}}{{"\n"}}{{end}}`, "app_web"), "\n") {
		if id, addr, ok := strings.Cut(line, " "); ok && id == netID {
			vip, _, _ = strings.Cut(addr, "/")
		}
	}
	if vip == "" {
		t.Fatalf("web has no VIP on app_default (%s)", netID)
	}

	// Each host's VXLAN device of the network: the swarm's data path
	// port, from the host's data path address.
	for _, h := range hosts {
		link := h.inNS("ip", "-d", "link", "show", "jvx-"+netID[:10])
		if !strings.Contains(link, "dstport "+dataPathPort+" ") || !strings.Contains(link, "local "+h.ip+" ") {
			t.Fatalf("%s's VXLAN device: want dstport %s from %s:\n%s", h.name, dataPathPort, h.ip, link)
		}
	}
	// Each task at its address, across the VXLAN.
	for _, ip := range webIPs {
		if out := h2.must("exec", probe, "wget", "-qO-", "http://"+ip+"/"); !strings.Contains(out, webIndex) {
			t.Fatalf("web task at %s from probe: %q", ip, out)
		}
	}
	phase("tasks reached across hosts")
	// tasks.web names both tasks; web its VIP.
	var got []string
	waitFor(t, 30*time.Second, "tasks.web to name both tasks", func() bool {
		r := h2.docker("exec", probe, "nslookup", "tasks.web")
		var ips []string
		for _, line := range strings.Split(r.stdout, "\n") {
			if m := regexp.MustCompile(`^Address:\s+(\d+\.\d+\.\d+\.\d+)$`).FindStringSubmatch(strings.TrimSpace(line)); m != nil {
				ips = append(ips, m[1])
			}
		}
		sort.Strings(ips)
		got = ips
		return strings.Join(ips, " ") == strings.Join(webIPs, " ")
	})
	t.Logf("tasks.web: %v", got)
	if out := h2.must("exec", probe, "nslookup", "web"); !strings.Contains(out, vip) {
		t.Fatalf("nslookup web: want the VIP %s:\n%s", vip, out)
	}
	// By name, through the VIP: every request answered, by both tasks
	// (the probe's node counts the connections each DNAT rule took; all
	// 16 through one would happen once in 2^15 runs).
	for i := 0; i < 16; i++ {
		if out := h2.must("exec", probe, "wget", "-qO-", "http://web/"); !strings.Contains(out, webIndex) {
			t.Fatalf("request %d to web by name: %q", i, out)
		}
	}
	rules := h2.inNS("iptables", "-t", "nat", "-L", "PREROUTING", "-n", "-v", "-x")
	for _, ip := range webIPs {
		m := regexp.MustCompile(`(?m)^\s*(\d+)\s+\d+\s+DNAT\s.*\s` + regexp.QuoteMeta(vip) + `\s.*to:` + regexp.QuoteMeta(ip) + `$`).FindStringSubmatch(rules)
		if m == nil || m[1] == "0" {
			t.Errorf("no connection to %s through the VIP %s:\n%s", ip, vip, rules)
		}
	}
	phase("web reached by name")
	// The routing mesh: the published port answers on both hosts.
	for i := 0; i < 4; i++ {
		for _, h := range hosts {
			if body := httpGet(t, fmt.Sprintf("http://%s:%d/", h.ip, meshPort)); !strings.Contains(body, webIndex) {
				t.Fatalf("the published port on %s: %q", h.name, body)
			}
		}
	}
	if got := h1.must("service", "inspect", "--format", "{{range .Endpoint.Ports}}{{.PublishMode}} {{.PublishedPort}}{{end}}", "app_web"); got != fmt.Sprintf("ingress %d\n", meshPort) {
		t.Errorf("web's published port: %q", got)
	}
	phase("routing mesh answered on both hosts")
	// A container that is no task, on the attachable network, on the
	// worker: the swarm gives it an address, which the other host learns;
	// it reaches web by name; once it is gone, the other host forgets it.
	h2.must("run", "-d", "--name", "visitor", "--network", "app_default", "busybox", "sleep", "600")
	visitorIP := strings.TrimSpace(h2.must("inspect", "--format", `{{(index .NetworkSettings.Networks "app_default").IPAddress}}`, "visitor"))
	h1Neigh := func() string { return h1.inNS("ip", "neigh", "show", "dev", "jvx-"+netID[:10]) }
	waitFor(t, 30*time.Second, "h1 to learn the visitor's address "+visitorIP, func() bool { return strings.Contains(h1Neigh(), visitorIP+" ") })
	if out := h2.must("exec", "visitor", "wget", "-qO-", "http://web/"); !strings.Contains(out, webIndex) {
		t.Fatalf("a container on the attachable network: %q", out)
	}
	h2.must("rm", "-f", "visitor")
	waitFor(t, 30*time.Second, "h1 to forget the visitor's address", func() bool { return !strings.Contains(h1Neigh(), visitorIP+" ") })
	phase("an attached container reached web")
	// docker network connect: a running container on a local network
	// gets a NIC with a swarm address on the attachable network (h1
	// learns it) and reaches a web task; disconnect takes it back. A
	// stopped container connected gets its address when it starts.
	h2.must("network", "create", "lan")
	h2.must("run", "-d", "--name", "joiner", "--network", "lan", "busybox", "sleep", "600")
	h2.must("network", "connect", "--alias", "jn", "app_default", "joiner")
	joinerIP := strings.TrimSpace(h2.must("inspect", "--format", `{{(index .NetworkSettings.Networks "app_default").IPAddress}}`, "joiner"))
	if !strings.HasPrefix(joinerIP, "10.") {
		t.Fatalf("joiner's address on app_default: %q", joinerIP)
	}
	waitFor(t, 30*time.Second, "h1 to learn joiner's address "+joinerIP, func() bool { return strings.Contains(h1Neigh(), joinerIP+" ") })
	if out := h2.must("exec", "joiner", "wget", "-qO-", "http://"+webIPs[0]+"/"); !strings.Contains(out, webIndex) {
		t.Fatalf("a connected container to web's task: %q", out)
	}
	if r := h2.docker("network", "connect", "app_default", "joiner"); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("a second connect: %s", r)
	}
	h2.must("network", "disconnect", "app_default", "joiner")
	waitFor(t, 30*time.Second, "h1 to forget joiner's address", func() bool { return !strings.Contains(h1Neigh(), joinerIP+" ") })
	if got := h2.must("inspect", "--format", `{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}`, "joiner"); got != "lan \n" {
		t.Fatalf("joiner's networks after disconnect: %q", got)
	}
	h2.must("create", "--name", "late", "--network", "lan", "busybox", "sleep", "600")
	h2.must("network", "connect", "app_default", "late")
	h2.must("start", "late")
	if ip := strings.TrimSpace(h2.must("inspect", "--format", `{{(index .NetworkSettings.Networks "app_default").IPAddress}}`, "late")); !strings.HasPrefix(ip, "10.") {
		t.Fatalf("a stopped container connected, then started: address %q", ip)
	}
	if r := h2.docker("network", "connect", "nosuchnet", "joiner"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("connect to no network: %s", r)
	}
	h2.must("rm", "-f", "joiner", "late")
	h2.must("network", "rm", "lan")
	phase("network connect and disconnect")
	// The worker's jevmd killed (-9) and started again at once: the probe
	// task keeps its VM and its address; once the node is back in the
	// swarm, it reaches web by name through the VIP again, and h1 still
	// knows its address.
	probeIP := strings.TrimSpace(h2.must("inspect", "--format", `{{(index .NetworkSettings.Networks "app_default").IPAddress}}`, probe))
	h2.kill9()
	h2.start()
	h2.waitUp()
	waitFor(t, 90*time.Second, "probe to reach web by name after h2's restart", func() bool {
		r := h2.docker("exec", probe, "wget", "-qO-", "http://web/")
		return r.code == 0 && strings.Contains(r.stdout, webIndex)
	})
	if got := strings.TrimSpace(h2.must("ps", "-q", "--no-trunc", "--filter", "label=com.docker.swarm.service.name=app_probe")); !strings.HasPrefix(got, probe) {
		t.Fatalf("the probe task after h2's restart: %q, was %s", got, probe)
	}
	if ip := strings.TrimSpace(h2.must("inspect", "--format", `{{(index .NetworkSettings.Networks "app_default").IPAddress}}`, probe)); ip != probeIP {
		t.Fatalf("the probe's address after h2's restart: %s, was %s", ip, probeIP)
	}
	waitFor(t, 30*time.Second, "h1 to know the probe's address", func() bool { return strings.Contains(h1Neigh(), probeIP+" ") })
	phase("h2's jevmd killed and back")
	// An encrypted network (--opt encrypted): a container on h1 answers
	// one on h2 by name; between the hosts its frames are sealed (UDP on
	// the data path port + 1), so the page's text is in none of the
	// datagrams h2 takes, while the same page through the routing mesh
	// (the ingress network, plain VXLAN) shows it: h2's INPUT counts
	// both.
	h1.must("network", "create", "-d", "overlay", "--opt", "encrypted", "--attachable", "sec")
	secID := strings.TrimSpace(h1.must("network", "inspect", "--format", "{{.Id}}", "sec"))
	h1.must("run", "-d", "--name", "s1", "--network", "sec", "web")
	sealedPort := fmt.Sprint(4790 + 1)
	for _, rule := range [][]string{
		{"-p", "udp", "--dport", sealedPort},
		{"-p", "udp", "--dport", sealedPort, "-m", "string", "--string", webIndex, "--algo", "bm"},
		{"-p", "udp", "--dport", dataPathPort, "-m", "string", "--string", webIndex, "--algo", "bm"},
	} {
		h2.inNS(append([]string{"iptables", "-I", "INPUT", "1"}, rule...)...)
	}
	count := func(port string, marked bool) int {
		for _, line := range strings.Split(h2.inNS("iptables", "-L", "INPUT", "-n", "-v", "-x"), "\n") {
			f := strings.Fields(line)
			if len(f) > 2 && strings.Contains(line, "dpt:"+port) && strings.Contains(line, "STRING") == marked {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
		t.Fatalf("no counting rule for port %s (string %v) on h2", port, marked)
		return 0
	}
	if out := h2.must("run", "--rm", "--network", "sec", "busybox", "wget", "-qO-", "http://s1/"); !strings.Contains(out, webIndex) {
		t.Fatalf("s1 by name over the encrypted network: %q", out)
	}
	if body := httpGet(t, fmt.Sprintf("http://%s:%d/", h2.ip, meshPort)); !strings.Contains(body, webIndex) {
		t.Fatalf("the mesh on h2: %q", body)
	}
	sealed, sealedText, plainText := count(sealedPort, false), count(sealedPort, true), count(dataPathPort, true)
	t.Logf("h2 took %d sealed datagrams, %d with the page's text; %d plain VXLAN datagrams with it", sealed, sealedText, plainText)
	if sealed == 0 || sealedText != 0 || plainText == 0 {
		t.Fatalf("want sealed datagrams without the page's text, and the plain VXLAN's with it: %d, %d, %d", sealed, sealedText, plainText)
	}
	// (h2 removed the network with its client.)
	if link := h1.inNS("ip", "-d", "link", "show", "jvx-"+secID[:10]); !strings.Contains(link, "tun type tap") || !strings.Contains(link, "mtu 1418 ") {
		t.Errorf("h1: the encrypted network's port is no tap of MTU 1418:\n%s", link)
	}
	h1.must("rm", "-f", "s1")
	h1.must("network", "rm", "sec")
	for _, h := range hosts {
		waitFor(t, 30*time.Second, "the encrypted network's tap gone from "+h.name, func() bool {
			return !strings.Contains(h.inNS("ip", "-o", "link", "show"), "jvx-"+secID[:10])
		})
	}
	phase("encrypted network")
	// The probe's DNS forwards other names out: the host's resolv.conf.
	if out := h2.must("exec", probe, "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver 10.") {
		t.Errorf("probe's resolv.conf: %q", out)
	}

	h1.must("stack", "rm", "app")
	for _, h := range hosts {
		waitFor(t, 2*time.Minute, "the stack's containers and overlay gone from "+h.name, func() bool {
			links := h.inNS("ip", "-o", "link", "show")
			return strings.TrimSpace(h.must("ps", "-aq")) == "" && !strings.Contains(links, "jvx-"+netID[:10])
		})
		waitFor(t, 30*time.Second, "the mesh port closed on "+h.name, func() bool {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", h.ip, meshPort), time.Second)
			if err == nil {
				c.Close()
			}
			return err != nil
		})
	}
	waitFor(t, 60*time.Second, "the stack's network removed", func() bool {
		return !strings.Contains(h1.must("network", "ls", "--format", "{{.Name}}"), "app_default")
	})
	phase("stack removed")
	// Out of the swarm, no overlay is left (the ingress network stays
	// while in it).
	h2.must("swarm", "leave")
	h1.must("swarm", "leave", "--force")
	for _, h := range hosts {
		if links := h.inNS("ip", "-o", "link", "show"); strings.Contains(links, "jvx-") {
			t.Errorf("VXLAN devices left on %s after leaving the swarm:\n%s", h.name, links)
		}
	}
}
