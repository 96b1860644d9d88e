package network

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultPoolsAreDefaultAddressPools(t *testing.T) {
	// dockerd's built-in pools: 15 whole /16s, then 192.168.0.0/16 in
	// sixteen /20s.
	if len(DefaultPools) != 31 || DefaultPools[0] != mustPrefix("172.17.0.0/16") ||
		DefaultPools[14] != mustPrefix("172.31.0.0/16") || DefaultPools[15] != mustPrefix("192.168.0.0/20") ||
		DefaultPools[30] != mustPrefix("192.168.240.0/20") {
		t.Fatalf("DefaultPools = %v", DefaultPools)
	}
	for _, p := range DefaultAddressPools {
		if err := p.Validate(); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
}

func TestExpandPools(t *testing.T) {
	pools := []AddressPool{{Base: mustPrefix("10.10.0.0/16"), Size: 24}, {Base: mustPrefix("192.168.4.0/22"), Size: 23}}
	got := slices.Collect(ExpandPools(pools))
	if len(got) != 256+2 || got[0] != mustPrefix("10.10.0.0/24") || got[1] != mustPrefix("10.10.1.0/24") ||
		got[255] != mustPrefix("10.10.255.0/24") || got[256] != mustPrefix("192.168.4.0/23") || got[257] != mustPrefix("192.168.6.0/23") {
		t.Fatalf("expanded %d: %v ... %v", len(got), got[:2], got[len(got)-3:])
	}
	// Size equal to the base's length: the base itself.
	if got := slices.Collect(ExpandPools([]AddressPool{{Base: mustPrefix("172.20.0.0/16"), Size: 16}})); len(got) != 1 || got[0] != mustPrefix("172.20.0.0/16") {
		t.Fatalf("whole base = %v", got)
	}
	// Lazy: the whole IPv4 space in /30s (a billion subnets) is not
	// generated to take three; the top of the space does not wrap.
	start := time.Now()
	var first []netip.Prefix
	for p := range ExpandPools([]AddressPool{{Base: mustPrefix("0.0.0.0/0"), Size: 30}}) {
		first = append(first, p)
		if len(first) == 3 {
			break
		}
	}
	if fmt.Sprint(first) != "[0.0.0.0/30 0.0.0.4/30 0.0.0.8/30]" || time.Since(start) > time.Second {
		t.Fatalf("lazy expansion = %v in %v", first, time.Since(start))
	}
	n := 0
	for p := range ExpandPools([]AddressPool{{Base: mustPrefix("255.255.255.0/24"), Size: 26}}) {
		n++
		if n == 4 && p != mustPrefix("255.255.255.192/26") {
			t.Fatalf("last subnet %v", p)
		}
	}
	if n != 4 {
		t.Fatalf("top of the space: %d subnets", n)
	}
	// Invalid pools are skipped.
	if got := slices.Collect(ExpandPools([]AddressPool{{Base: mustPrefix("10.0.0.0/24"), Size: 31}})); len(got) != 0 {
		t.Fatalf("invalid pool expanded to %v", got)
	}
}

func TestPickPoolSubnet(t *testing.T) {
	pools := []AddressPool{{Base: mustPrefix("10.10.0.0/16"), Size: 24}, {Base: mustPrefix("10.20.0.0/16"), Size: 16}}
	for _, tc := range []struct {
		taken []string
		want  string
	}{
		{nil, "10.10.0.0/24"},
		{[]string{"10.10.0.0/24"}, "10.10.1.0/24"},
		// A wide route covers several candidates; a narrow one (a /28
		// inside 10.10.2.0/24) takes its whole candidate.
		{[]string{"10.10.0.0/23", "10.10.2.16/28"}, "10.10.3.0/24"},
		// The first pool full: the next pool.
		{[]string{"10.10.0.0/16"}, "10.20.0.0/16"},
		{[]string{"10.0.0.0/8"}, ""},
		// IPv6 routes never overlap.
		{[]string{"fd00::/8"}, "10.10.0.0/24"},
	} {
		var taken []netip.Prefix
		for _, s := range tc.taken {
			taken = append(taken, mustPrefix(s))
		}
		got, err := PickPoolSubnet(pools, taken)
		if tc.want == "" {
			if !errors.Is(err, ErrPoolsExhausted) {
				t.Errorf("taken %v: %v, %v; want exhausted", tc.taken, got, err)
			}
		} else if err != nil || got != mustPrefix(tc.want) {
			t.Errorf("taken %v: %v, %v; want %s", tc.taken, got, err, tc.want)
		}
		// The same answer as trying every candidate in order.
		slow, slowErr := PickSubnetFrom(ExpandPools(pools), taken)
		if slow != got || (slowErr == nil) != (err == nil) {
			t.Errorf("taken %v: PickPoolSubnet %v %v, PickSubnetFrom %v %v", tc.taken, got, err, slow, slowErr)
		}
	}
	// Four million /30s under a route over half of them, or all of
	// them: no walk through each.
	huge := []AddressPool{{Base: mustPrefix("10.0.0.0/8"), Size: 30}}
	start := time.Now()
	if got, err := PickPoolSubnet(huge, []netip.Prefix{mustPrefix("10.0.0.0/9")}); err != nil || got != mustPrefix("10.128.0.0/30") {
		t.Fatalf("huge pool = %v, %v", got, err)
	}
	if _, err := PickPoolSubnet(huge, []netip.Prefix{mustPrefix("10.0.0.0/8")}); !errors.Is(err, ErrPoolsExhausted) {
		t.Fatalf("huge pool, all taken: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("huge pool took %v", d)
	}
	// The built-in pools give what PickSubnet always gave.
	taken := []netip.Prefix{mustPrefix("172.16.0.0/12"), mustPrefix("192.168.0.0/20")}
	if got, _ := PickPoolSubnet(DefaultAddressPools, taken); got != mustPrefix("192.168.16.0/20") {
		t.Fatalf("default pools = %v", got)
	}
}

func TestAddressPoolValidate(t *testing.T) {
	for _, tc := range []struct {
		pool AddressPool
		want string
	}{
		{AddressPool{Base: mustPrefix("10.10.0.0/16"), Size: 24}, ""},
		{AddressPool{Base: mustPrefix("10.10.0.0/16"), Size: 16}, ""},
		{AddressPool{Base: mustPrefix("10.10.0.0/16"), Size: 30}, ""},
		{AddressPool{Size: 24}, "not a CIDR prefix"},
		{AddressPool{Base: mustPrefix("fd00::/48"), Size: 64}, ""},
		{AddressPool{Base: mustPrefix("fd00::/48"), Size: 127}, "size 127 is larger than 126"},
		{AddressPool{Base: mustPrefix("::ffff:10.0.0.0/104"), Size: 120}, "IPv4-mapped"},
		{AddressPool{Base: mustPrefix("10.10.1.0/16"), Size: 24}, "did you mean 10.10.0.0/16"},
		{AddressPool{Base: mustPrefix("10.10.0.0/16"), Size: 8}, "size 8 is smaller than the base's prefix length 16"},
		{AddressPool{Base: mustPrefix("10.10.0.0/16"), Size: 31}, "size 31 is larger than 30"},
	} {
		err := tc.pool.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.pool, err, tc.want)
		}
	}
}

func TestInPools(t *testing.T) {
	pools := []AddressPool{{Base: mustPrefix("10.10.0.0/16"), Size: 24}}
	for s, want := range map[string]bool{
		"10.10.7.0/24": true, "10.10.7.0/25": false, "10.10.0.0/16": false, "10.11.0.0/24": false, "10.10.7.1/24": false,
	} {
		if InPools(pools, mustPrefix(s)) != want {
			t.Errorf("InPools(%s) != %v", s, want)
		}
	}
	if !InPools(DefaultAddressPools, mustPrefix("172.17.0.0/16")) || !InPools(DefaultAddressPools, mustPrefix("192.168.32.0/20")) || InPools(DefaultAddressPools, mustPrefix("172.30.0.0/24")) {
		t.Error("InPools of the default pools")
	}
}

func TestPickPoolSubnet6(t *testing.T) {
	pools := []AddressPool{{Base: mustPrefix("10.10.0.0/16"), Size: 24}, {Base: mustPrefix("fd12:3456:789a::/48"), Size: 64}}
	for _, tc := range []struct {
		taken []string
		want  string
	}{
		{nil, "fd12:3456:789a::/64"},
		{[]string{"fd12:3456:789a::/64"}, "fd12:3456:789a:1::/64"},
		// IPv4 prefixes never overlap IPv6 candidates.
		{[]string{"10.10.0.0/16", "0.0.0.0/1"}, "fd12:3456:789a::/64"},
		// A wide route is jumped over in one step, a narrow one takes
		// its whole /64.
		{[]string{"fd12:3456:789a::/56", "fd12:3456:789a:100::5/128"}, "fd12:3456:789a:101::/64"},
		{[]string{"fd12:3456:789a::/48"}, "exhausted"},
		{[]string{"fc00::/7"}, "exhausted"},
	} {
		var taken []netip.Prefix
		for _, s := range tc.taken {
			taken = append(taken, mustPrefix(s))
		}
		got, err := PickPoolSubnet6(pools, taken)
		if tc.want == "exhausted" {
			if !errors.Is(err, ErrPoolsExhausted) || err.Error() != "all predefined address pools have been fully subnetted" {
				t.Errorf("taken %v: %v %v, want exhausted", tc.taken, got, err)
			}
			continue
		}
		if err != nil || got != mustPrefix(tc.want) {
			t.Errorf("taken %v: %v %v, want %s", tc.taken, got, err, tc.want)
		}
	}
	// The IPv4 picker ignores IPv6 pools.
	if got, err := PickPoolSubnet([]AddressPool{{Base: mustPrefix("fd00::/48"), Size: 64}}, nil); err == nil {
		t.Errorf("PickPoolSubnet took %v from an IPv6 pool", got)
	}
}

func TestULAPool(t *testing.T) {
	a, b := ULAPool("/var/lib/jevm"), ULAPool("/var/lib/jevm")
	c := ULAPool("/other")
	if a != b || a == c || a.Size != 64 || a.Base.Bits() != 48 || a.Base.Addr().As16()[0] != 0xfd || a.Validate() != nil {
		t.Fatalf("ULAPool = %v, %v, %v", a, b, c)
	}
	if !mustPrefix("fc00::/7").Contains(a.Base.Addr()) {
		t.Fatalf("%v is not a unique local address", a)
	}
}

func TestPool6(t *testing.T) {
	p, err := NewPool(mustPrefix("fd00:1::/64"), netip.Prefix{}, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Gateway() != netip.MustParseAddr("fd00:1::1") {
		t.Fatalf("gateway %v", p.Gateway())
	}
	a, err := p.Allocate()
	if err != nil || a != netip.MustParseAddr("fd00:1::2") {
		t.Fatalf("first address %v %v", a, err)
	}
	if err := p.Request(netip.MustParseAddr("fd00:1::")); err == nil {
		t.Fatal("the subnet-router anycast address was handed out")
	}
	if err := p.Request(netip.MustParseAddr("fd00:1::ffff:ffff:ffff:ffff")); err != nil {
		t.Fatalf("the last address of an IPv6 subnet is usable: %v", err)
	}
	if err := p.Request(netip.MustParseAddr("fd00:2::5")); err == nil {
		t.Fatal("an address outside the subnet was accepted")
	}
	// A /126 has the gateway and two more addresses.
	small, err := NewPool(mustPrefix("fd00:3::/126"), netip.Prefix{}, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	got := []netip.Addr{}
	for {
		a, err := small.Allocate()
		if err != nil {
			if !strings.Contains(err.Error(), "no available IPv6 addresses") {
				t.Fatalf("exhausted /126: %v", err)
			}
			break
		}
		got = append(got, a)
	}
	if fmt.Sprint(got) != "[fd00:3::2 fd00:3::3]" {
		t.Fatalf("/126 gave %v", got)
	}
	if _, err := NewPool(mustPrefix("fd00:3::/64"), mustPrefix("10.0.0.0/24"), netip.Addr{}); err == nil {
		t.Fatal("an IPv4 range in an IPv6 subnet was accepted")
	}
	if m := MACFor(netip.MustParseAddr("fd00::2")); len(m) != 17 || m[1] != '2' && m[1] != '6' && m[1] != 'a' && m[1] != 'e' {
		t.Fatalf("MAC for an IPv6 address: %s", m)
	}
}
