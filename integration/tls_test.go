package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jevm/jevm/internal/tlstest"
)

// TestAPITLS starts a second jevmd as dockerd is started for remote use
// (-H tcp://127.0.0.1:PORT --tlsverify --tlscacert --tlscert --tlskey)
// and drives it with the real docker CLI: with the TLS flags, with
// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, and refused with a certificate of
// another CA, with none, and over plain HTTP. Its unix socket stays plain.
// The daemon has no default bridge and touches no iptables rules (it runs
// no container), but boots its default VM template in the background as
// every jevmd does; it is stopped as soon as the checks are done.
func TestAPITLS(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "jevm-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ca := tlstest.NewCA(t, "jevm test CA")
	srv := tlstest.WriteDir(t, filepath.Join(dir, "server"), ca, ca.Server(t))
	cli := tlstest.WriteDir(t, filepath.Join(dir, "client"), ca, ca.Client(t, "client"))
	// Strangers trust jevmd's CA (so their own check of the server
	// passes) but hold a certificate another CA signed. The CLI (Go's TLS
	// client) sends a certificate only if its issuer's name is among the
	// CAs the server asks for, so one stranger's CA has another name (no
	// certificate is sent) and an impostor's has the same name (the
	// certificate is sent and the server's signature check refuses it).
	other := tlstest.NewCA(t, "another CA")
	stranger := tlstest.WriteDir(t, filepath.Join(dir, "stranger"), other, other.Client(t, "stranger"))
	impostorCA := tlstest.NewCA(t, "jevm test CA")
	impostor := tlstest.WriteDir(t, filepath.Join(dir, "impostor"), impostorCA, impostorCA.Client(t, "impostor"))
	for _, f := range []string{stranger.CA, impostor.CA} {
		if err := os.WriteFile(f, ca.PEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	noCert := filepath.Join(dir, "nocert")
	if err := os.MkdirAll(noCert, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(noCert, "ca.pem"), ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}

	jevmd := filepath.Join(env.bin, "jevmd")
	common := []string{"--config-file", "/dev/null",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "run"),
		"--guest-dir", env.guest, "--agent", filepath.Join(env.bin, "jevm-agent"),
		"--bridge", "none", "--iptables=false", "--ip-forward=false", "-G", "root"}

	// Plain TCP on every interface is refused before anything starts,
	// and the message says why and how to override.
	addr, err := freeTCPAddr()
	if err != nil {
		t.Fatal(err)
	}
	port := addr[strings.LastIndex(addr, ":")+1:]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, jevmd, append([]string{"-H", "tcp://0.0.0.0:" + port}, common...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(string(out), "without --tlsverify is insecure") || !strings.Contains(string(out), "--tls=false") {
		t.Fatalf("jevmd -H tcp://0.0.0.0:%s without TLS: %v\n%s", port, err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("the refused jevmd created its data root")
	}

	sock := filepath.Join(dir, "api.sock")
	exited := startPrivateDaemon(t, dir, append([]string{"-H", "unix://" + sock, "-H", "tcp://" + addr,
		"--tlsverify", "--tlscacert", srv.CA, "--tlscert", srv.Cert, "--tlskey", srv.Key}, common...)...)

	// dockerTLS runs the docker CLI with only the given environment of
	// DOCKER_* variables (none inherited) and its own empty config dir.
	dockerTLS := func(envv []string, args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := exec.CommandContext(ctx, "docker", args...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "DOCKER_") {
				c.Env = append(c.Env, kv)
			}
		}
		c.Env = append(c.Env, "DOCKER_CONFIG="+filepath.Join(dir, "docker-config"))
		c.Env = append(c.Env, envv...)
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		r := result{stdout: stdout.String(), stderr: stderr.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("docker %v: %v", args, err)
		}
		return r
	}
	withFlags := []string{"--tlsverify", "--tlscacert", cli.CA, "--tlscert", cli.Cert, "--tlskey", cli.Key, "-H", "tcp://" + addr}

	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := dockerTLS(nil, append(withFlags, "version", "--format", "{{.Server.APIVersion}}")...)
		if r.code == 0 {
			if strings.TrimSpace(r.stdout) != "1.51" {
				t.Errorf("docker --tlsverify version: Server.APIVersion = %q", r.stdout)
			}
			break
		}
		select {
		case <-exited:
			t.Fatalf("the TLS jevmd exited:\n%s", r)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker --tlsverify ... version never succeeded:\n%s", r)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if r := dockerTLS([]string{"DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + cli.Dir, "DOCKER_HOST=tcp://" + addr}, "info", "--format", "{{.OSType}}"); r.code != 0 || strings.TrimSpace(r.stdout) != "linux" {
		t.Errorf("DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH docker info:\n%s", r)
	}
	// The unix socket stays plain HTTP.
	if r := dockerTLS([]string{"DOCKER_HOST=unix://" + sock}, "version", "--format", "{{.Server.Os}}"); r.code != 0 || strings.TrimSpace(r.stdout) != "linux" {
		t.Errorf("docker on the unix socket of a --tlsverify jevmd:\n%s", r)
	}

	refused := func(what string, r result) {
		t.Helper()
		if r.code == 0 {
			t.Errorf("%s got in:\n%s", what, r)
			return
		}
		if strings.Contains(r.stdout, "linux") {
			t.Errorf("%s got an answer:\n%s", what, r)
		}
		t.Logf("%s refused: %s", what, strings.TrimSpace(r.stderr))
		if what != "a plain HTTP client" && !strings.Contains(r.stderr, "tls:") {
			t.Errorf("%s: not refused by the TLS handshake:\n%s", what, r)
		}
	}
	refused("a client with a certificate of another CA",
		dockerTLS([]string{"DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + stranger.Dir, "DOCKER_HOST=tcp://" + addr}, "version", "--format", "{{.Server.Os}}"))
	refused("a client with a certificate of an impostor CA of the same name",
		dockerTLS([]string{"DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + impostor.Dir, "DOCKER_HOST=tcp://" + addr}, "version", "--format", "{{.Server.Os}}"))
	refused("a client without a certificate",
		dockerTLS([]string{"DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + noCert, "DOCKER_HOST=tcp://" + addr}, "version", "--format", "{{.Server.Os}}"))
	refused("a plain HTTP client",
		dockerTLS([]string{"DOCKER_HOST=tcp://" + addr}, "version", "--format", "{{.Server.Os}}"))
}
