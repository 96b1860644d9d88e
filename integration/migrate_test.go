package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jevm/jevm/internal/tlstest"
)

// Live migration between two jevmd hosts (docs/MIGRATION.md), each in
// network namespaces of its own with its TLS API on tcp://IP:2376 and a
// certificate of one CA that serves and also identifies it as a client
// of the other. A busybox container serves a counter its shell keeps in
// memory through a published port; a client keeps asking whichever host
// answers. `docker jevm migrate` (the CLI plugin) moves it to h2 and
// back: the counter never goes back, the files are there, the container
// keeps its ID and name, and nothing of it is left on the host it left.
// Bad input gets clear errors and the container keeps running; a target
// killed during the copy leaves the container running where it was and,
// once restarted, nothing of it.
func TestMigrateAcrossHosts(t *testing.T) {
	certDir := t.TempDir()
	ca := tlstest.NewCA(t, "jevm hosts CA")
	// An NFS server on the hosts' network (started with the first host,
	// once the network is up): NFS volumes live there, and both hosts
	// declare its directory shared storage, as hosts that mount one
	// export at the same place would be. h2 has a directory in it that
	// is another export than on h1 (a migration to h2 of a volume there
	// is refused).
	//
	// h1 also serves its own volumes directory to its VMs over NFS (as a
	// host's nfsd would) and declares it: its local volumes are the
	// guests' NFS mounts, so a container with one can be checkpointed,
	// but not migrated (the data is h1's).
	var srv, h1vols *nfsServer
	hosts := startTestHosts(t, 2, func(i int, h *testHost) []string {
		f := tlstest.WriteDir(t, filepath.Join(certDir, strconv.Itoa(i)), ca, ca.Host(t, "host"+strconv.Itoa(i), net.ParseIP(h.ip)))
		if srv == nil {
			srv = startNFSServer(t, hostsNet+"1")
		}
		args := []string{"-H", "tcp://" + h.ip + ":2376", "--tlsverify", "--tlscacert", f.CA, "--tlscert", f.Cert, "--tlskey", f.Key,
			"--experimental", "--shared-storage", srv.sharedStorage()}
		switch i {
		case 1:
			h1vols = startNFSServerOf(t, hostsNet+"1", filepath.Join(h.dir, "data", "volumes"))
			args = append(args, "--shared-storage", h1vols.sharedStorage())
		case 2:
			args = append(args, "--shared-storage", fmt.Sprintf("%s/other=nfs://%s:%d/elsewhere?vers=3", srv.dir, srv.ip, srv.port))
		}
		return args
	})
	h1, h2 := hosts[0], hosts[1]
	target := func(h *testHost) string { return "tcp://" + h.ip + ":2376" }
	t.Cleanup(func() {
		for _, h := range hosts {
			if h.cmd != nil {
				for _, id := range strings.Fields(h.must("ps", "-aq")) {
					h.docker("rm", "-f", id)
				}
			}
		}
	})
	linksBefore := h1.inNS("ip", "-o", "link", "show")
	port := freePort(t)
	const name = "mig"
	id := strings.TrimSpace(h1.must("run", "-d", "--name", name, "-p", fmt.Sprintf("%d:80", port),
		"--health-cmd", "test -f /www/file", "--health-interval", "1s", "busybox", "sh", "-c",
		"echo started on h1 && mkdir -p /www && echo before > /www/file && httpd -p 80 -h /www && i=0; while true; do i=$((i+1)); echo $i > /www/count; sleep 0.1; done"))

	// The client: the counter through the published port of h1, else h2.
	type sample struct {
		at   time.Time
		host string
		n    int
	}
	var mu sync.Mutex
	var samples []sample
	hc := &http.Client{Timeout: time.Second}
	count := func(h *testHost) (int, bool) {
		resp, err := hc.Get(fmt.Sprintf("http://%s:%d/count", h.ip, port))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return n, err == nil && resp.StatusCode == http.StatusOK
	}
	stop := make(chan struct{})
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, h := range hosts {
				if n, ok := count(h); ok {
					mu.Lock()
					samples = append(samples, sample{time.Now(), h.name, n})
					mu.Unlock()
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	stopClient := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-clientDone
	}
	defer stopClient()
	served := func(host string) int {
		mu.Lock()
		defer mu.Unlock()
		k := 0
		for _, s := range samples {
			if s.host == host {
				k++
			}
		}
		return k
	}
	waitFor(t, 60*time.Second, "the counter served by h1", func() bool { return served(h1.name) >= 5 })
	waitFor(t, 60*time.Second, "mig healthy on h1", func() bool {
		return h1.must("inspect", "--format", "{{.State.Health.Status}}", name) == "healthy\n"
	})

	// h1 -> h2: h2 has neither the image nor its disk.
	t0 := time.Now()
	out := h1.must("jevm", "migrate", name, target(h2))
	t.Logf("migrate to h2 took %s:\n%s", time.Since(t0).Round(time.Millisecond), out)
	if !strings.Contains(out, "Migrated "+name+" to "+target(h2)) || !strings.Contains(out, "Sending image") {
		t.Fatalf("docker jevm migrate printed:\n%s", out)
	}
	if got := h2.must("inspect", "--format", "{{.Id}} {{.Name}} {{.State.Running}}", name); got != id+" /"+name+" true\n" {
		t.Fatalf("on h2: %q, want %s", got, id)
	}
	// Its health went on (it did not restart): healthy, with h1's probes.
	if got := h2.must("inspect", "--format", "{{.State.Health.Status}} {{gt (len .State.Health.Log) 0}}", name); got != "healthy true\n" {
		t.Errorf("mig's health on h2 right after the migration: %q", got)
	}
	waitFor(t, 30*time.Second, "the counter served by h2", func() bool { return served(h2.name) >= 5 })
	if got := h2.must("logs", name); got != "started on h1\n" {
		t.Fatalf("docker logs on h2: %q", got)
	}
	if got := h2.must("exec", name, "cat", "/www/file"); got != "before\n" {
		t.Fatalf("a file written before, on h2: %q", got)
	}
	// Nothing of it on h1: no record, directory, VM, port rule or link.
	if got := h1.must("ps", "-aq"); got != "" {
		t.Errorf("containers left on h1: %q", got)
	}
	if _, err := os.Stat(filepath.Join(h1.dir, "data", "containers", id)); err == nil {
		t.Error("the container's directory is left on h1")
	}
	if left := qemuProcessesUnder(h1.dir); len(left) > 0 {
		t.Errorf("QEMU left on h1: %v", left)
	}
	if rules := h1.inNS("iptables", "-t", "nat", "-S"); strings.Contains(rules, strconv.Itoa(port)) {
		t.Errorf("h1's NAT rules still publish %d:\n%s", port, rules)
	}
	if links := h1.inNS("ip", "-o", "link", "show"); linkNames(links) != linkNames(linksBefore) {
		t.Errorf("h1's links before the run: %s; after the migration: %s", linkNames(linksBefore), linkNames(links))
	}

	// Back to h1: h1 has the image and a disk of the same contents.
	out = h2.must("jevm", "migrate", name, target(h1))
	t.Logf("migrate back to h1:\n%s", out)
	if strings.Contains(out, "Sending") {
		t.Errorf("the way back sent the image or its disk again:\n%s", out)
	}
	if got := h1.must("inspect", "--format", "{{.Id}} {{.State.Running}}", name); got != id+" true\n" {
		t.Fatalf("back on h1: %q", got)
	}
	if got := h2.must("ps", "-aq"); got != "" {
		t.Errorf("containers left on h2: %q", got)
	}
	k1 := served(h1.name)
	waitFor(t, 30*time.Second, "the counter served by h1 again", func() bool { return served(h1.name) >= k1+5 })
	stopClient()

	// The counter never went back (a restart would count from 1), and
	// the longest time no host answered.
	mu.Lock()
	var gap time.Duration
	gapAt := 0
	for i := 1; i < len(samples); i++ {
		if samples[i].n < samples[i-1].n {
			t.Errorf("the counter went back: %d from %s after %d from %s", samples[i].n, samples[i].host, samples[i-1].n, samples[i-1].host)
		}
		if g := samples[i].at.Sub(samples[i-1].at); g > gap {
			gap, gapAt = g, i
		}
	}
	if gapAt > 0 {
		t.Logf("%d answers, the longest without one %s (%s %d at +%s, then %s %d)", len(samples), gap.Round(time.Millisecond),
			samples[gapAt-1].host, samples[gapAt-1].n, samples[gapAt-1].at.Sub(t0).Round(time.Millisecond), samples[gapAt].host, samples[gapAt].n)
	}
	mu.Unlock()

	// Refused, and the container runs on.
	expectFail := func(h *testHost, want string, args ...string) {
		t.Helper()
		r := h.docker(append([]string{"jevm", "migrate"}, args...)...)
		if r.code == 0 || !strings.Contains(r.stderr+r.stdout, want) {
			t.Errorf("docker jevm migrate %s: want an error with %q, got %s", strings.Join(args, " "), want, r)
		}
	}
	expectFail(h1, "No such container", "nosuch", target(h2))
	expectFail(h1, "invalid migration target", name, h2.ip+":2376")
	expectFail(h1, "connection refused", name, "tcp://"+h2.ip+":2399")
	h2.must("create", "--name", name, "busybox", "true")
	expectFail(h1, "is already in use", name, target(h2))
	h2.must("rm", name)
	h1.must("create", "--name", "stopped", "busybox", "true")
	expectFail(h1, "is not running", "stopped", target(h2))
	h1.must("run", "-d", "--name", "withbind", "-v", t.TempDir()+":/data", "busybox", "sleep", "600")
	expectFail(h1, "bind mounts or volumes on the host's disk (/data)", "withbind", target(h2))
	// h1's volumes are on its shared volumes directory (below): the guest's
	// NFS mounts, but this host's data.
	h1.must("run", "-d", "--name", "withvol", "-v", "/data", "busybox", "sleep", "600")
	expectFail(h1, "is a local volume, whose data stays on this host", "withvol", target(h2))
	h1.must("pause", name)
	expectFail(h1, "is paused", name, target(h2))
	h1.must("unpause", name)
	if got := h2.must("ps", "-aq"); got != "" {
		t.Errorf("refused migrations left containers on h2: %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Join(h2.dir, "data", "containers")); len(entries) != 0 {
		t.Errorf("refused migrations left %d container directories on h2", len(entries))
	}
	// (Right after the unpause the guest may take over the client's
	// second to answer.)
	n1, _ := count(h1)
	waitFor(t, 30*time.Second, "the counter to go on after the refusals", func() bool {
		n2, ok := count(h1)
		return ok && n2 > n1
	})

	// An NFS volume follows its container: h2 has no volume of that name
	// and makes one with h1's options; the guest's own NFS mount moves
	// with the VM, and the container's shell writes on through it. On h2
	// another container has the container's address on their network, so
	// the migrated guest gets a new one (the agent readdresses it), and
	// its NFS client goes on over it.
	//
	// A bind-source volume on shared storage follows it too: its
	// directory is in the server's, which both hosts declare shared, so
	// the guest mounts it from the server (a 9p share would refuse the
	// migration).
	h1.must(append(append([]string{"volume", "create"}, srv.volumeOptions()...), "shared")...)
	for _, d := range []string{"app", "other", "direct"} {
		if err := os.Mkdir(filepath.Join(srv.dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	h1.must("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", "device="+filepath.Join(srv.dir, "app"), "appdata")
	for _, h := range hosts {
		h.must("network", "create", "--subnet", "10.99.0.0/24", "mignet")
	}
	h1.must("run", "-d", "--name", "nfs", "--network", "mignet", "-v", "shared:/data", "-v", "appdata:/app", "-v", filepath.Join(srv.dir, "direct")+":/direct", "busybox", "sh", "-c",
		"echo before > /data/before; i=0; while true; do i=$((i+1)); echo $i >> /data/log; echo $i >> /app/log; echo $i; sleep 0.2; done")
	ipOn := func(h *testHost, name string) string {
		return strings.TrimSpace(h.must("inspect", "--format", `{{(index .NetworkSettings.Networks "mignet").IPAddress}}`, name))
	}
	oldIP := ipOn(h1, "nfs")
	h2.must("run", "-d", "--name", "squat", "--network", "mignet", "--ip", oldIP, "busybox", "sleep", "600")
	logLines := func() []string {
		b, _ := os.ReadFile(filepath.Join(srv.dir, "log"))
		return strings.Fields(string(b))
	}
	waitFor(t, 60*time.Second, "the container writing to its NFS volume", func() bool { return len(logLines()) >= 3 })
	h1.must("exec", "nfs", "sh", "-c", "echo h1 > /direct/f")
	t0 = time.Now()
	out = h1.must("jevm", "migrate", "nfs", target(h2))
	t.Logf("migrate a container with an NFS volume:\n%s", out)
	n := len(logLines())
	waitFor(t, 60*time.Second, "writes through the NFS volume from h2", func() bool { return len(logLines()) >= n+5 })
	t.Logf("the volume's log went on %s after the migration began", time.Since(t0).Round(time.Millisecond))
	for i, l := range logLines() {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("the log on the NFS volume has %q at line %d: the writer did not go on where it was", l, i+1)
		}
	}
	// Its log came along: every line once, in order, those of the
	// pause too (the commit carries them).
	for i, l := range strings.Fields(h2.must("logs", "nfs")) {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("docker logs on h2 has %q at line %d", l, i+1)
		}
	}
	if got := h2.must("exec", "nfs", "cat", "/data/before"); got != "before\n" {
		t.Fatalf("a file written on h1, read on h2: %q", got)
	}
	h2.must("exec", "nfs", "sh", "-c", "echo after > /data/after")
	if b, _ := os.ReadFile(filepath.Join(srv.dir, "after")); string(b) != "after\n" {
		t.Fatalf("a file written on h2, on the server: %q", b)
	}
	for _, vol := range []string{"shared", "appdata"} {
		if got, want := h2.must("volume", "inspect", "--format", "{{json .Options}}", vol), h1.must("volume", "inspect", "--format", "{{json .Options}}", vol); got != want {
			t.Fatalf("the volume %s h2 made has %s, h1's %s", vol, got, want)
		}
	}
	// The bind-source volume's log: written from both hosts, in order,
	// as far as the other log.
	appLog := func() []string {
		b, _ := os.ReadFile(filepath.Join(srv.dir, "app", "log"))
		return strings.Fields(string(b))
	}
	waitFor(t, 10*time.Second, "the bind-source volume's log as long as the NFS volume's", func() bool { return len(appLog()) >= n+5 })
	for i, l := range appLog() {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("the log on the bind-source volume has %q at line %d", l, i+1)
		}
	}
	if got := h2.must("exec", "nfs", "sh", "-c", "grep ' /app ' /proc/mounts"); !strings.Contains(got, srv.ip+":/app /app nfs ") {
		t.Fatalf("the guest's mount of the bind-source volume: %s", got)
	}
	// So does a directory on shared storage bind-mounted with -v.
	if got := h2.must("exec", "nfs", "sh", "-c", "cat /direct/f && echo h2 > /direct/g && grep ' /direct ' /proc/mounts"); !strings.HasPrefix(got, "h1\n"+srv.ip+":/direct /direct nfs ") {
		t.Fatalf("the bind-mounted directory on h2: %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(srv.dir, "direct", "g")); string(b) != "h2\n" {
		t.Fatalf("a file written on h2 in the bind-mounted directory: %q", b)
	}
	// A volume in a directory that is another export on h2 than on h1
	// cannot follow a container there; it runs on at h1.
	h1.must("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", "device="+filepath.Join(srv.dir, "other"), "otherdata")
	h1.must("run", "-d", "--name", "other", "--network", "mignet", "-v", "otherdata:/other", "busybox", "sleep", "600")
	expectFail(h1, "is nfs "+srv.ip+":/elsewhere on this host, nfs "+srv.ip+":/other on the source", "other", target(h2))
	if got := strings.TrimSpace(h1.must("inspect", "--format", "{{.State.Running}}", "other")); got != "true" {
		t.Fatalf("the container whose migration was refused: running %s", got)
	}
	if got := h2.docker("volume", "inspect", "otherdata"); got.code == 0 {
		t.Fatalf("the refused migration left volume otherdata on h2: %s", got)
	}
	h1.must("rm", "-f", "other")
	h1.must("volume", "rm", "otherdata")

	// A local volume on h1's shared volumes directory: checkpointed and
	// restored with its counter and its file going on, and refused a
	// migration before anything is sent.
	h1.must("run", "-d", "--name", "local", "--network", "mignet", "-v", "localdata:/data", "busybox", "sh", "-c",
		"i=0; while true; do i=$((i+1)); echo $i >> /data/log; echo $i; sleep 0.2; done")
	localLog := func() []string {
		b, _ := os.ReadFile(filepath.Join(h1vols.dir, "localdata", "_data", "log"))
		return strings.Fields(string(b))
	}
	waitFor(t, 60*time.Second, "writes to the local volume", func() bool { return len(localLog()) >= 3 })
	if got := h1.must("exec", "local", "sh", "-c", "grep ' /data ' /proc/mounts"); !strings.Contains(got, h1vols.ip+":/localdata/_data /data nfs ") {
		t.Fatalf("the guest's mount of the local volume: %s", got)
	}
	h1.must("checkpoint", "create", "local", "lc1")
	n = len(localLog())
	h1.must("start", "--checkpoint", "lc1", "local")
	waitFor(t, 60*time.Second, "the restored container writing to its volume", func() bool { return len(localLog()) >= n+5 })
	for i, l := range localLog() {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("the local volume's log has %q at line %d: the restored writer did not go on where it was", l, i+1)
		}
	}
	expectFail(h1, "volume localdata is a local volume, whose data stays on this host", "local", target(h2))
	if got := strings.TrimSpace(h1.must("inspect", "--format", "{{.State.Running}}", "local")); got != "true" {
		t.Fatalf("the container with a local volume after its refused migration: running %s", got)
	}
	h1.must("rm", "-f", "local")
	h1.must("volume", "rm", "localdata")
	newIP := ipOn(h2, "nfs")
	if newIP == oldIP || newIP == "" {
		t.Fatalf("the migrated container's address on h2 is %q (h1's was %s, which squat has there)", newIP, oldIP)
	}
	if got := h2.must("exec", "nfs", "ip", "-4", "-o", "addr", "show", "eth0"); !strings.Contains(got, " "+newIP+"/") || strings.Contains(got, " "+oldIP+"/") {
		t.Fatalf("inspect says %s, the guest has: %s", newIP, got)
	}
	h2.must("exec", "squat", "ping", "-c", "1", "-W", "5", newIP)
	t.Logf("readdressed on h2: %s -> %s", oldIP, newIP)
	h1.must("volume", "rm", "shared", "appdata") // no longer used on h1
	h2.must("rm", "-f", "nfs", "squat")
	for _, h := range hosts {
		h.must("network", "rm", "mignet")
	}

	// The target's jevmd killed during the copy: the container runs on
	// here; the target, started again, stops the VM it was loading and
	// keeps nothing; then the migration goes through.
	busyID := strings.TrimSpace(h1.must("run", "-d", "--name", "busy", "--shm-size", "100m", "busybox", "sh", "-c",
		"head -c 33554432 /dev/urandom > /dev/shm/a && echo ready && while :; do cp /dev/shm/a /dev/shm/b; done"))
	waitFor(t, 60*time.Second, "busy's file", func() bool { return strings.Contains(h1.must("logs", "busy"), "ready") })
	res := make(chan result, 1)
	go func() { res <- h1.docker("jevm", "migrate", "busy", target(h2)) }()
	waitFor(t, 60*time.Second, "the incoming VM on h2", func() bool { return len(qemuProcessesUnder(h2.dir)) > 0 })
	h2.kill9()
	if r := <-res; r.code == 0 || !strings.Contains(r.stderr, "busy runs on here") {
		t.Fatalf("the migration with its target killed: %s", r)
	} else {
		t.Logf("with the target killed: %s", strings.TrimSpace(r.stderr))
	}
	if got := h1.must("inspect", "--format", "{{.State.Running}}", "busy"); got != "true\n" {
		t.Fatalf("busy after the failed migration: %q", got)
	}
	h1.must("exec", "busy", "true")
	h2.start()
	h2.waitUp()
	waitFor(t, 30*time.Second, "no QEMU left on h2", func() bool { return len(qemuProcessesUnder(h2.dir)) == 0 })
	if got := h2.must("ps", "-aq"); got != "" {
		t.Errorf("containers on h2 after its restart: %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Join(h2.dir, "data", "containers")); len(entries) != 0 {
		t.Errorf("%d container directories on h2 after its restart", len(entries))
	}
	h1.must("jevm", "migrate", "busy", target(h2))
	h2.must("exec", "busy", "true")

	// The source's jevmd killed during the copy: QEMU's stream breaks and
	// the guest runs on at the source, whose restarted daemon adopts it;
	// the target drops the VM it was loading.
	before := len(qemuProcessesUnder(h1.dir))
	go func() { res <- h2.docker("jevm", "migrate", "busy", target(h1)) }()
	waitFor(t, 60*time.Second, "the incoming VM on h1", func() bool { return len(qemuProcessesUnder(h1.dir)) > before })
	h2.kill9()
	if r := <-res; r.code == 0 {
		t.Fatalf("the migration with its source killed succeeded: %s", r)
	}
	// Its VM is killed first, then the rest is undone (its directory).
	waitFor(t, 30*time.Second, "h1 to drop the incoming VM and busy's directory", func() bool {
		_, err := os.Stat(filepath.Join(h1.dir, "data", "containers", busyID))
		return len(qemuProcessesUnder(h1.dir)) == before && errors.Is(err, os.ErrNotExist)
	})
	if r := h1.docker("inspect", "busy"); r.code == 0 {
		t.Errorf("busy is on h1 after its source was killed: %s", r.stdout)
	}
	h2.start()
	h2.waitUp()
	if got := h2.must("inspect", "--format", "{{.State.Running}} {{.RestartCount}}", "busy"); got != "true 0\n" {
		t.Fatalf("busy on its restarted source: %q", got)
	}
	h2.must("exec", "busy", "true")
}

// linkNames is the names, in index order, of `ip -o link show`'s links.
func linkNames(out string) string {
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 {
			names = append(names, strings.TrimSuffix(strings.Split(f[1], "@")[0], ":"))
		}
	}
	return strings.Join(names, " ")
}
