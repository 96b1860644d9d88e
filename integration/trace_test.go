package integration

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// logField matches one key=value of a logrus text line (values quoted or
// bare).
var logField = regexp.MustCompile(`([A-Za-z0-9_.-]+)=("(?:[^"\\]|\\.)*"|\S+)`)

// startTraces returns the fields of every "container started" line the
// test daemon logged for the container whose ID starts with id12.
func startTraces(t *testing.T, id12 string) []map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(env.root, "jevmd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var traces []map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="container started"`) || !strings.Contains(line, "container="+id12) {
			continue
		}
		fields := map[string]string{}
		for _, m := range logField.FindAllStringSubmatch(line, -1) {
			fields[m[1]] = strings.Trim(m[2], `"`)
		}
		traces = append(traces, fields)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return traces
}

// TestStartTraced checks that every start records where its time went
// (issue 15): the daemon's steps and, within start-process, the guest
// agent's phases, one log line per start that bench/compare.sh reads.
func TestStartTraced(t *testing.T) {
	name := uniqueName(t, "traced")
	rmOnCleanup(t, name)
	if out := mustDocker(t, "run", "--name", name, "busybox", "echo", "traced"); strings.TrimSpace(out) != "traced" {
		t.Fatalf("run output %q", out)
	}
	mustDocker(t, "start", "-a", name)
	id := inspectField(t, name, "{{.Id}}")
	var traces []map[string]string
	// The line is written right after the start event; give the log a
	// moment to reach the file.
	waitFor(t, 10*time.Second, "two start traces in the daemon's log", func() bool {
		traces = startTraces(t, id[:12])
		return len(traces) == 2
	})
	steps := []string{"machine-spec", "state-dir", "prepare-mounts", "attach-networks", "start-machine", "connect-agent", "start-process"}
	// The agent's phases: root device and mount, the API file systems,
	// clock, entropy, sysctls, /etc files, interfaces, mounts, and the
	// main process's spawn.
	phases := []string{"root-device", "root-mount", "api-fs", "clock", "entropy", "sysctls", "etc-files", "interfaces", "mounts", "spawn-prepare", "spawn-exec"}
	for i, tr := range traces {
		num := func(key string) float64 {
			v, ok := tr[key]
			if !ok {
				t.Fatalf("start %d: no %s in the trace %v", i+1, key, tr)
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				t.Fatalf("start %d: %s=%q", i+1, key, v)
			}
			return f
		}
		var stepsTotal float64
		for _, s := range steps {
			stepsTotal += num(s + "_ms")
		}
		if num("start-machine_ms") <= 0 || num("start-process_ms") <= 0 {
			t.Errorf("start %d: start-machine or start-process took no time: %v", i+1, tr)
		}
		var guest float64
		for _, p := range phases {
			guest += num("guest_" + p + "_ms")
		}
		// The agent's phases happen within the start request, so they
		// cannot add up to more than it took.
		if guest <= 0 || guest > num("start-process_ms")+1 {
			t.Errorf("start %d: guest phases add up to %.1f ms, start-process took %.1f ms", i+1, guest, num("start-process_ms"))
		}
		total, err := time.ParseDuration(tr["total"])
		if err != nil || float64(total.Milliseconds()) > stepsTotal+1000 {
			t.Errorf("start %d: total %q against %.0f ms of steps", i+1, tr["total"], stepsTotal)
		}
		if tr["pid"] == "" || tr["pid"] == "0" {
			t.Errorf("start %d: no VM pid in the trace", i+1)
		}
	}
	if traces[0]["pid"] == traces[1]["pid"] {
		t.Errorf("the second start reports the first run's VM (pid %s)", traces[0]["pid"])
	}
}
