package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// docker exec, top and stats against real VMs. The tests share few
// containers: every one is a VM, and TCG is slow on these two cores.

// startSleeper runs a detached container whose main process is cmd (a
// long sleep by default) and removes it at the end of the test.
func startSleeper(t *testing.T, name string, cmd ...string) {
	t.Helper()
	if len(cmd) == 0 {
		cmd = []string{"sleep", "1000"}
	}
	rmOnCleanup(t, name)
	mustDocker(t, append([]string{"run", "-d", "--name", name, "busybox"}, cmd...)...)
}

func TestExec(t *testing.T) {
	name := uniqueName(t, "c")
	startSleeper(t, name)

	t.Run("echo", func(t *testing.T) {
		if out := mustDocker(t, "exec", name, "echo", "hi"); out != "hi\n" {
			t.Fatalf("stdout %q", out)
		}
	})
	t.Run("exit code and stderr", func(t *testing.T) {
		r := docker(t, "exec", name, "sh", "-c", "echo out; echo err >&2; exit 4")
		if r.code != 4 || r.stdout != "out\n" || !strings.Contains(r.stderr, "err") {
			t.Fatalf("want exit 4 with separate streams:\n%s", r)
		}
	})
	t.Run("user", func(t *testing.T) {
		if out := mustDocker(t, "exec", "-u", "nobody", name, "id", "-u"); strings.TrimSpace(out) != "65534" {
			t.Fatalf("id -u = %q", out)
		}
	})
	t.Run("workdir", func(t *testing.T) {
		if out := mustDocker(t, "exec", "-w", "/tmp", name, "pwd"); out != "/tmp\n" {
			t.Fatalf("pwd = %q", out)
		}
	})
	t.Run("env", func(t *testing.T) {
		out := mustDocker(t, "exec", "-e", "A=b", name, "sh", "-c", `echo "$A $HOSTNAME"; echo "$PATH"`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "b ") || len(lines[0]) < 3 || !strings.Contains(lines[1], "/bin") {
			t.Fatalf("env output %q", out)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		r := dockerStdin(t, "data\nmore\n", "exec", "-i", name, "cat")
		if r.code != 0 || r.stdout != "data\nmore\n" {
			t.Fatalf("exec -i cat:\n%s", r)
		}
	})
	t.Run("detached", func(t *testing.T) {
		r := docker(t, "exec", "-d", name, "sh", "-c", "sleep 1; echo done > /tmp/detached")
		if r.code != 0 || r.stdout != "" {
			t.Fatalf("exec -d:\n%s", r)
		}
		waitFor(t, 60*time.Second, "the detached exec's file", func() bool {
			return docker(t, "exec", name, "cat", "/tmp/detached").stdout == "done\n"
		})
	})
	t.Run("command not found", func(t *testing.T) {
		r := docker(t, "exec", name, "nosuchcmd")
		if r.code != 127 || !strings.Contains(r.stdout+r.stderr, "executable file not found") {
			t.Fatalf("want exit 127 and the runtime's message:\n%s", r)
		}
	})
	t.Run("inspect ExecIDs", func(t *testing.T) {
		var ids []string
		if err := json.Unmarshal([]byte(inspectField(t, name, "{{json .ExecIDs}}")), &ids); err != nil || len(ids) == 0 || len(ids[0]) != 64 {
			t.Fatalf("ExecIDs %v (%v)", ids, err)
		}
	})
	t.Run("ten in a row", func(t *testing.T) {
		start := time.Now()
		for i := 0; i < 10; i++ {
			want := fmt.Sprintf("n%d\n", i)
			if out := mustDocker(t, "exec", name, "echo", strings.TrimSpace(want)); out != want {
				t.Fatalf("exec %d: %q", i, out)
			}
		}
		t.Logf("10 execs in %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("five in parallel", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan string, 5)
		for i := 0; i < 5; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				want := fmt.Sprintf("p%d", i)
				r := docker(t, "exec", name, "sh", "-c", "echo "+want+"; exit "+fmt.Sprint(i))
				if r.stdout != want+"\n" || r.code != i {
					errs <- fmt.Sprintf("exec %d:\n%s", i, r)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
	t.Run("top", func(t *testing.T) {
		out := mustDocker(t, "top", name)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "UID") || !strings.Contains(lines[0], "CMD") || !strings.Contains(out, "sleep 1000") {
			t.Fatalf("docker top:\n%s", out)
		}
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if len(f) > 1 && f[1] == "1" {
				t.Fatalf("top lists the guest agent (pid 1):\n%s", out)
			}
		}
		out = mustDocker(t, "top", name, "aux")
		if !strings.Contains(out, "%CPU") || !strings.Contains(out, "RSS") || !strings.Contains(out, "sleep 1000") {
			t.Fatalf("docker top aux:\n%s", out)
		}
	})
	t.Run("stats", func(t *testing.T) {
		out := mustDocker(t, "stats", "--no-stream", name)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], "MEM USAGE / LIMIT") || !strings.Contains(lines[1], name) || !strings.Contains(lines[1], "MiB") {
			t.Fatalf("docker stats --no-stream:\n%s", out)
		}
		t.Logf("%s", out)
		js := mustDocker(t, "stats", "--no-stream", "--format", "{{json .}}", name)
		var s struct{ CPUPerc, MemUsage, NetIO, BlockIO, PIDs string }
		if err := json.Unmarshal([]byte(js), &s); err != nil {
			t.Fatalf("stats json %q: %v", js, err)
		}
		var cpu float64
		if _, err := fmt.Sscanf(s.CPUPerc, "%f%%", &cpu); err != nil || cpu < 0 || cpu > 100.5 {
			t.Errorf("CPU %q", s.CPUPerc)
		}
		if s.PIDs != "1" || !strings.Contains(s.BlockIO, "/") || s.NetIO == "" {
			t.Errorf("stats %+v", s)
		}
	})
}

// An exec still gets its turn while the main process spins.
func TestExecBusyContainer(t *testing.T) {
	name := uniqueName(t, "c")
	startSleeper(t, name, "sh", "-c", "while true; do :; done")
	start := time.Now()
	if out := mustDocker(t, "exec", name, "echo", "alive"); out != "alive\n" {
		t.Fatalf("stdout %q", out)
	}
	t.Logf("exec into a busy container took %v", time.Since(start).Round(time.Millisecond))
	js := mustDocker(t, "stats", "--no-stream", "--format", "{{.CPUPerc}}", name)
	var cpu float64
	if _, err := fmt.Sscanf(strings.TrimSpace(js), "%f%%", &cpu); err != nil || cpu < 50 {
		t.Errorf("a spinning container's CPU is %q, want near 100%%", js)
	}
}

func TestExecStoppedContainer(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "--name", name, "busybox", "true")
	r := docker(t, "exec", name, "echo", "hi")
	if r.code == 0 || !strings.Contains(r.stderr, "is not running") {
		t.Fatalf("exec into a stopped container:\n%s", r)
	}
	r = docker(t, "top", name)
	if r.code == 0 || !strings.Contains(r.stderr, "is not running") {
		t.Fatalf("top of a stopped container:\n%s", r)
	}
	out := mustDocker(t, "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", name)
	if !strings.HasPrefix(out, name+" ") {
		t.Fatalf("stats of a stopped container: %q", out)
	}
}

// docker exec -it under a terminal: an interactive shell, resized by the
// CLI, that exits with the shell.
func TestExecInteractiveTTY(t *testing.T) {
	name := uniqueName(t, "c")
	startSleeper(t, name)

	cmd := exec.Command("docker", "exec", "-it", name, "sh")
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+env.sock, "DOCKER_CONFIG="+filepath.Join(env.root, "docker-config"), "TERM=xterm")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var mu sync.Mutex
	var out []byte
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			out = append(out, buf[:n]...)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("terminal output: %q", out)
			mu.Unlock()
		}
	}()
	waitOut := func(s string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			ok := strings.Contains(string(out), s)
			o := string(out)
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the terminal output %q", s, o)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitOut("# ")
	if _, err := ptmx.Write([]byte("echo $((6*7)); stty size\r")); err != nil {
		t.Fatal(err)
	}
	waitOut("42")
	waitOut("30 100")
	if _, err := ptmx.Write([]byte("exit 3\r")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if ee, ok := waitErr.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Fatalf("docker exec -it exited with %v, want 3", waitErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("docker exec -it did not exit after the shell did")
	}
}

// The exec events, and the stats stream as the API serves it.
func TestExecEventsAndStatsStream(t *testing.T) {
	name := uniqueName(t, "c")
	since := time.Now().Add(-time.Second).Unix()
	startSleeper(t, name)
	if r := docker(t, "exec", name, "sh", "-c", "exit 2"); r.code != 2 {
		t.Fatalf("exec exit 2:\n%s", r)
	}
	want := []string{"exec_create: sh -c exit 2", "exec_start: sh -c exit 2", "exec_die 2"}
	waitFor(t, 30*time.Second, "exec events", func() bool {
		out := docker(t, "events", "--since", fmt.Sprint(since), "--until", fmt.Sprint(time.Now().Add(time.Second).Unix()),
			"--filter", "container="+name, "--format", `{{.Action}}{{with index .Actor.Attributes "exitCode"}} {{.}}{{end}}`).stdout
		for _, w := range want {
			if !strings.Contains(out, w+"\n") {
				return false
			}
		}
		return true
	})

	resp, err := unixHTTPClient().Get("http://jevm/v1.51/containers/" + name + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	type sample struct {
		Name     string
		Read     time.Time
		PreRead  time.Time
		CPUStats struct {
			CPUUsage struct {
				TotalUsage uint64 `json:"total_usage"`
			} `json:"cpu_usage"`
			SystemUsage uint64 `json:"system_cpu_usage"`
			OnlineCPUs  uint32 `json:"online_cpus"`
		} `json:"cpu_stats"`
		PreCPUStats struct {
			SystemUsage uint64 `json:"system_cpu_usage"`
		} `json:"precpu_stats"`
		MemoryStats struct{ Usage, Limit uint64 } `json:"memory_stats"`
	}
	dec := json.NewDecoder(resp.Body)
	samples := make([]sample, 3)
	start := time.Now()
	for i := range samples {
		if err := dec.Decode(&samples[i]); err != nil {
			t.Fatalf("stats sample %d: %v", i, err)
		}
	}
	if d := time.Since(start); d < 1500*time.Millisecond || d > 20*time.Second {
		t.Errorf("3 streamed samples took %v, want about 2s", d)
	}
	for i, s := range samples {
		if s.Name != "/"+name || s.CPUStats.SystemUsage == 0 || s.CPUStats.OnlineCPUs != 1 || s.MemoryStats.Usage == 0 || s.MemoryStats.Limit < s.MemoryStats.Usage {
			t.Errorf("sample %d: %+v", i, s)
		}
		if i > 0 && (s.PreCPUStats.SystemUsage != samples[i-1].CPUStats.SystemUsage || !s.PreRead.Equal(samples[i-1].Read)) {
			t.Errorf("sample %d's precpu is not the previous sample's", i)
		}
	}
}

// An exec dies with its container: the CLI returns, with SIGKILL's code.
func TestExecDiesWithContainer(t *testing.T) {
	name := uniqueName(t, "c")
	startSleeper(t, name)
	done := make(chan result, 1)
	go func() { done <- docker(t, "exec", name, "sleep", "300") }()
	waitFor(t, 30*time.Second, "the exec to run", func() bool {
		return strings.Contains(docker(t, "top", name).stdout, "sleep 300")
	})
	mustDocker(t, "kill", name)
	select {
	case r := <-done:
		if r.code != 137 {
			t.Fatalf("exec of a killed container:\n%s", r)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("docker exec did not return after its container was killed")
	}
}
