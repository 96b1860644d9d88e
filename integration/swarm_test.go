package integration

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io/fs"
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
// and leaves it; what is not there yet (secrets) and bad input are
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
	if got := mustDocker(t, "secret", "ls", "-q"); got != "" {
		t.Fatalf("secret ls in a new swarm: %q", got)
	}
	if r := docker(t, "swarm", "leave"); r.code == 0 || !strings.Contains(r.stderr, "Use `--force`") {
		t.Fatalf("the last manager leaving without --force: %s", r)
	}

	// Autolock: a restarted daemon's node is locked until it is given
	// the key; then it is still the swarm's manager.
	out = mustDocker(t, "swarm", "update", "--autolock=true")
	key := regexp.MustCompile(`SWMKEY-1-\S+`).FindString(out)
	if key == "" {
		t.Fatalf("swarm update --autolock printed:\n%s", out)
	}
	if err := stopDaemon(); err != nil {
		t.Fatal(err)
	}
	if err := startDaemon(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the node locked after the restart", func() bool {
		return mustDocker(t, "info", "--format", "{{.Swarm.LocalNodeState}}") == "locked\n"
	})
	if r := docker(t, "node", "ls"); r.code == 0 || !strings.Contains(r.stderr, "Swarm is encrypted and needs to be unlocked") {
		t.Fatalf("node ls on a locked node: %s", r)
	}
	if r := dockerStdin(t, "SWMKEY-1-"+strings.Repeat("A", len(key)-len("SWMKEY-1-"))+"\n", "swarm", "unlock"); r.code == 0 || !strings.Contains(r.stderr, "invalid key") {
		t.Fatalf("unlock with a wrong key: %s", r)
	}
	if r := dockerStdin(t, key+"\n", "swarm", "unlock"); r.code != 0 {
		t.Fatalf("unlock: %s", r)
	}
	mustDocker(t, "swarm", "update", "--autolock=false")
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

// initSwarm makes the package's daemon a one-node swarm on a free
// loopback port, left (forced) when the test ends.
func initSwarm(t *testing.T) {
	t.Helper()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	t.Cleanup(func() { docker(t, "swarm", "leave", "--force") })
	// A pool of its own: the ingress network's subnet is made on this
	// host, whose own networks are not to be hidden by 10.0.0.0/24.
	mustDocker(t, "swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", listen, "--default-addr-pool", "10.213.128.0/17")
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

// A replicated service runs its tasks as jeVMs of this engine: replicas
// come up, `docker service ls` and `ps` count them, scale and a rolling
// update replace them, a host-mode published port answers, and removing
// the service removes its containers.
func TestSwarmService(t *testing.T) {
	initSwarm(t)
	svc := uniqueName(t, "svc")
	t.Cleanup(func() { docker(t, "service", "rm", svc) })

	containers := func() []string {
		return strings.Fields(mustDocker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc))
	}
	replicas := func(want string) {
		t.Helper()
		waitFor(t, 120*time.Second, svc+" at "+want, func() bool {
			out := mustDocker(t, "service", "ls", "--filter", "name="+svc, "--format", "{{.Replicas}}")
			return strings.TrimSpace(out) == want
		})
	}
	if r := docker(t, "service", "create", "--name", "x", "--network", "nosuchnet", "busybox"); r.code == 0 {
		t.Fatalf("a service on an overlay network: %s", r)
	}
	mustDocker(t, "service", "create", "--detach", "--name", svc, "--replicas", "2", "--env", "A=1", "busybox", "sh", "-c", "echo task-up-$A; exec sleep 600")
	replicas("2/2")
	// Service logs come through the manager's log broker, each line with
	// the task it came from.
	host, _ := os.Hostname()
	waitFor(t, 30*time.Second, "the service's logs", func() bool {
		out := mustDocker(t, "service", "logs", svc)
		return len(regexp.MustCompile(`(?m)^`+svc+`\.[12]\.\w+@`+host+` +\| task-up-1$`).FindAllString(out, -1)) == 2
	})
	taskID := strings.TrimSpace(mustDocker(t, "service", "ps", "-q", "--filter", "desired-state=running", svc))
	taskID = strings.Fields(taskID)[0]
	if out := mustDocker(t, "service", "logs", "--raw", "--no-task-ids", taskID); out != "task-up-1\n" {
		t.Fatalf("a task's raw logs: %q", out)
	}
	if n := len(containers()); n != 2 {
		t.Fatalf("%d containers of %s, want 2", n, svc)
	}
	ps := mustDocker(t, "service", "ps", "--format", "{{.Name}} {{.CurrentState}} {{.DesiredState}}", svc)
	if strings.Count(ps, "Running") != 4 {
		t.Fatalf("service ps:\n%s", ps)
	}
	if got := mustDocker(t, "inspect", "--format", "{{range .Config.Env}}{{.}} {{end}}", containers()[0]); !strings.Contains(got, "A=1") {
		t.Fatalf("a task's env: %q", got)
	}

	mustDocker(t, "service", "scale", "--detach", svc+"=1")
	replicas("1/1")
	waitFor(t, 60*time.Second, "the scaled-down task's container to go", func() bool { return len(containers()) == 1 })
	before := containers()[0]

	// A rolling update replaces the task with one of the new spec.
	mustDocker(t, "service", "update", "--detach", "--env-add", "B=2", svc)
	waitFor(t, 120*time.Second, "the updated task", func() bool {
		cs := containers()
		if len(cs) != 1 || strings.HasPrefix(before, cs[0]) || strings.HasPrefix(cs[0], before) {
			return false
		}
		return strings.Contains(mustDocker(t, "inspect", "--format", "{{range .Config.Env}}{{.}} {{end}}", cs[0]), "B=2")
	})
	if got := mustDocker(t, "service", "inspect", "--format", "{{.PreviousSpec.TaskTemplate.ContainerSpec.Env}}", svc); !strings.Contains(got, "A=1") || strings.Contains(got, "B=2") {
		t.Fatalf("previous spec after update: %q", got)
	}

	mustDocker(t, "service", "rm", svc)
	waitFor(t, 60*time.Second, "the service's containers to go", func() bool { return len(containers()) == 0 })
	if r := docker(t, "service", "inspect", svc); r.code == 0 {
		t.Fatalf("inspect after rm: %s", r)
	}

	// A port published in host mode answers on the host.
	web := uniqueName(t, "svcweb")
	t.Cleanup(func() { docker(t, "service", "rm", web) })
	port := freePort(t)
	mustDocker(t, "service", "create", "--detach", "--name", web, "--publish", fmt.Sprintf("mode=host,target=80,published=%d", port), "web")
	waitFor(t, 120*time.Second, web+" running", func() bool {
		out := mustDocker(t, "service", "ls", "--filter", "name="+web, "--format", "{{.Replicas}}")
		return strings.TrimSpace(out) == "1/1"
	})
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); !strings.Contains(body, webIndex) {
		t.Fatalf("the service's host-mode port: %q", body)
	}
	mustDocker(t, "service", "rm", web)

	// A port through the routing mesh, the CLI following the service
	// until it runs (no --detach: its progress asks for the up-to-date
	// tasks).
	meshed := uniqueName(t, "svcmesh")
	t.Cleanup(func() { docker(t, "service", "rm", meshed) })
	meshPort := freePort(t)
	if out := mustDocker(t, "service", "create", "--name", meshed, "--publish", fmt.Sprintf("%d:80", meshPort), "web"); !strings.Contains(out, "verify: Service") || !strings.Contains(out, "converged") {
		t.Fatalf("service create, followed: %q", out)
	}
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", meshPort)); !strings.Contains(body, webIndex) {
		t.Fatalf("the service's port through the routing mesh: %q", body)
	}
	if got := mustDocker(t, "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "ingress"); !strings.HasPrefix(got, "10.213.") {
		t.Errorf("the ingress network's subnet is not from the swarm's --default-addr-pool: %q", got)
	}
	mustDocker(t, "service", "rm", meshed)
}

// Job services: a replicated job runs its completions, at most
// --max-concurrent at a time, and the CLI follows it to "job complete";
// a global job runs once on the node; a job whose task fails is not
// complete.
func TestSwarmJob(t *testing.T) {
	initSwarm(t)
	job := uniqueName(t, "job")
	t.Cleanup(func() { docker(t, "service", "rm", job) })
	out := mustDocker(t, "service", "create", "--name", job, "--mode", "replicated-job", "--replicas", "3", "--max-concurrent", "2",
		"busybox", "sh", "-c", "echo job-ran-$RANDOM")
	if !strings.Contains(out, "job complete") || !strings.Contains(out, "active tasks: 2 out of 2 tasks") {
		t.Fatalf("service create of a job, followed: %q", out)
	}
	if got := strings.TrimSpace(mustDocker(t, "service", "ls", "--filter", "name="+job, "--filter", "mode=replicated-job", "--format", "{{.Mode}} {{.Replicas}}")); got != "replicated job 0/2 (3/3 completed)" {
		t.Fatalf("service ls of the finished job: %q", got)
	}
	states := mustDocker(t, "service", "ps", "--format", "{{.DesiredState}} {{.CurrentState}}", job)
	if strings.Count(states, "Complete Complete") != 3 {
		t.Fatalf("the job's tasks:\n%s", states)
	}
	waitFor(t, 30*time.Second, "the job's logs", func() bool {
		return strings.Count(mustDocker(t, "service", "logs", "--raw", job), "job-ran-") == 3
	})
	if got := mustDocker(t, "service", "inspect", "--format", "{{.JobStatus.LastExecution.IsZero}} {{.Spec.Mode.ReplicatedJob.TotalCompletions}}", job); got != "false 3\n" {
		t.Fatalf("the job's status: %q", got)
	}
	mustDocker(t, "service", "rm", job)

	global := uniqueName(t, "gjob")
	t.Cleanup(func() { docker(t, "service", "rm", global) })
	if out := mustDocker(t, "service", "create", "--name", global, "--mode", "global-job", "busybox", "true"); !strings.Contains(out, "job complete") {
		t.Fatalf("service create of a global job, followed: %q", out)
	}
	if got := strings.TrimSpace(mustDocker(t, "service", "ls", "--filter", "name="+global, "--format", "{{.Mode}} {{.Replicas}}")); got != "global job 0/0 (1/1 completed)" {
		t.Fatalf("service ls of the finished global job: %q", got)
	}
	mustDocker(t, "service", "rm", global)

	failing := uniqueName(t, "badjob")
	t.Cleanup(func() { docker(t, "service", "rm", failing) })
	mustDocker(t, "service", "create", "--detach", "--name", failing, "--mode", "replicated-job", "--restart-condition", "none", "busybox", "sh", "-c", "exit 3")
	waitFor(t, 120*time.Second, "the failing job's task to fail", func() bool {
		return strings.Contains(mustDocker(t, "service", "ps", "--format", "{{.CurrentState}} {{.Error}}", failing), "non-zero exit (3)")
	})
	if got := strings.TrimSpace(mustDocker(t, "service", "ls", "--filter", "name="+failing, "--format", "{{.Replicas}}")); got != "0/1 (0/1 completed)" {
		t.Fatalf("service ls of the failed job: %q", got)
	}
	mustDocker(t, "service", "rm", failing)
}

// Secrets and configs: created from stdin and a file, delivered into a
// task's VM as read-only files with the owner and mode asked, never
// returned by inspect (a secret) and never written anywhere under the
// daemon's roots; removal refused while a service uses them.
func TestSwarmSecretsConfigs(t *testing.T) {
	initSwarm(t)
	svc := uniqueName(t, "svc")
	t.Cleanup(func() { docker(t, "service", "rm", svc) })

	marker := fmt.Sprintf("s3cret-%d-%d", os.Getpid(), time.Now().UnixNano())
	if r := dockerStdin(t, marker, "secret", "create", "app_pw", "-"); r.code != 0 {
		t.Fatalf("secret create: %s", r)
	}
	t.Cleanup(func() { docker(t, "secret", "rm", "app_pw") })
	cfgFile := filepath.Join(t.TempDir(), "app.conf")
	if err := os.WriteFile(cfgFile, []byte("listen=80\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustDocker(t, "config", "create", "--label", "tier=web", "app_conf", cfgFile)
	t.Cleanup(func() { docker(t, "config", "rm", "app_conf") })
	if r := dockerStdin(t, "x", "secret", "create", "app_pw", "-"); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("a second secret app_pw: %s", r)
	}
	if got := mustDocker(t, "secret", "ls", "--format", "{{.Name}}"); got != "app_pw\n" {
		t.Fatalf("secret ls: %q", got)
	}
	if got := mustDocker(t, "secret", "inspect", "--format", "{{.Spec.Name}} {{len .Spec.Data}}", "app_pw"); got != "app_pw 0\n" {
		t.Fatalf("secret inspect: %q", got)
	}
	if got := mustDocker(t, "config", "inspect", "--format", "{{.Spec.Labels.tier}} {{printf \"%s\" .Spec.Data}}", "app_conf"); got != "web listen=80\n\n" {
		t.Fatalf("config inspect: %q", got)
	}

	mustDocker(t, "service", "create", "--detach", "--name", svc,
		"--secret", "app_pw", "--secret", "source=app_pw,target=/etc/app/pw,uid=1000,gid=50,mode=0400",
		"--config", "source=app_conf,target=/etc/app.conf", "busybox", "sleep", "600")
	var ctr string
	waitFor(t, 120*time.Second, svc+" running", func() bool {
		ids := strings.Fields(mustDocker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc))
		if len(ids) == 1 {
			ctr = ids[0]
		}
		return len(ids) == 1
	})
	if got := mustDocker(t, "exec", ctr, "cat", "/run/secrets/app_pw"); got != marker {
		t.Fatalf("/run/secrets/app_pw: %q", got)
	}
	if got := mustDocker(t, "exec", ctr, "stat", "-c", "%u %g %a", "/run/secrets/app_pw", "/etc/app/pw", "/etc/app.conf"); got != "0 0 444\n1000 50 400\n0 0 444\n" {
		t.Fatalf("owners and modes: %q", got)
	}
	if got := mustDocker(t, "exec", ctr, "cat", "/etc/app.conf"); got != "listen=80\n" {
		t.Fatalf("/etc/app.conf: %q", got)
	}
	if r := docker(t, "exec", ctr, "sh", "-c", "echo x > /run/secrets/app_pw"); r.code == 0 {
		t.Fatalf("a secret was writable: %s", r)
	}
	// Nowhere on the host's disk: not in the data root (the raft store
	// is encrypted), the exec root, the log or the container's files
	// (its disk included). The image store, the templates and the test
	// registry, written before the secret existed, are skipped: they are
	// gigabytes of sparse disks and memory files.
	skip := map[string]bool{filepath.Join(env.root, "data", "image"): true, filepath.Join(env.root, "data", "templates"): true, env.registry.Dir: true}
	for _, needle := range []string{marker, strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(marker)), "=")} {
		if found := filesContaining(t, env.root, skip, []byte(needle)); len(found) > 0 {
			t.Fatalf("the secret (%s) is readable on the host's disk in: %v", needle, found)
		}
	}

	if r := docker(t, "secret", "rm", "app_pw"); r.code == 0 || !strings.Contains(r.stderr, "in use") {
		t.Fatalf("removing a secret in use: %s", r)
	}
	mustDocker(t, "service", "rm", svc)
	mustDocker(t, "secret", "rm", "app_pw")
	mustDocker(t, "config", "rm", "app_conf")
	if got := mustDocker(t, "config", "ls", "-q"); got != "" {
		t.Fatalf("config ls after rm: %q", got)
	}
}

// filesContaining lists the regular files under root (but the skipped
// directories) that contain needle.
func filesContaining(t *testing.T, root string, skip map[string]bool, needle []byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile
		}
		if d.IsDir() && skip[p] {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		buf := make([]byte, 1<<20+len(needle))
		carry := 0
		for {
			n, err := f.Read(buf[carry:])
			if bytes.Contains(buf[:carry+n], needle) {
				found = append(found, p)
				return nil
			}
			if err != nil {
				return nil
			}
			// Keep the tail, in case the needle straddles two reads.
			if carry+n >= len(needle) {
				copy(buf, buf[carry+n-len(needle)+1:carry+n])
				carry = len(needle) - 1
			} else {
				carry += n
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// Health checks gate a task: it is running only once its container is
// healthy, and a container that never is fails its task ("unhealthy
// container") instead of running.
func TestSwarmHealthcheck(t *testing.T) {
	initSwarm(t)
	good, bad := uniqueName(t, "good"), uniqueName(t, "bad")
	t.Cleanup(func() { docker(t, "service", "rm", good, bad) })

	mustDocker(t, "service", "create", "--detach", "--name", good, "--health-cmd", "test -f /tmp/ok", "--health-interval", "1s",
		"--health-retries", "30", "busybox", "sh", "-c", "sleep 3; touch /tmp/ok; exec sleep 600")
	mustDocker(t, "service", "create", "--detach", "--name", bad, "--health-cmd", "false", "--health-interval", "1s",
		"--health-retries", "1", "--restart-max-attempts", "1", "busybox", "sleep", "600")
	waitFor(t, 120*time.Second, good+" running", func() bool {
		return mustDocker(t, "service", "ls", "--filter", "name="+good, "--format", "{{.Replicas}}") == "1/1\n"
	})
	ctr := strings.TrimSpace(mustDocker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+good))
	if got := mustDocker(t, "inspect", "--format", "{{.State.Health.Status}}", ctr); got != "healthy\n" {
		t.Fatalf("the running task's container is %q", got)
	}
	waitFor(t, 120*time.Second, bad+"'s task failing unhealthy", func() bool {
		out := mustDocker(t, "service", "ps", "--no-trunc", "--format", "{{.CurrentState}}|{{.Error}}", bad)
		return strings.Contains(out, "unhealthy container")
	})
	if got := mustDocker(t, "service", "ls", "--filter", "name="+bad, "--format", "{{.Replicas}}"); got != "0/1\n" {
		t.Fatalf("the unhealthy service: %q", got)
	}
}
