package network

// Virtual IPs of swarm services on overlay networks. dockerd balances a
// service's VIP with IPVS inside each container's namespace; a jeVM has
// no such namespace on the host, so the node does it: the VIP is an
// address of the network's bridge on every node (only the local VMs can
// ask for it: the VXLAN device answers remote ARP requests from its own
// table), and a connection to it is DNATed to one of the service's tasks,
// at random, and SNATed to the node's address on the network so that the
// reply comes back through the same node, wherever the task runs.

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

func vipComment(bridge string) string { return OwnerPrefix + bridge + ":vip" }

var vipChains = [][2]string{{"nat", "PREROUTING"}, {"nat", "POSTROUTING"}}

// SetVIPRules makes bridge's virtual IP rules exactly vips (each VIP's
// backends); self is the node's address on the network. The new rules
// (a generation of their own, "a" or "b" in their comment) are added
// before the old ones go, after them in PREROUTING: a connection made
// meanwhile takes the old ones, never none.
func (h *Host) SetVIPRules(bridge string, self netip.Addr, vips map[netip.Addr][]netip.Addr) error {
	if h.ipt == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	gen := vipComment(bridge) + ":a"
	if has, err := hasOwnRule(h.ipt, gen, vipChains); err != nil {
		return err
	} else if has {
		gen = vipComment(bridge) + ":b"
	}
	if err := h.addVIPRules(bridge, gen, self, vips); err != nil {
		_ = deleteOwnRules(h.ipt, func(c string) bool { return c == gen }, vipChains)
		return err
	}
	return deleteOwnRules(h.ipt, func(c string) bool { return strings.HasPrefix(c, vipComment(bridge)) && c != gen }, vipChains)
}

func (h *Host) addVIPRules(bridge, comment string, self netip.Addr, vips map[netip.Addr][]netip.Addr) error {
	if len(vips) == 0 {
		return nil
	}
	c := []string{"-m", "comment", "--comment", comment}
	keys := make([]netip.Addr, 0, len(vips))
	for v := range vips {
		keys = append(keys, v)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	for _, vip := range keys {
		backends := vips[vip]
		for i, b := range backends {
			spec := []string{"-i", bridge, "-d", vip.String() + "/32"}
			if left := len(backends) - i; left > 1 {
				// Each rule takes 1/left of what the ones above left:
				// every backend gets the same share.
				spec = append(spec, "-m", "statistic", "--mode", "random", "--probability", strconv.FormatFloat(1/float64(left), 'f', 6, 64))
			}
			spec = append(append(spec, "-j", "DNAT", "--to-destination", b.String()), c...)
			if err := h.ipt.Append("nat", "PREROUTING", spec...); err != nil {
				return fmt.Errorf("iptables -t nat -A PREROUTING (VIP %s): %w", vip, err)
			}
		}
	}
	// What was DNATed out of the bridge is VIP traffic (published ports
	// go through proxies): it leaves from the node's own address.
	spec := append([]string{"-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", "-j", "SNAT", "--to-source", self.String()}, c...)
	if err := h.ipt.Insert("nat", "POSTROUTING", 1, spec...); err != nil {
		return fmt.Errorf("iptables -t nat -I POSTROUTING (VIP SNAT): %w", err)
	}
	return nil
}

// commentOf is the comment of a line of iptables -S.
func commentOf(line string) string {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "--comment" {
			return strings.Trim(f[i+1], `"`)
		}
	}
	return ""
}

// hasOwnRule reports whether a rule with comment is in the chains.
func hasOwnRule(ipt *iptables.IPTables, comment string, chains [][2]string) (bool, error) {
	for _, tc := range chains {
		list, err := ipt.List(tc[0], tc[1])
		if err != nil {
			return false, err
		}
		for _, line := range list {
			if commentOf(line) == comment {
				return true, nil
			}
		}
	}
	return false, nil
}

// deleteOwnRules deletes the rules of the chains whose comment match
// says are to go.
func deleteOwnRules(ipt *iptables.IPTables, match func(comment string) bool, chains [][2]string) error {
	var errs []error
	for _, tc := range chains {
		list, err := ipt.List(tc[0], tc[1])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, line := range list {
			c := commentOf(line)
			if c == "" || !match(c) {
				continue
			}
			spec, ok := ownRule(line, tc[1], c)
			if !ok {
				continue
			}
			if err := ipt.Delete(tc[0], tc[1], spec...); err != nil {
				errs = append(errs, fmt.Errorf("iptables -t %s -D %s: %w", tc[0], tc[1], err))
			}
		}
	}
	return errors.Join(errs...)
}
