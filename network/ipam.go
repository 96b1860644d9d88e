// Package network is the host side of jevm's container networking: IPv4
// address management (IPAM), Linux bridges and tap devices, NAT rules, the
// embedded DNS server of user-defined networks, and the userland proxies
// that publish container ports on the host. It knows nothing about
// containers; the daemon (daemon/network.go) ties it to them. See
// docs/NETWORKING.md.
package network

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
)

// AddressPool is one of dockerd's default address pools
// (`--default-address-pool base=10.10.0.0/16,size=24`, daemon.json
// "default-address-pools"): Base is split, in address order, into subnets
// of prefix length Size, which networks without a --subnet take.
type AddressPool struct {
	Base netip.Prefix
	Size int
}

// Validate checks that the pool can be split: a base without host bits,
// and Size between the base's prefix length and 30 for IPv4 (a /31 or /32
// has no room for a gateway and a container) or 126 for IPv6. IPv6 pools
// give the subnets of IPv6 networks (as dockerd's: an admin's IPv6 pool
// replaces the ULA pool jevm derives otherwise).
func (p AddressPool) Validate() error {
	maxSize := 30
	if p.Base.IsValid() && p.Base.Addr().Is6() {
		maxSize = 126
	}
	switch {
	case !p.Base.IsValid():
		return errors.New("the base is not a CIDR prefix (such as 10.10.0.0/16)")
	case p.Base.Addr().Is4In6():
		return errors.New("an IPv4-mapped IPv6 base is not a pool")
	case p.Base != p.Base.Masked():
		return fmt.Errorf("the base has host bits set (did you mean %s?)", p.Base.Masked())
	case p.Size < p.Base.Bits():
		return fmt.Errorf("size %d is smaller than the base's prefix length %d", p.Size, p.Base.Bits())
	case p.Size > maxSize:
		return fmt.Errorf("size %d is larger than %d: a network needs room for a gateway and a container", p.Size, maxSize)
	}
	return nil
}

// Is6 reports whether p is an IPv6 pool.
func (p AddressPool) Is6() bool { return p.Base.Addr().Is6() }

// String is dockerd's flag syntax.
func (p AddressPool) String() string { return fmt.Sprintf("base=%s,size=%d", p.Base, p.Size) }

// DefaultAddressPools are dockerd's built-in pools: 172.17.0.0/16 to
// 172.31.0.0/16 whole, then 192.168.0.0/16 in /20s. They apply when the
// daemon is given none.
var DefaultAddressPools = func() []AddressPool {
	var out []AddressPool
	for b := 17; b <= 31; b++ {
		out = append(out, AddressPool{Base: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(b), 0, 0}), 16), Size: 16})
	}
	return append(out, AddressPool{Base: netip.MustParsePrefix("192.168.0.0/16"), Size: 20})
}()

// DefaultPools is DefaultAddressPools expanded: the candidate subnets in
// the order they are taken. The predefined bridge network takes the first
// free one (172.17.0.0/16 unless a host route overlaps it), user networks
// the next free ones.
var DefaultPools = slices.Collect(ExpandPools(DefaultAddressPools))

// ExpandPools yields the candidate subnets of the IPv4 pools in order:
// each base split into /Size subnets from its lowest address up. The
// sequence is generated lazily, since a pool such as 10.0.0.0/8 in /30s
// has four million subnets. Pools that fail Validate, and IPv6 pools, are
// skipped.
func ExpandPools(pools []AddressPool) iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		for _, p := range pools {
			if p.Validate() != nil || p.Is6() {
				continue
			}
			start, end, step := poolBounds(p)
			for v := start; v < end; v += step {
				if !yield(netip.PrefixFrom(addrFromUint(uint32(v)), p.Size)) {
					return
				}
			}
		}
	}
}

// poolBounds returns p's first address and the address after its last
// (as uint64, so that the end of 255.255.255.255 does not wrap) and the
// distance between its subnets.
func poolBounds(p AddressPool) (start, end, step uint64) {
	start = uint64(addrToUint(p.Base.Addr()))
	return start, start + 1<<(32-p.Base.Bits()), 1 << (32 - p.Size)
}

// ErrPoolsExhausted is returned when every default pool overlaps a taken
// subnet (dockerd's message).
var ErrPoolsExhausted = errors.New("all predefined address pools have been fully subnetted")

// Overlaps reports whether two prefixes share any address.
func Overlaps(a, b netip.Prefix) bool {
	a, b = a.Masked(), b.Masked()
	return a.Overlaps(b)
}

// PickSubnet returns the first pool that overlaps none of taken.
func PickSubnet(pools, taken []netip.Prefix) (netip.Prefix, error) {
	return PickSubnetFrom(slices.Values(pools), taken)
}

// PickSubnetFrom returns the first candidate that overlaps none of taken.
func PickSubnetFrom(cands iter.Seq[netip.Prefix], taken []netip.Prefix) (netip.Prefix, error) {
next:
	for p := range cands {
		for _, t := range taken {
			if Overlaps(p, t) {
				continue next
			}
		}
		return p, nil
	}
	return netip.Prefix{}, ErrPoolsExhausted
}

// PickPoolSubnet is PickSubnetFrom(ExpandPools(pools), taken), but it
// jumps over the candidates a wide taken prefix covers instead of trying
// them one by one: a host route over 10.0.0.0/8 must not cost four million
// steps for a pool of /30s. IPv6 pools are skipped (PickPoolSubnet6).
func PickPoolSubnet(pools []AddressPool, taken []netip.Prefix) (netip.Prefix, error) {
	for _, p := range pools {
		if p.Validate() != nil || p.Is6() {
			continue
		}
		start, end, step := poolBounds(p)
		for v := start; v < end; {
			cand := netip.PrefixFrom(addrFromUint(uint32(v)), p.Size)
			next := v + step
			hit := false
			for _, t := range taken {
				if !Overlaps(cand, t) {
					continue
				}
				hit = true
				// Candidates are aligned to step, so the first one
				// past t is t's end rounded up to a multiple of step.
				if after := uint64(addrToUint(lastAddr(t))) + 1; after > next {
					next = (after + step - 1) / step * step
				}
			}
			if !hit {
				return cand, nil
			}
			v = next
		}
	}
	return netip.Prefix{}, ErrPoolsExhausted
}

// PickPoolSubnet6 returns the first /Size subnet of the IPv6 pools, in
// order, that overlaps none of taken, jumping over what a taken prefix
// covers (a /48 pool has 65536 /64s).
func PickPoolSubnet6(pools []AddressPool, taken []netip.Prefix) (netip.Prefix, error) {
	for _, p := range pools {
		if p.Validate() != nil || !p.Is6() {
			continue
		}
		cand := netip.PrefixFrom(p.Base.Addr(), p.Size)
		for cand.IsValid() && p.Base.Contains(cand.Addr()) {
			widest, hit := cand, false
			for _, t := range taken {
				if Overlaps(cand, t) {
					hit = true
					if t.Bits() < widest.Bits() {
						widest = t.Masked()
					}
				}
			}
			if !hit {
				return cand, nil
			}
			// The next candidate starts after the widest overlapping
			// prefix (aligned to Size, since a prefix at least as wide
			// as cand ends on a Size boundary).
			next := lastAddr(widest).Next()
			if !next.IsValid() {
				break
			}
			cand = netip.PrefixFrom(next, p.Size)
		}
	}
	return netip.Prefix{}, ErrPoolsExhausted
}

// ULAPool is dockerd's IPv6 pool where the admin configures none: the
// unique local /48 fdXX:XXXX:XXXX::/48 whose 40-bit global ID comes from
// a hash of seed (dockerd's host ID; jevm's daemon instance), split into
// /64s.
func ULAPool(seed string) AddressPool {
	sum := sha256.Sum256([]byte(seed))
	b := [16]byte{0xfd}
	copy(b[1:6], sum[3:8]) // the 40 low bits of the hash's first 8 bytes, as dockerd
	return AddressPool{Base: netip.PrefixFrom(netip.AddrFrom16(b), 48), Size: 64}
}

// InPools reports whether sub is one of the subnets pools expand to (for
// telling whether a persisted subnet still comes from the configured
// pools).
func InPools(pools []AddressPool, sub netip.Prefix) bool {
	for _, p := range pools {
		if p.Validate() == nil && sub.Bits() == p.Size && sub == sub.Masked() && p.Base.Contains(sub.Addr()) {
			return true
		}
	}
	return false
}

func addrToUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addrFromUint(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Pool allocates the addresses of one of a network's subnets (IPv4 or
// IPv6). The network address, the broadcast address (IPv4), the gateway and reserved (auxiliary)
// addresses are never handed out. Dynamic allocations come from Range
// (the whole subnet by default) and go round-robin, as dockerd's do, so a
// released address is not reused at once; static requests (--ip) may name
// any free address of the subnet.
type Pool struct {
	subnet   netip.Prefix
	rng      netip.Prefix
	gateway  netip.Addr
	reserved map[netip.Addr]bool
	used     map[netip.Addr]bool
	last     netip.Addr
}

// NewPool checks the subnet, the optional range (zero: the subnet) and the
// gateway (zero: the first host address) and returns an empty pool.
func NewPool(subnet, ipRange netip.Prefix, gateway netip.Addr) (*Pool, error) {
	if !subnet.IsValid() || subnet.Addr().Is4In6() {
		return nil, fmt.Errorf("invalid subnet %s: not an IPv4 or IPv6 subnet", subnet)
	}
	if subnet != subnet.Masked() {
		return nil, fmt.Errorf("invalid subnet %s: it has host bits set (did you mean %s?)", subnet, subnet.Masked())
	}
	if (subnet.Addr().Is4() && subnet.Bits() > 30) || subnet.Bits() > 126 {
		return nil, fmt.Errorf("invalid subnet %s: too small for a gateway and a container", subnet)
	}
	if !ipRange.IsValid() {
		ipRange = subnet
	}
	ipRange = ipRange.Masked()
	if ipRange.Addr().Is4() != subnet.Addr().Is4() || ipRange.Bits() < subnet.Bits() || !subnet.Contains(ipRange.Addr()) {
		return nil, fmt.Errorf("invalid ip-range %s: it is not within the subnet %s", ipRange, subnet)
	}
	if !gateway.IsValid() {
		gateway = subnet.Addr().Next()
	}
	if !subnet.Contains(gateway) {
		return nil, fmt.Errorf("invalid gateway %s: it is not within the subnet %s", gateway, subnet)
	}
	if gateway == subnet.Addr() || (gateway.Is4() && gateway == lastAddr(subnet)) {
		return nil, fmt.Errorf("invalid gateway %s: it is the network or broadcast address of %s", gateway, subnet)
	}
	return &Pool{
		subnet: subnet, rng: ipRange, gateway: gateway,
		reserved: map[netip.Addr]bool{}, used: map[netip.Addr]bool{},
	}, nil
}

// Subnet, Range and Gateway return the pool's parameters.
func (p *Pool) Subnet() netip.Prefix { return p.subnet }
func (p *Pool) Range() netip.Prefix  { return p.rng }
func (p *Pool) Gateway() netip.Addr  { return p.gateway }

// Reserve excludes an auxiliary address from allocation.
func (p *Pool) Reserve(a netip.Addr) error {
	if !p.subnet.Contains(a) {
		return fmt.Errorf("auxiliary address %s is not within the subnet %s", a, p.subnet)
	}
	p.reserved[a] = true
	return nil
}

// usable reports whether a is a host address of the subnet that is neither
// the gateway nor reserved. IPv4 subnets lose their network and broadcast
// addresses; IPv6 ones (no broadcast) their subnet-router anycast address
// (the all-zero host part), as with dockerd.
func (p *Pool) usable(a netip.Addr) bool {
	return p.subnet.Contains(a) && a != p.subnet.Addr() && (a.Is6() || a != lastAddr(p.subnet)) &&
		a != p.gateway && !p.reserved[a]
}

// InUse reports whether a is allocated.
func (p *Pool) InUse(a netip.Addr) bool { return p.used[a] }

// Request allocates a specific address (--ip, or an allocation restored
// from disk).
func (p *Pool) Request(a netip.Addr) error {
	if !p.subnet.Contains(a) {
		return fmt.Errorf("invalid address %s: it does not belong to the network's subnet %s", a, p.subnet)
	}
	if !p.usable(a) {
		return fmt.Errorf("address %s is the network, broadcast, gateway or a reserved address of %s", a, p.subnet)
	}
	if p.used[a] {
		return fmt.Errorf("Address already in use: %s", a)
	}
	p.used[a] = true
	return nil
}

// Allocate hands out the next free address of the range after the last
// one handed out, wrapping around.
func (p *Pool) Allocate() (netip.Addr, error) {
	first := p.rng.Addr()
	end := lastAddr(p.rng)
	start := first
	if p.last.IsValid() && p.rng.Contains(p.last) && p.last != end {
		start = p.last.Next()
	}
	a := start
	for {
		if p.usable(a) && !p.used[a] {
			p.used[a] = true
			p.last = a
			return a, nil
		}
		if a == end {
			a = first
		} else {
			a = a.Next()
		}
		if a == start {
			fam := "IPv4"
			if first.Is6() {
				fam = "IPv6"
			}
			return netip.Addr{}, fmt.Errorf("no available %s addresses on this network's address pools: %s", fam, p.rng)
		}
	}
}

// Release frees an address.
func (p *Pool) Release(a netip.Addr) { delete(p.used, a) }

// SetLast restores the round-robin position (persisted with the network).
func (p *Pool) SetLast(a netip.Addr) {
	if p.rng.Contains(a) {
		p.last = a
	}
}

// Last is the address handed out most recently.
func (p *Pool) Last() netip.Addr { return p.last }

// lastAddr is the highest address of a prefix (for IPv4 the broadcast
// address).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if a.Is4() {
		v := addrToUint(a)
		if host := 32 - p.Bits(); host == 32 {
			v = ^uint32(0)
		} else {
			v |= (uint32(1) << host) - 1
		}
		return addrFromUint(v)
	}
	b := a.As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

// LastAddr is the highest address of p.
func LastAddr(p netip.Prefix) netip.Addr { return lastAddr(p) }

// MACFor derives a container's MAC address from its IPv4 address as dockerd
// does: 02:42 followed by the four address bytes (locally administered,
// unicast, and unique per address).
func MACFor(a netip.Addr) string {
	if !a.Is4() {
		return RandomMAC()
	}
	b := a.As4()
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// RandomMAC is a random locally administered unicast MAC address, dockerd's
// choice for an endpoint without an IPv4 address.
func RandomMAC() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	b[0] = b[0]&0xfe | 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}
