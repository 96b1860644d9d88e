//go:build linux

package guestagent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// errDisconnected is returned once by port.Read when the host side of the
// virtio-serial port went away; reads then wait for it to come back.
var errDisconnected = errors.New("host disconnected")

// reconnectPoll is how often a read retries while the host is not
// connected, for reconnectFastFor; then reconnectSlowPoll. A host that
// goes away and comes back at once (a reconnecting daemon) is seen within
// milliseconds, and a VM whose daemon stays down (live restore, jevmd
// stopped) does not burn its host's CPU: polling every 5 ms cost an idle
// TCG VM about 10% of a core.
const (
	reconnectPoll     = 5 * time.Millisecond
	reconnectFastFor  = time.Second
	reconnectSlowPoll = 100 * time.Millisecond
)

// port is a virtio-serial port opened with a blocking descriptor (outside
// Go's poller, whose readiness model does not fit the port: read returns 0
// while the host is disconnected, writes block until it is back).
type port struct {
	path string
	fd   int

	rmu       sync.Mutex
	connected bool
	// disconnectedAt is when the host went away (reads back off).
	disconnectedAt time.Time
}

// openPort waits for the virtio-serial port called name to appear and
// opens it.
func openPort(name string, timeout time.Duration) (*port, error) {
	deadline := time.Now().Add(timeout)
	for {
		dev, err := findPort(name)
		if err == nil {
			fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
			if err == nil {
				return &port{path: dev, fd: fd}, nil
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("open %s: %w", dev, err)
			}
		} else if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func findPort(name string) (string, error) {
	ms, _ := filepath.Glob("/sys/class/virtio-ports/vport*/name")
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(m))
		if _, err := os.Stat(dev); err == nil {
			return dev, nil
		}
	}
	return "", fmt.Errorf("virtio-serial port %q not found", name)
}

// Read reads from the port. While the host is disconnected the kernel
// returns 0 at once: report errDisconnected once (so the caller drops any
// partial frame), then poll until data comes.
func (p *port) Read(b []byte) (int, error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for {
		n, err := unix.Read(p.fd, b)
		if n > 0 {
			p.connected = true
			return n, nil
		}
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: p.path, Err: err}
		}
		if p.connected {
			p.connected = false
			p.disconnectedAt = time.Now()
			return 0, errDisconnected
		}
		if p.disconnectedAt.IsZero() || time.Since(p.disconnectedAt) < reconnectFastFor {
			time.Sleep(reconnectPoll)
		} else {
			time.Sleep(reconnectSlowPoll)
		}
	}
}

// Write writes all of b; it blocks while the host is disconnected.
func (p *port) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Write(p.fd, b[done:])
		if n > 0 {
			done += n
		}
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return done, &os.PathError{Op: "write", Path: p.path, Err: err}
		}
	}
	return done, nil
}
