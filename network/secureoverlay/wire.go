// Package secureoverlay is the data path of encrypted overlay networks
// (`docker network create -d overlay --opt encrypted`): each Ethernet
// frame between two nodes travels sealed with AES-GCM in one UDP datagram,
// under the swarm's data encryption keys (SwarmKit's "networking:ipsec"
// keys, which the managers hand out and rotate).
//
// dockerd encrypts with the kernel's IPsec (ESP in transport mode around
// VXLAN). jevm does it in user space because the kernels it must run on
// do not all have ESP or GCM (the CI machines' kernel has neither): the
// network's bridge has a tap port instead of a VXLAN device, and a
// Tunnel moves frames between that tap and the other nodes.
//
// The wire format (version 1), one datagram per frame:
//
//	offset  size
//	 0       1   version (1)
//	 1       3   VNI (big endian)
//	 4       8   key tag (the key's Lamport time, big endian)
//	12       4   sender epoch (random, per Tunnel)
//	16       8   counter (big endian, per epoch)
//	24       n   the frame sealed with AES-GCM, its 16-byte tag last
//
// The GCM nonce is epoch||counter, the additional data is the 24-byte
// header, so the VNI, key tag and nonce are authenticated too. The AES
// key is not the swarm's key itself but one derived from it for the
// sender (HMAC-SHA256 of the sender's data path address), so two nodes
// never use one nonce under one key. A receiver drops a datagram it
// cannot open, one whose counter it has seen (a sliding window of 64, as
// IPsec's anti-replay), and a frame whose source MAC is not an endpoint
// of the node that sent it.
package secureoverlay

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/netip"
)

const (
	wireVersion = 1
	headerLen   = 24
	tagLen      = 16
	// Overhead is what sealing adds to a frame, before the UDP and IP
	// headers.
	Overhead = headerLen + tagLen
	// maxFrame bounds the frames taken from a tap and from the wire.
	maxFrame = 65535 - 8 - 20 - Overhead
)

// Key is one of the swarm's data encryption keys.
type Key struct {
	Tag    uint64 // its Lamport time: the receivers find it by this
	Secret []byte
}

// header is a datagram's header.
type header struct {
	vni     uint32
	keyTag  uint64
	epoch   uint32
	counter uint64
}

func (h header) put(b []byte) {
	b[0] = wireVersion
	b[1], b[2], b[3] = byte(h.vni>>16), byte(h.vni>>8), byte(h.vni)
	binary.BigEndian.PutUint64(b[4:12], h.keyTag)
	binary.BigEndian.PutUint32(b[12:16], h.epoch)
	binary.BigEndian.PutUint64(b[16:24], h.counter)
}

var (
	errShort   = errors.New("datagram too short")
	errVersion = errors.New("unknown wire version")
)

func parseHeader(b []byte) (header, error) {
	if len(b) < headerLen+tagLen {
		return header{}, errShort
	}
	if b[0] != wireVersion {
		return header{}, errVersion
	}
	return header{
		vni:     uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]),
		keyTag:  binary.BigEndian.Uint64(b[4:12]),
		epoch:   binary.BigEndian.Uint32(b[12:16]),
		counter: binary.BigEndian.Uint64(b[16:24]),
	}, nil
}

// senderAEAD is the AES-GCM of key for the node at sender.
func senderAEAD(key []byte, sender netip.Addr) (cipher.AEAD, error) {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("jevm secure overlay v1\x00"))
	s := sender.As16()
	mac.Write(s[:])
	derived := mac.Sum(nil)[:16]
	block, err := aes.NewCipher(derived)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal appends to dst the datagram of frame under aead.
func seal(dst []byte, aead cipher.AEAD, h header, frame []byte) []byte {
	off := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	h.put(dst[off:])
	var nonce [12]byte
	copy(nonce[:], dst[off+12:off+24])
	return aead.Seal(dst, nonce[:], frame, dst[off:off+headerLen])
}

// open returns the frame of datagram b (whose header is h) under aead,
// appended to dst.
func open(dst []byte, aead cipher.AEAD, b []byte) ([]byte, error) {
	var nonce [12]byte
	copy(nonce[:], b[12:24])
	return aead.Open(dst, nonce[:], b[headerLen:], b[:headerLen])
}

// replayWindow is IPsec's anti-replay window over one sender epoch's
// counters: the highest seen and a bitmap of the 64 below it.
type replayWindow struct {
	top    uint64
	bitmap uint64 // bit i: top-i seen
	any    bool
}

// check reports whether counter n is new, without recording it.
func (w *replayWindow) check(n uint64) bool {
	switch {
	case !w.any || n > w.top:
		return true
	case w.top-n >= 64:
		return false // too old to tell
	default:
		return w.bitmap&(1<<(w.top-n)) == 0
	}
}

// record marks counter n seen (check said it is new).
func (w *replayWindow) record(n uint64) {
	switch {
	case !w.any:
		w.top, w.bitmap, w.any = n, 1, true
	case n > w.top:
		shift := n - w.top
		if shift >= 64 {
			w.bitmap = 0
		} else {
			w.bitmap <<= shift
		}
		w.bitmap |= 1
		w.top = n
	default:
		w.bitmap |= 1 << (w.top - n)
	}
}
