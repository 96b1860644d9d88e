package secureoverlay

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Peer is a remote endpoint of a network: its IPv4 address, its MAC and
// the data path address of the node it is on.
type Peer struct {
	IP   netip.Addr
	MAC  net.HardwareAddr
	Node netip.Addr
}

// Stats counts a Tunnel's datagrams.
type Stats struct {
	Sent, Received uint64
	// Dropped: datagrams that could not be opened (another key, a
	// forgery, garbage), replays, frames for or from no known endpoint,
	// frames with no key to send with.
	NotOpened, Replayed, NoPeer, Spoofed, NoKey uint64
}

// Limits on what the Tunnel remembers of its senders: both grow only with
// datagrams that opened (so only with the swarm's nodes), and are
// forgotten whole past these.
const (
	maxWindows = 4096
	maxAEADs   = 1024
)

type windowKey struct {
	sender netip.Addr
	keyTag uint64
	epoch  uint32
}

type aeadKey struct {
	keyTag uint64
	sender netip.Addr
}

// tapNet is one encrypted network on this node: its tap (a port of the
// network's bridge) and its remote endpoints.
type tapNet struct {
	vni  uint32
	name string
	file *os.File
	done chan struct{}
	macs map[[6]byte]netip.Addr // remote endpoint MAC -> its node
	arp  map[netip.Addr][6]byte // remote endpoint IP -> its MAC
}

// Tunnel moves the frames of this node's encrypted networks to and from
// the other nodes: one UDP socket on the node's data path address, one
// tap per network.
type Tunnel struct {
	log     *logrus.Entry
	conn    *net.UDPConn
	local   netip.Addr
	port    int
	epoch   uint32
	counter atomic.Uint64
	wg      sync.WaitGroup

	mu       sync.Mutex
	keys     map[uint64][]byte
	primary  uint64
	sendAEAD cipher.AEAD // the primary key's, for this node
	aeads    map[aeadKey]cipher.AEAD
	windows  map[windowKey]*replayWindow
	nets     map[uint32]*tapNet
	closed   bool

	sent, received, notOpened, replayed, noPeer, spoofed, noKey atomic.Uint64
}

// New starts a Tunnel on UDP local:port. It sends nothing until it has
// keys (SetKeys) and peers (SetPeers).
func New(local netip.Addr, port int, log *logrus.Entry) (*Tunnel, error) {
	if !local.IsValid() || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("secure overlay: bad local address %s:%d", local, port)
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, uint16(port))))
	if err != nil {
		return nil, fmt.Errorf("secure overlay: listen on %s:%d: %w", local, port, err)
	}
	var e [4]byte
	if _, err := rand.Read(e[:]); err != nil {
		conn.Close()
		return nil, err
	}
	t := &Tunnel{
		log: log, conn: conn, local: local.Unmap(), port: port, epoch: binary.BigEndian.Uint32(e[:]),
		keys: map[uint64][]byte{}, aeads: map[aeadKey]cipher.AEAD{}, windows: map[windowKey]*replayWindow{},
		nets: map[uint32]*tapNet{},
	}
	t.wg.Add(1)
	go t.receive()
	return t, nil
}

// Local is the address and port the Tunnel listens on.
func (t *Tunnel) Local() (netip.Addr, int) { return t.local, t.port }

// SetKeys replaces the keys: frames are sealed with primary's, and opened
// with whichever of keys the sender used (during a rotation the nodes
// switch at different moments).
func (t *Tunnel) SetKeys(keys []Key, primary uint64) error {
	m := map[uint64][]byte{}
	for _, k := range keys {
		m[k.Tag] = append([]byte(nil), k.Secret...)
	}
	var send cipher.AEAD
	if k, ok := m[primary]; ok {
		var err error
		if send, err = senderAEAD(k, t.local); err != nil {
			return fmt.Errorf("secure overlay: key %d: %w", primary, err)
		}
	} else if len(keys) > 0 {
		return fmt.Errorf("secure overlay: the primary key %d is not among the keys", primary)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keys, t.primary, t.sendAEAD = m, primary, send
	for k := range t.aeads {
		if _, ok := m[k.keyTag]; !ok {
			delete(t.aeads, k)
		}
	}
	return nil
}

// Attach moves the frames of network vni between tap (which exists:
// network.CreateTap) and the other nodes.
func (t *Tunnel) Attach(vni uint32, tap string) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return errors.New("secure overlay: tunnel closed")
	}
	if n := t.nets[vni]; n != nil {
		t.mu.Unlock()
		if n.name == tap {
			return nil
		}
		return fmt.Errorf("secure overlay: VNI %d is on tap %s already", vni, n.name)
	}
	t.mu.Unlock()
	f, err := openTap(tap)
	if err != nil {
		return err
	}
	n := &tapNet{vni: vni, name: tap, file: f, done: make(chan struct{}), macs: map[[6]byte]netip.Addr{}, arp: map[netip.Addr][6]byte{}}
	t.mu.Lock()
	if t.closed || t.nets[vni] != nil {
		t.mu.Unlock()
		f.Close()
		return fmt.Errorf("secure overlay: VNI %d attached meanwhile", vni)
	}
	t.nets[vni] = n
	t.mu.Unlock()
	t.wg.Add(1)
	go t.transmit(n)
	return nil
}

// SetPeers replaces network vni's remote endpoints.
func (t *Tunnel) SetPeers(vni uint32, peers []Peer) {
	macs := map[[6]byte]netip.Addr{}
	arp := map[netip.Addr][6]byte{}
	for _, p := range peers {
		if len(p.MAC) != 6 || !p.IP.Is4() || !p.Node.IsValid() {
			continue
		}
		var m [6]byte
		copy(m[:], p.MAC)
		macs[m] = p.Node.Unmap()
		arp[p.IP] = m
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nets[vni]; n != nil {
		n.macs, n.arp = macs, arp
	}
}

// Detach stops network vni's frames (its tap stays: the caller deletes
// it).
func (t *Tunnel) Detach(vni uint32) {
	t.mu.Lock()
	n := t.nets[vni]
	delete(t.nets, vni)
	t.mu.Unlock()
	if n != nil {
		n.file.Close()
		<-n.done
	}
}

// Networks is how many networks are attached.
func (t *Tunnel) Networks() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.nets)
}

// Close stops the Tunnel.
func (t *Tunnel) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	nets := t.nets
	t.nets = map[uint32]*tapNet{}
	t.mu.Unlock()
	for _, n := range nets {
		n.file.Close()
	}
	t.conn.Close()
	t.wg.Wait()
}

// Stats returns the Tunnel's counters.
func (t *Tunnel) Stats() Stats {
	return Stats{
		Sent: t.sent.Load(), Received: t.received.Load(), NotOpened: t.notOpened.Load(),
		Replayed: t.replayed.Load(), NoPeer: t.noPeer.Load(), Spoofed: t.spoofed.Load(), NoKey: t.noKey.Load(),
	}
}

// transmit reads network n's tap: ARP requests for remote endpoints are
// answered here (nothing is broadcast between nodes, as with the VXLAN
// device's proxy), frames to a remote endpoint are sealed and sent to its
// node, everything else is dropped.
func (t *Tunnel) transmit(n *tapNet) {
	defer t.wg.Done()
	defer close(n.done)
	frame := make([]byte, maxFrame)
	out := make([]byte, 0, maxFrame+Overhead)
	for {
		sz, err := n.file.Read(frame)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				t.log.WithError(err).WithField("tap", n.name).Warn("secure overlay: read the tap")
			}
			return
		}
		f := frame[:sz]
		if sz < 14 {
			continue
		}
		if f[0]&1 != 0 { // broadcast or multicast
			if binary.BigEndian.Uint16(f[12:14]) == 0x0806 {
				t.answerARP(n, f)
			}
			continue
		}
		var dst [6]byte
		copy(dst[:], f[0:6])
		t.mu.Lock()
		node, ok := n.macs[dst]
		aead, tag := t.sendAEAD, t.primary
		t.mu.Unlock()
		if !ok {
			t.noPeer.Add(1)
			continue
		}
		if aead == nil {
			t.noKey.Add(1)
			continue
		}
		out = seal(out[:0], aead, header{vni: n.vni, keyTag: tag, epoch: t.epoch, counter: t.counter.Add(1)}, f)
		if _, err := t.conn.WriteToUDPAddrPort(out, netip.AddrPortFrom(node, uint16(t.port))); err == nil {
			t.sent.Add(1)
		}
	}
}

// answerARP answers an ARP request on n's tap for a remote endpoint's
// address.
func (t *Tunnel) answerARP(n *tapNet, f []byte) {
	a := f[14:]
	// Ethernet/IPv4, 6-byte and 4-byte addresses, a request.
	if len(a) < 28 || binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != 0x0800 ||
		a[4] != 6 || a[5] != 4 || binary.BigEndian.Uint16(a[6:8]) != 1 {
		return
	}
	target := netip.AddrFrom4([4]byte(a[24:28]))
	t.mu.Lock()
	mac, ok := n.arp[target]
	t.mu.Unlock()
	if !ok {
		return
	}
	reply := make([]byte, 42)
	copy(reply[0:6], a[8:14]) // to the asker
	copy(reply[6:12], mac[:])
	binary.BigEndian.PutUint16(reply[12:14], 0x0806)
	r := reply[14:]
	binary.BigEndian.PutUint16(r[0:2], 1)
	binary.BigEndian.PutUint16(r[2:4], 0x0800)
	r[4], r[5] = 6, 4
	binary.BigEndian.PutUint16(r[6:8], 2)
	copy(r[8:14], mac[:])
	copy(r[14:18], a[24:28])
	copy(r[18:24], a[8:14])
	copy(r[24:28], a[14:18])
	_, _ = n.file.Write(reply)
}

// receive opens the datagrams from the other nodes and writes their
// frames to the networks' taps.
func (t *Tunnel) receive() {
	defer t.wg.Done()
	buf := make([]byte, 65535)
	frame := make([]byte, 0, maxFrame)
	for {
		sz, from, err := t.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		t.deliver(buf[:sz], from.Addr().Unmap(), frame[:0])
	}
}

// deliver opens datagram b from sender and writes its frame to its
// network's tap.
func (t *Tunnel) deliver(b []byte, sender netip.Addr, frame []byte) {
	h, err := parseHeader(b)
	if err != nil {
		t.notOpened.Add(1)
		return
	}
	wk := windowKey{sender: sender, keyTag: h.keyTag, epoch: h.epoch}
	t.mu.Lock()
	n := t.nets[h.vni]
	key, haveKey := t.keys[h.keyTag]
	aead := t.aeads[aeadKey{h.keyTag, sender}]
	w := t.windows[wk]
	t.mu.Unlock()
	if n == nil {
		t.noPeer.Add(1)
		return
	}
	if !haveKey {
		t.notOpened.Add(1)
		return
	}
	if w != nil && !w.check(h.counter) {
		t.replayed.Add(1)
		return
	}
	if aead == nil {
		if aead, err = senderAEAD(key, sender); err != nil {
			t.notOpened.Add(1)
			return
		}
		t.mu.Lock()
		if len(t.aeads) >= maxAEADs {
			clear(t.aeads)
		}
		t.aeads[aeadKey{h.keyTag, sender}] = aead
		t.mu.Unlock()
	}
	frame, err = open(frame, aead, b)
	if err != nil || len(frame) < 14 {
		t.notOpened.Add(1)
		return
	}
	var src [6]byte
	copy(src[:], frame[6:12])
	t.mu.Lock()
	from, known := n.macs[src]
	if known && from == sender {
		// Recorded only now that the datagram opened: a forgery cannot
		// move the window.
		if w = t.windows[wk]; w == nil {
			if len(t.windows) >= maxWindows {
				clear(t.windows)
			}
			w = &replayWindow{}
			t.windows[wk] = w
		}
		if !w.check(h.counter) {
			t.mu.Unlock()
			t.replayed.Add(1)
			return
		}
		w.record(h.counter)
	}
	t.mu.Unlock()
	if !known || from != sender {
		// Only a node's own endpoints may send from it.
		t.spoofed.Add(1)
		return
	}
	if _, err := n.file.Write(frame); err == nil {
		t.received.Add(1)
	}
}

// openTap opens the existing tap name for reading and writing frames
// (no packet information header), non-blocking so that Close ends a Read.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("secure overlay: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("secure overlay: tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("secure overlay: attach to tap %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}
