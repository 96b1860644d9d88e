package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jevm/jevm/integration/testenv"
)

// Several jevmd "hosts" on this one machine, for Swarm mode across hosts
// (issue 17): each jevmd runs in a network namespace and a UTS namespace
// of its own (its own interfaces, routes, iptables and hostname), with
// its own data root, exec root and socket. The namespaces hang off a
// bridge the test creates in its own namespace, where a registry that
// serves the package's images listens on the bridge's address.

const (
	hostsBridge = "jvswbr0"     // in the test's namespace
	hostsNet    = "10.213.7."   // /24: .1 the bridge, .11, .12, ... the hosts
	hostsNSBase = "jevm-swarm-" // + the host's number
)

// testHost is one jevmd in namespaces of its own.
type testHost struct {
	t      *testing.T
	name   string // hostname, and the network namespace's name
	ip     string
	dir    string
	sock   string
	args   []string
	cmd    *exec.Cmd
	logf   *os.File
	exited chan struct{}
}

// startTestHosts builds the network and starts n jevmd hosts; all is
// undone when the test ends (daemons stopped, no QEMU left, namespaces,
// links and rules gone).
// extra, if given, adds arguments to host i's jevmd (1-based) given the
// host (its address and directory are set).
func startTestHosts(t *testing.T, n int, extra ...func(i int, h *testHost) []string) []*testHost {
	t.Helper()
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// What a killed run of this test left.
	removeHostsNet := func() {
		for i := 1; i <= 9; i++ {
			exec.Command("ip", "netns", "del", fmt.Sprintf("%s%d", hostsNSBase, i)).Run()
			exec.Command("ip", "link", "del", fmt.Sprintf("jvswv%d", i)).Run()
		}
		exec.Command("ip", "link", "del", hostsBridge).Run()
		for exec.Command("iptables", "-D", "FORWARD", "-i", hostsBridge, "-o", hostsBridge, "-j", "ACCEPT").Run() == nil {
		}
		// The hosts' cgroup parents (--cgroup-parent), once empty.
		exec.Command("find", "/sys/fs/cgroup", "-mindepth", "2", "-depth", "-type", "d", "-name", "jevm-h[0-9]", "-exec", "rmdir", "{}", ";").Run()
	}
	removeHostsNet()
	t.Cleanup(removeHostsNet)
	ip("link", "add", hostsBridge, "type", "bridge")
	ip("addr", "add", hostsNet+"1/24", "dev", hostsBridge)
	ip("link", "set", hostsBridge, "up")
	// Bridged frames pass iptables' FORWARD where br_netfilter is loaded,
	// and hosts that run dockerd drop there by default.
	if out, err := exec.Command("iptables", "-I", "FORWARD", "-i", hostsBridge, "-o", hostsBridge, "-j", "ACCEPT").CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v\n%s", err, out)
	}

	// A registry on the bridge, serving the package registry's storage.
	regDir := filepath.Join(t.TempDir(), "registry")
	if err := os.MkdirAll(regDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(env.registry.Dir, "storage"), filepath.Join(regDir, "storage")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg, err := testenv.StartRegistryAt(ctx, regDir, fmt.Sprintf("%s1:%d", hostsNet, freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Stop() })

	var hosts []*testHost
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("%s%d", hostsNSBase, i)
		veth := fmt.Sprintf("jvswv%d", i)
		h := &testHost{t: t, name: ns, ip: fmt.Sprintf("%s%d", hostsNet, 10+i)}
		ip("netns", "add", ns)
		ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ip("link", "set", veth, "master", hostsBridge, "up")
		ip("-n", ns, "addr", "add", h.ip+"/24", "dev", "eth0")
		ip("-n", ns, "link", "set", "eth0", "up")
		ip("-n", ns, "link", "set", "lo", "up")
		ip("-n", ns, "route", "add", "default", "via", hostsNet+"1")
		h.dir, err = os.MkdirTemp("/tmp", "jevm-host-") // short: socket paths
		if err != nil {
			t.Fatal(err)
		}
		dir := h.dir
		t.Cleanup(func() { os.RemoveAll(dir) })
		h.sock = filepath.Join(h.dir, "api.sock")
		h.args = []string{"-H", "unix://" + h.sock, "--config-file", "/dev/null",
			"--data-root", filepath.Join(h.dir, "data"), "--exec-root", filepath.Join(h.dir, "run"),
			"--guest-dir", env.guest, "--agent", filepath.Join(env.bin, "jevm-agent"),
			"--registry-mirror", "http://" + reg.Addr, "--insecure-registry", reg.Addr,
			"--vm-pool-size", "0", "--debug",
			// Each host's VMs in cgroups of its own: a migrated container
			// keeps its ID, which names its VM's cgroup.
			"--cgroup-parent", fmt.Sprintf("jevm-h%d", i)}
		for _, f := range extra {
			h.args = append(h.args, f(i, h)...)
		}
		h.start()
		t.Cleanup(h.stop)
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		h.waitUp()
	}
	return hosts
}

// start starts the host's jevmd (again).
func (h *testHost) start() {
	t := h.t
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(h.dir, "jevmd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	// ip netns exec enters the network namespace (and mounts its /sys);
	// unshare gives the host a hostname of its own. Both exec, so the
	// process is jevmd's.
	args := append([]string{"netns", "exec", h.name, "unshare", "--uts", "sh", "-c", `hostname "$0" && exec "$@"`, h.name, filepath.Join(env.bin, "jevmd")}, h.args...)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	h.cmd, h.logf, h.exited = cmd, logf, make(chan struct{})
	exited := h.exited
	go func() { cmd.Wait(); close(exited) }()
}

// waitUp waits for the host's API.
func (h *testHost) waitUp() {
	h.t.Helper()
	waitFor(h.t, 2*time.Minute, h.name+"'s jevmd", func() bool {
		select {
		case <-h.exited:
			h.t.Fatalf("%s's jevmd exited:\n%s", h.name, h.logTail())
		default:
		}
		return h.docker("version").code == 0
	})
}

// kill9 kills the host's jevmd as a crash would: its VMs go on running.
func (h *testHost) kill9() {
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
	h.logf.Close()
	h.cmd = nil
}

// stop stops the host's jevmd (SIGTERM) and checks that none of its QEMUs
// is left.
func (h *testHost) stop() {
	t := h.t
	if h.cmd == nil {
		return
	}
	defer h.logf.Close()
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		<-h.exited
		t.Errorf("%s's jevmd did not stop within 60 s of SIGTERM", h.name)
	}
	h.cmd = nil
	if t.Failed() {
		t.Logf("%s's jevmd log (tail):\n%s", h.name, h.logTail())
		if dir := os.Getenv("JEVM_TEST_LOGS"); dir != "" {
			// The whole log, for a developer's run.
			b, _ := os.ReadFile(filepath.Join(h.dir, "jevmd.log"))
			_ = os.WriteFile(filepath.Join(dir, t.Name()+"-"+h.name+".log"), b, 0o644)
		}
	}
	// live-restore keeps containers' VMs running over a daemon stop; the
	// test removes its containers first, so none may be left.
	if left := qemuProcessesUnder(h.dir); len(left) > 0 {
		t.Errorf("QEMU processes of %s left behind: %v", h.name, left)
		for _, pid := range left {
			var p int
			fmt.Sscan(pid, &p)
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

func (h *testHost) logTail() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "jevmd.log"))
	if len(b) > 12000 {
		b = b[len(b)-12000:]
	}
	return string(b)
}

// docker runs the docker CLI against the host.
func (h *testHost) docker(args ...string) result {
	h.t.Helper()
	return dockerOn(h.t, h.sock, dockerConfig(), "", args...)
}

// must runs the docker CLI against the host and fails the test unless it
// succeeds; it returns stdout.
func (h *testHost) must(args ...string) string {
	h.t.Helper()
	r := h.docker(args...)
	if r.code != 0 {
		h.t.Fatalf("%s: docker %s:\n%s", h.name, strings.Join(args, " "), r)
	}
	return r.stdout
}

// inNS runs a command in h's network namespace and returns its output.
func (h *testHost) inNS(args ...string) string {
	h.t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.name}, args...)...).CombinedOutput()
	if err != nil {
		h.t.Fatalf("ip netns exec %s %s: %v\n%s", h.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startSwarmHosts starts n hosts (startTestHosts) that leave whatever
// swarm they are in when the test ends, last host first, and returns them
// with a logger of the test's phases and their times.
func startSwarmHosts(t *testing.T, n int) ([]*testHost, func(string)) {
	t.Helper()
	start := time.Now()
	phase := func(what string) {
		t.Helper()
		t.Logf("%6.1fs %s", time.Since(start).Seconds(), what)
	}
	hosts := startTestHosts(t, n)
	t.Cleanup(func() {
		for i := len(hosts) - 1; i >= 0; i-- {
			if hosts[i].cmd != nil {
				hosts[i].docker("swarm", "leave", "--force")
			}
		}
	})
	return hosts, phase
}
