package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// Backend returns the container address a proxy forwards to, looked up
// for every new connection or UDP flow so that a proxy survives its
// container being connected to and disconnected from networks; ok false
// refuses the connection (the container has no address now).
type Backend func() (addr netip.Addr, ok bool)

// Proxy is a userland proxy for one published port, like dockerd's
// docker-proxy: it listens on the host and relays every TCP connection or
// UDP flow to the container's address. It needs no DNAT rules and works
// for the host's loopback address as for its other addresses.
type Proxy struct {
	b       PortBinding // HostPort is the port actually bound
	backend Backend
	log     *logrus.Entry

	tcp net.Listener
	udp *net.UDPConn

	// dials is cancelled by Close: a dial to a container that is gone
	// (its VM killed, no ARP answer) must not hold Close for its timeout.
	dials       context.Context
	stopDialing context.CancelFunc

	mu     sync.Mutex
	closed bool
	conns  map[io.Closer]struct{}
	flows  map[string]*udpFlow
	wg     sync.WaitGroup
}

// UDPFlowTimeout is how long a UDP flow without traffic is kept (dockerd's
// proxy uses 90 s).
var UDPFlowTimeout = 90 * time.Second

// dialTimeout bounds a TCP connection to the container.
const dialTimeout = 5 * time.Second

// ErrPortAllocated is wrapped by StartProxy's error when the host port is
// taken, as dockerd reports it.
var ErrPortAllocated = errors.New("port is already allocated")

// StartProxy binds the host side of b and starts relaying. A zero HostPort
// binds a free ephemeral port; a range binds its first free port. The
// returned proxy's Binding says which port it got.
func StartProxy(b PortBinding, backend Backend, log *logrus.Entry) (*Proxy, error) {
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	p := &Proxy{b: b, backend: backend, conns: map[io.Closer]struct{}{}, flows: map[string]*udpFlow{}}
	p.dials, p.stopDialing = context.WithCancel(context.Background())
	ports := []uint16{b.HostPort}
	if b.HostPortEnd > b.HostPort {
		ports = ports[:0]
		for port := int(b.HostPort); port <= int(b.HostPortEnd); port++ {
			ports = append(ports, uint16(port))
		}
	}
	var lastErr error
	for _, port := range ports {
		if err := p.bind(port); err != nil {
			lastErr = err
			continue
		}
		p.log = log.WithField("binding", p.b.String())
		p.wg.Add(1)
		if p.tcp != nil {
			go p.serveTCP()
		} else {
			go p.serveUDP()
		}
		return p, nil
	}
	if errors.Is(lastErr, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("Bind for %s failed: %w", net.JoinHostPort(b.HostIPString(), portString(b)), ErrPortAllocated)
	}
	return nil, fmt.Errorf("listen on %s for %s: %w", net.JoinHostPort(b.HostIPString(), portString(b)), b.Key(), lastErr)
}

func portString(b PortBinding) string {
	if b.HostPortEnd > b.HostPort {
		return fmt.Sprintf("%d-%d", b.HostPort, b.HostPortEnd)
	}
	return strconv.Itoa(int(b.HostPort))
}

func (p *Proxy) bind(port uint16) error {
	// Without a host address the binding is every address of both
	// families (dockerd binds 0.0.0.0 and [::]): one dual-stack socket
	// (Go falls back to IPv4 alone where the host has no IPv6), so that
	// IPv6 clients reach the container too.
	network, host := "tcp", ""
	if p.b.HostIP.Is4() {
		network, host = "tcp4", p.b.HostIP.String()
	} else if p.b.HostIP.Is6() {
		network, host = "tcp6", p.b.HostIP.String()
	}
	addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
	switch p.b.Proto {
	case "tcp":
		l, err := net.Listen(network, addr)
		if err != nil {
			return err
		}
		p.tcp = l
		p.b.HostPort = uint16(l.Addr().(*net.TCPAddr).Port)
	case "udp":
		network = "udp"
		if p.b.HostIP.Is4() {
			network = "udp4"
		} else if p.b.HostIP.Is6() {
			network = "udp6"
		}
		ua, err := net.ResolveUDPAddr(network, addr)
		if err != nil {
			return err
		}
		c, err := net.ListenUDP(network, ua)
		if err != nil {
			return err
		}
		p.udp = c
		p.b.HostPort = uint16(c.LocalAddr().(*net.UDPAddr).Port)
	default:
		return fmt.Errorf("unsupported protocol %q", p.b.Proto)
	}
	p.b.HostPortEnd = 0
	return nil
}

// Binding is the binding with the host port actually bound.
func (p *Proxy) Binding() PortBinding { return p.b }

// Close stops listening, ends every relayed connection and flow, and waits
// for the relays to finish.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.stopDialing()
	var err error
	if p.tcp != nil {
		err = p.tcp.Close()
	}
	if p.udp != nil {
		err = p.udp.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	for _, f := range p.flows {
		f.conn.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c io.Closer) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) backendAddr() (string, bool) {
	a, ok := p.backend()
	if !ok || !a.IsValid() {
		return "", false
	}
	return net.JoinHostPort(a.String(), strconv.Itoa(int(p.b.ContainerPort))), true
}

func (p *Proxy) serveTCP() {
	defer p.wg.Done()
	for {
		c, err := p.tcp.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.relayTCP(c.(*net.TCPConn))
	}
}

func (p *Proxy) relayTCP(client *net.TCPConn) {
	defer p.wg.Done()
	defer p.untrack(client)
	defer client.Close()
	addr, ok := p.backendAddr()
	if !ok {
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	bc, err := d.DialContext(p.dials, "tcp", addr)
	if err != nil {
		p.log.WithError(err).Debug("proxy: cannot reach the container")
		return
	}
	backend := bc.(*net.TCPConn)
	if !p.track(backend) {
		backend.Close()
		return
	}
	defer p.untrack(backend)
	defer backend.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst, src *net.TCPConn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		_ = dst.CloseWrite()
		_ = src.CloseRead()
	}
	go half(backend, client)
	go half(client, backend)
	wg.Wait()
}

// udpFlow is one client's UDP association: a socket connected to the
// container whose replies go back to the client.
type udpFlow struct {
	conn *net.UDPConn
}

func (p *Proxy) serveUDP() {
	defer p.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := p.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		key := from.String()
		p.mu.Lock()
		f := p.flows[key]
		p.mu.Unlock()
		if f == nil {
			addr, ok := p.backendAddr()
			if !ok {
				continue
			}
			ra, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				continue
			}
			c, err := net.DialUDP("udp", nil, ra)
			if err != nil {
				p.log.WithError(err).Debug("proxy: cannot reach the container")
				continue
			}
			f = &udpFlow{conn: c}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				c.Close()
				return
			}
			p.flows[key] = f
			p.mu.Unlock()
			p.wg.Add(1)
			go p.replies(key, from, f)
		}
		_ = f.conn.SetReadDeadline(time.Now().Add(UDPFlowTimeout))
		if _, err := f.conn.Write(buf[:n]); err != nil {
			p.log.WithError(err).Debug("proxy: udp write to container")
		}
	}
}

// replies copies the container's datagrams back to the client until the
// flow is idle for UDPFlowTimeout or the proxy closes.
func (p *Proxy) replies(key string, client netip.AddrPort, f *udpFlow) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		if p.flows[key] == f {
			delete(p.flows, key)
		}
		p.mu.Unlock()
		f.conn.Close()
	}()
	buf := make([]byte, 65535)
	_ = f.conn.SetReadDeadline(time.Now().Add(UDPFlowTimeout))
	for {
		n, err := f.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return // idle
			}
			// ICMP port unreachable and the like: the flow goes on,
			// the container may listen later.
			continue
		}
		_ = f.conn.SetReadDeadline(time.Now().Add(UDPFlowTimeout))
		if _, err := p.udp.WriteToUDPAddrPort(buf[:n], client); err != nil {
			return
		}
	}
}
