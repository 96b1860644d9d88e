package network

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHostBridgeTapFirewall makes a bridge, a tap on it and the NAT and
// forwarding rules of a network, then removes them and checks that the
// host's links and rules are as before. Needs root.
func TestHostBridgeTapFirewall(t *testing.T) {
	h, suffix, owner := rootHost(t)
	br, tap := "jevmt"+suffix, "tapt"+suffix
	links := func() string { out, _ := exec.Command("ip", "-o", "link").Output(); return string(out) }
	rules := func() string {
		a, _ := exec.Command("iptables", "-t", "nat", "-S").Output()
		b, _ := exec.Command("iptables", "-S", "FORWARD").Output()
		c, _ := exec.Command("ip6tables", "-t", "nat", "-S").Output()
		d, _ := exec.Command("ip6tables", "-S", "FORWARD").Output()
		return string(a) + string(b) + string(c) + string(d)
	}
	defer func() {
		_ = h.TeardownFirewall(br)
		_ = DeleteLink(tap, owner)
		_ = DeleteLink(br, owner)
	}()

	gw, gw6 := mustPrefix("198.18.250.1/24"), mustPrefix("fdee:1:2:3::1/64")
	gws := []netip.Prefix{gw, gw6}
	if err := h.EnsureBridge(br, owner, gws, 1500); err != nil {
		t.Fatal(err)
	}
	// Adopting our own bridge again is fine; another owner's is refused.
	if err := h.EnsureBridge(br, owner, gws, 1500); err != nil {
		t.Fatalf("re-ensure: %v", err)
	}
	addrs, _ := exec.Command("ip", "-o", "addr", "show", br).Output()
	if strings.Count(string(addrs), "198.18.250.1/24") != 1 || strings.Count(string(addrs), "fdee:1:2:3::1/64") != 1 {
		t.Fatalf("bridge addresses:\n%s", addrs)
	}
	if err := h.EnsureBridge(br, OwnerPrefix+"someone-else", gws, 1500); err == nil {
		t.Fatal("adopted a bridge with another owner")
	}
	if err := CreateTap(tap, owner, br, 1500); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "-o", "link", "show", tap).Output()
	if !strings.Contains(string(out), "master "+br) {
		t.Fatalf("tap not on bridge: %s", out)
	}
	if a, ok := LinkOwner(tap); !ok || a != owner {
		t.Fatalf("tap owner %q %v", a, ok)
	}
	owned, err := OwnedLinks(owner)
	if err != nil || len(owned) != 2 {
		t.Fatalf("owned links %v %v", owned, err)
	}
	routes, err := Routes(nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range routes {
		found = found || r == mustPrefix("198.18.250.0/24")
	}
	found6 := false
	for _, r := range routes {
		found6 = found6 || r == mustPrefix("fdee:1:2:3::/64")
	}
	if !found || !found6 {
		t.Fatalf("bridge routes missing from %v", routes)
	}
	spec := FirewallSpec{Bridge: br, Subnet: gw.Masked(), Subnet6: gw6.Masked(), Masquerade: true}
	for i := 0; i < 2; i++ { // idempotent
		if err := h.SetupFirewall(spec); err != nil {
			t.Fatal(err)
		}
	}
	nat, _ := exec.Command("iptables", "-t", "nat", "-S", "POSTROUTING").Output()
	if strings.Count(string(nat), "jevm:"+br) != 1 {
		t.Fatalf("nat rules:\n%s", nat)
	}
	if h.Firewall6() {
		nat6, _ := exec.Command("ip6tables", "-t", "nat", "-S", "POSTROUTING").Output()
		if strings.Count(string(nat6), "jevm:"+br) != 1 || !strings.Contains(string(nat6), "fdee:1:2:3::/64") {
			t.Fatalf("ip6tables nat rules:\n%s", nat6)
		}
	}
	// Switching to internal: teardown removes whatever was there.
	if err := h.TeardownFirewall(br); err != nil {
		t.Fatal(err)
	}
	if err := h.SetupFirewall(FirewallSpec{Bridge: br, Subnet: gw.Masked(), Internal: true}); err != nil {
		t.Fatal(err)
	}
	fwd, _ := exec.Command("iptables", "-S", "FORWARD").Output()
	if strings.Count(string(fwd), "jevm:"+br) != 2 || !strings.Contains(string(fwd), "DROP") {
		t.Fatalf("forward rules:\n%s", fwd)
	}
	if err := h.TeardownFirewall(br); err != nil {
		t.Fatal(err)
	}
	if err := DeleteLink(tap, OwnerPrefix+"someone-else"); err == nil {
		t.Fatal("deleted a link of another owner")
	}
	if err := DeleteLink(tap, owner); err != nil {
		t.Fatal(err)
	}
	if err := DeleteLink(br, owner); err != nil {
		t.Fatal(err)
	}
	if err := DeleteLink(br, owner); err != nil {
		t.Fatalf("deleting a missing link: %v", err)
	}
	// Other daemons may change the host meanwhile: compare only our names.
	for _, name := range []string{br, tap} {
		if strings.Contains(links(), name) {
			t.Fatalf("%s left behind", name)
		}
	}
	if strings.Contains(rules(), "jevm:"+br) {
		t.Fatalf("rules left behind:\n%s", rules())
	}
}

// rootHost is the host networking backend for a test that changes the
// host's links and rules (skipped without root or iptables), with a
// suffix for the test's link names and their owner alias.
func rootHost(t *testing.T) (h *Host, suffix, owner string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	h, err := NewHost()
	if err != nil {
		t.Skip(err)
	}
	suffix = fmt.Sprintf("%05d", os.Getpid()%100000)
	return h, suffix, OwnerPrefix + "test-" + suffix
}
