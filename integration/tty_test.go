package integration

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ptyCLI is a docker CLI running on a pseudo-terminal, as in a shell.
type ptyCLI struct {
	t    *testing.T
	cmd  *exec.Cmd
	ptmx *os.File

	mu     sync.Mutex
	out    []byte // everything the CLI wrote
	seen   int    // expect consumed out up to here
	closed bool
	done   chan struct{} // closed when the CLI exited
	err    error         // its Wait error
}

func startPTY(t *testing.T, rows, cols uint16, args ...string) *ptyCLI {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+env.sock, "DOCKER_CONFIG="+filepath.Join(env.root, "docker-config"), "TERM=xterm")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatalf("start docker %v on a pty: %v", args, err)
	}
	p := &ptyCLI{t: t, cmd: cmd, ptmx: ptmx, done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			p.mu.Lock()
			p.out = append(p.out, buf[:n]...)
			p.mu.Unlock()
			if err != nil {
				// EIO once the CLI and every other holder of the terminal
				// are gone.
				p.mu.Lock()
				p.closed = true
				p.mu.Unlock()
				return
			}
		}
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		ptmx.Close()
		if t.Failed() {
			t.Logf("terminal output of docker %v:\n%q", args, p.output())
		}
	})
	return p
}

func (p *ptyCLI) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.out)
}

func (p *ptyCLI) send(s string) {
	p.t.Helper()
	if _, err := p.ptmx.Write([]byte(s)); err != nil {
		p.t.Fatalf("write %q to the terminal: %v", s, err)
	}
}

// expect waits until the output since the last match matches re, and
// consumes it up to the end of the match.
func (p *ptyCLI) expect(re string, timeout time.Duration) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		rest := p.out[p.seen:]
		if loc := rx.FindSubmatchIndex(rest); loc != nil {
			var groups []string
			for i := 0; i < len(loc); i += 2 {
				if loc[i] >= 0 {
					groups = append(groups, string(rest[loc[i]:loc[i+1]]))
				} else {
					groups = append(groups, "")
				}
			}
			p.seen += loc[1]
			p.mu.Unlock()
			return groups
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			p.t.Fatalf("terminal: no %q within %s; output since the last match:\n%q", re, timeout, string(rest))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitCode waits for the CLI to exit.
func (p *ptyCLI) exitCode(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("docker CLI still running after %s; output:\n%q", timeout, p.output())
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatalf("docker CLI: %v", p.err)
	}
	return 0
}

// shell runs a line in the container's shell, waits for output matching re
// (the echo of what was typed must not match re), then for the next prompt,
// so that nothing is typed ahead of the shell's line editor.
func (p *ptyCLI) shell(line, re string, timeout time.Duration) []string {
	p.t.Helper()
	p.send(line + "\r")
	g := p.expect(re, timeout)
	p.expect(prompt, timeout)
	return g
}

// prompt is busybox sh's.
const prompt = `/ # `

func TestTTYInteractive(t *testing.T) {
	name := uniqueName(t, "sh")
	rmOnCleanup(t, name)
	begin := time.Now().Add(-time.Second)
	cli := startPTY(t, 30, 100, "run", "-it", "--name", name, "busybox", "sh")
	cli.expect(prompt, 90*time.Second)
	// The CLI sends its terminal's size with the create, for the start.
	if got := inspectField(t, name, "{{json .HostConfig.ConsoleSize}}"); got != "[30,100]" {
		t.Errorf("ConsoleSize %s, want [30,100]", got)
	}

	// The CLI sets the size after the start (and on SIGWINCH); the shell
	// may have been quicker, so ask until the size shows.
	deadline := time.Now().Add(30 * time.Second)
	for {
		g := cli.shell("stty size", `\n(\d+ \d+)\r`, 15*time.Second)
		if g[1] == "30 100" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stty size says %q, want 30 100", g[1])
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Raw mode on our side, a terminal with echo on the guest's: what we
	// type comes back once, from the guest.
	cli.shell("echo $((6*7))", `\n42\r\n`, 30*time.Second)
	out := cli.output()
	if n := strings.Count(out, "echo $((6*7))"); n != 1 {
		t.Errorf("the command line was echoed %d times, want once", n)
	}
	// The guest's terminal is a real one.
	cli.shell("tty; echo term=$TERM", `\n/dev/pts/0\r\nterm=xterm\r\n`, 30*time.Second)

	// Resize: the CLI sees SIGWINCH and resizes the container's terminal.
	if err := pty.Setsize(cli.ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		time.Sleep(300 * time.Millisecond)
		g := cli.shell("stty size", `\n(\d+ \d+)\r`, 15*time.Second)
		if g[1] == "40 120" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the resize stty size says %q, want 40 120", g[1])
		}
	}

	// Ctrl-C reaches the foreground process through the terminal's line
	// discipline: sleep dies, the shell prompts again.
	cli.send("sleep 100\r")
	cli.expect(`sleep 100\r\n`, 30*time.Second)
	time.Sleep(time.Second) // let the shell start it
	cli.send("\x03")
	cli.expect(`\^C`, 30*time.Second)
	cli.expect(prompt, 30*time.Second)
	cli.shell("echo alive-$((1+1))", `\nalive-2\r\n`, 30*time.Second)

	// Ctrl-P Ctrl-Q: the CLI detaches and exits 0; the container runs on.
	cli.send("\x10\x11")
	if code := cli.exitCode(30 * time.Second); code != 0 {
		t.Fatalf("docker run exited %d after the detach keys, want 0", code)
	}
	if got := inspectField(t, name, "{{.State.Running}}"); got != "true" {
		t.Fatalf("after detach the container is not running: %s", got)
	}

	// Attach again: the live terminal, typing works, exit ends it all.
	att := startPTY(t, 30, 100, "attach", name)
	time.Sleep(500 * time.Millisecond)
	att.shell("echo back", `\nback\r\n`, 30*time.Second)
	att.shell("stty size", `\n30 100\r\n`, 30*time.Second)
	att.send("exit\r")
	if code := att.exitCode(60 * time.Second); code != 0 {
		t.Fatalf("docker attach exited %d after exit, want 0", code)
	}
	waitFor(t, 30*time.Second, "the container to stop", func() bool {
		return inspectField(t, name, "{{.State.Running}}") == "false"
	})
	if got := inspectField(t, name, "{{.State.ExitCode}}"); got != "0" {
		t.Fatalf("exit code %s", got)
	}
	// The events of the session.
	lines := eventLines(t, begin, time.Now().Add(time.Second), "--filter", "container="+name)
	got := actionsOf(lines)
	if !inOrder(got, []string{"container create", "container attach", "container start", "container resize", "container detach", "container attach", "container die"}) {
		t.Errorf("events %v", got)
	}
	if out := strings.Join(lines, "\n"); !regexp.MustCompile(` container resize [0-9a-f]{64} \(.*height=40, .*name=` + name + `, .*width=120\)`).MatchString(out) {
		t.Errorf("no resize event to 40x120 in:\n%s", out)
	}
	t.Logf("docker run -it terminal:\n%q", cli.output())
	t.Logf("docker attach terminal:\n%q", att.output())
}

// TestTTYDetachKeysServerSide detaches a raw API client: the daemon finds
// the sequence in its input (the CLI on a terminal finds it itself).
func TestTTYDetachKeysServerSide(t *testing.T) {
	name := uniqueName(t, "sh")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-dit", "--name", name, "busybox", "sh")
	waitFor(t, 60*time.Second, "the container to run", func() bool {
		return inspectField(t, name, "{{.State.Running}}") == "true"
	})

	attach := func(query string) (net.Conn, *bufio.Reader) {
		conn, err := net.Dial("unix", env.sock)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1.51/containers/%s/attach?%s HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", name, query)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("attach: %s %s", resp.Status, b)
		}
		return conn, br
	}
	readUntil := func(br *bufio.Reader, want string) string {
		var got strings.Builder
		buf := make([]byte, 1024)
		for !strings.Contains(got.String(), want) {
			n, err := br.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				t.Fatalf("reading for %q: %v; got %q", want, err, got.String())
			}
		}
		return got.String()
	}

	// Bad keys are refused before the upgrade.
	conn, err := net.Dial("unix", env.sock)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1.51/containers/%s/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-1 HTTP/1.1\r\nHost: docker\r\n\r\n", name)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	conn.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "Invalid detach keys (ctrl-1) provided") {
		t.Fatalf("bad detach keys: %s %s", resp.Status, body)
	}

	conn, br := attach("stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-x,ctrl-y")
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	fmt.Fprint(conn, "echo one-$((0+1))\r")
	readUntil(br, "one-1\r\n")
	// Everything before the sequence goes through; the sequence and what
	// follows in the same write do not; the daemon ends the stream at once.
	fmt.Fprint(conn, "echo x >/tmp/before\r\x18\x19echo x >/tmp/lost\r")
	if _, err := io.ReadAll(br); err != nil {
		t.Fatalf("after detach: %v", err)
	}
	if got := inspectField(t, name, "{{.State.Running}}"); got != "true" {
		t.Fatalf("after detach the container is not running: %s", got)
	}

	// The container's stdin stays open for the next client.
	conn2, br2 := attach("stream=1&stdin=1&stdout=1&stderr=1")
	defer conn2.Close()
	_ = conn2.SetDeadline(time.Now().Add(90 * time.Second))
	fmt.Fprint(conn2, "ls /tmp; echo three-$((1+2))\r")
	out := readUntil(br2, "three-3\r\n")
	if !strings.Contains(out, "before") || strings.Contains(out, "lost") {
		t.Fatalf("input before the detach keys must arrive, input after them must not: %q", out)
	}
	fmt.Fprint(conn2, "exit 5\r")
	if _, err := io.ReadAll(br2); err != nil {
		t.Fatalf("reading to the end: %v", err)
	}
	waitFor(t, 30*time.Second, "the container to stop", func() bool {
		return inspectField(t, name, "{{.State.Running}}") == "false"
	})
	if got := inspectField(t, name, "{{.State.ExitCode}}"); got != "5" {
		t.Fatalf("exit code %s, want 5", got)
	}
}

func TestStdinPipe(t *testing.T) {
	r := dockerStdin(t, "data\n", "run", "--rm", "-i", "busybox", "cat")
	if r.code != 0 || r.stdout != "data\n" {
		t.Fatalf("echo data | docker run -i busybox cat:\n%s", r)
	}
	// EOF reaches the process: wc counts and exits.
	r = dockerStdin(t, "a\nb\nc\n", "run", "--rm", "-i", "busybox", "wc", "-l")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "3" {
		t.Fatalf("wc -l:\n%s", r)
	}
}

func TestStdinLarge(t *testing.T) {
	data := make([]byte, 10<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	start := time.Now()
	r := dockerStdin(t, string(data), "run", "--rm", "-i", "busybox", "sha256sum")
	took := time.Since(start)
	if r.code != 0 {
		t.Fatalf("docker run -i sha256sum:\n%s", r)
	}
	if got := strings.Fields(r.stdout); len(got) == 0 || got[0] != want {
		t.Fatalf("sha256 in the guest %q, want %s", r.stdout, want)
	}
	// The same with almost no input, for the cost of the rest.
	start = time.Now()
	if r := dockerStdin(t, "x", "run", "--rm", "-i", "busybox", "sha256sum"); r.code != 0 {
		t.Fatalf("docker run -i sha256sum:\n%s", r)
	}
	base := time.Since(start)
	t.Logf("10 MiB of stdin through docker run -i: %s (1 byte: %s; ~%.1f MiB/s)", took.Round(time.Millisecond), base.Round(time.Millisecond), 10/max(took-base, time.Millisecond).Seconds())
}
