package network

import (
	"net/netip"
	"os"
	"strings"
)

// ResolvConf is the part of a resolv.conf file that matters to containers.
type ResolvConf struct {
	Nameservers []string
	Search      []string
	Options     []string
}

// HostResolvConfPath is the host's resolver configuration.
const HostResolvConfPath = "/etc/resolv.conf"

// ReadResolvConf reads a resolv.conf file; a missing file is empty.
func ReadResolvConf(path string) (ResolvConf, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return ResolvConf{}, nil
		}
		return ResolvConf{}, err
	}
	return ParseResolvConf(string(b)), nil
}

// ParseResolvConf parses resolv.conf content (the last search/domain line
// wins, as in glibc).
func ParseResolvConf(s string) ResolvConf {
	var rc ResolvConf
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			rc.Nameservers = append(rc.Nameservers, f[1])
		case "search", "domain":
			rc.Search = append([]string(nil), f[1:]...)
		case "options":
			rc.Options = append(rc.Options, f[1:]...)
		}
	}
	return rc
}

// String renders the file.
func (rc ResolvConf) String() string {
	var b strings.Builder
	if len(rc.Search) > 0 {
		b.WriteString("search " + strings.Join(rc.Search, " ") + "\n")
	}
	for _, ns := range rc.Nameservers {
		b.WriteString("nameserver " + ns + "\n")
	}
	if len(rc.Options) > 0 {
		b.WriteString("options " + strings.Join(rc.Options, " ") + "\n")
	}
	return b.String()
}

// DefaultNameservers are what dockerd falls back to when the host has no
// resolver a container can reach.
var DefaultNameservers = []string{"8.8.8.8", "8.8.4.4"}

// ReachableNameservers drops loopback resolvers (a container cannot reach
// the host's 127.0.0.53) and IPv6 ones (jeVMs have no IPv6), falling back
// to DefaultNameservers as dockerd does.
func ReachableNameservers(ns []string) []string {
	var out []string
	for _, s := range ns {
		a, err := netip.ParseAddr(s)
		if err != nil || a.IsLoopback() || !a.Is4() {
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return append([]string(nil), DefaultNameservers...)
	}
	return out
}

// UpstreamAddrs turns nameserver addresses into "ip:53" for the embedded
// DNS server; IPv6 and invalid entries are skipped.
func UpstreamAddrs(ns []string) []string {
	var out []string
	for _, s := range ns {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53).String())
	}
	return out
}
