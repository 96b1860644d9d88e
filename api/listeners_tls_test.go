package api

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-connections/tlsconfig"

	"github.com/jevm/jevm/internal/tlstest"
)

func TestCheckTCPHosts(t *testing.T) {
	verify := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}
	noVerify := &tls.Config{ClientAuth: tls.NoClientCert}
	for _, c := range []struct {
		host string
		opts ListenOptions
		ok   bool
	}{
		{"tcp://0.0.0.0:2375", ListenOptions{}, false},
		{"tcp://:2375", ListenOptions{}, false},
		{"tcp://[::]:2375", ListenOptions{}, false},
		{"tcp://203.0.113.9", ListenOptions{}, false},
		{"tcp://0.0.0.0:2375", ListenOptions{TLSExplicit: true}, true},
		{"tcp://0.0.0.0:2376", ListenOptions{TLS: verify, TLSExplicit: true}, true},
		{"tcp://0.0.0.0:2376", ListenOptions{TLS: noVerify, TLSExplicit: true}, true},
		{"tcp://127.0.0.1:2375", ListenOptions{}, true},
		{"tcp://localhost:2375", ListenOptions{}, true},
		{"tcp://[::1]:2375", ListenOptions{}, true},
		{"tcp://", ListenOptions{}, true}, // listen's default is 127.0.0.1
		{"unix:///run/x.sock", ListenOptions{}, true},
		{"fd://", ListenOptions{}, true},
	} {
		err := CheckTCPHosts([]string{c.host}, c.opts)
		if c.ok != (err == nil) {
			t.Errorf("%s %+v: %v", c.host, c.opts, err)
		}
	}
	// Nothing is opened when one host is refused.
	if _, err := ListenHosts([]string{"tcp://127.0.0.1:0", "tcp://0.0.0.0:0"}, ListenOptions{}); err == nil || !strings.Contains(err.Error(), "refusing to listen on tcp://0.0.0.0:0") {
		t.Fatalf("ListenHosts: %v", err)
	}
}

// A tcp:// listener with a --tlsverify configuration lets in only clients
// whose certificate the CA signed.
func TestListenTLSVerify(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	srv := tlstest.WriteDir(t, dir+"/server", ca, ca.Server(t))
	cli := tlstest.WriteDir(t, dir+"/client", ca, ca.Client(t, "client"))
	other := tlstest.NewCA(t, "other")
	stranger := tlstest.WriteDir(t, dir+"/stranger", other, other.Client(t, "stranger"))

	cfg, err := tlsconfig.Server(tlsconfig.Options{CAFile: srv.CA, CertFile: srv.Cert, KeyFile: srv.Key, ExclusiveRootPools: true, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := ListenHosts([]string{"tcp://127.0.0.1:0"}, ListenOptions{TLS: cfg, TLSExplicit: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", 500)
			return
		}
		_, _ = w.Write([]byte(r.TLS.PeerCertificates[0].Subject.CommonName))
	})}
	go hs.Serve(ls[0])
	defer hs.Close()
	addr := ls[0].Addr().String()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	get := func(certs ...tls.Certificate) (string, error) {
		cfg := &tls.Config{RootCAs: roots}
		if len(certs) > 0 {
			// Present the certificate whatever CAs the server asks for
			// (Go's client would otherwise send none for a foreign CA),
			// so that the server's own check is what refuses it.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
		}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get("https://" + addr + "/_ping")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b := make([]byte, 100)
		n, _ := resp.Body.Read(b)
		return string(b[:n]), nil
	}
	pair := func(f tlstest.Files) tls.Certificate {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got, err := get(pair(cli)); err != nil || got != "client" {
		t.Fatalf("client signed by the CA: %q %v", got, err)
	}
	if _, err := get(); err == nil {
		t.Error("a client without a certificate got in")
	}
	if _, err := get(pair(stranger)); err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Errorf("a client with a certificate of another CA: %v", err)
	}
	// TLS 1.1 is refused (MinVersion 1.2).
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair(cli)}, MaxVersion: tls.VersionTLS11})
	if err == nil {
		err = conn.Handshake()
		conn.Close()
	}
	if err == nil {
		t.Error("TLS 1.1 accepted")
	}
	// Plain HTTP on the TLS port gets no API.
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/_ping"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered on the TLS listener")
		}
	}
}

// Sockets systemd passes (fd://) follow the same rules: TCP ones get TLS,
// and plain TCP beyond loopback is refused unless said explicitly; unix
// ones stay as they are.
func TestSecureActivated(t *testing.T) {
	mk := func(network, addr string) net.Listener {
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	unix := mk("unix", t.TempDir()+"/s.sock")
	loop := mk("tcp", "127.0.0.1:0")
	verify := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}

	ls, err := secureActivated("fd://", []net.Listener{unix, loop}, ListenOptions{TLS: verify, TLSExplicit: true})
	if err != nil || ls[0] != unix || ls[1] == loop {
		t.Fatalf("TLS: %v %T %T", err, ls[0], ls[1])
	}
	if ls, err = secureActivated("fd://", []net.Listener{unix, loop}, ListenOptions{}); err != nil || ls[1] != loop {
		t.Fatalf("plain loopback: %v", err)
	}
	all := mk("tcp", "0.0.0.0:0")
	if _, err = secureActivated("fd://", []net.Listener{all}, ListenOptions{}); err == nil || !strings.Contains(err.Error(), "--tls=false") {
		t.Fatalf("plain TCP on all interfaces from systemd: %v", err)
	}
	all = mk("tcp", "0.0.0.0:0")
	if ls, err = secureActivated("fd://", []net.Listener{all}, ListenOptions{TLSExplicit: true}); err != nil || ls[0] != all {
		t.Fatalf("--tls=false: %v", err)
	}
}
