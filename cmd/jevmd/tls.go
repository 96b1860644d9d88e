package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/docker/go-connections/tlsconfig"

	"github.com/jevm/jevm/api"
)

// dockerd's file names under its certificate directory.
const (
	defaultCAFile   = "ca.pem"
	defaultCertFile = "cert.pem"
	defaultKeyFile  = "key.pem"
)

// defaultCertDir is where dockerd looks for ca.pem, cert.pem and key.pem
// when --tlscacert, --tlscert and --tlskey are not given: $DOCKER_CERT_PATH,
// else $DOCKER_CONFIG, else ~/.docker (not XDG-aware, as dockerd).
func defaultCertDir() string {
	if d := os.Getenv("DOCKER_CERT_PATH"); d != "" {
		return d
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".docker")
}

// resolveTLS applies dockerd's rules to --tls and --tlsverify once the
// command line and daemon.json are merged: saying tlsverify at all, true
// or false, turns TLS on (false then means TLS without client
// certificates); tls alone also verifies clients (tlsverify takes its
// value). Unlike the docker CLI, dockerd ignores DOCKER_TLS_VERIFY for its
// own listeners, and so does jevmd.
func (o *options) resolveTLS() {
	if o.tlsVerify != nil {
		on := true
		o.tls = &on
	}
	if o.tlsVerify == nil && o.tls != nil {
		v := *o.tls
		o.tlsVerify = &v
	}
}

// tlsEnabled reports whether tcp:// hosts are served over TLS.
func (o *options) tlsEnabled() bool { return o.tls != nil && *o.tls }

// apiTLSConfig is the TLS configuration of the tcp:// listeners, nil
// without --tls: TLS 1.2 at least and go-connections' server cipher
// suites (what dockerd uses), the client certificate required and
// checked against the CA alone (not the system pool) with tlsverify.
func (o *options) apiTLSConfig() (*tls.Config, error) {
	if !o.tlsEnabled() {
		return nil, nil
	}
	// dockerd drops a default cert.pem or key.pem that does not exist and
	// then fails every handshake; refusing to start says why at once.
	for _, f := range []struct {
		flag, path string
		set        bool
	}{{"--tlscert", o.tlsCert, o.tlsCertSet}, {"--tlskey", o.tlsKey, o.tlsKeySet}} {
		if _, err := os.Stat(f.path); err != nil {
			if errors.Is(err, os.ErrNotExist) && !f.set {
				return nil, fmt.Errorf("invalid TLS configuration: %s: the default %s does not exist (--tls serves tcp:// hosts with this certificate and key)", f.flag, f.path)
			}
			return nil, fmt.Errorf("invalid TLS configuration: %s: %w", f.flag, err)
		}
	}
	opts := tlsconfig.Options{
		CAFile:             o.tlsCACert,
		CertFile:           o.tlsCert,
		KeyFile:            o.tlsKey,
		ExclusiveRootPools: true,
	}
	if o.tlsVerify == nil || *o.tlsVerify {
		opts.ClientAuth = tls.RequireAndVerifyClientCert
	}
	c, err := tlsconfig.Server(opts)
	if err != nil {
		return nil, fmt.Errorf("invalid TLS configuration: %w", err)
	}
	if opts.ClientAuth == tls.RequireAndVerifyClientCert && c.ClientCAs == nil {
		// tlsconfig skips an empty CAFile; the system pool must not
		// stand in for the admin's CA.
		return nil, errors.New("invalid TLS configuration: --tlsverify needs --tlscacert")
	}
	return c, nil
}

// listenOptions are the TLS settings of the API's listeners, checked
// against the hosts: plain TCP beyond loopback is refused unless --tls or
// --tlsverify was said explicitly.
func (o *options) listenOptions() (api.ListenOptions, error) {
	c, err := o.apiTLSConfig()
	if err != nil {
		return api.ListenOptions{}, err
	}
	l := api.ListenOptions{TLS: c, TLSExplicit: o.tls != nil}
	if err := api.CheckTCPHosts(o.hosts, l); err != nil {
		return api.ListenOptions{}, err
	}
	return l, nil
}

// migrationTLSConfig is how this daemon reaches the targets of live
// migrations (daemon/migrate_out.go): with TLS on, as a client of their
// API holding this daemon's own certificate and trusting --tlscacert
// alone; nil without TLS (no migrations) or without a CA to check
// targets against.
func (o *options) migrationTLSConfig() (*tls.Config, error) {
	if !o.tlsEnabled() || o.tlsCACert == "" {
		return nil, nil
	}
	if _, err := os.Stat(o.tlsCACert); err != nil {
		return nil, nil
	}
	c, err := tlsconfig.Client(tlsconfig.Options{
		CAFile:             o.tlsCACert,
		CertFile:           o.tlsCert,
		KeyFile:            o.tlsKey,
		ExclusiveRootPools: true,
	})
	if err != nil {
		return nil, fmt.Errorf("invalid TLS configuration for migrations: %w", err)
	}
	return c, nil
}
