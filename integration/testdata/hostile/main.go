// Command hostile plays a guest that turned against the host, for
// integration's TestHostileGuestGarbage. Run in a --privileged container
// with --pid=host (the VM's PID namespace, where the guest agent is PID
// 1), it takes a copy of the agent's descriptor of its virtio-serial
// channel to jevmd (pidfd_getfd: the port admits one opener, the agent)
// and writes, for the given duration, what a hostile guest could: random
// bytes, headers with the frame magic and lengths far beyond the
// protocol's bound, a frame that announces a full payload and stops
// short, and well-formed frames whose payloads are not the protocol's.
package main

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	d := 10 * time.Second
	if len(os.Args) > 1 {
		var err error
		if d, err = time.ParseDuration(os.Args[1]); err != nil {
			fail(err)
		}
	}
	port, err := agentPort()
	if err != nil {
		fail(err)
	}
	header := func(typ byte, stream, length uint32) []byte {
		h := make([]byte, 16)
		copy(h, "JVM1")
		h[4] = typ
		binary.BigEndian.PutUint32(h[8:], stream)
		binary.BigEndian.PutUint32(h[12:], length)
		return h
	}
	noise := make([]byte, 64<<10)
	var written int64
	write := func(b []byte) {
		n, err := port.Write(b)
		written += int64(n)
		if err != nil {
			fail(fmt.Errorf("write after %d bytes: %w", written, err))
		}
	}
	end := time.Now().Add(d)
	for round := 0; time.Now().Before(end); round++ {
		rand.Read(noise)
		write(noise)
		for _, l := range []uint32{0xffffffff, 1<<20 + 1, 1 << 30} {
			write(header(1, 0, l))
			write(noise[:4096])
		}
		// A message frame of the largest allowed size that never ends
		// (the host reads the next bytes as its payload).
		write(header(1, 0, 1<<20))
		write(noise[:1000])
		// Well-formed frames with payloads that are not messages, on the
		// session and on streams the host never opened.
		for _, stream := range []uint32{0, 1, 7, 0xffffffff} {
			for _, payload := range []string{"{", `{"type":"exit","status":{"code":99}}`, strings.Repeat("[", 10000), "null"} {
				write(header(1, stream, uint32(len(payload))))
				write([]byte(payload))
			}
			write(header(2, stream, 5))
			write([]byte("stdin"))
		}
	}
	fmt.Printf("hostile: wrote %d bytes to the agent's channel\n", written)
}

// agentPort finds PID 1's (the agent's) descriptor of a virtio-serial
// port and takes a copy of it.
func agentPort() (*os.File, error) {
	pidfd, err := unix.PidfdOpen(1, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open(1): %w", err)
	}
	ents, err := os.ReadDir("/proc/1/fd")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		target, err := os.Readlink("/proc/1/fd/" + e.Name())
		if err != nil || !strings.Contains(target, "vport") {
			continue
		}
		var n int
		fmt.Sscan(e.Name(), &n)
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			return nil, fmt.Errorf("pidfd_getfd(%s): %w", target, err)
		}
		return os.NewFile(uintptr(fd), target), nil
	}
	return nil, fmt.Errorf("PID 1 holds no virtio-serial port")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "hostile:", err)
	os.Exit(1)
}
