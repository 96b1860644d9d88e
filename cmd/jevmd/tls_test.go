package main

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jevm/jevm/internal/tlstest"
)

func boolStr(b *bool) string {
	if b == nil {
		return "unset"
	}
	if *b {
		return "true"
	}
	return "false"
}

// dockerd's rules: tlsverify said at all turns TLS on; tls alone verifies
// clients too; either may come from daemon.json.
func TestTLSFlagResolution(t *testing.T) {
	for _, c := range []struct {
		args, file     string
		tls, tlsVerify string
	}{
		{"", "", "unset", "unset"},
		{"--tls", "", "true", "true"},
		{"--tlsverify", "", "true", "true"},
		{"--tlsverify=false", "", "true", "false"},
		{"--tls=false", "", "false", "false"},
		{"--tls=false --tlsverify", "", "true", "true"},
		{"--tls --tlsverify=false", "", "true", "false"},
		{"", `{"tlsverify":true}`, "true", "true"},
		{"", `{"tls":false}`, "false", "false"},
		{"", `{"tls":true}`, "true", "true"},
		{"--tls", `{"tlsverify":false}`, "true", "false"},
	} {
		args := strings.Fields(c.args)
		file := "/dev/null"
		if c.file != "" {
			file = writeConfig(t, c.file)
		}
		o, err := parseOptions(append([]string{"--config-file", file}, args...))
		if err != nil {
			t.Fatalf("%q %s: %v", c.args, c.file, err)
		}
		if boolStr(o.tls) != c.tls || boolStr(o.tlsVerify) != c.tlsVerify {
			t.Errorf("%q %s: tls=%s tlsverify=%s, want %s %s", c.args, c.file, boolStr(o.tls), boolStr(o.tlsVerify), c.tls, c.tlsVerify)
		}
	}
}

func TestTLSDefaultCertPaths(t *testing.T) {
	t.Setenv("DOCKER_CERT_PATH", "")
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("HOME", "/home/u")
	o, err := parseOptions([]string{"--config-file", "/dev/null"})
	if err != nil {
		t.Fatal(err)
	}
	if o.tlsCACert != "/home/u/.docker/ca.pem" || o.tlsCert != "/home/u/.docker/cert.pem" || o.tlsKey != "/home/u/.docker/key.pem" {
		t.Errorf("defaults under HOME: %s %s %s", o.tlsCACert, o.tlsCert, o.tlsKey)
	}
	t.Setenv("DOCKER_CONFIG", "/etc/dc")
	if o, _ = parseOptions([]string{"--config-file", "/dev/null"}); o.tlsCert != "/etc/dc/cert.pem" {
		t.Errorf("DOCKER_CONFIG: %s", o.tlsCert)
	}
	t.Setenv("DOCKER_CERT_PATH", "/certs")
	if o, _ = parseOptions([]string{"--config-file", "/dev/null"}); o.tlsCACert != "/certs/ca.pem" || o.tlsKey != "/certs/key.pem" {
		t.Errorf("DOCKER_CERT_PATH: %s %s", o.tlsCACert, o.tlsKey)
	}
	p := writeConfig(t, `{"tlscacert":"/x/ca.pem","tlscert":"/x/c.pem","tlskey":"/x/k.pem"}`)
	if o, _ = parseOptions([]string{"--config-file", p}); o.tlsCACert != "/x/ca.pem" || o.tlsCert != "/x/c.pem" || o.tlsKey != "/x/k.pem" || !o.tlsCertSet || !o.tlsKeySet {
		t.Errorf("daemon.json paths: %+v", o)
	}
	if _, err := parseOptions([]string{"--config-file", p, "--tlscert", "/y/c.pem"}); err == nil || !strings.Contains(err.Error(), "tlscert") {
		t.Errorf("tlscert as flag and in file: %v", err)
	}
	if _, err := parseOptions([]string{"--config-file", writeConfig(t, `{"tlsverify":true}`), "--tlsverify"}); err == nil {
		t.Error("tlsverify as flag and in file accepted")
	}
}

func TestAPITLSConfig(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	f := tlstest.WriteDir(t, dir, ca, ca.Server(t))
	t.Setenv("DOCKER_CERT_PATH", dir)

	o, err := parseOptions([]string{"--config-file", "/dev/null", "--tlsverify", "-H", "tcp://0.0.0.0:2376"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := o.listenOptions()
	if err != nil {
		t.Fatal(err)
	}
	if l.TLS == nil || l.TLS.ClientAuth != tls.RequireAndVerifyClientCert || l.TLS.MinVersion != tls.VersionTLS12 || l.TLS.ClientCAs == nil || len(l.TLS.Certificates) != 1 || !l.TLSExplicit {
		t.Fatalf("--tlsverify with the default cert dir: %+v", l.TLS)
	}
	// --tls --tlsverify=false: TLS, no client certificate asked for, and
	// an explicit choice, so a non-loopback address is allowed.
	o, _ = parseOptions([]string{"--config-file", "/dev/null", "--tls", "--tlsverify=false", "-H", "tcp://0.0.0.0:2376"})
	if l, err = o.listenOptions(); err != nil || l.TLS == nil || l.TLS.ClientAuth != tls.NoClientCert {
		t.Fatalf("--tlsverify=false: %v %+v", err, l.TLS)
	}
	// Explicit paths from daemon.json.
	p := writeConfig(t, `{"tlsverify":true,"tlscacert":"`+f.CA+`","tlscert":"`+f.Cert+`","tlskey":"`+f.Key+`"}`)
	t.Setenv("DOCKER_CERT_PATH", t.TempDir())
	o, _ = parseOptions([]string{"--config-file", p})
	if l, err = o.listenOptions(); err != nil || l.TLS == nil || l.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("daemon.json TLS: %v", err)
	}

	// Missing files say which and why.
	empty := t.TempDir()
	t.Setenv("DOCKER_CERT_PATH", empty)
	o, _ = parseOptions([]string{"--config-file", "/dev/null", "--tlsverify"})
	if _, err = o.listenOptions(); err == nil || !strings.Contains(err.Error(), "invalid TLS configuration") || !strings.Contains(err.Error(), filepath.Join(empty, "cert.pem")) {
		t.Errorf("missing default cert: %v", err)
	}
	o, _ = parseOptions([]string{"--config-file", "/dev/null", "--tlsverify", "--tlscert", f.Cert, "--tlskey", f.Key})
	if _, err = o.listenOptions(); err == nil || !strings.Contains(err.Error(), "ca.pem") {
		t.Errorf("missing CA with --tlsverify: %v", err)
	}
	// Without verification the CA is not needed.
	o, _ = parseOptions([]string{"--config-file", "/dev/null", "--tlsverify=false", "--tlscert", f.Cert, "--tlskey", f.Key})
	if _, err = o.listenOptions(); err != nil {
		t.Errorf("--tlsverify=false without a CA: %v", err)
	}
	o, _ = parseOptions([]string{"--config-file", "/dev/null", "--tlsverify", "--tlscacert", f.CA, "--tlscert", f.Key, "--tlskey", f.Key})
	if _, err = o.listenOptions(); err == nil {
		t.Error("a key given as the certificate was accepted")
	}
	// No TLS at all: no configuration.
	o, _ = parseOptions([]string{"--config-file", "/dev/null"})
	if l, err = o.listenOptions(); err != nil || l.TLS != nil || l.TLSExplicit {
		t.Errorf("no TLS: %v %+v", err, l)
	}
}

// Plain TCP beyond loopback is refused unless the admin said --tls=false
// (or anything about TLS) explicitly; loopback and unix stay allowed.
func TestPlainTCPRefused(t *testing.T) {
	t.Setenv("DOCKER_CERT_PATH", t.TempDir())
	for _, c := range []struct {
		args string
		ok   bool
	}{
		{"-H tcp://0.0.0.0:2375", false},
		{"-H tcp://:2375", false},
		{"-H tcp://192.0.2.1:2375", false},
		{"-H tcp://[::]:2375", false},
		{"-H unix:///tmp/x.sock -H tcp://10.0.0.1", false},
		{"-H tcp://0.0.0.0:2375 --tls=false", true},
		{"-H tcp://127.0.0.1:2375", true},
		{"-H tcp://127.0.0.5:2375", true},
		{"-H tcp://localhost:2375", true},
		{"-H tcp://[::1]:2375", true},
		{"-H tcp://", true},
		{"-H unix:///tmp/x.sock", true},
		{"", true},
	} {
		o, err := parseOptions(append([]string{"--config-file", "/dev/null"}, strings.Fields(c.args)...))
		if err != nil {
			t.Fatal(err)
		}
		_, err = o.listenOptions()
		if c.ok != (err == nil) {
			t.Errorf("%s: err = %v", c.args, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "without --tlsverify is insecure") || !strings.Contains(err.Error(), "--tls=false")) {
			t.Errorf("%s: the refusal does not say why or how: %v", c.args, err)
		}
	}
	p := writeConfig(t, `{"hosts":["tcp://0.0.0.0:2375"],"tls":false}`)
	o, err := parseOptions([]string{"--config-file", p})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.listenOptions(); err != nil {
		t.Errorf(`daemon.json "tls": false: %v`, err)
	}
}
