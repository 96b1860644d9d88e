package network

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// TestVXLANPeersAndVIPRules makes an overlay network's host side (a
// bridge, its VXLAN port), programs peers and replaces them, sets a VIP's
// rules and replaces them, then removes it all. Needs root.
func TestVXLANPeersAndVIPRules(t *testing.T) {
	h, suffix, owner := rootHost(t)
	br, vx := "jevmo"+suffix, "jvxt"+suffix
	defer func() {
		_ = h.TeardownFirewall(br)
		_ = DeleteLink(vx, owner)
		_ = DeleteLink(br, owner)
	}()
	if err := h.EnsureBridge(br, owner, []netip.Prefix{mustPrefix("198.18.251.9/24")}, 1450); err != nil {
		t.Fatal(err)
	}
	local := netip.MustParseAddr("127.0.0.1")
	if err := EnsureVXLAN(vx, owner, br, 4242, 4789, local, 1450); err != nil {
		t.Fatal(err)
	}
	if err := EnsureVXLAN(vx, owner, br, 4242, 4789, local, 1450); err != nil {
		t.Fatalf("again: %v", err)
	}
	out, _ := exec.Command("ip", "-d", "link", "show", vx).Output()
	for _, want := range []string{"vxlan id 4242", "dstport 4789", "nolearning", "proxy", "master " + br} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("vxlan device without %q:\n%s", want, out)
		}
	}
	peer := func(ip, node string) VXLANPeer {
		a := netip.MustParseAddr(ip)
		mac, _ := net.ParseMAC(MACFor(a))
		return VXLANPeer{IP: a, MAC: mac, Node: netip.MustParseAddr(node)}
	}
	show := func() string {
		fdb, _ := exec.Command("bridge", "fdb", "show", "dev", vx).Output()
		neigh, _ := exec.Command("ip", "neigh", "show", "dev", vx).Output()
		return string(fdb) + string(neigh)
	}
	if err := SetVXLANPeers(vx, []VXLANPeer{peer("198.18.251.3", "192.0.2.11"), peer("198.18.251.4", "192.0.2.12")}); err != nil {
		t.Fatal(err)
	}
	got := show()
	for _, want := range []string{
		"02:42:c6:12:fb:03 master " + br + " static", "02:42:c6:12:fb:03 dst 192.0.2.11 self permanent",
		"02:42:c6:12:fb:04 dst 192.0.2.12 self permanent", "198.18.251.3 lladdr 02:42:c6:12:fb:03 PERMANENT",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("peers: no %q in\n%s", want, got)
		}
	}
	// The second peer moved to another node, the first is gone.
	if err := SetVXLANPeers(vx, []VXLANPeer{peer("198.18.251.4", "192.0.2.13")}); err != nil {
		t.Fatal(err)
	}
	got = show()
	if strings.Contains(got, "fb:03") || strings.Contains(got, "192.0.2.12") || !strings.Contains(got, "02:42:c6:12:fb:04 dst 192.0.2.13") {
		t.Fatalf("peers after the change:\n%s", got)
	}

	nat := func() string { o, _ := exec.Command("iptables", "-t", "nat", "-S").Output(); return string(o) }
	vip := netip.MustParseAddr("198.18.251.2")
	self := netip.MustParseAddr("198.18.251.9")
	if err := h.SetVIPRules(br, self, map[netip.Addr][]netip.Addr{vip: {netip.MustParseAddr("198.18.251.3"), netip.MustParseAddr("198.18.251.4")}}); err != nil {
		t.Fatal(err)
	}
	got = nat()
	if strings.Count(got, vipComment(br)) != 3 || !strings.Contains(got, "--probability 0.5") || !strings.Contains(got, "--to-source "+self.String()) {
		t.Fatalf("VIP rules:\n%s", got)
	}
	if err := h.SetVIPRules(br, self, map[netip.Addr][]netip.Addr{vip: {netip.MustParseAddr("198.18.251.4")}}); err != nil {
		t.Fatal(err)
	}
	// Replaced by a new generation of rules (added before the old ones
	// went).
	if got = nat(); strings.Count(got, vipComment(br)) != 2 || strings.Count(got, vipComment(br)+":b") != 2 || strings.Contains(got, "probability") {
		t.Fatalf("VIP rules with one backend:\n%s", got)
	}
	if err := h.TeardownFirewall(br); err != nil {
		t.Fatal(err)
	}
	if got = nat(); strings.Contains(got, br) {
		t.Fatalf("rules left:\n%s", got)
	}
}
