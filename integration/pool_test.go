package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// poolStatus is the warm pool's line of `docker info` (daemon/pool.go):
// "2 per shape; idle 256 MiB 1 CPU: 2, 512 MiB 2 CPU: 1; 5 claimed, 0
// discarded"; idle counts the default shape's (256 MiB, 1 CPU).
type poolStatus struct {
	line                     string
	idle, claimed, discarded int
}

var poolLine = regexp.MustCompile(`^(\d+) per shape; idle (?:[^;]*, )?256 MiB 1 CPU: (\d+)(?:, [^;]*)?; (\d+) claimed, (\d+) discarded$`)

func readPoolStatus(t *testing.T) poolStatus {
	t.Helper()
	var pairs [][2]string
	if err := json.Unmarshal([]byte(mustDocker(t, "info", "--format", "{{json .DriverStatus}}")), &pairs); err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		if p[0] != "VM pool" {
			continue
		}
		m := poolLine.FindStringSubmatch(p[1])
		if m == nil {
			t.Fatalf("docker info's VM pool line: %q", p[1])
		}
		st := poolStatus{line: p[1]}
		st.idle, _ = strconv.Atoi(m[2])
		st.claimed, _ = strconv.Atoi(m[3])
		st.discarded, _ = strconv.Atoi(m[4])
		return st
	}
	t.Fatalf("docker info has no VM pool line: %v", pairs)
	return poolStatus{}
}

// waitPoolFull waits until the default shape has its 2 idle blanks.
func waitPoolFull(t *testing.T) poolStatus {
	t.Helper()
	var st poolStatus
	waitFor(t, 2*time.Minute, "the warm pool to fill", func() bool {
		st = readPoolStatus(t)
		return st.idle == 2
	})
	return st
}

// processGone tells whether pid has exited (a zombie not yet reaped by
// whoever inherited it counts as gone).
func processGone(pid string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] == 'Z'
}

// blankPids are the QEMU processes of this daemon started as blanks
// (claimed or not), with their command lines.
func blankPids() map[string]string {
	out := map[string]string{}
	for _, pid := range qemuProcessesUnder(env.root) {
		b, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.Contains(cmd, "-name jevm-pool") {
			out[pid] = cmd
		}
	}
	return out
}

// idleBlankPids are the blanks no container runs on.
func idleBlankPids(t *testing.T) []string {
	t.Helper()
	running := map[string]bool{}
	for _, id := range strings.Fields(mustDocker(t, "ps", "-q", "--no-trunc")) {
		running[inspectField(t, id, "{{.State.Pid}}")] = true
	}
	var idle []string
	for pid := range blankPids() {
		if !running[pid] {
			idle = append(idle, pid)
		}
	}
	sort.Strings(idle)
	return idle
}

// A start claims a blank of the warm pool: its VM is one of the blanks
// that were idle, no blank serves two containers (started at once, or one
// after another), a claimed blank's VM goes with its container, and the
// pool fills again. docker info reports it.
func TestPoolClaimsBlanks(t *testing.T) {
	before := waitPoolFull(t)
	if !strings.HasPrefix(before.line, "2 per shape; ") {
		t.Fatalf("pool size: %q", before.line)
	}
	idle := idleBlankPids(t)
	if len(idle) != 2 {
		t.Fatalf("idle blanks: %v (docker info: %q)", idle, before.line)
	}
	names := []string{uniqueName(t, "a"), uniqueName(t, "b"), uniqueName(t, "c")}
	rmOnCleanup(t, names...)
	// Three at once with two blanks: two claim one each, the third
	// clones the template (or a blank made meanwhile).
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func(n string) {
			defer wg.Done()
			docker(t, "run", "-d", "--name", n, "-v", t.TempDir()+":/data", "busybox", "sh", "-c", "echo $HOSTNAME > /data/me; exec sleep 300")
		}(n)
	}
	wg.Wait()
	pids := map[string]string{}
	for _, n := range names {
		if st := inspectField(t, n, "{{.State.Status}}"); st != "running" {
			t.Fatalf("%s: %s", n, st)
		}
		pid := vmPidOf(t, n)
		if other, ok := pids[pid]; ok {
			t.Fatalf("%s and %s run on the same VM (pid %s)", n, other, pid)
		}
		pids[pid] = n
		// Its own disk and its own bind mount, through the blank's share.
		host := strings.TrimSpace(mustDocker(t, "exec", n, "hostname"))
		if got := strings.TrimSpace(mustDocker(t, "exec", n, "cat", "/data/me")); got != host {
			t.Fatalf("%s: /data/me %q, hostname %q", n, got, host)
		}
	}
	for _, pid := range idle {
		if _, ok := pids[pid]; !ok {
			t.Fatalf("idle blank %s was not claimed; containers run on %v", pid, pids)
		}
	}
	if st := readPoolStatus(t); st.claimed < before.claimed+2 {
		t.Fatalf("claimed: %d before, %d after", before.claimed, st.claimed)
	}
	// Stopped and started again, a container gets another VM; the one
	// it had is gone.
	first := vmPidOf(t, names[0])
	mustDocker(t, "stop", "-t", "1", names[0])
	if !processGone(first) {
		t.Fatalf("the VM %s of a stopped container still runs", first)
	}
	waitPoolFull(t)
	refill := idleBlankPids(t)
	mustDocker(t, "start", names[0])
	again := vmPidOf(t, names[0])
	if again == first || pids[again] != "" {
		t.Fatalf("restarted on VM %s (first %s, others %v)", again, first, pids)
	}
	if refill[0] != again && (len(refill) < 2 || refill[1] != again) {
		t.Fatalf("restarted on VM %s, not on an idle blank %v", again, refill)
	}
	if got := mustDocker(t, "exec", names[0], "cat", "/data/me"); got == "" {
		t.Fatal("bind mount lost across the restart")
	}
	for _, n := range names {
		mustDocker(t, "rm", "-f", n)
	}
	for pid := range pids {
		if !processGone(pid) {
			t.Fatalf("VM %s outlived its container", pid)
		}
	}
	waitPoolFull(t)
}

// A start on --network none and one with a published port both run on
// claimed blanks: the blank's tap is dropped, or takes the place of the
// container's.
func TestPoolNetworks(t *testing.T) {
	waitPoolFull(t)
	if out := mustDocker(t, "run", "--rm", "--network", "none", "busybox", "sh", "-c", "ip -o addr show eth0 | grep -c inet; true"); strings.TrimSpace(out) != "0" {
		t.Fatalf("--network none: eth0 has addresses: %q", out)
	}
	waitPoolFull(t)
	name := uniqueName(t, "web")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "-p", "127.0.0.1::80", "busybox", "sh", "-c", "echo pooled > /tmp/index.html; exec httpd -f -p 80 -h /tmp")
	port := strings.TrimSpace(mustDocker(t, "port", name, "80"))
	var body string
	waitFor(t, 30*time.Second, "the published port to answer", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://%s/index.html", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200
	})
	if strings.TrimSpace(body) != "pooled" {
		t.Fatalf("published port answered %q", body)
	}
}
