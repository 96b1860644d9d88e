package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Swarm mode, first increment (cluster/, issue 17): the docker CLI makes
// this engine the first manager of a swarm, lists and inspects it, sees
// it in docker info and /_ping, finds it again after a daemon restart,
// and leaves it; what is not there yet (services) and bad input are
// refused with dockerd's status codes.
func TestSwarmInitLeave(t *testing.T) {
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	t.Cleanup(func() { docker(t, "swarm", "leave", "--force") })

	if r := docker(t, "swarm", "init", "--advertise-addr", "0.0.0.0"); r.code == 0 || !strings.Contains(r.stderr, "advertise address must be a non-zero IP address") {
		t.Fatalf("init advertising 0.0.0.0: %s", r)
	}
	if r := docker(t, "node", "ls"); r.code == 0 || !strings.Contains(r.stderr, "This node is not part of a swarm") {
		t.Fatalf("node ls outside a swarm: %s", r)
	}

	out := mustDocker(t, "swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", listen, "--task-history-limit", "3")
	m := regexp.MustCompile(`current node \((\w+)\) is now a manager`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "docker swarm join --token SWMTKN-1-") || !strings.Contains(out, listen) {
		t.Fatalf("swarm init printed:\n%s", out)
	}
	nodeID := m[1]
	if conn, err := net.DialTimeout("tcp", listen, 2*time.Second); err != nil {
		t.Fatalf("the swarm's remote API on %s: %v", listen, err)
	} else {
		conn.Close()
	}
	check := func(when string) {
		t.Helper()
		if got := mustDocker(t, "node", "ls", "--format", "{{.ID}} {{.Status}} {{.Availability}} {{.ManagerStatus}} {{.Self}}"); got != nodeID+" Ready Active Leader true\n" {
			t.Fatalf("node ls %s: %q", when, got)
		}
		if got := mustDocker(t, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}} {{.Swarm.ControlAvailable}} {{.Swarm.Managers}} {{.Swarm.Nodes}} {{.Swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit}}"); got != "active "+nodeID+" true 1 1 3\n" {
			t.Fatalf("docker info's Swarm %s: %q", when, got)
		}
		if got := pingHeader(t, "Swarm"); got != "active/manager" {
			t.Fatalf("/_ping's Swarm header %s: %q", when, got)
		}
	}
	check("after init")
	if got := mustDocker(t, "node", "inspect", "self", "--format", "{{.ID}} {{.Spec.Role}} {{.ManagerStatus.Addr}} {{.Description.Platform.OS}}"); got != nodeID+" manager "+listen+" linux\n" {
		t.Fatalf("node inspect self: %q", got)
	}
	if tok := strings.TrimSpace(mustDocker(t, "swarm", "join-token", "-q", "manager")); !strings.HasPrefix(tok, "SWMTKN-1-") {
		t.Fatalf("manager join token: %q", tok)
	}
	// Node and swarm updates.
	mustDocker(t, "node", "update", "--availability", "drain", "--label-add", "zone=a", nodeID)
	if got := mustDocker(t, "node", "inspect", "self", "--format", "{{.Spec.Availability}} {{.Spec.Labels.zone}}"); got != "drain a\n" {
		t.Fatalf("node after update: %q", got)
	}
	if got := mustDocker(t, "node", "ls", "-q", "--filter", "node.label=zone=a"); strings.TrimSpace(got) != nodeID {
		t.Fatalf("node ls by label: %q", got)
	}
	mustDocker(t, "node", "update", "--availability", "active", nodeID)
	worker := strings.TrimSpace(mustDocker(t, "swarm", "join-token", "-q", "worker"))
	mustDocker(t, "swarm", "join-token", "--rotate", "-q", "worker")
	if again := strings.TrimSpace(mustDocker(t, "swarm", "join-token", "-q", "worker")); again == worker || !strings.HasPrefix(again, "SWMTKN-1-") {
		t.Fatalf("worker token after --rotate: %q, was %q", again, worker)
	}
	if r := docker(t, "node", "rm", nodeID); r.code == 0 {
		t.Fatalf("node rm of the only manager: %s", r)
	}
	if r := docker(t, "swarm", "init"); r.code == 0 || !strings.Contains(r.stderr, "already part of a swarm") {
		t.Fatalf("a second init: %s", r)
	}
	if r := docker(t, "service", "create", "busybox"); r.code == 0 || !strings.Contains(r.stderr, "does not support services yet") {
		t.Fatalf("service create: %s", r)
	}
	if r := docker(t, "swarm", "leave"); r.code == 0 || !strings.Contains(r.stderr, "Use `--force`") {
		t.Fatalf("the last manager leaving without --force: %s", r)
	}

	// A restarted daemon is still the swarm's manager.
	if err := stopDaemon(); err != nil {
		t.Fatal(err)
	}
	if err := startDaemon(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the swarm node after the restart", func() bool {
		r := docker(t, "node", "ls", "-q")
		return r.code == 0 && strings.TrimSpace(r.stdout) == nodeID
	})
	check("after a daemon restart")

	if out := mustDocker(t, "swarm", "leave", "--force"); !strings.Contains(out, "Node left the swarm") {
		t.Fatalf("leave --force: %q", out)
	}
	if got := mustDocker(t, "info", "--format", "{{.Swarm.LocalNodeState}}"); got != "inactive\n" {
		t.Fatalf("docker info after leave: %q", got)
	}
	if got := pingHeader(t, "Swarm"); got != "inactive" {
		t.Fatalf("/_ping's Swarm header after leave: %q", got)
	}
	if _, err := os.Stat(filepath.Join(env.root, "data", "swarm")); !os.IsNotExist(err) {
		t.Errorf("the swarm's state after leave: %v", err)
	}
	waitFor(t, 10*time.Second, "the remote API to close", func() bool {
		conn, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
}

// pingHeader is a header of GET /_ping.
func pingHeader(t *testing.T, name string) string {
	t.Helper()
	resp, err := unixHTTPClient().Get("http://jevm/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get(name)
}
