package network

import "testing"

// TestHostWithoutFirewall: with --iptables=false the Host runs no iptables
// at all (it has no iptables handle to run it with), whatever the rules.
func TestHostWithoutFirewall(t *testing.T) {
	h := NewHostWithoutFirewall()
	if h.Firewall() {
		t.Fatal("Firewall() is true")
	}
	spec := FirewallSpec{Bridge: "jevm-test", Subnet: mustPrefix("10.99.0.0/24"), Masquerade: true}
	if err := h.SetupFirewall(spec); err != nil {
		t.Fatal(err)
	}
	spec.Internal = true
	if err := h.SetupFirewall(spec); err != nil {
		t.Fatal(err)
	}
	if err := h.TeardownFirewall("jevm-test"); err != nil {
		t.Fatal(err)
	}
}
