package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInstalledDaemon checks `make install` as a user meets it: the
// Makefile's integration target installed jevm into JEVM_DESTDIR (PREFIX
// /usr/local). That jevmd runs with no kernel, module or agent flags (it
// finds its guest next to itself), started the way jevm.socket starts it
// (socket activation, -H fd://), as a second daemon beside the suite's own
// on its own bridge and subnet (-b, --bip), and runs a container.
func TestInstalledDaemon(t *testing.T) {
	destdir := os.Getenv("JEVM_DESTDIR")
	if destdir == "" {
		t.Skip("JEVM_DESTDIR is not set: `make integration` installs jevm there first")
	}
	prefix := filepath.Join(destdir, "usr", "local")
	jevmd := filepath.Join(prefix, "bin", "jevmd")
	lib := filepath.Join(prefix, "lib", "jevm")
	release, err := os.ReadFile(filepath.Join(lib, "release"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(lib, "vmlinuz"), filepath.Join(lib, "jevm-agent"),
		filepath.Join(lib, "lib", "modules", strings.TrimSpace(string(release)), "kernel"),
		filepath.Join(destdir, "etc", "jevm", "daemon.json"),
		filepath.Join(prefix, "lib", "docker", "cli-plugins", "docker-jevm"), // docker jevm
	} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	unit, err := os.ReadFile(filepath.Join(prefix, "lib", "systemd", "system", "jevm.service"))
	if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/local/bin/jevmd -H fd://") {
		t.Errorf("jevm.service: %v\n%s", err, unit)
	}

	run := func(args ...string) (string, int) {
		out, err := exec.Command(jevmd, args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := run("--version"); code != 0 || !strings.HasPrefix(out, "jevm version ") {
		t.Errorf("jevmd --version: exit %d: %s", code, out)
	}
	if out, code := run("--validate", "--config-file", filepath.Join(destdir, "etc", "jevm", "daemon.json")); code != 0 || strings.TrimSpace(out) != "configuration OK" {
		t.Errorf("jevmd --validate with the installed daemon.json: exit %d: %s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(bad, []byte(`{"default-address-pools":[{"base":"10.0.0.0/16","size":8}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := run("--validate", "--config-file", bad); code == 0 {
		t.Errorf("jevmd --validate accepted a pool size shorter than its base: %s", out)
	}

	// Socket activation as systemd does it: the listening socket is fd 3,
	// LISTEN_FDS=1 and LISTEN_PID is the daemon's own pid (the shell's,
	// which exec keeps).
	root, err := os.MkdirTemp("/tmp", "jevm-inst-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	sock := filepath.Join(root, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ul := l.(*net.UnixListener)
	lf, err := ul.File()
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false) // the path stays: jevmd serves the passed copy
	ul.Close()
	defer lf.Close()
	const bridge = "jevmi0"
	logf, err := os.Create(filepath.Join(root, "jevmd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, jevmd,
		"-H", "fd://", "--config-file", "/dev/null",
		"--data-root", filepath.Join(root, "data"), "--exec-root", filepath.Join(root, "run"),
		"--registry-mirror", "http://"+env.registry.Addr, "--insecure-registry", env.registry.Addr,
		"--bridge", bridge, "--bip", "10.231.7.1/24", "--experimental", "-G", "root")
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Error("installed jevmd did not stop within 60 s of SIGTERM")
		}
	}
	defer func() {
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(root, "jevmd.log"))
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("installed jevmd log (tail):\n%s", b)
		}
	}()
	dockerAt := func(args ...string) result {
		return dockerOn(t, sock, filepath.Join(root, "docker-config"), "", args...)
	}
	// The socket answers before jevmd serves (the kernel queues the
	// connection), so wait for a real answer.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := dockerAt("version", "--format", "{{.Server.Experimental}}")
		if r.code == 0 {
			if strings.TrimSpace(r.stdout) != "true" {
				t.Errorf("--experimental: Server.Experimental = %q", r.stdout)
			}
			break
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("installed jevmd did not answer on its activated socket:\n%s", r)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if r := dockerAt("run", "--rm", "busybox", "echo", "ok"); r.code != 0 || strings.TrimSpace(r.stdout) != "ok" {
		t.Fatalf("docker run on the installed jevmd:\n%s", r)
	}
	// Its default network is on the bridge and subnet it was given, not
	// on the suite daemon's jevm0.
	if r := dockerAt("network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{index .Options \"com.docker.network.bridge.name\"}}"); r.code != 0 || strings.TrimSpace(r.stdout) != "10.231.7.0/24 10.231.7.1 "+bridge {
		t.Errorf("default bridge of the installed jevmd: %s", r)
	}
	stop()
	if left := qemuProcessesUnder(root); len(left) > 0 {
		t.Errorf("QEMU processes of the installed jevmd left behind: %v", left)
	}
	if out, err := exec.Command("ip", "link", "show", bridge).CombinedOutput(); err == nil {
		t.Errorf("bridge %s left behind after the installed jevmd stopped:\n%s", bridge, out)
	}
}
