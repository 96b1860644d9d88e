// Package integration drives the real docker CLI against a real jevmd that
// runs real QEMU VMs, with images pulled from a real registry on localhost.
// One daemon, one registry and one VM template serve the whole package:
// these machines have two cores and TCG is CPU-hungry.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jevm/jevm/integration/testenv"
)

// env is the shared test environment.
var env struct {
	bin       string // jevmd, jevm-agent
	guest     string // vmlinuz, lib/modules/<release>
	root      string // temp dir: data-root, exec-root, socket
	sock      string
	tcpAddr   string // jevmd also listens on tcp://tcpAddr, as with dockerd -H
	registry  *testenv.Registry
	daemon    *exec.Cmd
	daemonLog *os.File
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("SKIP integration: jevmd needs root (taps, QEMU, mounts)")
		return 0
	}
	if _, err := exec.LookPath("docker"); err != nil {
		fmt.Println("FAIL integration: the docker CLI is not on PATH")
		return 1
	}
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(file))
	env.bin = getenv("JEVM_BIN", filepath.Join(repo, "bin"))
	env.guest = getenv("JEVM_GUEST", filepath.Join(repo, "build", "guest"))
	for _, f := range []string{filepath.Join(env.bin, "jevmd"), filepath.Join(env.bin, "jevm-agent"), filepath.Join(env.guest, "vmlinuz")} {
		if _, err := os.Stat(f); err != nil {
			fmt.Printf("FAIL integration: %v (run `make integration`, which builds it)\n", err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	var err error
	// Short paths: unix socket paths are limited to 108 bytes.
	env.root, err = os.MkdirTemp("/tmp", "jevm-it-")
	if err != nil {
		fmt.Println("FAIL integration:", err)
		return 1
	}
	defer os.RemoveAll(env.root)
	env.sock = filepath.Join(env.root, "docker.sock")
	env.tcpAddr, err = freeTCPAddr()
	if err != nil {
		fmt.Println("FAIL integration:", err)
		return 1
	}

	if err := installComposePlugin(); err != nil {
		fmt.Println("FAIL integration: compose plugin:", err)
		return 1
	}
	if err := installJevmPlugin(); err != nil {
		fmt.Println("FAIL integration:", err)
		return 1
	}

	imgs, err := testenv.EnsureImages(ctx)
	if err != nil {
		fmt.Println("FAIL integration: test images:", err)
		return 1
	}
	env.registry, err = testenv.StartRegistry(ctx, filepath.Join(env.root, "registry"))
	if err != nil {
		fmt.Println("FAIL integration: registry:", err)
		return 1
	}
	defer env.registry.Stop()
	if err := env.registry.PushAll(ctx, imgs); err != nil {
		fmt.Println("FAIL integration: push test images:", err)
		return 1
	}
	if err := startDaemon(); err != nil {
		fmt.Println("FAIL integration: start jevmd:", err)
		dumpDaemonLog()
		return 1
	}
	code := m.Run()
	cleanupContainers()
	if err := stopDaemon(); err != nil {
		fmt.Println("FAIL integration: stop jevmd:", err)
		code = 1
	}
	if left := qemuProcessesUnder(env.root); len(left) > 0 {
		fmt.Printf("FAIL integration: QEMU processes left behind: %v\n", left)
		code = 1
	}
	if code != 0 {
		dumpDaemonLog()
	}
	return code
}

// dockerConfig is the docker CLI's configuration directory for the tests
// (DOCKER_CONFIG): credentials of login tests, and the compose plugin.
func dockerConfig() string { return filepath.Join(env.root, "docker-config") }

// installComposePlugin makes compose v2 the tests' `docker compose`, as a
// CLI plugin in their own docker config directory, so nothing is
// installed on the host: JEVM_COMPOSE is the binary `make compose` built
// (outside the work tree). Without it the compose tests fail and say so.
func installComposePlugin() error {
	bin := os.Getenv("JEVM_COMPOSE")
	if bin == "" {
		return nil
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("JEVM_COMPOSE: %w (make compose builds it)", err)
	}
	dir := filepath.Join(dockerConfig(), "cli-plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Symlink(bin, filepath.Join(dir, "docker-compose"))
}

// installJevmPlugin makes `docker jevm` (cmd/docker-jevm, which make
// build puts beside jevmd) a CLI plugin of the tests' docker config.
func installJevmPlugin() error {
	bin := filepath.Join(env.bin, "docker-jevm")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("the docker jevm plugin: %w (make build builds it)", err)
	}
	dir := filepath.Join(dockerConfig(), "cli-plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Symlink(bin, filepath.Join(dir, "docker-jevm"))
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// startDaemon starts jevmd on the package's data root and waits for /_ping.
func startDaemon() error {
	logPath := filepath.Join(env.root, "jevmd.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	env.daemonLog = f
	cmd := exec.Command(filepath.Join(env.bin, "jevmd"),
		"-H", "unix://"+env.sock,
		"-H", "tcp://"+env.tcpAddr,
		"--config-file", "/dev/null",
		"--data-root", filepath.Join(env.root, "data"),
		"--exec-root", filepath.Join(env.root, "run"),
		"--registry-mirror", "http://"+env.registry.Addr,
		"--insecure-registry", env.registry.Addr,
		"--guest-dir", env.guest,
		"--agent", filepath.Join(env.bin, "jevm-agent"),
		"--debug",
		// As dockerd's, checkpoints are served in experimental mode only.
		"--experimental",
	)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	env.daemon = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	client := unixHTTPClient()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("jevmd exited: %v", err)
		default:
		}
		if resp, err := client.Get("http://jevm/_ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				go func() { <-exited }()
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("jevmd did not answer /_ping within 2 minutes")
}

// stopDaemon sends SIGTERM and waits for jevmd to exit.
func stopDaemon() error {
	if env.daemon == nil || env.daemon.Process == nil {
		return nil
	}
	_ = env.daemon.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := env.daemon.Process.Signal(syscall.Signal(0)); err != nil {
			env.daemon = nil
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = env.daemon.Process.Kill()
	return fmt.Errorf("jevmd did not stop within 30s of SIGTERM")
}

func restartDaemon(t *testing.T) {
	t.Helper()
	if err := stopDaemon(); err != nil {
		t.Fatal(err)
	}
	if err := startDaemon(); err != nil {
		t.Fatal(err)
	}
}

// daemonLog is the shared jevmd's log so far.
func daemonLog(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.root, "jevmd.log"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dumpDaemonLog() {
	b, err := os.ReadFile(filepath.Join(env.root, "jevmd.log"))
	if err != nil {
		return
	}
	if len(b) > 20000 {
		b = b[len(b)-20000:]
	}
	fmt.Printf("---- jevmd log (tail) ----\n%s\n---- end of jevmd log ----\n", b)
}

func cleanupContainers() {
	out, _ := exec.Command("docker", "-H", "unix://"+env.sock, "ps", "-aq").Output()
	ids := strings.Fields(string(out))
	if len(ids) > 0 {
		args := append([]string{"-H", "unix://" + env.sock, "rm", "-f"}, ids...)
		_ = exec.Command("docker", args...).Run()
	}
}

// qemuProcessesUnder lists QEMU processes whose command line mentions dir.
func qemuProcessesUnder(dir string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.Contains(cmd, "qemu-system") && strings.Contains(cmd, dir) {
			found = append(found, filepath.Base(filepath.Dir(p)))
		}
	}
	return found
}

func freeTCPAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func unixHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", env.sock)
		}},
	}
}

// result is what one docker CLI invocation did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// docker runs the real docker CLI against the test daemon.
func docker(t *testing.T, args ...string) result {
	t.Helper()
	return dockerStdin(t, "", args...)
}

func dockerStdin(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return dockerOn(t, env.sock, dockerConfig(), stdin, args...)
}

// dockerOn runs the docker CLI against the daemon on the unix socket sock.
func dockerOn(t *testing.T, sock, config, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+sock, "DOCKER_CONFIG="+config)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("docker %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("docker %v timed out:\n%s", args, r)
	}
	return r
}

// mustDocker fails the test unless the command succeeds; it returns stdout.
func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	r := docker(t, args...)
	if r.code != 0 {
		t.Fatalf("docker %s:\n%s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// uniqueName gives each test its own container names.
func uniqueName(t *testing.T, suffix string) string {
	return strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + "-" + suffix
}

// rmOnCleanup force-removes containers when the test ends.
func rmOnCleanup(t *testing.T, names ...string) {
	t.Cleanup(func() {
		args := append([]string{"rm", "-f"}, names...)
		docker(t, args...)
	})
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// startPrivateDaemon starts a jevmd of the test's own in dir (its log in
// dir/jevmd.log) with args, and stops it when the test ends: SIGTERM, then
// SIGKILL of its process group after 60 s (an error), a check that no
// QEMU of it is left, and its log's tail if the test failed. The channel
// is closed when the process exits.
func startPrivateDaemon(t *testing.T, dir string, args ...string) <-chan struct{} {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, "jevmd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(env.bin, "jevmd"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		defer logf.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Error("the private jevmd did not stop within 60 s of SIGTERM")
		}
		if left := qemuProcessesUnder(dir); len(left) > 0 {
			t.Errorf("QEMU processes of the private jevmd left behind: %v", left)
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "jevmd.log"))
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("private jevmd log (tail):\n%s", b)
		}
	})
	return exited
}
