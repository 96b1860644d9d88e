package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// counts are the numbers a counter container logged, in order.
func counts(t *testing.T, name string) []int {
	t.Helper()
	var out []int
	for _, l := range strings.Split(mustDocker(t, "logs", name), "\n") {
		if n, err := strconv.Atoi(strings.TrimSpace(l)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// checkpointNames is `docker checkpoint ls`'s names, without its header.
func checkpointNames(t *testing.T, name string) string {
	t.Helper()
	lines := strings.Fields(mustDocker(t, "checkpoint", "ls", name))
	if len(lines) < 2 || lines[0] != "CHECKPOINT" || lines[1] != "NAME" {
		t.Fatalf("checkpoint ls: %q", lines)
	}
	return strings.Join(lines[2:], " ")
}

// A checkpoint of a running container, then a restore: the shell's
// counter (in its memory) goes on from where it was rather than starting
// again, a file written before the checkpoint is there, the published
// port answers again. --leave-running keeps it running. Bad input gets
// clear errors and loses nothing.
func TestCheckpointRestore(t *testing.T) {
	name := uniqueName(t, "ckpt")
	t.Cleanup(func() { docker(t, "rm", "-f", name) })
	port := freePort(t)
	mustDocker(t, "run", "-d", "--name", name, "-p", fmt.Sprintf("%d:80", port), "busybox", "sh", "-c",
		"mkdir -p /www && echo served > /www/index.html && httpd -p 80 -h /www && i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done")
	waitFor(t, 60*time.Second, "the counter to reach 5", func() bool { return len(counts(t, name)) >= 5 })
	mustDocker(t, "exec", name, "sh", "-c", "echo before > /written.txt")

	if r := docker(t, "checkpoint", "create", name, "-bad"); r.code == 0 {
		t.Fatalf("a bad checkpoint name: %s", r)
	}
	t0 := time.Now()
	mustDocker(t, "checkpoint", "create", name, "c1")
	t.Logf("checkpoint (exit) took %s", time.Since(t0).Round(time.Millisecond))
	if got := mustDocker(t, "inspect", "--format", "{{.State.Running}}", name); got != "false\n" {
		t.Fatalf("the container after checkpoint create: running %q", got)
	}
	if got := mustDocker(t, "checkpoint", "ls", name); !strings.Contains(got, "c1") {
		t.Fatalf("checkpoint ls: %q", got)
	}
	if r := docker(t, "checkpoint", "create", name, "c2"); r.code == 0 || !strings.Contains(r.stderr, "is not running") {
		t.Fatalf("a checkpoint of a stopped container: %s", r)
	}
	if r := docker(t, "start", "--checkpoint", "nosuch", name); r.code == 0 || !strings.Contains(r.stderr, "does not exist") {
		t.Fatalf("a missing checkpoint: %s", r)
	}
	before := counts(t, name)
	last := before[len(before)-1]

	t0 = time.Now()
	mustDocker(t, "start", "--checkpoint", "c1", name)
	t.Logf("restore took %s; the counter was at %d", time.Since(t0).Round(time.Millisecond), last)
	waitFor(t, 60*time.Second, "the counter to go on", func() bool { return len(counts(t, name)) >= len(before)+5 })
	after := counts(t, name)
	for i, n := range after {
		if n != i+1 {
			t.Fatalf("the counter did not go on from %d after the restore: %v", last, after)
		}
	}
	if got := mustDocker(t, "exec", name, "cat", "/written.txt"); got != "before\n" {
		t.Fatalf("a file written before the checkpoint: %q", got)
	}
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); !strings.Contains(body, "served") {
		t.Fatalf("the server after the restore: %q", body)
	}
	if r := docker(t, "start", "--checkpoint", "c1", name); r.code == 0 {
		t.Fatalf("a restore into a running container: %s", r)
	}

	// --leave-running: the container goes on, the checkpoint is there.
	n := len(counts(t, name))
	mustDocker(t, "checkpoint", "create", "--leave-running", name, "c2")
	if got := mustDocker(t, "inspect", "--format", "{{.State.Running}}", name); got != "true\n" {
		t.Fatalf("the container after --leave-running: running %q", got)
	}
	waitFor(t, 30*time.Second, "the counter to go on after --leave-running", func() bool { return len(counts(t, name)) >= n+5 })
	if got := checkpointNames(t, name); got != "c1 c2" {
		t.Fatalf("checkpoint ls: %q", got)
	}
	mustDocker(t, "checkpoint", "rm", name, "c1")
	if got := checkpointNames(t, name); got != "c2" {
		t.Fatalf("checkpoint ls after rm: %q", got)
	}
	mustDocker(t, "rm", "-f", name)

	// A container with a volume: QEMU cannot migrate a mounted 9p
	// export; refused, and the container runs on.
	withVol := uniqueName(t, "ckvol")
	t.Cleanup(func() { docker(t, "rm", "-f", withVol); docker(t, "volume", "rm", withVol) })
	mustDocker(t, "run", "-d", "--name", withVol, "-v", withVol+":/data", "busybox", "sleep", "600")
	if r := docker(t, "checkpoint", "create", withVol, "c1"); r.code == 0 || !strings.Contains(r.stderr, "bind mounts or volumes") {
		t.Fatalf("a checkpoint of a container with a volume: %s", r)
	}
	if got := mustDocker(t, "inspect", "--format", "{{.State.Running}}", withVol); got != "true\n" {
		t.Fatalf("the container with a volume after the refused checkpoint: running %q", got)
	}
	mustDocker(t, "exec", withVol, "true")
	if got := checkpointNames(t, withVol); got != "" {
		t.Fatalf("a refused checkpoint left %q", got)
	}

	// An NFS volume is the guest's own mount: checkpointed with the VM,
	// and the restored shell appends on where it was.
	gw := strings.TrimSpace(mustDocker(t, "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", "bridge"))
	srv := startNFSServer(t, gw)
	withNFS := uniqueName(t, "cknfs")
	t.Cleanup(func() { docker(t, "rm", "-f", withNFS); docker(t, "volume", "rm", withNFS) })
	mustDocker(t, append(append([]string{"volume", "create"}, srv.volumeOptions()...), withNFS)...)
	mustDocker(t, "run", "-d", "--name", withNFS, "-v", withNFS+":/data", "busybox", "sh", "-c",
		"i=0; while true; do i=$((i+1)); echo $i >> /data/log; sleep 0.2; done")
	nfsLog := func() []string {
		b, _ := os.ReadFile(filepath.Join(srv.dir, "log"))
		return strings.Fields(string(b))
	}
	waitFor(t, 60*time.Second, "writes to the NFS volume", func() bool { return len(nfsLog()) >= 3 })
	mustDocker(t, "checkpoint", "create", withNFS, "c1")
	n = len(nfsLog())
	mustDocker(t, "start", "--checkpoint", "c1", withNFS)
	waitFor(t, 60*time.Second, "writes to the NFS volume after the restore", func() bool { return len(nfsLog()) >= n+3 })
	for i, l := range nfsLog() {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("the NFS volume's log has %q at line %d: the restored shell did not go on where it was", l, i+1)
		}
	}
}

// Two forks of one checkpoint (docker create, then start --checkpoint
// --checkpoint-dir): each takes the original's memory (its counter goes
// on from the checkpoint's value) and files, with its own address, MAC
// and hostname, and a kernel RNG of its own (the same memory would
// otherwise give both the same random numbers).
func TestCheckpointFork(t *testing.T) {
	orig := uniqueName(t, "orig")
	t.Cleanup(func() { docker(t, "rm", "-f", orig) })
	origID := strings.TrimSpace(mustDocker(t, "run", "-d", "--name", orig, "busybox", "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done"))
	waitFor(t, 60*time.Second, "the counter to reach 5", func() bool { return len(counts(t, orig)) >= 5 })
	mustDocker(t, "exec", orig, "sh", "-c", "echo from-orig > /written.txt")
	dir := t.TempDir()
	mustDocker(t, "checkpoint", "create", "--leave-running", "--checkpoint-dir", dir, orig, "c1")
	atCheckpoint := len(counts(t, orig))
	// The checkpoint held the container's processes still while it saved
	// the VM (so that a fork runs none of its code before it has its own
	// identity); the original runs on.
	if !regexp.MustCompile(`container=` + origID[:12] + `.*held=true`).Match(daemonLog(t)) {
		t.Fatalf("jevmd did not log the checkpoint of %s with held=true", orig)
	}
	checkReleased(t, orig)
	waitFor(t, 30*time.Second, "the original's counter to go on after the checkpoint", func() bool { return len(counts(t, orig)) > atCheckpoint })

	type facts struct{ ip, mac, hostname, uuid string }
	factsOf := func(name string) facts {
		f := strings.Fields(mustDocker(t, "inspect", "--format", "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}}", name))
		return facts{ip: f[0], mac: f[1],
			hostname: strings.TrimSpace(mustDocker(t, "exec", name, "hostname")),
			uuid:     strings.TrimSpace(mustDocker(t, "exec", name, "cat", "/proc/sys/kernel/random/uuid"))}
	}
	seen := map[string]string{}
	all := []facts{factsOf(orig)}
	for _, fork := range []string{uniqueName(t, "fork1"), uniqueName(t, "fork2")} {
		fork := fork
		t.Cleanup(func() { docker(t, "rm", "-f", fork) })
		id := strings.TrimSpace(mustDocker(t, "create", "--name", fork, "busybox", "true"))
		t0 := time.Now()
		mustDocker(t, "start", "--checkpoint", "c1", "--checkpoint-dir", dir, fork)
		t.Logf("fork %s started in %s", fork, time.Since(t0).Round(time.Millisecond))
		waitFor(t, 60*time.Second, fork+"'s counter to go on", func() bool { return len(counts(t, fork)) >= 3 })
		if c := counts(t, fork); c[0] < 5 || c[0] > atCheckpoint+2 {
			t.Fatalf("%s's counter starts at %d, want where the checkpoint was (about %d): %v", fork, c[0], atCheckpoint, c)
		}
		if got := mustDocker(t, "exec", fork, "cat", "/written.txt"); got != "from-orig\n" {
			t.Fatalf("%s: the original's file: %q", fork, got)
		}
		f := factsOf(fork)
		if f.hostname != id[:12] {
			t.Errorf("%s's hostname %q, want its own %q", fork, f.hostname, id[:12])
		}
		checkReleased(t, fork)
		all = append(all, f)
	}
	for _, f := range all {
		for what, v := range map[string]string{"ip": f.ip, "mac": f.mac, "hostname": f.hostname, "uuid": f.uuid} {
			if v == "" || seen[what+v] != "" {
				t.Fatalf("two of the original and its forks share %s %q: %+v", what, v, all)
			}
			seen[what+v] = "x"
		}
	}
	t.Logf("original and forks: %+v", all)
	// The forks reach each other at their own addresses.
	if out := mustDocker(t, "exec", uniqueName(t, "fork1"), "ping", "-c", "1", "-W", "2", all[2].ip); !strings.Contains(out, "1 packets received") {
		t.Fatalf("fork1 to fork2: %q", out)
	}
	if got := mustDocker(t, "inspect", "--format", "{{.State.Running}}", orig); got != "true\n" {
		t.Fatalf("the original after the forks: running %q", got)
	}
	// Refused forks lose nothing: a checkpoint made by another template
	// (its record changed here as a jevm upgrade would), a container of
	// another size. Each still starts normally after.
	other := t.TempDir()
	if out, err := exec.Command("cp", "-a", dir+"/c1", other+"/c1").CombinedOutput(); err != nil {
		t.Fatalf("copy the checkpoint: %v %s", err, out)
	}
	vmJSON := other + "/c1/vm.json"
	b, err := os.ReadFile(vmJSON)
	if err != nil {
		t.Fatal(err)
	}
	b = regexp.MustCompile(`"template": "[0-9a-f]+"`).ReplaceAll(b, []byte(`"template": "000000000000000000000000"`))
	if err := os.WriteFile(vmJSON, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, dir, want string }{
		{uniqueName(t, "oldtpl"), other, "another VM template"},
		{uniqueName(t, "bigger"), dir, "MiB"},
	} {
		c := c
		t.Cleanup(func() { docker(t, "rm", "-f", c.name) })
		args := []string{"create", "--name", c.name, "busybox", "true"}
		if c.want == "MiB" {
			args = []string{"create", "--name", c.name, "-m", "384m", "busybox", "true"}
		}
		mustDocker(t, args...)
		if r := docker(t, "start", "--checkpoint", "c1", "--checkpoint-dir", c.dir, c.name); r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Fatalf("%s from the checkpoint: %s", c.name, r)
		}
		mustDocker(t, "start", "-a", c.name)
		if got := mustDocker(t, "inspect", "--format", "{{.State.ExitCode}}", c.name); got != "0\n" {
			t.Fatalf("%s after the refused restore: exit %q", c.name, got)
		}
	}
	// A daemon restart re-adopts the forks' VMs as any other: their
	// counters go on, exec works, the forked hostname stays.
	fork1 := uniqueName(t, "fork1")
	restartDaemon(t)
	waitFor(t, 60*time.Second, "fork1's counter to go on after the daemon restart", func() bool {
		n := len(counts(t, fork1))
		time.Sleep(500 * time.Millisecond)
		return len(counts(t, fork1)) > n
	})
	if got := strings.TrimSpace(mustDocker(t, "exec", fork1, "hostname")); got != all[1].hostname {
		t.Fatalf("fork1's hostname after the daemon restart: %q, was %q", got, all[1].hostname)
	}
}

// checkReleased checks that the processes of a container whose guest
// was checkpointed (the original, with --leave-running) or restored from
// a checkpoint (a fork) run again in the guest's root cgroup: the
// checkpoint held them still in a cgroup of their own (the agent's
// hold_linux.go), which the container must not keep.
func checkReleased(t *testing.T, name string) {
	t.Helper()
	if got := mustDocker(t, "exec", name, "sh", "-c", "cat /proc/1/cgroup; ls /sys/fs/cgroup"); !strings.HasPrefix(got, "0::/\n") || strings.Contains(got, "hold") {
		t.Fatalf("%s's cgroup and the guest's cgroups after the checkpoint: %q", name, got)
	}
}

// A container connected to a second network while it ran (a hot-plugged
// NIC) is checkpointed and restored with both: the same addresses, and a
// peer on the second network reached again.
func TestCheckpointTwoNetworks(t *testing.T) {
	netA, netB := newNetwork(t, "cka"), newNetwork(t, "ckb")
	peer, two := uniqueName(t, "peer"), uniqueName(t, "two")
	t.Cleanup(func() { docker(t, "rm", "-f", peer, two) })
	mustDocker(t, "run", "-d", "--name", peer, "--network", netB, "busybox", "sleep", "600")
	peerIP := strings.TrimSpace(mustDocker(t, "inspect", "--format", `{{(index .NetworkSettings.Networks "`+netB+`").IPAddress}}`, peer))
	mustDocker(t, "run", "-d", "--name", two, "--network", netA, "busybox", "sleep", "600")
	mustDocker(t, "network", "connect", netB, two)
	addrs := func() string {
		return mustDocker(t, "inspect", "--format", `{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}`, two)
	}
	before := addrs()
	if out := mustDocker(t, "exec", two, "ping", "-c", "1", "-W", "2", peerIP); !strings.Contains(out, "1 packets received") {
		t.Fatalf("the peer before the checkpoint: %q", out)
	}
	mustDocker(t, "checkpoint", "create", two, "c1")
	mustDocker(t, "start", "--checkpoint", "c1", two)
	if got := addrs(); got != before {
		t.Fatalf("addresses after the restore: %q, were %q", got, before)
	}
	guest := mustDocker(t, "exec", two, "ip", "-o", "-4", "addr")
	for _, kv := range strings.Fields(before) {
		if _, ip, _ := strings.Cut(kv, "="); !strings.Contains(guest, " "+ip+"/") {
			t.Fatalf("the guest lost %s:\n%s", ip, guest)
		}
	}
	if out := mustDocker(t, "exec", two, "ping", "-c", "1", "-W", "2", peerIP); !strings.Contains(out, "1 packets received") {
		t.Fatalf("the peer on the second network after the restore: %q", out)
	}
}
