//go:build linux

package guestagent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// tcpListen is the TCP_LISTEN state of sock_diag's idiag_state.
const tcpListen = 10

// abortTCPFrom aborts every TCP connection whose local address is in gone
// (by net.IP.String: an IPv6 socket's IPv4 connection, v4-mapped, is
// named as IPv4), IPv4 and IPv6 alike, with sock_diag's SOCK_DESTROY
// (the kernel's tcp_abort: the peer gets a reset, the owner ECONNABORTED).
// It returns how many it aborted and what went wrong on the way.
func abortTCPFrom(gone map[string]bool) (int, []error) {
	if len(gone) == 0 {
		return 0, nil
	}
	var errs []error
	n := 0
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := netlink.SocketDiagTCP(family)
		if err != nil {
			errs = append(errs, fmt.Errorf("list TCP connections (family %d): %w", family, err))
			continue
		}
		for _, s := range socks {
			if s.State == tcpListen || !gone[s.ID.Source.String()] {
				continue
			}
			err := destroyTCP(s)
			if errors.Is(err, unix.ENOENT) {
				continue // closed since the dump (its peer, aborted first, reset it)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("abort TCP connection %s -> %s: %w",
					net.JoinHostPort(s.ID.Source.String(), fmt.Sprint(s.ID.SourcePort)),
					net.JoinHostPort(s.ID.Destination.String(), fmt.Sprint(s.ID.DestinationPort)), err))
				continue
			}
			n++
		}
	}
	return n, errs
}

// destroyTCP sends SOCK_DESTROY for the socket s of a sock_diag dump. It
// names the socket by family, addresses, ports, interface and the dump's
// cookie, so that nothing but that socket matches. (The netlink
// library's SocketDestroy takes IPv4 only, and no cookie.)
func destroyTCP(s *netlink.Socket) error {
	req := nl.NewNetlinkRequest(nl.SOCK_DESTROY, unix.NLM_F_ACK)
	req.AddData(inetDiagReq{family: s.Family, id: s.ID})
	_, err := req.Execute(unix.NETLINK_INET_DIAG, 0)
	return err
}

// inetDiagReq is the kernel's struct inet_diag_req_v2 for one TCP socket
// (linux/inet_diag.h): family, protocol, ext, pad, states, then the
// inet_diag_sockid (ports and addresses in network order, the rest in
// the host's).
type inetDiagReq struct {
	family uint8
	id     netlink.SocketID
}

const sizeofInetDiagReq = 56

func (r inetDiagReq) Len() int { return sizeofInetDiagReq }

func (r inetDiagReq) Serialize() []byte {
	b := make([]byte, sizeofInetDiagReq)
	b[0] = r.family
	b[1] = unix.IPPROTO_TCP
	// b[2] (ext), b[3] (pad), b[4:8] (states): 0, as a destroy wants.
	binary.BigEndian.PutUint16(b[8:], r.id.SourcePort)
	binary.BigEndian.PutUint16(b[10:], r.id.DestinationPort)
	putDiagAddr(b[12:28], r.family, r.id.Source)
	putDiagAddr(b[28:44], r.family, r.id.Destination)
	binary.NativeEndian.PutUint32(b[44:], r.id.Interface)
	binary.NativeEndian.PutUint32(b[48:], r.id.Cookie[0])
	binary.NativeEndian.PutUint32(b[52:], r.id.Cookie[1])
	return b
}

// putDiagAddr writes ip into a sockid's 16-byte address: its 4 bytes
// first for IPv4, all 16 for IPv6 (a v4-mapped one as such).
func putDiagAddr(dst []byte, family uint8, ip net.IP) {
	if family == unix.AF_INET6 {
		copy(dst, ip.To16())
		return
	}
	copy(dst, ip.To4())
}
