package network

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-connections/nat"
	"github.com/miekg/dns"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

func TestPickSubnet(t *testing.T) {
	got, err := PickSubnet(DefaultPools, nil)
	if err != nil || got != mustPrefix("172.17.0.0/16") {
		t.Fatalf("first pick = %v, %v", got, err)
	}
	// A host route inside 172.17 (another daemon's bridge, a VPN) moves
	// the default bridge on, as dockerd does.
	got, _ = PickSubnet(DefaultPools, []netip.Prefix{mustPrefix("172.17.5.0/24"), mustPrefix("172.18.0.0/16")})
	if got != mustPrefix("172.19.0.0/16") {
		t.Fatalf("pick with routes = %v", got)
	}
	// A wide route covering all of 172.16/12 leaves the 192.168 /20s.
	got, _ = PickSubnet(DefaultPools, []netip.Prefix{mustPrefix("172.16.0.0/12"), mustPrefix("192.168.0.0/20")})
	if got != mustPrefix("192.168.16.0/20") {
		t.Fatalf("pick after 172.16/12 = %v", got)
	}
	if _, err := PickSubnet(DefaultPools, []netip.Prefix{mustPrefix("0.0.0.0/1"), mustPrefix("128.0.0.0/1")}); err != ErrPoolsExhausted {
		t.Fatalf("exhausted: %v", err)
	}
	if !Overlaps(mustPrefix("10.0.0.0/8"), mustPrefix("10.1.2.0/24")) || Overlaps(mustPrefix("10.0.0.0/16"), mustPrefix("10.1.0.0/16")) {
		t.Fatal("Overlaps is wrong")
	}
}

func TestPoolAllocateReleaseRoundRobin(t *testing.T) {
	p, err := NewPool(mustPrefix("10.9.0.0/29"), netip.Prefix{}, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Gateway() != mustAddr("10.9.0.1") {
		t.Fatalf("gateway %v", p.Gateway())
	}
	// .0 network, .1 gateway, .7 broadcast: .2-.6 are for containers.
	var got []string
	for i := 0; i < 5; i++ {
		a, err := p.Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		got = append(got, a.String())
	}
	if strings.Join(got, ",") != "10.9.0.2,10.9.0.3,10.9.0.4,10.9.0.5,10.9.0.6" {
		t.Fatalf("allocated %v", got)
	}
	if _, err := p.Allocate(); err == nil {
		t.Fatal("allocation from a full pool succeeded")
	}
	p.Release(mustAddr("10.9.0.3"))
	p.Release(mustAddr("10.9.0.5"))
	// Round robin: after .6 comes .3 (wrapping), not a reuse of the
	// most recently freed one first.
	if a, _ := p.Allocate(); a != mustAddr("10.9.0.3") {
		t.Fatalf("after wrap got %v, want 10.9.0.3", a)
	}
	if a, _ := p.Allocate(); a != mustAddr("10.9.0.5") {
		t.Fatalf("next got %v, want 10.9.0.5", a)
	}
	// Static requests.
	p.Release(mustAddr("10.9.0.4"))
	if err := p.Request(mustAddr("10.9.0.4")); err != nil {
		t.Fatal(err)
	}
	if err := p.Request(mustAddr("10.9.0.4")); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("double request: %v", err)
	}
	for _, bad := range []string{"10.9.0.1", "10.9.0.0", "10.9.0.7", "10.10.0.2"} {
		if err := p.Request(mustAddr(bad)); err == nil {
			t.Errorf("request of %s succeeded", bad)
		}
	}
}

func TestPoolRangeGatewayAux(t *testing.T) {
	p, err := NewPool(mustPrefix("192.168.50.0/24"), mustPrefix("192.168.50.128/25"), mustAddr("192.168.50.254"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve(mustAddr("192.168.50.128")); err != nil {
		t.Fatal(err)
	}
	a, _ := p.Allocate()
	if a != mustAddr("192.168.50.129") {
		t.Fatalf("first from range = %v", a)
	}
	// A static address outside the range but inside the subnet is fine.
	if err := p.Request(mustAddr("192.168.50.10")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ subnet, rng, gw string }{
		{"192.168.50.0/24", "10.0.0.0/25", ""},
		{"192.168.50.0/24", "", "192.168.51.1"},
		{"192.168.50.0/24", "", "192.168.50.255"},
		{"192.168.50.1/24", "", ""},
		{"192.168.50.0/31", "", ""},
	} {
		var rng netip.Prefix
		var gw netip.Addr
		if c.rng != "" {
			rng = mustPrefix(c.rng)
		}
		if c.gw != "" {
			gw = mustAddr(c.gw)
		}
		if _, err := NewPool(mustPrefix(c.subnet), rng, gw); err == nil {
			t.Errorf("NewPool(%+v) succeeded", c)
		}
	}
	if m := MACFor(mustAddr("172.17.0.2")); m != "02:42:ac:11:00:02" {
		t.Fatalf("MACFor = %s", m)
	}
}

func TestParsePortBindings(t *testing.T) {
	pm := nat.PortMap{
		"80/tcp":   {{HostIP: "", HostPort: "8080"}, {HostIP: "127.0.0.1", HostPort: "9090"}},
		"53/udp":   {{HostPort: ""}},
		"443/tcp":  {{HostIP: "0.0.0.0", HostPort: "8000-8010"}},
		"5000/tcp": nil,
	}
	exposed := nat.PortSet{"80/tcp": {}, "7000/tcp": {}, "53/udp": {}}
	got, err := ParsePortBindings(pm, exposed, true)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, b := range got {
		s = append(s, b.String())
	}
	want := "0.0.0.0:0->53/udp 0.0.0.0:8080->80/tcp 127.0.0.1:9090->80/tcp 0.0.0.0:8000-8010->443/tcp 0.0.0.0:0->5000/tcp 0.0.0.0:0->7000/tcp"
	if strings.Join(s, " ") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(s, " "), want)
	}
	for _, bad := range []nat.PortMap{
		{"80/tcp": {{HostIP: "not-an-ip", HostPort: "1"}}},
		{"80/tcp": {{HostPort: "70000"}}},
		{"80/tcp": {{HostPort: "9-3"}}},
		{"0/tcp": {{}}},
		{"80/sctp": {{}}},
		{"80/xyz": {{}}},
	} {
		if _, err := ParsePortBindings(bad, nil, false); err == nil {
			t.Errorf("ParsePortBindings(%v) succeeded", bad)
		}
	}
	m := PortMap([]PortBinding{{Proto: "tcp", ContainerPort: 80, HostPort: 32768}}, nat.PortSet{"80/tcp": {}, "81/tcp": {}})
	if len(m) != 2 || m["81/tcp"] != nil || m["80/tcp"][0] != (nat.PortBinding{HostIP: "0.0.0.0", HostPort: "32768"}) {
		t.Fatalf("PortMap = %v", m)
	}
}

func TestResolvConf(t *testing.T) {
	rc := ParseResolvConf("# generated\ndomain a.example\nsearch b.example c.example\nnameserver 127.0.0.53\nnameserver 10.0.0.2 # x\nnameserver fd00::1\noptions ndots:2 edns0\n")
	if strings.Join(rc.Search, ",") != "b.example,c.example" || len(rc.Nameservers) != 3 || strings.Join(rc.Options, ",") != "ndots:2,edns0" {
		t.Fatalf("parsed %+v", rc)
	}
	if got := ReachableNameservers(rc.Nameservers); strings.Join(got, ",") != "10.0.0.2" {
		t.Fatalf("reachable = %v", got)
	}
	if got := ReachableNameservers([]string{"127.0.0.53"}); strings.Join(got, ",") != "8.8.8.8,8.8.4.4" {
		t.Fatalf("fallback = %v", got)
	}
	if got := UpstreamAddrs([]string{"127.0.0.53", "bad", "fd00::1"}); strings.Join(got, ",") != "127.0.0.53:53,[fd00::1]:53" {
		t.Fatalf("upstreams = %v", got)
	}
	want := "search s.example\nnameserver 172.18.0.1\noptions ndots:0\n"
	if got := (ResolvConf{Nameservers: []string{"172.18.0.1"}, Search: []string{"s.example"}, Options: []string{"ndots:0"}}).String(); got != want {
		t.Fatalf("String = %q", got)
	}
}

func TestOwnRule(t *testing.T) {
	spec, ok := ownRule(`-A POSTROUTING -s 172.18.0.0/16 ! -o jevm-abc -m comment --comment "jevm:jevm-abc" -j MASQUERADE`, "POSTROUTING", "jevm:jevm-abc")
	if !ok || strings.Join(spec, " ") != "-s 172.18.0.0/16 ! -o jevm-abc -m comment --comment jevm:jevm-abc -j MASQUERADE" {
		t.Fatalf("ownRule = %v %v", spec, ok)
	}
	if _, ok := ownRule(`-A POSTROUTING -s 172.18.0.0/16 -m comment --comment jevm:jevm-abcd -j MASQUERADE`, "POSTROUTING", "jevm:jevm-abc"); ok {
		t.Fatal("matched another bridge's rule")
	}
	r := FirewallSpec{Bridge: "jevm0", Subnet: mustPrefix("172.17.0.0/16"), Masquerade: true}.rules()
	if len(r) != 5 || r[4].table != "nat" {
		t.Fatalf("rules = %v", r)
	}
	// Inserted at the top of FORWARD one by one, the chain reads in reverse:
	// same-bridge accept, then the drop to other jevm bridges, then accept.
	if got := strings.Join(r[3].spec[:6], " "); got != "-i jevm0 -o jevm0 -j ACCEPT" {
		t.Fatalf("first rule in the chain = %q", got)
	}
	if got := strings.Join(r[2].spec[:6], " "); got != "-i jevm0 -o jevm+ -j DROP" {
		t.Fatalf("second rule in the chain = %q", got)
	}
	if r := (FirewallSpec{Bridge: "b", Internal: true, Masquerade: true}).rules(); len(r) != 2 || r[0].spec[len(r[0].spec)-1] == "MASQUERADE" {
		t.Fatalf("internal rules = %v", r)
	}
	// Dual stack: each family its own forwarding rules and MASQUERADE.
	r = FirewallSpec{Bridge: "jevm-x", Subnet: mustPrefix("172.18.0.0/16"), Subnet6: mustPrefix("fd00:1::/64"), Masquerade: true}.rules()
	if len(r) != 10 || r[4].v6 || !r[9].v6 || r[9].table != "nat" || strings.Join(r[9].spec[:2], " ") != "-s fd00:1::/64" {
		t.Fatalf("dual-stack rules = %v", r)
	}
	// IPv6 only: no iptables rules.
	r = FirewallSpec{Bridge: "jevm-y", Subnet6: mustPrefix("fd00:2::/64"), Masquerade: true}.rules()
	if len(r) != 5 || !r[0].v6 || !r[4].v6 {
		t.Fatalf("IPv6-only rules = %v", r)
	}
}

// fakeNames is a network with containers "web" (two replicas) and "db".
type fakeNames struct{ upstream string }

func (f fakeNames) LookupName(name string) []netip.Addr {
	switch name {
	case "web":
		return []netip.Addr{mustAddr("172.18.0.2"), mustAddr("172.18.0.3")}
	case "v6":
		return []netip.Addr{mustAddr("172.18.0.5"), mustAddr("fd00:1::5")}
	case "db", "0123456789ab":
		return []netip.Addr{mustAddr("172.18.0.4")}
	}
	return nil
}

func (f fakeNames) LookupAddr(a netip.Addr) (string, bool) {
	if a == mustAddr("172.18.0.4") {
		return "db", true
	}
	if a == mustAddr("fd00:1::5") {
		return "v6", true
	}
	return "", false
}

func (f fakeNames) Upstreams(client netip.Addr) []string {
	if f.upstream == "" {
		return nil
	}
	return []string{f.upstream}
}

// fakeUpstream answers example.com A 192.0.2.99 and NXDOMAIN otherwise,
// on UDP and TCP of one loopback port.
func fakeUpstream(t *testing.T) string {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Name == "example.com." && r.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR("example.com. 60 IN A 192.0.2.99")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	us := &dns.Server{PacketConn: pc, Handler: h}
	ts := &dns.Server{Listener: l, Handler: h}
	go us.ActivateAndServe()
	go ts.ActivateAndServe()
	t.Cleanup(func() { us.Shutdown(); ts.Shutdown() })
	return pc.LocalAddr().String()
}

func query(t *testing.T, netw, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: netw, Timeout: 3 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	var r *dns.Msg
	var err error
	for i := 0; i < 20; i++ {
		if r, _, err = c.Exchange(m, server); err == nil {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("query %s %s: %v", netw, name, err)
	return nil
}

func TestDNSServer(t *testing.T) {
	up := fakeUpstream(t)
	s, err := StartDNS(mustAddr("127.0.0.1"), 0, fakeNames{upstream: up}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, netw := range []string{"udp", "tcp"} {
		r := query(t, netw, s.Addr(), "WEB.", dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 || !r.Authoritative {
			t.Fatalf("%s web: %v", netw, r)
		}
		if a := r.Answer[0].(*dns.A).A.String(); a != "172.18.0.2" {
			t.Fatalf("web A = %s", a)
		}
		// Short ID, as compose and `docker run --network` users rely on.
		if r := query(t, netw, s.Addr(), "0123456789ab.", dns.TypeA); len(r.Answer) != 1 {
			t.Fatalf("short id: %v", r)
		}
		// AAAA of a local name: NOERROR and no answer.
		if r := query(t, netw, s.Addr(), "db.", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Fatalf("db AAAA: %v", r)
		}
		// A dual-stack container: A and AAAA each give their family.
		if r := query(t, netw, s.Addr(), "v6.", dns.TypeAAAA); len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "fd00:1::5" {
			t.Fatalf("v6 AAAA: %v", r)
		}
		if r := query(t, netw, s.Addr(), "v6.", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "172.18.0.5" {
			t.Fatalf("v6 A: %v", r)
		}
		if r := query(t, netw, s.Addr(), "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR); len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "v6." {
			t.Fatalf("PTR v6: %v", r)
		}
		// Reverse lookup of a container.
		if r := query(t, netw, s.Addr(), "4.0.18.172.in-addr.arpa.", dns.TypePTR); len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "db." {
			t.Fatalf("PTR: %v", r)
		}
		// Forwarded to the (fake) upstream.
		r = query(t, netw, s.Addr(), "example.com.", dns.TypeA)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.99" {
			t.Fatalf("%s forwarded: %v", netw, r)
		}
		if r := query(t, netw, s.Addr(), "nothing.example.", dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Fatalf("forwarded NXDOMAIN: %v", r)
		}
	}
	// Without upstreams (internal network) other names are refused.
	s2, err := StartDNS(mustAddr("127.0.0.1"), 0, fakeNames{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if r := query(t, "udp", s2.Addr(), "example.com.", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("internal: %v", r)
	}
	if r := query(t, "udp", s2.Addr(), "db.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("internal local name: %v", r)
	}
	// An unreachable upstream gives SERVFAIL, not a hang.
	dead, _ := net.ListenPacket("udp", "127.0.0.1:0")
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	s3, err := StartDNS(mustAddr("127.0.0.1"), 0, fakeNames{upstream: deadAddr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if r := query(t, "udp", s3.Addr(), "example.com.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("dead upstream: %v", r)
	}
}

func TestTCPProxy(t *testing.T) {
	// A "container" echo server on loopback.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c) // until the client half-closes
				c.Write([]byte("echo:" + string(b)))
			}()
		}
	}()
	cport := uint16(l.Addr().(*net.TCPAddr).Port)
	p, err := StartProxy(PortBinding{Proto: "tcp", ContainerPort: cport, HostIP: mustAddr("127.0.0.1")},
		func() (netip.Addr, bool) { return mustAddr("127.0.0.1"), true }, nil)
	if err != nil {
		t.Fatal(err)
	}
	hp := p.Binding().HostPort
	if hp == 0 {
		t.Fatal("no host port chosen")
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(int(hp))))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "echo:hello" {
		t.Fatalf("got %q", got)
	}
	// The same port again is "already allocated".
	if _, err := StartProxy(PortBinding{Proto: "tcp", ContainerPort: 1, HostIP: mustAddr("127.0.0.1"), HostPort: hp}, nil, nil); err == nil || !strings.Contains(err.Error(), "port is already allocated") {
		t.Fatalf("second bind: %v", err)
	}
	// A range skips the taken port.
	p2, err := StartProxy(PortBinding{Proto: "tcp", ContainerPort: 1, HostIP: mustAddr("127.0.0.1"), HostPort: hp, HostPortEnd: hp + 5}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Binding().HostPort == hp {
		t.Fatal("range bound the taken port")
	}
	p2.Close()
	// An open connection ends when the proxy closes.
	c2, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(int(hp))))
	if err != nil {
		t.Fatal(err)
	}
	c2.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung with an open connection")
	}
	if _, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(int(hp)))); err == nil {
		t.Fatal("port still open after Close")
	}
}

func TestUDPProxy(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte("pong:"+string(buf[:n])), from)
		}
	}()
	cport := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	p, err := StartProxy(PortBinding{Proto: "udp", ContainerPort: cport, HostIP: mustAddr("127.0.0.1")},
		func() (netip.Addr, bool) { return mustAddr("127.0.0.1"), true }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", itoa(int(p.Binding().HostPort))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, msg := range []string{"a", "b"} {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "pong:"+msg {
			t.Fatalf("got %q, %v", buf[:n], err)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
