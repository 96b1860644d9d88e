//go:build linux

package guestagent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestAbortTCPFrom: in a network namespace of its own, connections from
// the addresses named gone are aborted, IPv4, IPv6 and an IPv6 socket's
// IPv4 connection (v4-mapped) alike; one from another address lives on.
func TestAbortTCPFrom(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: a network namespace of its own, and SOCK_DESTROY")
	}
	skip := make(chan string, 1)
	go func() {
		defer close(skip)
		// Never unlocked: the thread ends with the goroutine, in the
		// namespace. Sockets (and netlink's) are made on this thread.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			skip <- fmt.Sprintf("no network namespace: %v", err)
			return
		}
		if reason := testAbortTCPFrom(t); reason != "" {
			skip <- reason
		}
	}()
	if reason := <-skip; reason != "" {
		t.Skip(reason)
	}
}

// testAbortTCPFrom runs TestAbortTCPFrom in its namespace; it returns why
// the test cannot run here ("" when it ran).
func testAbortTCPFrom(t *testing.T) string {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Sprintf("lo: %v", err)
	}
	// accepted keeps the servers' ends open (and reads what D sends).
	accepted := make(chan net.Conn, 8)
	listen := func(network, addr string) net.Listener {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		return ln
	}
	ln4, lnD, ln6, lnDual := listen("tcp4", "127.0.0.1:0"), listen("tcp4", "127.0.0.2:0"), listen("tcp6", "[::1]:0"), listen("tcp", "[::]:0")
	if ln4 == nil || lnD == nil {
		t.Errorf("listen on 127.0.0.1 and 127.0.0.2")
		return ""
	}
	if ln6 == nil || lnDual == nil {
		return "no IPv6 here"
	}
	dial := func(network string, local net.Addr, to net.Addr) net.Conn {
		c, err := (&net.Dialer{LocalAddr: local}).Dial(network, to.String())
		if err != nil {
			t.Errorf("dial %s: %v", to, err)
			return nil
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a := dial("tcp4", nil, ln4.Addr())
	b := dial("tcp6", nil, ln6.Addr())
	d := dial("tcp4", &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, lnD.Addr())
	// c: an IPv6 socket connected to IPv4 (v4-mapped addresses).
	cfd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Errorf("socket: %v", err)
		return ""
	}
	defer unix.Close(cfd)
	_ = unix.SetsockoptInt(cfd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	mapped := [16]byte{10: 0xff, 11: 0xff, 12: 127, 15: 1}
	if err := unix.Connect(cfd, &unix.SockaddrInet6{Port: lnDual.Addr().(*net.TCPAddr).Port, Addr: mapped}); err != nil {
		t.Errorf("connect to ::ffff:127.0.0.1: %v", err)
		return ""
	}
	_ = unix.SetsockoptTimeval(cfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	if a == nil || b == nil || d == nil {
		return ""
	}
	for range 4 { // the servers' ends are accepted
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Errorf("connections not accepted")
			return ""
		}
	}

	n, errs := abortTCPFrom(map[string]bool{"127.0.0.1": true, "::1": true})
	for _, err := range errs {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return "this kernel has no SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY)"
		}
		t.Errorf("abort: %v", err)
	}
	// One end of each of a, b and c, or both: the first one aborted
	// resets the other, which is then gone.
	if n < 3 || n > 6 {
		t.Errorf("aborted %d sockets, want 3 to 6 (one or both ends of three connections)", n)
	}
	dead := func(err error) bool { return errors.Is(err, unix.ECONNABORTED) || errors.Is(err, unix.ECONNRESET) }
	for name, c := range map[string]net.Conn{"IPv4": a, "IPv6": b} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !dead(err) {
			t.Errorf("the %s connection after the abort: read %v, want it aborted or reset", name, err)
		}
	}
	if _, err := unix.Read(cfd, make([]byte, 1)); !dead(err) {
		t.Errorf("the v4-mapped connection after the abort: read %v, want it aborted or reset", err)
	}
	// d, from 127.0.0.2 to 127.0.0.2, lives on.
	if _, err := d.Write([]byte("x")); err != nil {
		t.Errorf("the connection from 127.0.0.2: %v", err)
	}
	return ""
}
