package network

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	// github.com/miekg/dns: the DNS message codec and server that CoreDNS
	// and dockerd's own embedded resolver are built on. Writing a DNS
	// parser by hand would be more code and less robust (compression,
	// EDNS0, TCP framing, truncation).
	"github.com/miekg/dns"
	"github.com/sirupsen/logrus"
)

// Names resolves names local to one network for the embedded DNS server.
type Names interface {
	// LookupName returns the addresses (IPv4 and IPv6) of a container
	// name, network alias or short container ID on the network (name is
	// lower case, without the trailing dot); none if it is not local.
	LookupName(name string) []netip.Addr
	// LookupAddr returns the name for a container address on the network.
	LookupAddr(a netip.Addr) (string, bool)
	// Upstreams returns the resolvers ("ip:port") to forward other names
	// to for a query from client; none refuses them (internal networks).
	Upstreams(client netip.Addr) []string
}

// DNSServer is the embedded DNS server of one user-defined network. It
// listens on the network's gateway address (UDP and TCP port 53), answers
// the network's container names, aliases and short IDs itself, and
// forwards anything else to the upstream resolvers (the host's, or the
// container's --dns servers), as dockerd's embedded DNS does at
// 127.0.0.11.
type DNSServer struct {
	names Names
	log   *logrus.Entry

	udp, tcp *dns.Server
	addr     string

	closeOnce sync.Once
	wg        sync.WaitGroup
}

// DNSTTL is the TTL of local answers (dockerd uses 600 s; containers come
// and go, so keep it short).
const DNSTTL = 10

// forwardTimeout bounds one upstream exchange.
const forwardTimeout = 3 * time.Second

// StartDNS listens on ip:port (UDP and TCP) and serves names.
func StartDNS(ip netip.Addr, port int, names Names, log *logrus.Entry) (*DNSServer, error) {
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	// With port 0 (tests), TCP takes the port UDP got.
	addr = pc.LocalAddr().String()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	s := &DNSServer{names: names, log: log.WithField("dns", addr), addr: addr}
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)}
	s.tcp = &dns.Server{Listener: l, Handler: dns.HandlerFunc(s.serve)}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		// Wait until each server runs: Shutdown before that would fail
		// and leave it serving.
		started := make(chan struct{})
		failed := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		s.wg.Add(1)
		go func(srv *dns.Server) {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
			}
		}(srv)
		select {
		case <-started:
		case err := <-failed:
			pc.Close()
			l.Close()
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Addr is the address the server listens on ("ip:port").
func (s *DNSServer) Addr() string { return s.addr }

// Close stops the server.
func (s *DNSServer) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.udp.ShutdownContext(ctx)
		_ = s.tcp.ShutdownContext(ctx)
	})
	s.wg.Wait()
	return nil
}

func (s *DNSServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	resp := s.answer(w, req)
	if resp == nil {
		return
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.WithError(err).Debug("dns: write reply")
	}
}

// answer builds the reply to req (nil: none).
func (s *DNSServer) answer(w dns.ResponseWriter, req *dns.Msg) *dns.Msg {
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNotImplemented)
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	if q.Qclass == dns.ClassINET {
		switch q.Qtype {
		case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
			if addrs := s.names.LookupName(name); len(addrs) > 0 {
				m := new(dns.Msg)
				m.SetReply(req)
				m.Authoritative = true
				m.RecursionAvailable = true
				for _, a := range addrs {
					switch {
					case a.Is4() && q.Qtype != dns.TypeAAAA:
						m.Answer = append(m.Answer, &dns.A{
							Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: DNSTTL},
							A:   net.IP(a.AsSlice()),
						})
					case a.Is6() && q.Qtype != dns.TypeA:
						m.Answer = append(m.Answer, &dns.AAAA{
							Hdr:  dns.RR_Header{Name: q.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: DNSTTL},
							AAAA: net.IP(a.AsSlice()),
						})
					}
				}
				// A name without an address of the asked family (AAAA
				// on an IPv4-only network, A on an IPv6-only one) still
				// exists: NOERROR without an answer, so the client does
				// not ask the upstream.
				return m
			}
		case dns.TypePTR:
			if a, ok := ptrAddr(name); ok {
				if host, ok := s.names.LookupAddr(a); ok {
					m := new(dns.Msg)
					m.SetReply(req)
					m.Authoritative = true
					m.RecursionAvailable = true
					m.Answer = append(m.Answer, &dns.PTR{
						Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: DNSTTL},
						Ptr: dns.Fqdn(host),
					})
					return m
				}
			}
		}
	}
	return s.forward(w, req)
}

// forward asks the upstream resolvers in turn; the first answer wins.
func (s *DNSServer) forward(w dns.ResponseWriter, req *dns.Msg) *dns.Msg {
	var client netip.Addr
	netw := "udp"
	switch ra := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		client, _ = netip.AddrFromSlice(ra.IP)
	case *net.TCPAddr:
		client, _ = netip.AddrFromSlice(ra.IP)
		netw = "tcp"
	}
	client = client.Unmap()
	ups := s.names.Upstreams(client)
	if len(ups) == 0 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeRefused)
		return m
	}
	c := &dns.Client{Net: netw, Timeout: forwardTimeout}
	for _, up := range ups {
		resp, _, err := c.Exchange(req, up)
		if err != nil {
			s.log.WithError(err).WithField("upstream", up).Debug("dns: forward")
			continue
		}
		resp.Id = req.Id
		return resp
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	return m
}

// ptrAddr parses "4.3.2.1.in-addr.arpa" into 1.2.3.4.
func ptrAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		// 32 nibbles, lowest first.
		nib := strings.Split(rest, ".")
		if len(nib) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, p := range nib {
			n, err := strconv.ParseUint(p, 16, 4)
			if err != nil || len(p) != 1 {
				return netip.Addr{}, false
			}
			j := 31 - i
			if j%2 == 0 {
				b[j/2] |= byte(n) << 4
			} else {
				b[j/2] |= byte(n)
			}
		}
		return netip.AddrFrom16(b), true
	}
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa")
	if !ok {
		return netip.Addr{}, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 {
			return netip.Addr{}, false
		}
		b[3-i] = byte(n)
	}
	return netip.AddrFrom4(b), true
}
