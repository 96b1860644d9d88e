package network

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/go-connections/nat"
)

// PortBinding is one published port: host address and port(s) to a
// container port. HostPort 0 asks for a free ephemeral port; HostPortEnd
// above HostPort is a range to pick the first free port from (-p
// 8000-8010:80).
type PortBinding struct {
	Proto         string     `json:"proto"` // "tcp", "udp" or "sctp"
	ContainerPort uint16     `json:"containerPort"`
	HostIP        netip.Addr `json:"hostIp"` // zero: all IPv4 addresses (0.0.0.0)
	HostPort      uint16     `json:"hostPort"`
	HostPortEnd   uint16     `json:"hostPortEnd,omitempty"`
}

// Key is the container side of a binding as the API names it: "80/tcp".
func (b PortBinding) Key() nat.Port {
	return nat.Port(strconv.Itoa(int(b.ContainerPort)) + "/" + b.Proto)
}

// HostIPString is the host address as dockerd reports it ("0.0.0.0" for
// all addresses).
func (b PortBinding) HostIPString() string {
	if !b.HostIP.IsValid() {
		return "0.0.0.0"
	}
	return b.HostIP.String()
}

func (b PortBinding) String() string {
	hp := strconv.Itoa(int(b.HostPort))
	if b.HostPortEnd > b.HostPort {
		hp += "-" + strconv.Itoa(int(b.HostPortEnd))
	}
	return fmt.Sprintf("%s:%s->%d/%s", b.HostIPString(), hp, b.ContainerPort, b.Proto)
}

// ParsePortBindings turns HostConfig.PortBindings (plus, with publishAll
// (-P), every exposed port that has no binding) into a sorted list of
// bindings, one per host port to open. It validates what the CLI may have
// let through and what another API client may send.
func ParsePortBindings(bindings nat.PortMap, exposed nat.PortSet, publishAll bool) ([]PortBinding, error) {
	var out []PortBinding
	seen := map[nat.Port]bool{}
	for port, list := range bindings {
		proto, cport, err := parseContainerPort(port)
		if err != nil {
			return nil, err
		}
		seen[port] = true
		if len(list) == 0 {
			list = []nat.PortBinding{{}}
		}
		for _, hb := range list {
			b := PortBinding{Proto: proto, ContainerPort: cport}
			if hb.HostIP != "" {
				ip, err := netip.ParseAddr(strings.Trim(hb.HostIP, "[]"))
				if err != nil {
					return nil, fmt.Errorf("invalid host IP %q in port binding for %s", hb.HostIP, port)
				}
				if !ip.IsUnspecified() || ip.Is6() {
					b.HostIP = ip
				}
			}
			if hb.HostPort != "" {
				lo, hi, err := nat.ParsePortRangeToInt(hb.HostPort)
				if err != nil || lo < 0 || hi > 65535 || hi < lo {
					return nil, fmt.Errorf("invalid host port %q in port binding for %s", hb.HostPort, port)
				}
				b.HostPort = uint16(lo)
				if hi > lo {
					b.HostPortEnd = uint16(hi)
				}
			}
			out = append(out, b)
		}
	}
	if publishAll {
		for port := range exposed {
			if seen[port] {
				continue
			}
			proto, cport, err := parseContainerPort(port)
			if err != nil {
				return nil, err
			}
			out = append(out, PortBinding{Proto: proto, ContainerPort: cport})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ContainerPort != b.ContainerPort {
			return a.ContainerPort < b.ContainerPort
		}
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		if a.HostIP != b.HostIP {
			return a.HostIP.Less(b.HostIP)
		}
		return a.HostPort < b.HostPort
	})
	return out, nil
}

func parseContainerPort(port nat.Port) (string, uint16, error) {
	proto := port.Proto()
	switch proto {
	case "tcp", "udp":
	case "sctp":
		return "", 0, fmt.Errorf("publishing sctp port %s is not supported by jevm", port)
	default:
		return "", 0, fmt.Errorf("invalid protocol %q in port %s", proto, port)
	}
	lo, hi, err := port.Range()
	if err != nil || lo <= 0 || lo > 65535 {
		return "", 0, fmt.Errorf("invalid container port %q", string(port))
	}
	if hi != lo {
		// The CLI expands container port ranges into single ports.
		return "", 0, fmt.Errorf("invalid container port %q: ranges must be expanded", string(port))
	}
	return proto, uint16(lo), nil
}

// PortMap renders bindings (with their actual host ports) as the API's
// NetworkSettings.Ports, listing exposed ports without bindings with no
// host side as dockerd does.
func PortMap(bindings []PortBinding, exposed nat.PortSet) nat.PortMap {
	pm := nat.PortMap{}
	for p := range exposed {
		pm[p] = nil
	}
	for _, b := range bindings {
		pm[b.Key()] = append(pm[b.Key()], nat.PortBinding{HostIP: b.HostIPString(), HostPort: strconv.Itoa(int(b.HostPort))})
	}
	return pm
}
