package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
)

// unixTime is how the CLI sends --since/--until: seconds.nanoseconds.
func unixTime(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }

// eventLines runs `docker events` over a closed time range and returns
// its lines.
func eventLines(t *testing.T, since, until time.Time, args ...string) []string {
	t.Helper()
	all := append([]string{"events", "--since", unixTime(since), "--until", unixTime(until)}, args...)
	out := mustDocker(t, all...)
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// actionsOf picks the "<type> <action>" of dockerd-style event lines.
func actionsOf(lines []string) []string {
	var out []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 3 {
			out = append(out, f[1]+" "+f[2])
		}
	}
	return out
}

// inOrder reports whether want is a subsequence of got.
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestEventsContainerLifecycle(t *testing.T) {
	name := uniqueName(t, "ev")
	label := "jevm.test.events=" + name
	start := time.Now().Add(-time.Second)
	r := docker(t, "run", "--name", name, "--label", label, "busybox", "sh", "-c", "exit 3")
	if r.code != 3 {
		t.Fatalf("docker run: %s", r)
	}
	mustDocker(t, "rename", name, name+"-new")
	mustDocker(t, "rm", name+"-new")
	until := time.Now().Add(time.Second)

	lines := eventLines(t, start, until, "--filter", "label="+label)
	t.Logf("docker events --filter label=%s:\n%s", label, strings.Join(lines, "\n"))
	got := actionsOf(lines)
	want := []string{"container create", "container attach", "container start", "container die", "container rename", "container destroy"}
	if !inOrder(got, want) {
		t.Fatalf("events %v, want %v in this order; lines:\n%s", got, want, strings.Join(lines, "\n"))
	}
	// dockerd's line format, with the die's exit code among the sorted
	// attributes.
	die := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[-+Z][0-9:]* container die ([0-9a-f]{64}) \((.*)\)$`)
	found := false
	for _, l := range lines {
		m := die.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		found = true
		attrs := m[2]
		for _, a := range []string{"exitCode=3", "image=busybox", label, "name=" + name} {
			if !strings.Contains(attrs, a) {
				t.Errorf("die attributes %q lack %q", attrs, a)
			}
		}
		// Sorted by key, as the CLI prints them (the image's labels are
		// among the container's, as with dockerd).
		var keys []string
		for _, kv := range strings.Split(attrs, ", ") {
			k, _, _ := strings.Cut(kv, "=")
			keys = append(keys, k)
		}
		if !sort.StringsAreSorted(keys) || !contains(keys, "execDuration") {
			t.Errorf("die attributes not in dockerd's form: %q", attrs)
		}
	}
	if !found {
		t.Fatalf("no dockerd-style die line in:\n%s", strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if strings.Contains(l, " container rename ") && !strings.Contains(l, "oldName=/"+name+",") {
			t.Errorf("rename without oldName: %s", l)
		}
	}

	// Relative times, as typed by users.
	rel := actionsOf(strings.Split(strings.TrimSpace(mustDocker(t, "events", "--since", "10m", "--until", "0s", "--filter", "label="+label)), "\n"))
	if strings.Join(rel, ",") != strings.Join(got, ",") {
		t.Fatalf("--since 10m --until 0s: %v, want %v", rel, got)
	}

	// --filter event=die keeps only the die; two values of a key are
	// alternatives; a container filter by name.
	only := actionsOf(eventLines(t, start, until, "--filter", "label="+label, "--filter", "event=die"))
	if strings.Join(only, ",") != "container die" {
		t.Fatalf("event=die: %v", only)
	}
	two := actionsOf(eventLines(t, start, until, "--filter", "label="+label, "--filter", "event=create", "--filter", "event=destroy"))
	if strings.Join(two, ",") != "container create,container destroy" {
		t.Fatalf("event=create,destroy: %v", two)
	}
	byName := actionsOf(eventLines(t, start, until, "--filter", "container="+name, "--filter", "event=start"))
	if strings.Join(byName, ",") != "container start" {
		t.Fatalf("container=%s: %v", name, byName)
	}
	// A bad filter is the caller's mistake.
	if r := docker(t, "events", "--since", unixTime(start), "--until", unixTime(until), "--filter", "bogus=1"); r.code == 0 || !strings.Contains(r.stderr, "invalid filter 'bogus'") {
		t.Fatalf("bogus filter: %s", r)
	}
}

func TestEventsStopKillAndImages(t *testing.T) {
	name := uniqueName(t, "ev")
	rmOnCleanup(t, name)
	start := time.Now().Add(-time.Second)
	mustDocker(t, "pull", "busybox")
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sleep", "300")
	mustDocker(t, "stop", "-t", "1", name)
	mustDocker(t, "start", name)
	mustDocker(t, "restart", "-t", "1", name)
	mustDocker(t, "kill", "-s", "WINCH", name)
	mustDocker(t, "rm", "-f", name)
	until := time.Now().Add(time.Second)

	lines := eventLines(t, start, until, "--filter", "container="+name)
	got := actionsOf(lines)
	want := []string{"container create", "container start", "container kill", "container die", "container stop", "container start",
		"container kill", "container die", "container stop", "container start", "container restart",
		"container kill", "container kill", "container die", "container destroy"}
	if !inOrder(got, want) {
		t.Fatalf("events %v, want %v in this order", got, want)
	}
	var signals []string
	for _, l := range lines {
		if m := regexp.MustCompile(` container kill .*signal=(\d+)`).FindStringSubmatch(l); m != nil {
			signals = append(signals, m[1])
		}
	}
	// stop: SIGTERM (sleep, PID 1 of its PID namespace, does not get
	// it), then SIGKILL; kill -s WINCH (not delivered either: sleep runs
	// on); rm -f: SIGKILL.
	if len(signals) < 3 || signals[0] != "15" || !contains(signals, "28") || signals[len(signals)-1] != "9" {
		t.Fatalf("kill signals %v; lines:\n%s", signals, strings.Join(lines, "\n"))
	}

	img := eventLines(t, start, until, "--filter", "type=image")
	pulled := false
	for _, l := range img {
		if strings.Contains(l, " image pull busybox:latest (") && strings.Contains(l, "name=busybox:latest") {
			pulled = true
		}
	}
	if !pulled {
		t.Fatalf("no image pull event for busybox:latest in:\n%s", strings.Join(img, "\n"))
	}
	// Tagging and removing the tag.
	tag := "jevm-ev-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + ":v1"
	tagStart := time.Now().Add(-time.Second)
	mustDocker(t, "tag", "busybox", tag)
	mustDocker(t, "rmi", tag)
	imgActions := actionsOf(eventLines(t, tagStart, time.Now().Add(time.Second), "--filter", "type=image"))
	if !inOrder(imgActions, []string{"image tag", "image untag"}) {
		t.Fatalf("image events %v, want tag then untag", imgActions)
	}
}

// TestEventsStreamLive reads the API stream while things happen.
func TestEventsStreamLive(t *testing.T) {
	name := uniqueName(t, "ev")
	rmOnCleanup(t, name)
	q := url.Values{}
	q.Set("filters", fmt.Sprintf(`{"container":{%q:true}}`, name))
	q.Set("until", unixTime(time.Now().Add(2*time.Minute)))
	client := unixHTTPClient()
	client.Timeout = 3 * time.Minute
	resp, err := client.Get("http://jevm/v1.51/events?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %s", resp.Status)
	}
	got := make(chan events.Message, 64)
	go func() {
		defer close(got)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var m events.Message
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				got <- m
			}
		}
	}()
	mustDocker(t, "create", "--name", name, "busybox", "true")
	select {
	case m := <-got:
		if m.Action != events.ActionCreate || m.Actor.Attributes["name"] != name || m.Type != events.ContainerEventType {
			t.Fatalf("first event %+v", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the create event was not streamed")
	}
	mustDocker(t, "rm", name)
	select {
	case m := <-got:
		if m.Action != events.ActionDestroy {
			t.Fatalf("second event %+v", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the destroy event was not streamed")
	}
}

func TestEventsPrune(t *testing.T) {
	name := uniqueName(t, "ev")
	label := "jevm.test.prune=" + name
	rmOnCleanup(t, name)
	id := strings.TrimSpace(mustDocker(t, "create", "--name", name, "--label", label, "busybox", "true"))
	start := time.Now().Add(-time.Second)
	out := mustDocker(t, "container", "prune", "-f", "--filter", "label="+label)
	if !strings.Contains(out, id) {
		t.Fatalf("prune output %q lacks %s", out, id)
	}
	lines := eventLines(t, start, time.Now().Add(time.Second), "--filter", "type=container", "--filter", "event=prune")
	if len(lines) != 1 || !strings.Contains(lines[0], " container prune ") || !strings.Contains(lines[0], "(reclaimed=") {
		t.Fatalf("prune events:\n%s", strings.Join(lines, "\n"))
	}
	destroyed := eventLines(t, start, time.Now().Add(time.Second), "--filter", "label="+label, "--filter", "event=destroy")
	if len(destroyed) != 1 {
		t.Fatalf("destroy events of the pruned container:\n%s", strings.Join(destroyed, "\n"))
	}
}
