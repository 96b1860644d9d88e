package api

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/sirupsen/logrus"
)

// DefaultSocketGroup is dockerd's default --group: members of this group
// may use the daemon's unix sockets.
const DefaultSocketGroup = "docker"

// ListenOptions say how ListenHosts makes the API's sockets.
type ListenOptions struct {
	// SocketGroup owns the unix sockets jevmd creates (mode 0660),
	// dockerd's --group. An empty value leaves them root's.
	SocketGroup string
	// SocketGroupExplicit is set when the admin named the group: a missing
	// group is then an error, while a missing default group ("docker") is
	// only a warning, as dockerd does.
	SocketGroupExplicit bool
	// Logger receives the warning about a missing default group and those
	// about TCP without client authentication.
	Logger *logrus.Entry
	// TLS, when set, serves every TCP socket over TLS (dockerd's --tls):
	// tcp:// hosts and the TCP sockets systemd passes (fd://). Unix
	// sockets stay plain, guarded by their file modes. A tcp:// host
	// without a port then gets 2376, dockerd's TLS port, instead of 2375.
	TLS *tls.Config
	// TLSExplicit is set when the admin said --tls or --tlsverify (either
	// value) on the command line or in daemon.json. Without it, a TCP
	// socket on an address other than loopback that would accept clients
	// without a certificate is refused: the API is root on this machine.
	TLSExplicit bool
}

// clientAuth reports whether a TCP listener with this configuration only
// lets in clients whose certificate the CA signed.
func clientAuth(c *tls.Config) bool {
	return c != nil && c.ClientAuth == tls.RequireAndVerifyClientCert
}

// CheckTCPHosts refuses what ListenHosts would refuse about TCP without
// client authentication, without opening anything (jevmd --validate).
// dockerd (v27, v28) only warns and stalls its start for 15 s on a
// non-loopback address when neither --tls nor --tlsverify was said, and
// announces that this will become an error; jevm makes it one. A
// loopback address stays allowed (with a warning), as in dockerd.
func CheckTCPHosts(hosts []string, opts ListenOptions) error {
	if clientAuth(opts.TLS) {
		return nil
	}
	for _, h := range hosts {
		addr, ok := strings.CutPrefix(h, "tcp://")
		if !ok {
			continue
		}
		if opts.Logger != nil {
			opts.Logger.WithField("host", h).Warn("listening on TCP without --tlsverify: anyone who can reach this address gets root on this machine (and scripts in a browser can reach even localhost)")
		}
		if opts.TLSExplicit || isLoopbackHost(tcpHostPart(addr)) {
			continue
		}
		return fmt.Errorf("refusing to listen on %s: binding to an IP address without --tlsverify is insecure and gives root access on this machine to everyone who has access to your network; "+
			"use --tlsverify with --tlscacert, --tlscert and --tlskey, or say --tls=false explicitly to listen without TLS anyway", h)
	}
	return nil
}

// secureActivated applies the TCP rules to the sockets systemd passed
// (fd://): TCP ones are served over TLS when it is on, as dockerd does
// (unix ones stay plain), and without client authentication one bound
// beyond loopback is refused as a tcp:// host would be. On an error the
// sockets are closed.
func secureActivated(host string, ls []net.Listener, opts ListenOptions) ([]net.Listener, error) {
	out := make([]net.Listener, 0, len(ls))
	for _, l := range ls {
		ta, isTCP := l.Addr().(*net.TCPAddr)
		switch {
		case !isTCP:
		case opts.TLS != nil && clientAuth(opts.TLS):
			l = tls.NewListener(l, opts.TLS)
		default:
			if opts.Logger != nil {
				opts.Logger.WithField("host", host).WithField("address", ta.String()).Warn("listening on TCP without --tlsverify: anyone who can reach this address gets root on this machine")
			}
			if !opts.TLSExplicit && !ta.IP.IsLoopback() {
				for _, l := range ls {
					l.Close()
				}
				return nil, fmt.Errorf("refusing to listen on %s (socket %s from systemd): binding to an IP address without --tlsverify is insecure and gives root access on this machine to everyone who has access to your network; "+
					"use --tlsverify with --tlscacert, --tlscert and --tlskey, or say --tls=false explicitly to listen without TLS anyway", host, ta)
			}
			if opts.TLS != nil {
				l = tls.NewListener(l, opts.TLS) // --tls --tlsverify=false
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// tcpHostPart is the host of a tcp:// address as listen reads it: "" (all
// interfaces) for ":2375", the default 127.0.0.1 for "".
func tcpHostPart(addr string) string {
	if addr == "" {
		return "127.0.0.1"
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return strings.Trim(addr, "[]")
}

// isLoopbackHost reports whether every address host names is a loopback
// one. An empty host (all interfaces) is not; a name that does not
// resolve is not either (listening on it would fail anyway).
func isLoopbackHost(host string) bool {
	if host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// ListenHosts opens the listeners of every -H value. Besides what Listen
// takes, "fd://" means every socket systemd passed by socket activation
// (jevm.socket), and "fd://N" the one with file descriptor N.
//
// tcp:// hosts are served over TLS when opts.TLS is set; without client
// authentication they are refused on non-loopback addresses unless the
// admin chose so explicitly (CheckTCPHosts), before any socket is opened.
func ListenHosts(hosts []string, opts ListenOptions) ([]net.Listener, error) {
	if err := CheckTCPHosts(hosts, opts); err != nil {
		return nil, err
	}
	gid := -1
	if opts.SocketGroup != "" {
		g, err := lookupGID(opts.SocketGroup)
		switch {
		case err == nil:
			gid = g
		case opts.SocketGroupExplicit:
			return nil, fmt.Errorf("socket group %q: %w", opts.SocketGroup, err)
		case opts.Logger != nil:
			opts.Logger.WithError(err).Warnf("the API sockets stay in root's group: group %q does not exist", opts.SocketGroup)
		}
	}
	var out []net.Listener
	closeAll := func() {
		for _, l := range out {
			l.Close()
		}
	}
	for _, h := range hosts {
		if addr, ok := strings.CutPrefix(h, "fd://"); ok {
			ls, err := listenFD(addr)
			if err == nil {
				ls, err = secureActivated(h, ls, opts)
			}
			if err != nil {
				closeAll()
				return nil, err
			}
			out = append(out, ls...)
			continue
		}
		l, err := listen(h, gid, opts.TLS)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen on %s: %w", h, err)
		}
		out = append(out, l)
	}
	return out, nil
}

func lookupGID(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		if n, nerr := strconv.Atoi(name); nerr == nil && n >= 0 {
			return n, nil // a numeric group ID
		}
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}

// listenFD returns the sockets systemd passed (LISTEN_FDS, LISTEN_PID).
// Their ownership and mode are the socket unit's (SocketGroup=,
// SocketMode=), not ours.
func listenFD(addr string) ([]net.Listener, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("fd://%s: %w", addr, err)
	}
	var got []net.Listener
	for _, l := range ls {
		if l != nil { // a passed fd that is not a listening socket
			got = append(got, l)
		}
	}
	if len(got) == 0 {
		return nil, errors.New("no sockets found via socket activation: make sure the service was started by systemd")
	}
	if addr == "" {
		return got, nil
	}
	n, err := strconv.Atoi(addr)
	if err != nil {
		return nil, fmt.Errorf("invalid daemon host fd://%s: the file descriptor must be a number", addr)
	}
	// activation.Listeners returns them in order from fd 3
	// (SD_LISTEN_FDS_START).
	off := n - 3
	if off < 0 || off >= len(ls) || ls[off] == nil {
		return nil, fmt.Errorf("fd://%d: too few socket activated files passed in by systemd", n)
	}
	for i, l := range ls {
		if i != off && l != nil {
			l.Close()
		}
	}
	return []net.Listener{ls[off]}, nil
}

// Listen opens a listener for a dockerd-style -H value:
// "unix:///path/to.sock" (the parent directory is created, a stale
// socket file removed, the socket made mode 0660), "tcp://host:port"
// (port defaults to 2375). A bare absolute path is taken as a unix
// socket; "unix://" alone means DefaultUnixSocket.
func Listen(host string) (net.Listener, error) { return listen(host, -1, nil) }

// listen is Listen with the group of a unix socket (-1: unchanged) and
// the TLS configuration of a TCP one (nil: plain).
func listen(host string, gid int, tlsConfig *tls.Config) (net.Listener, error) {
	proto, addr, ok := strings.Cut(host, "://")
	if !ok {
		if strings.HasPrefix(host, "/") {
			proto, addr = "unix", host
		} else {
			return nil, fmt.Errorf("invalid daemon host %q: expected unix:///path, tcp://host:port or fd://", host)
		}
	}
	switch proto {
	case "unix":
		if addr == "" {
			addr = DefaultUnixSocket
		}
		return listenUnix(addr, gid)
	case "tcp":
		port := defaultTCPPort
		if tlsConfig != nil {
			port = defaultTLSPort
		}
		if addr == "" {
			addr = "127.0.0.1:" + port
		} else if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(strings.Trim(addr, "[]"), port)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil || tlsConfig == nil {
			return l, err
		}
		return tls.NewListener(l, tlsConfig), nil
	default:
		return nil, fmt.Errorf("invalid daemon host %q: unsupported protocol %q", host, proto)
	}
}

func listenUnix(path string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		// A socket someone still answers on is not stale.
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another daemon", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, err
		}
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
