package secureoverlay

import (
	"bytes"
	"net/netip"
	"testing"
)

var (
	key1   = []byte("0123456789abcdef")
	key2   = []byte("fedcba9876543210")
	nodeA  = netip.MustParseAddr("192.168.1.10")
	nodeB  = netip.MustParseAddr("192.168.1.11")
	sample = bytes.Repeat([]byte("frame!"), 20)
)

func mustAEAD(t testing.TB, key []byte, sender netip.Addr) interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
	NonceSize() int
	Overhead() int
} {
	a, err := senderAEAD(key, sender)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A sealed frame opens with the sender's key, and only with it; its
// header says what was put in; the plaintext is nowhere in the datagram.
func TestSealOpen(t *testing.T) {
	h := header{vni: 0xabcdef, keyTag: 77, epoch: 0xdeadbeef, counter: 12345}
	d := seal(nil, mustAEAD(t, key1, nodeA), h, sample)
	if len(d) != len(sample)+Overhead {
		t.Fatalf("datagram %d bytes, want %d", len(d), len(sample)+Overhead)
	}
	if bytes.Contains(d, []byte("frame!")) {
		t.Fatal("the plaintext is in the datagram")
	}
	got, err := parseHeader(d)
	if err != nil || got != h {
		t.Fatalf("header %+v %v, want %+v", got, err, h)
	}
	f, err := open(nil, mustAEAD(t, key1, nodeA), d)
	if err != nil || !bytes.Equal(f, sample) {
		t.Fatalf("open: %q %v", f, err)
	}
	// Another key, or the same key as another sender's.
	if _, err := open(nil, mustAEAD(t, key2, nodeA), d); err == nil {
		t.Fatal("opened with another key")
	}
	if _, err := open(nil, mustAEAD(t, key1, nodeB), d); err == nil {
		t.Fatal("opened as another sender's")
	}
	// Every byte is authenticated, the header's included.
	for i := range d {
		bad := append([]byte(nil), d...)
		bad[i] ^= 0x40
		if _, err := open(nil, mustAEAD(t, key1, nodeA), bad); err == nil {
			t.Fatalf("a datagram changed at byte %d opened", i)
		}
	}
	if _, err := parseHeader(d[:Overhead-1]); err == nil {
		t.Fatal("a short datagram parsed")
	}
	bad := append([]byte(nil), d...)
	bad[0] = 2
	if _, err := parseHeader(bad); err == nil {
		t.Fatal("another version parsed")
	}
}

// The anti-replay window: new counters pass once, old ones within 64 pass
// once, older ones never.
func TestReplayWindow(t *testing.T) {
	var w replayWindow
	take := func(n uint64) bool {
		if !w.check(n) {
			return false
		}
		w.record(n)
		return true
	}
	for _, c := range []struct {
		n    uint64
		want bool
	}{
		{10, true}, {10, false}, {12, true}, {11, true}, {11, false}, {12, false},
		{100, true}, {37, true}, {36, false} /* 64 below 100 */, {99, true}, {99, false},
		{1000, true}, {937, true}, {936, false}, {100, false}, {1001, true}, {1000, false},
	} {
		if got := take(c.n); got != c.want {
			t.Fatalf("counter %d: %v, want %v (top %d bitmap %b)", c.n, got, c.want, w.top, w.bitmap)
		}
	}
}

// Whatever arrives, parsing and opening neither panic nor accept it.
func FuzzOpen(f *testing.F) {
	f.Add(seal(nil, mustAEAD(f, key1, nodeA), header{vni: 1, keyTag: 1, counter: 1}, sample))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseHeader(b); err != nil {
			return
		}
		if f, err := open(nil, mustAEAD(t, key1, nodeA), b); err == nil && !bytes.Equal(f, sample) {
			t.Fatalf("a datagram nobody sealed opened: %q", f)
		}
	})
}
