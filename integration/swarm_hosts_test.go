package integration

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Swarm mode across three jevmd hosts (startTestHosts): init on one, a
// join refused for a wrong token, a manager and a worker join; a
// 6-replica service spreads two tasks to each host; a global service's
// host-mode port answers on every host; a rolling update replaces tasks
// one at a time; drain moves a host's tasks away; with three managers,
// killing one host's jevmd leaves a quorum, its tasks are rescheduled,
// and when it comes back its leftover VMs are stopped; removing the
// services and leaving the swarm leaves no container behind.
func TestSwarmAcrossHosts(t *testing.T) {
	hosts, phase := startSwarmHosts(t, 3)
	phase("three hosts up")
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]

	out := h1.must("swarm", "init", "--advertise-addr", h1.ip, "--task-history-limit", "1")
	if !strings.Contains(out, "docker swarm join --token SWMTKN-1-") || !strings.Contains(out, h1.ip+":2377") {
		t.Fatalf("swarm init printed:\n%s", out)
	}
	workerToken := strings.TrimSpace(h1.must("swarm", "join-token", "-q", "worker"))
	managerToken := strings.TrimSpace(h1.must("swarm", "join-token", "-q", "manager"))
	bad := workerToken[:len(workerToken)-6] + "abcdef"
	if r := h3.docker("swarm", "join", "--token", bad, h1.ip); r.code == 0 || !strings.Contains(r.stderr, "join token") {
		t.Fatalf("a join with a wrong token: %s", r)
	}
	if got := h3.must("info", "--format", "{{.Swarm.LocalNodeState}}"); got != "inactive\n" {
		t.Fatalf("after a refused join: %q", got)
	}
	if out := h2.must("swarm", "join", "--token", managerToken, "--advertise-addr", h2.ip, h1.ip+":2377"); !strings.Contains(out, "joined a swarm as a manager") {
		t.Fatalf("h2's join: %q", out)
	}
	if out := h3.must("swarm", "join", "--token", workerToken, h1.ip); !strings.Contains(out, "joined a swarm as a worker") {
		t.Fatalf("h3's join: %q", out)
	}
	if got := h3.must("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeAddr}} {{len .Swarm.RemoteManagers}}"); got != "active false "+h3.ip+" 2\n" && got != "active false "+h3.ip+" 1\n" {
		t.Fatalf("the worker's docker info: %q", got)
	}
	if r := h3.docker("node", "ls"); r.code == 0 || !strings.Contains(r.stderr, "not a swarm manager") {
		t.Fatalf("node ls on a worker: %s", r)
	}
	ids := map[*testHost]string{}
	for _, h := range hosts {
		ids[h] = strings.TrimSpace(h.must("info", "--format", "{{.Swarm.NodeID}}"))
	}
	waitFor(t, 60*time.Second, "three ready nodes", func() bool {
		out := h2.must("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}")
		return strings.Contains(out, h1.name+" Ready Leader\n") && strings.Contains(out, h2.name+" Ready Reachable\n") && strings.Contains(out, h3.name+" Ready \n")
	})

	phase("swarm of three")
	// tasksOn counts the running containers of svc on h.
	tasksOn := func(h *testHost, svc string) int {
		return len(strings.Fields(h.must("ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc)))
	}
	spread := func() string {
		var parts []string
		for _, h := range hosts {
			if h.cmd == nil {
				parts = append(parts, "-")
				continue
			}
			parts = append(parts, fmt.Sprint(tasksOn(h, "sleeper")))
		}
		return strings.Join(parts, " ")
	}
	h1.must("service", "create", "--detach", "--name", "sleeper", "--replicas", "6", "--update-parallelism", "1", "--update-delay", "0s", "--stop-grace-period", "2s", "busybox", "sh", "-c", "echo up; exec sleep 3600")
	waitFor(t, 4*time.Minute, "6 tasks, 2 on each host", func() bool { return spread() == "2 2 2" })
	phase("6 tasks spread")
	// The logs of all six, from the three hosts, through one manager.
	waitFor(t, 30*time.Second, "the logs of the six tasks", func() bool {
		out := h2.must("service", "logs", "sleeper")
		for _, h := range hosts {
			if len(regexp.MustCompile(`(?m)^sleeper\.\d\.\w+@`+h.name+` +\| up$`).FindAllString(out, -1)) != 2 {
				return false
			}
		}
		return true
	})

	phase("logs of the six read")
	// A global service with a host-mode port answers on every host.
	port := freePort(t)
	h1.must("service", "create", "--detach", "--name", "web", "--mode", "global", "--publish", fmt.Sprintf("mode=host,target=80,published=%d", port), "web")
	for _, h := range hosts {
		if body := httpGet(t, fmt.Sprintf("http://%s:%d/", h.ip, port)); !strings.Contains(body, webIndex) {
			t.Fatalf("web on %s: %q", h.name, body)
		}
	}
	h1.must("service", "rm", "web")

	phase("global service answered on every host")
	// A placement constraint and a memory limit: both tasks on h3, each
	// a VM of the limit's size.
	h1.must("node", "update", "--label-add", "disk=ssd", ids[h3])
	sleeperOnH3 := strings.Fields(h3.must("ps", "-q", "--filter", "label=com.docker.swarm.service.name=sleeper"))[0]
	h1.must("service", "create", "--detach", "--name", "pinned", "--replicas", "2", "--constraint", "node.labels.disk==ssd",
		"--limit-memory", "192M", "busybox", "sleep", "3600")
	waitFor(t, 2*time.Minute, "pinned's two tasks on h3", func() bool { return tasksOn(h3, "pinned") == 2 })
	for _, id := range strings.Fields(h3.must("ps", "-q", "--filter", "label=com.docker.swarm.service.name=pinned")) {
		if got := h3.must("inspect", "--format", "{{.HostConfig.Memory}}", id); got != fmt.Sprintln(192<<20) {
			t.Errorf("a pinned task's memory: %q", got)
		}
		// The guest kernel keeps some: compare with a default-sized VM's
		// (256 MiB), a sleeper task's on the same host.
		if kib, def := memTotalKiB(t, h3.must("exec", id, "cat", "/proc/meminfo")), memTotalKiB(t, h3.must("exec", sleeperOnH3, "cat", "/proc/meminfo")); kib > def-48<<10 || kib < def-80<<10 {
			t.Errorf("a pinned task's VM has %d KiB of memory, a default one %d KiB: want 64 MiB less", kib, def)
		}
	}
	if n1, n2 := tasksOn(h1, "pinned"), tasksOn(h2, "pinned"); n1+n2 != 0 {
		t.Errorf("pinned tasks on h1 and h2: %d, %d", n1, n2)
	}
	h1.must("service", "rm", "pinned")
	phase("constraint and memory limit held")
	// A rolling update, one task at a time: never fewer than five run.
	h2.must("service", "update", "--detach", "--env-add", "GEN=2", "sleeper")
	fewest := 6
	waitFor(t, 4*time.Minute, "the rolling update", func() bool {
		out := h1.must("service", "ps", "--filter", "desired-state=running", "--format", "{{.CurrentState}}", "sleeper")
		fewest = min(fewest, strings.Count(out, "Running"))
		st := h1.must("service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", "sleeper")
		return strings.TrimSpace(st) == "completed"
	})
	if fewest < 5 {
		t.Errorf("during the rolling update only %d tasks ran", fewest)
	}
	for _, h := range hosts {
		for _, id := range strings.Fields(h.must("ps", "-q", "--filter", "label=com.docker.swarm.service.name=sleeper")) {
			if env := h.must("inspect", "--format", "{{range .Config.Env}}{{.}} {{end}}", id); !strings.Contains(env, "GEN=2") {
				t.Fatalf("a task on %s after the update: %s", h.name, env)
			}
		}
	}

	phase(fmt.Sprintf("rolling update done (fewest running %d)", fewest))
	// Drain moves the worker's tasks to the others.
	h1.must("node", "update", "--availability", "drain", ids[h3])
	waitFor(t, 3*time.Minute, "h3 drained", func() bool {
		s := spread()
		return strings.HasSuffix(s, " 0") && h1.must("service", "ls", "--filter", "name=sleeper", "--format", "{{.Replicas}}") == "6/6\n"
	})
	h1.must("node", "update", "--availability", "active", ids[h3])

	phase("drained")
	// Three managers survive the loss of one; the lost host's tasks are
	// rescheduled.
	h1.must("node", "promote", ids[h3])
	waitFor(t, 60*time.Second, "h3 a manager", func() bool { return h3.docker("node", "ls").code == 0 })
	onH2 := tasksOn(h2, "sleeper")
	if onH2 == 0 {
		t.Fatalf("no task on h2 before its daemon is killed: %s", spread())
	}
	h2.kill9()
	phase(fmt.Sprintf("h2 killed with %d tasks", onH2))
	waitFor(t, 3*time.Minute, "h2 down and its tasks running elsewhere", func() bool {
		r := h3.docker("node", "inspect", "--format", "{{.Status.State}}", ids[h2])
		if r.code != 0 || strings.TrimSpace(r.stdout) != "down" {
			return false
		}
		n1, n3 := tasksOn(h1, "sleeper"), tasksOn(h3, "sleeper")
		return n1+n3 == 6
	})
	if out := h1.must("node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"); !regexp.MustCompile(h2.name + ` Unreachable`).MatchString(out) {
		t.Errorf("node ls with h2 lost:\n%s", out)
	}
	phase("h2's tasks rescheduled")
	// Back, h2 finds its old tasks shut down: their VMs stop.
	h2.start()
	h2.waitUp()
	phase(fmt.Sprintf("h2 back with %d task containers running", tasksOn(h2, "sleeper")))
	waitFor(t, 3*time.Minute, "h2's leftover tasks stopped", func() bool {
		return tasksOn(h2, "sleeper") == 0 && strings.Contains(h1.must("node", "ls", "--format", "{{.Hostname}} {{.Status}}"), h2.name+" Ready")
	})
	// Its agent is ready before its raft member is reachable again; until
	// it is, demoting another manager would lose the quorum (SwarmKit
	// refuses that), so wait for all three to be reachable.
	waitFor(t, 2*time.Minute, "h2 a reachable manager again", func() bool {
		out := h1.must("node", "ls", "--format", "{{.ManagerStatus}}")
		return strings.Count(out, "Reachable")+strings.Count(out, "Leader") == 3
	})

	phase("h2's leftovers stopped")
	h3.must("service", "rm", "sleeper")
	for _, h := range hosts {
		waitFor(t, 2*time.Minute, "the service's containers to go from "+h.name, func() bool {
			return strings.TrimSpace(h.must("ps", "-aq", "--filter", "label=com.docker.swarm.service.name=sleeper")) == ""
		})
	}
	h3.must("node", "demote", ids[h3])
	waitFor(t, 60*time.Second, "h3 a worker", func() bool { return h3.docker("node", "ls").code != 0 })
	h3.must("swarm", "leave")
	h2.must("swarm", "leave", "--force")
	h1.must("swarm", "leave", "--force")
	phase("left")
	for _, h := range hosts {
		if got := h.must("info", "--format", "{{.Swarm.LocalNodeState}}"); got != "inactive\n" {
			t.Errorf("%s after leave: %q", h.name, got)
		}
		if left := strings.TrimSpace(h.must("ps", "-aq")); left != "" {
			t.Errorf("containers left on %s: %s", h.name, left)
		}
	}
}
