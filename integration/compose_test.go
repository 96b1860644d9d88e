package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// One application (testdata/compose/compose.yaml) run by both compose
// generations, as users type them: compose v2 as the docker CLI plugin
// (`docker compose`, built by `make compose`) and compose v1 (Debian's
// docker-compose 1.29). Every step runs against the test daemon in
// sequence, and nothing of the project may be left afterwards.
// `network_mode: service:` (pods) is not part of it yet.

func TestComposeV2(t *testing.T) { testComposeApp(t, newCompose(t, "v2")) }

func TestComposeV1(t *testing.T) { testComposeApp(t, newCompose(t, "v1")) }

// composeCLI is one compose generation working on one project directory.
type composeCLI struct {
	gen     string   // "v2" or "v1"
	argv    []string // the command and its global flags
	project string
	dir     string // a copy of testdata/compose
}

func newCompose(t *testing.T, gen string) *composeCLI {
	t.Helper()
	c := &composeCLI{gen: gen, project: "jc" + strings.TrimPrefix(gen, "v")}
	switch gen {
	case "v2":
		c.argv = []string{"docker", "compose", "--ansi", "never", "--progress", "plain"}
	case "v1":
		if _, err := exec.LookPath("docker-compose"); err != nil {
			t.Fatal("compose v1: docker-compose is not on PATH (Debian's docker-compose; `make deps` installs it)")
		}
		c.argv = []string{"docker-compose", "--ansi", "never"}
	}
	c.argv = append(c.argv, "-p", c.project, "-f", "compose.yaml")
	c.dir = filepath.Join(t.TempDir(), "app")
	if err := os.CopyFS(c.dir, os.DirFS(filepath.Join("testdata", "compose"))); err != nil {
		t.Fatal(err)
	}
	if r := c.run(t, "version"); r.code != 0 {
		if gen == "v2" {
			t.Fatalf("compose v2: `docker compose version` failed (JEVM_COMPOSE must name the binary `make compose` builds):\n%s", r)
		}
		t.Fatalf("compose v1: %s", r)
	}
	return c
}

func (c *composeCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append(append([]string{}, c.argv...), args...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+env.sock, "DOCKER_CONFIG="+dockerConfig())
	return cmd
}

func (c *composeCLI) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := c.command(ctx, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("compose %s %v: %v", c.gen, args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("compose %s %v timed out:\n%s", c.gen, args, r)
	}
	t.Logf("compose %s %s: exit %d in %s", c.gen, strings.Join(args, " "), r.code, time.Since(start).Round(10*time.Millisecond))
	return r
}

func (c *composeCLI) must(t *testing.T, args ...string) string {
	t.Helper()
	r := c.run(t, args...)
	if r.code != 0 {
		t.Fatalf("compose %s %s:\n%s", c.gen, strings.Join(args, " "), r)
	}
	return r.stdout
}

// stream starts a compose command whose output does not end by itself
// (logs -f, events) and returns its lines; stop ends it.
func (c *composeCLI) stream(t *testing.T, args ...string) (lines <-chan string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := c.command(ctx, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1024)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	done := false
	stop = func() {
		if !done {
			done = true
			cancel()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return ch, stop
}

// waitLine reads lines until one satisfies ok.
func waitLine(t *testing.T, lines <-chan string, timeout time.Duration, what string, ok func(string) bool) string {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case l, open := <-lines:
			if !open {
				t.Fatalf("stream ended before %s; it printed:\n%s", what, strings.Join(seen, "\n"))
			}
			if ok(l) {
				return l
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("no %s within %s; the stream printed:\n%s", what, timeout, strings.Join(seen, "\n"))
		}
	}
}

// projectObjects lists what the daemon holds of a compose project, by the
// label compose puts on everything it makes.
func projectObjects(t *testing.T, project string) string {
	t.Helper()
	f := "label=com.docker.compose.project=" + project
	var out []string
	for _, kind := range []string{"container", "network", "volume"} {
		args := []string{kind, "ls", "-q", "--filter", f}
		if kind == "container" {
			args = []string{"ps", "-aq", "--filter", f}
		}
		if ids := strings.Fields(mustDocker(t, args...)); len(ids) > 0 {
			out = append(out, fmt.Sprintf("%ss: %v", kind, ids))
		}
	}
	return strings.Join(out, "; ")
}

// jevmBridges counts the bridges this host has of any jevm daemon.
func jevmBridges(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(out), "alias jevm:")
}

// serviceIDs are the IDs of a service's running containers.
func (c *composeCLI) serviceIDs(t *testing.T, service string) []string {
	t.Helper()
	return strings.Fields(c.must(t, "ps", "-q", service))
}

func testComposeApp(t *testing.T, c *composeCLI) {
	p := c.project
	// The images the project pulls (web, and busybox for the build) are
	// kept by down, as with dockerd; everything else it makes is not.
	mustDocker(t, "pull", "-q", "web")
	mustDocker(t, "pull", "-q", "busybox")
	imagesBefore := strings.Fields(mustDocker(t, "images", "-aq", "--no-trunc"))
	bridgesBefore := jevmBridges(t)
	if left := projectObjects(t, p); left != "" {
		t.Fatalf("project %s exists before the test: %s", p, left)
	}
	t.Cleanup(func() {
		if left := projectObjects(t, p); left != "" {
			c.run(t, "down", "-v", "--rmi", "local", "--remove-orphans", "-t", "1")
		}
	})

	// config: the file as compose reads it, env_file and limits resolved.
	cfg := c.must(t, "config")
	for _, want := range []string{"GREETING: hello from env_file", "MODE: batch", "internal: true", "condition: service_healthy", "api_key"} {
		if !strings.Contains(cfg, want) {
			t.Fatalf("config lacks %q:\n%s", want, cfg)
		}
	}
	if svcs := strings.Fields(c.must(t, "config", "--services")); len(svcs) != 3 || !contains(svcs, "web") || !contains(svcs, "worker") || !contains(svcs, "sidecar") {
		t.Fatalf("config --services = %v", svcs)
	}

	if c.gen == "v2" {
		// Pinning tags to digests asks the daemon for the registry's
		// descriptor (GET /distribution/{name}/json).
		if out := c.must(t, "config", "--resolve-image-digests"); !strings.Contains(out, "image: docker.io/library/web:latest@sha256:") {
			t.Fatalf("config --resolve-image-digests:\n%s", out)
		}
	}

	// up -d: the worker's image built, networks, the volume, web until
	// healthy, then the worker.
	c.must(t, "up", "-d")
	web := c.serviceIDs(t, "web")
	workers := c.serviceIDs(t, "worker")
	if len(web) != 1 || len(workers) != 1 {
		t.Fatalf("after up: web %v, worker %v", web, workers)
	}
	workerImage := p + "-worker"
	if c.gen == "v1" {
		workerImage = p + "_worker"
	}
	if got := inspectField(t, workers[0], "{{.Config.Image}}"); got != workerImage {
		t.Fatalf("the worker runs image %q, want the built %q", got, workerImage)
	}
	if got := mustDocker(t, "image", "inspect", "-f", "{{json .Config.Cmd}} {{range .Config.Env}}{{.}} {{end}}", workerImage); !strings.Contains(got, `["worker"]`) || !strings.Contains(got, "MODE=default") {
		t.Fatalf("the built image's config: %s", got)
	}
	if h := inspectField(t, web[0], "{{.State.Health.Status}}"); h != "healthy" {
		t.Fatalf("web is %q after up, whose worker waits for it to be healthy", h)
	}

	// ps, as each generation prints it.
	ps := c.must(t, "ps")
	if !strings.Contains(ps, p+"-web-1") && !strings.Contains(ps, p+"_web_1") || !strings.Contains(ps, "(healthy)") {
		t.Fatalf("ps:\n%s", ps)
	}

	// port: the published port answers from the host; what the worker
	// wrote into the shared volume is served by web.
	hostPort := strings.TrimSpace(c.must(t, "port", "web", "80"))
	if !strings.HasPrefix(hostPort, "127.0.0.1:") {
		t.Fatalf("port web 80 = %q", hostPort)
	}
	base := "http://" + hostPort
	if body := httpGet(t, base+"/"); !strings.Contains(body, "jevm web test image") {
		t.Fatalf("GET /: %q", body)
	}
	workerFile := func(id string) string { return base + "/shared/" + id[:12] + ".txt" }
	if body := httpGet(t, workerFile(workers[0])); strings.TrimSpace(body) != "worker "+workers[0][:12]+" key=s3cr3t-key mode=batch" {
		t.Fatalf("the worker's file in the shared volume: %q", body)
	}

	// network_mode: service:web: the sidecar runs in web's VM (a pod) and
	// reaches it on localhost.
	sidecar := c.serviceIDs(t, "sidecar")
	if len(sidecar) != 1 {
		t.Fatalf("after up: sidecar %v", sidecar)
	}
	if nm := inspectField(t, sidecar[0], "{{.HostConfig.NetworkMode}}"); nm != "container:"+web[0] {
		t.Fatalf("sidecar's NetworkMode = %q, want container:%s", nm, web[0])
	}
	if out := c.must(t, "exec", "-T", "sidecar", "wget", "-q", "-O", "-", "http://localhost/"); !strings.Contains(out, "jevm web test image") {
		t.Fatalf("the sidecar does not reach web on localhost: %q", out)
	}

	// logs: the worker reaches web by service name over the internal
	// network.
	waitFor(t, 60*time.Second, "the worker reaching web in its logs", func() bool {
		return strings.Contains(c.must(t, "logs", "--no-color", "worker"), "reached web")
	})

	// exec: what the file asked for, inside the VMs.
	out := c.must(t, "exec", "-T", "worker", "sh", "-c",
		`cat /run/secrets/api_key; echo "mode=$MODE"; grep upstream.example /etc/hosts; echo "nofile=$(ulimit -n)/$(ulimit -Hn)"; `+
			`echo "somaxconn=$(cat /proc/sys/net/core/somaxconn)"; grep CapEff /proc/self/status; `+
			`grep -E ' /(scratch|dev/shm) ' /proc/mounts; echo "scratch=$(stat -c %a /scratch)"; ip route`)
	for _, want := range []string{"s3cr3t-key", "mode=batch", "10.9.8.7\tupstream.example", "nofile=1024/2048", "somaxconn=1024", "tmpfs /scratch tmpfs rw", "size=8192k", "scratch=1770", "/dev/shm tmpfs rw", "size=131072k"} {
		if !strings.Contains(out, want) {
			t.Fatalf("worker lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "default") {
		t.Fatalf("a worker on an internal network only has a default route:\n%s", out)
	}
	if eff := capEff(t, out); eff&(1<<12) == 0 {
		t.Fatalf("cap_add NET_ADMIN: CapEff %x", eff)
	}
	out = c.must(t, "exec", "-T", "web", "sh", "-c", `echo "greeting=$GREETING"; grep MemTotal /proc/meminfo; nproc`)
	if !strings.Contains(out, "greeting=hello from env_file") {
		t.Fatalf("web's env_file: %s", out)
	}
	if kib := memTotalKiB(t, out); kib > 384*1024 || kib < 300*1024 {
		t.Fatalf("deploy.resources.limits.memory 384M: the VM has MemTotal %d kB", kib)
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "\n2") {
		t.Fatalf("deploy.resources.limits.cpus 2: nproc\n%s", out)
	}
	if got := inspectField(t, web[0], `{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config "max-size"}} {{index .Config.Labels "dev.jevm.test"}}`); got != "402653184 2000000000 unless-stopped json-file 1m compose-web" {
		t.Fatalf("web's host config: %q", got)
	}
	if got := inspectField(t, workers[0], `{{.HostConfig.Init}} {{.HostConfig.RestartPolicy.Name}}`); got != "true unless-stopped" {
		t.Fatalf("worker's host config: %q", got)
	}
	if c.gen == "v2" {
		// compose v1 drops configs (a swarm feature to it).
		if out := c.must(t, "exec", "-T", "web", "cat", "/etc/motd"); out != "welcome to the jevm compose test\n" {
			t.Fatalf("config motd: %q", out)
		}
	}
	if got := mustDocker(t, "volume", "inspect", "-f", `{{index .Labels "dev.jevm.test"}} {{index .Labels "com.docker.compose.project"}}`, p+"_shared"); strings.TrimSpace(got) != "compose-shared "+p {
		t.Fatalf("volume labels: %q", got)
	}
	if got := inspectNetwork(t, p+"_back", `{{.Internal}} {{index .Labels "com.docker.compose.project"}} {{len .Options}}`); got != "true "+p+" 0" {
		t.Fatalf("network back: %q", got)
	}

	// run --rm: a one-off container of the worker service on its network.
	out = c.must(t, "run", "--rm", "-T", "worker", "sh", "-c", "wget -q -O - http://web/; cat /run/secrets/api_key")
	if !strings.Contains(out, "jevm web test image") || !strings.Contains(out, "s3cr3t-key") {
		t.Fatalf("run --rm: %q", out)
	}
	if n := len(strings.Fields(mustDocker(t, "ps", "-aq", "--filter", "label=com.docker.compose.project="+p))); n != 3 {
		t.Fatalf("%d containers after run --rm, want 3 (web, worker, sidecar)", n)
	}

	// up --scale: the second up of the project (compose v1 checks the
	// networks' options against the file here).
	c.must(t, "up", "-d", "--scale", "worker=3")
	workers = c.serviceIDs(t, "worker")
	if len(workers) != 3 {
		t.Fatalf("after --scale worker=3: %v", workers)
	}
	for _, id := range workers {
		if body := httpGet(t, workerFile(id)); !strings.Contains(body, "key=s3cr3t-key") {
			t.Fatalf("replica %s: %q", id[:12], body)
		}
	}
	if got := c.serviceIDs(t, "web"); len(got) != 1 || got[0] != web[0] {
		t.Fatalf("web was recreated by the scale-up: %v, was %v", got, web)
	}
	c.must(t, "up", "-d", "--scale", "worker=1")
	if workers = c.serviceIDs(t, "worker"); len(workers) != 1 {
		t.Fatalf("after --scale worker=1: %v", workers)
	}

	// events (label filters on /events) while the worker restarts.
	events, stopEvents := c.stream(t, "events", "--json")
	time.Sleep(time.Second) // the subscription is made before the restart
	c.must(t, "restart", "worker")
	waitLine(t, events, 60*time.Second, "restart event of the worker", func(l string) bool {
		var ev struct{ Action, Service string }
		return json.Unmarshal([]byte(l), &ev) == nil && ev.Service == "worker" && (ev.Action == "restart" || ev.Action == "start")
	})
	stopEvents()
	if st := inspectField(t, workers[0], "{{.State.Status}}"); st != "running" {
		t.Fatalf("worker after restart: %s", st)
	}

	// logs -f follows: a new line arrives after the stream began.
	logs, stopLogs := c.stream(t, "logs", "-f", "--no-color", "--tail", "0", "worker")
	waitLine(t, logs, 60*time.Second, "a followed log line", func(l string) bool { return strings.Contains(l, "reached web") })
	stopLogs()

	// stop / start.
	c.must(t, "stop", "worker")
	if st := inspectField(t, workers[0], "{{.State.Status}}"); st != "exited" {
		t.Fatalf("worker after stop: %s", st)
	}
	c.must(t, "start", "worker")
	if st := inspectField(t, workers[0], "{{.State.Status}}"); st != "running" {
		t.Fatalf("worker after start: %s", st)
	}

	// pause / unpause.
	c.must(t, "pause", "web")
	if st := inspectField(t, web[0], "{{.State.Status}}"); st != "paused" {
		t.Fatalf("web after pause: %s", st)
	}
	c.must(t, "unpause", "web")
	if body := httpGet(t, base+"/"); !strings.Contains(body, "jevm web test image") {
		t.Fatalf("GET / after unpause: %q", body)
	}

	// top.
	if out := c.must(t, "top", "web"); !strings.Contains(out, "httpd") {
		t.Fatalf("top web:\n%s", out)
	}

	// cp (compose v2 only; v1 has no cp).
	if c.gen == "v2" {
		c.must(t, "cp", "web:/www/index.html", "got.html")
		if b, err := os.ReadFile(filepath.Join(c.dir, "got.html")); err != nil || !strings.Contains(string(b), "jevm web test image") {
			t.Fatalf("cp from web: %q %v", b, err)
		}
		c.must(t, "cp", "motd.txt", "worker:/tmp/motd.txt")
		if out := c.must(t, "exec", "-T", "worker", "cat", "/tmp/motd.txt"); out != "welcome to the jevm compose test\n" {
			t.Fatalf("cp to worker: %q", out)
		}
	}

	// A daemon restart keeps the project's VMs; the next up finds the
	// containers as they were and changes nothing.
	restartDaemon(t)
	c.must(t, "up", "-d")
	if got := c.serviceIDs(t, "web"); len(got) != 1 || got[0] != web[0] {
		t.Fatalf("web after the daemon restart and up: %v, was %v", got, web)
	}
	if got := c.serviceIDs(t, "worker"); len(got) != 1 || got[0] != workers[0] {
		t.Fatalf("worker after the daemon restart and up: %v, was %v", got, workers)
	}
	if body := httpGet(t, base+"/"); !strings.Contains(body, "jevm web test image") {
		t.Fatalf("GET / after the daemon restart: %q", body)
	}
	if got := c.serviceIDs(t, "sidecar"); len(got) != 1 || got[0] != sidecar[0] {
		t.Fatalf("sidecar after the daemon restart and up: %v, was %v", got, sidecar)
	}
	if out := c.must(t, "exec", "-T", "sidecar", "wget", "-q", "-O", "-", "http://localhost/"); !strings.Contains(out, "jevm web test image") {
		t.Fatalf("the sidecar after the daemon restart: %q", out)
	}
	waitFor(t, 60*time.Second, "web healthy after the daemon restart", func() bool {
		return inspectField(t, web[0], "{{.State.Health.Status}}") == "healthy"
	})

	// down -v --rmi local: nothing of the project is left, on the daemon
	// (containers, networks, the volume, the built image and its
	// intermediate images) or the host (bridges).
	c.must(t, "down", "-v", "--rmi", "local", "-t", "2")
	if left := projectObjects(t, p); left != "" {
		t.Fatalf("left after down -v: %s", left)
	}
	newImages := func() []string {
		var ids []string
		for _, id := range strings.Fields(mustDocker(t, "images", "-aq", "--no-trunc")) {
			if !contains(imagesBefore, id) {
				ids = append(ids, id)
			}
		}
		return ids
	}
	if left := newImages(); len(left) > 0 && c.gen == "v2" {
		// Compose v2 removes its image with noprune=1, so the classic
		// builder's untagged parent images (one per step) stay, as they
		// do with dockerd; they go with a plain rmi of the last.
		for _, id := range left {
			if tags := inspectField(t, id, "{{len .RepoTags}}"); tags != "0" {
				t.Fatalf("down --rmi local left the tagged image %s", id)
			}
		}
		for i := 0; i < len(left) && len(newImages()) > 0; i++ {
			docker(t, append([]string{"rmi"}, newImages()...)...)
		}
	}
	if left := newImages(); len(left) > 0 {
		t.Fatalf("images left after down --rmi local: %v\n%s", left, mustDocker(t, "images", "-a"))
	}
	if n := jevmBridges(t); n != bridgesBefore {
		t.Fatalf("%d jevm bridges after down -v, %d before up", n, bridgesBefore)
	}
}

// capEff reads the CapEff line of /proc/PID/status output.
func capEff(t *testing.T, out string) uint64 {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "CapEff:" {
			v, err := strconv.ParseUint(f[1], 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no CapEff in:\n%s", out)
	return 0
}

func memTotalKiB(t *testing.T, out string) int {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no MemTotal in:\n%s", out)
	return 0
}
