package secureoverlay

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netns"

	jnet "github.com/jevm/jevm/network"
)

// Two tunnels on one machine (on 127.0.0.1 and 127.0.0.2), each with a
// tap moved into a network namespace of its own: the namespaces ping each
// other through them. With another key on one side, or an endpoint the
// receiver does not know as the sender's, nothing passes. Needs root.
func TestTunnelPing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (taps, network namespaces)")
	}
	suffix := fmt.Sprint(os.Getpid() % 100000)
	owner := "jevm-test-" + suffix
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	type side struct {
		ns, tap, ip, mac string
		local            netip.Addr
		tun              *Tunnel
	}
	a := &side{ns: "jvsoa" + suffix, tap: "jvsoa" + suffix, ip: "10.99.0.1", mac: "02:99:00:00:00:01", local: netip.MustParseAddr("127.0.0.1")}
	b := &side{ns: "jvsob" + suffix, tap: "jvsob" + suffix, ip: "10.99.0.2", mac: "02:99:00:00:00:02", local: netip.MustParseAddr("127.0.0.2")}
	port := 20000 + os.Getpid()%20000
	log := logrus.NewEntry(logrus.StandardLogger())
	for _, s := range []*side{a, b} {
		s := s
		run("ip", "netns", "add", s.ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", s.ns).Run() })
		if err := jnet.CreateTap(s.tap, owner, "", 1400); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { exec.Command("ip", "-n", s.ns, "link", "del", s.tap).Run(); jnet.DeleteLink(s.tap, owner) })
		tun, err := New(s.local, port, log)
		if err != nil {
			t.Fatal(err)
		}
		s.tun = tun
		t.Cleanup(tun.Close)
		if err := tun.Attach(42, s.tap); err != nil {
			t.Fatal(err)
		}
		run("ip", "link", "set", s.tap, "netns", s.ns)
		run("ip", "-n", s.ns, "link", "set", s.tap, "address", s.mac)
		run("ip", "-n", s.ns, "addr", "add", s.ip+"/24", "dev", s.tap)
		run("ip", "-n", s.ns, "link", "set", s.tap, "up")
	}
	peerOf := func(s *side) Peer {
		mac, _ := net.ParseMAC(s.mac)
		return Peer{IP: netip.MustParseAddr(s.ip), MAC: mac, Node: s.local}
	}
	a.tun.SetPeers(42, []Peer{peerOf(b)})
	b.tun.SetPeers(42, []Peer{peerOf(a)})
	keys := []Key{{Tag: 1, Secret: key1}, {Tag: 2, Secret: key2}}
	for _, s := range []*side{a, b} {
		if err := s.tun.SetKeys(keys, 2); err != nil {
			t.Fatal(err)
		}
	}
	// "ping": a TCP connection from a's namespace to a listener in b's,
	// a line each way.
	var ln net.Listener
	inNS(t, b.ns, func() {
		var err error
		ln, err = net.Listen("tcp", b.ip+":7000")
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					c.Write([]byte("echo " + line))
				}
			}()
		}
	}()
	ping := func() bool {
		var c net.Conn
		var err error
		inNS(t, a.ns, func() { c, err = net.DialTimeout("tcp", b.ip+":7000", 2*time.Second) })
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("hello\n")); err != nil {
			return false
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && line == "echo hello\n"
	}
	if !ping() {
		t.Fatalf("no ping through the tunnels: a %+v, b %+v", a.tun.Stats(), b.tun.Stats())
	}
	if sa, sb := a.tun.Stats(), b.tun.Stats(); sa.Sent == 0 || sb.Received == 0 || sb.Sent == 0 || sa.Received == 0 {
		t.Fatalf("counters: a %+v, b %+v", sa, sb)
	}
	// During a rotation: a sends with key 1, b with key 2; both open
	// both.
	if err := a.tun.SetKeys(keys, 1); err != nil {
		t.Fatal(err)
	}
	if !ping() {
		t.Fatalf("no ping with two primary keys: a %+v, b %+v", a.tun.Stats(), b.tun.Stats())
	}
	// b without a's key: nothing opens.
	before := b.tun.Stats().NotOpened
	if err := b.tun.SetKeys([]Key{{Tag: 2, Secret: key2}}, 2); err != nil {
		t.Fatal(err)
	}
	if ping() {
		t.Fatal("a ping passed while b lacks a's key")
	}
	if b.tun.Stats().NotOpened == before {
		t.Fatalf("b did not count a's datagrams as not opened: %+v", b.tun.Stats())
	}
	if err := b.tun.SetKeys(keys, 2); err != nil {
		t.Fatal(err)
	}
	if !ping() {
		t.Fatal("no ping with the keys back")
	}
	// b does not know a's endpoint as a's: dropped as spoofed.
	before = b.tun.Stats().Spoofed
	b.tun.SetPeers(42, []Peer{{IP: netip.MustParseAddr(a.ip), MAC: peerOf(a).MAC, Node: netip.MustParseAddr("127.0.0.9")}})
	if ping() {
		t.Fatal("a ping passed from an endpoint b puts on another node")
	}
	if b.tun.Stats().Spoofed == before {
		t.Fatalf("b did not count spoofed frames: %+v", b.tun.Stats())
	}
	if err := a.tun.SetKeys(nil, 0); err != nil {
		t.Fatal(err)
	}
	b.tun.SetPeers(42, []Peer{peerOf(a)})
	before = a.tun.Stats().NoKey
	if ping() {
		t.Fatal("a ping passed with no key on a")
	}
	if a.tun.Stats().NoKey == before {
		t.Fatalf("a did not count frames it had no key for: %+v", a.tun.Stats())
	}
	// A replayed datagram is dropped: sealed by a's key for a, delivered
	// twice to b.
	if err := a.tun.SetKeys(keys, 2); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC(a.mac)
	frame := append(append(append([]byte{}, []byte(mustMAC(b.mac))...), mac...), 0x08, 0x00)
	frame = append(frame, make([]byte, 46)...)
	d := seal(nil, mustAEAD(t, key2, a.local), header{vni: 42, keyTag: 2, epoch: 7, counter: 1}, frame)
	recv, replayed := b.tun.Stats().Received, b.tun.Stats().Replayed
	b.tun.deliver(d, a.local, nil)
	b.tun.deliver(d, a.local, nil)
	if st := b.tun.Stats(); st.Received != recv+1 || st.Replayed != replayed+1 {
		t.Fatalf("a datagram delivered twice: %+v (received was %d, replayed %d)", st, recv, replayed)
	}
	b.tun.Detach(42)
	if b.tun.Networks() != 0 {
		t.Fatal("detached network still attached")
	}
	if ping() {
		t.Fatal("a ping passed with b's network detached")
	}
}

// inNS runs f on a thread in network namespace name (sockets made there
// stay there).
func inNS(t *testing.T, name string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer netns.Set(orig)
	f()
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
