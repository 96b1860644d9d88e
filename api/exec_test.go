package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dtypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/jevm/jevm/api/types/backend"
)

// The fake backend's exec, top and stats; its exec state lives here,
// keyed by backend.

type fakeExec struct {
	id, container string
	cfg           container.ExecOptions
	start         *backend.ExecStartConfig
	exitCode      *int
	resized       [2]uint
}

type fakeExecState struct {
	mu    sync.Mutex
	seq   int
	execs map[string]*fakeExec
}

var fakeExecStates sync.Map // *fakeBackend -> *fakeExecState

func (f *fakeBackend) execState() *fakeExecState {
	v, _ := fakeExecStates.LoadOrStore(f, &fakeExecState{execs: map[string]*fakeExec{}})
	return v.(*fakeExecState)
}

func (f *fakeBackend) getExec(id string) (*fakeExec, error) {
	st := f.execState()
	st.mu.Lock()
	defer st.mu.Unlock()
	e := st.execs[id]
	if e == nil {
		return nil, errdefs.NotFound(fmt.Errorf("No such exec instance: %s", id))
	}
	return e, nil
}

func (f *fakeBackend) ContainerExecCreate(_ context.Context, nameOrID string, cfg *container.ExecOptions) (string, error) {
	f.mu.Lock()
	c, err := f.lookup(nameOrID)
	f.mu.Unlock()
	if err != nil {
		return "", err
	}
	if !c.ran {
		return "", errdefs.Conflict(fmt.Errorf("container %s is not running", c.id))
	}
	st := f.execState()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.seq++
	id := fmt.Sprintf("exec%d", st.seq)
	st.execs[id] = &fakeExec{id: id, container: c.id, cfg: *cfg}
	return id, nil
}

// ContainerExecStart: "sh -c 'exit N'" exits N; "nosuchcmd" fails after
// the hijack; otherwise stdin is echoed, the command written to stdout and
// "err" to stderr.
func (f *fakeBackend) ContainerExecStart(ctx context.Context, id string, cfg *backend.ExecStartConfig) error {
	e, err := f.getExec(id)
	if err != nil {
		return err
	}
	e.start = cfg
	setExit := func(code int) { e.exitCode = &code }
	if cfg.Detach {
		setExit(0)
		return nil
	}
	stdin, stdout, stderr, err := cfg.GetStreams(!e.cfg.Tty)
	if err != nil {
		return err
	}
	if e.cfg.Cmd[0] == "nosuchcmd" {
		setExit(127)
		return errors.New(`OCI runtime exec failed: exec failed: unable to start container process: exec: "nosuchcmd": executable file not found in $PATH: unknown`)
	}
	if e.cfg.AttachStdin {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "stdin: %s\n", b)
	}
	io.WriteString(stdout, strings.Join(e.cfg.Cmd, " ")+"\n")
	io.WriteString(stderr, "err\n")
	code := 0
	if len(e.cfg.Cmd) == 3 && e.cfg.Cmd[0] == "sh" {
		fmt.Sscanf(e.cfg.Cmd[2], "exit %d", &code)
	}
	setExit(code)
	return nil
}

func (f *fakeBackend) ContainerExecInspect(id string) (*backend.ExecInspect, error) {
	e, err := f.getExec(id)
	if err != nil {
		return nil, err
	}
	return &backend.ExecInspect{
		ID: e.id, ContainerID: e.container, ExitCode: e.exitCode,
		OpenStdin: e.cfg.AttachStdin, OpenStdout: e.cfg.AttachStdout, OpenStderr: e.cfg.AttachStderr,
		ProcessConfig: &backend.ExecProcessConfig{Tty: e.cfg.Tty, Entrypoint: e.cfg.Cmd[0], Arguments: e.cfg.Cmd[1:]},
	}, nil
}

func (f *fakeBackend) ContainerExecResize(_ context.Context, id string, height, width uint) error {
	e, err := f.getExec(id)
	if err != nil {
		return err
	}
	e.resized = [2]uint{height, width}
	return nil
}

func (f *fakeBackend) ContainerTop(_ context.Context, nameOrID string, psArgs string) (*container.TopResponse, error) {
	f.mu.Lock()
	_, err := f.lookup(nameOrID)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if psArgs == "bad" {
		return nil, errdefs.InvalidParameter(errors.New("unsupported ps arguments"))
	}
	return &container.TopResponse{Titles: []string{"PID", "CMD", "ARGS"}, Processes: [][]string{{"7", "sleep", psArgs}}}, nil
}

func (f *fakeBackend) ContainerStats(ctx context.Context, nameOrID string, cfg *backend.StatsConfig) error {
	f.mu.Lock()
	c, err := f.lookup(nameOrID)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	n := 1
	if cfg.Stream {
		n = 3
	}
	for i := 0; i < n; i++ {
		s := &container.StatsResponse{Name: "/" + c.name, ID: c.id, PidsStats: container.PidsStats{Current: uint64(i + 1)}}
		if cfg.OneShot {
			s.PidsStats.Limit = 99
		}
		if err := cfg.Send(s); err != nil {
			return err
		}
	}
	return nil
}

// dialExecStart sends an exec start request by hand and reads the
// response head.
func dialExecStart(t *testing.T, addr, id, body string, upgrade bool) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hdr := fmt.Sprintf("POST /v1.51/exec/%s/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", id, len(body))
	if upgrade {
		hdr += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
	}
	if _, err := io.WriteString(conn, hdr+"\r\n"+body); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

func (e *testEnv) execCreate(ctr string, cfg container.ExecOptions) string {
	e.t.Helper()
	resp, body := e.do("POST", "/containers/"+ctr+"/exec", cfg)
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("exec create: %d %s", resp.StatusCode, body)
	}
	var r container.ExecCreateResponse
	if err := json.Unmarshal(body, &r); err != nil || r.ID == "" {
		e.t.Fatalf("exec create body %s: %v", body, err)
	}
	return r.ID
}

func (e *testEnv) execExitCode(id string) *int {
	e.t.Helper()
	resp, body := e.do("GET", "/exec/"+id+"/json", nil)
	if resp.StatusCode != 200 {
		e.t.Fatalf("exec inspect: %d %s", resp.StatusCode, body)
	}
	var ei container.ExecInspect // the client's view
	if err := json.Unmarshal(body, &ei); err != nil || ei.ExecID != id {
		e.t.Fatalf("exec inspect body %s: %v", body, err)
	}
	var raw map[string]any
	json.Unmarshal(body, &raw)
	if raw["ExitCode"] == nil {
		return nil
	}
	code := ei.ExitCode
	return &code
}

func TestExecCreateAndInspect(t *testing.T) {
	e := newTestEnv(t)
	e.createContainer("idle", false)
	resp, body := e.do("POST", "/containers/idle/exec", container.ExecOptions{Cmd: []string{"true"}})
	expectError(t, resp, body, 409, "")
	resp, body = e.do("POST", "/containers/nope/exec", container.ExecOptions{Cmd: []string{"true"}})
	expectError(t, resp, body, 404, "")

	e.createContainer("c", false)
	if r, b := e.do("POST", "/containers/c/start", nil); r.StatusCode != 204 {
		t.Fatalf("start: %d %s", r.StatusCode, b)
	}
	resp, body = e.do("POST", "/containers/c/exec", container.ExecOptions{})
	expectError(t, resp, body, 400, "No exec command specified")
	resp, body = e.do("POST", "/containers/c/exec", "{", "Content-Type", "application/json")
	expectError(t, resp, body, 400, "")

	id := e.execCreate("c", container.ExecOptions{Cmd: []string{"ls", "-l"}, AttachStdout: true, User: "nobody"})
	resp, body = e.do("GET", "/v1.51/exec/"+id+"/json", nil)
	var raw map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(body, &raw) != nil {
		t.Fatalf("inspect: %d %s", resp.StatusCode, body)
	}
	pc, _ := raw["ProcessConfig"].(map[string]any)
	if raw["ID"] != id || raw["ExitCode"] != nil || raw["OpenStdout"] != true || pc["entrypoint"] != "ls" || fmt.Sprint(pc["arguments"]) != "[-l]" {
		t.Fatalf("inspect body %s", body)
	}
	resp, body = e.do("GET", "/exec/nope/json", nil)
	expectError(t, resp, body, 404, "No such exec instance: nope")

	resp, body = e.do("POST", "/exec/"+id+"/resize?h=30&w=100", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("resize: %d %s", resp.StatusCode, body)
	}
	if ex, _ := e.fake.getExec(id); ex.resized != [2]uint{30, 100} {
		t.Fatalf("resized %v", ex.resized)
	}
	resp, body = e.do("POST", "/exec/"+id+"/resize?h=x&w=100", nil)
	expectError(t, resp, body, 400, "")
}

func TestExecStartHijack(t *testing.T) {
	e := newTestEnv(t)
	e.createContainer("c", false)
	if r, b := e.do("POST", "/containers/c/start", nil); r.StatusCode != 204 {
		t.Fatalf("start: %d %s", r.StatusCode, b)
	}
	addr := e.hs.Listener.Addr().String()

	t.Run("upgrade multiplexed with stdin", func(t *testing.T) {
		id := e.execCreate("c", container.ExecOptions{Cmd: []string{"sh", "-c", "exit 4"}, AttachStdin: true, AttachStdout: true, AttachStderr: true})
		conn, br, resp := dialExecStart(t, addr, id, `{"Detach":false,"Tty":false}`, true)
		if resp.StatusCode != 101 || resp.Status != "101 UPGRADED" || resp.Header.Get("Content-Type") != dtypes.MediaTypeMultiplexedStream ||
			resp.Header.Get("Upgrade") != "tcp" || resp.Header.Get("Connection") != "Upgrade" {
			t.Fatalf("response: %s %v", resp.Status, resp.Header)
		}
		io.WriteString(conn, "abc")
		conn.(*net.TCPConn).CloseWrite()
		var stdout, stderr bytes.Buffer
		if _, err := stdcopy.StdCopy(&stdout, &stderr, br); err != nil {
			t.Fatalf("stdcopy: %v", err)
		}
		if stdout.String() != "stdin: abc\nsh -c exit 4\n" || stderr.String() != "err\n" {
			t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
		}
		if code := e.execExitCode(id); code == nil || *code != 4 {
			t.Fatalf("exit code %v", code)
		}
	})

	t.Run("tty raw without upgrade", func(t *testing.T) {
		id := e.execCreate("c", container.ExecOptions{Cmd: []string{"echo", "hi"}, AttachStdout: true, AttachStderr: true, Tty: true})
		conn, br, resp := dialExecStart(t, addr, id, `{"Tty":true,"ConsoleSize":[24,80]}`, false)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != dtypes.MediaTypeRawStream {
			t.Fatalf("response: %s %v", resp.Status, resp.Header)
		}
		conn.(*net.TCPConn).CloseWrite()
		out, err := io.ReadAll(br)
		if err != nil || string(out) != "echo hi\nerr\n" {
			t.Fatalf("raw output %q %v", out, err)
		}
		ex, _ := e.fake.getExec(id)
		if ex.start == nil || !ex.start.Tty || ex.start.ConsoleSize == nil || *ex.start.ConsoleSize != [2]uint{24, 80} {
			t.Fatalf("start config %+v", ex.start)
		}
	})

	t.Run("start error goes into the stream", func(t *testing.T) {
		id := e.execCreate("c", container.ExecOptions{Cmd: []string{"nosuchcmd"}, AttachStdout: true, AttachStderr: true})
		conn, br, resp := dialExecStart(t, addr, id, `{}`, true)
		if resp.StatusCode != 101 {
			t.Fatalf("response: %s", resp.Status)
		}
		conn.(*net.TCPConn).CloseWrite()
		var stdout, stderr bytes.Buffer
		if _, err := stdcopy.StdCopy(&stdout, &stderr, br); err != nil {
			t.Fatalf("stdcopy: %v", err)
		}
		if !strings.Contains(stdout.String(), "executable file not found") || !strings.HasSuffix(stdout.String(), "\r\n") {
			t.Fatalf("stdout %q", stdout.String())
		}
		if code := e.execExitCode(id); code == nil || *code != 127 {
			t.Fatalf("exit code %v", code)
		}
	})

	t.Run("detach", func(t *testing.T) {
		id := e.execCreate("c", container.ExecOptions{Cmd: []string{"sleep", "1"}})
		resp, body := e.do("POST", "/exec/"+id+"/start", map[string]any{"Detach": true})
		if resp.StatusCode != 200 || len(body) != 0 {
			t.Fatalf("detached start: %d %q", resp.StatusCode, body)
		}
		if ex, _ := e.fake.getExec(id); ex.start == nil || !ex.start.Detach || ex.start.GetStreams != nil {
			t.Fatalf("start config %+v", ex.start)
		}
	})

	t.Run("unknown exec is a 404 before the hijack", func(t *testing.T) {
		resp, body := e.do("POST", "/exec/nope/start", map[string]any{})
		expectError(t, resp, body, 404, "No such exec instance: nope")
		resp, body = e.do("POST", "/exec/nope/start", map[string]any{"Detach": true})
		expectError(t, resp, body, 404, "No such exec instance: nope")
	})
}

func TestTopAndStats(t *testing.T) {
	e := newTestEnv(t)
	e.createContainer("c", false)
	resp, body := e.do("GET", "/containers/c/top?ps_args=aux", nil)
	var top container.TopResponse
	if resp.StatusCode != 200 || json.Unmarshal(body, &top) != nil || len(top.Processes) != 1 || top.Processes[0][2] != "aux" {
		t.Fatalf("top: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/containers/c/top?ps_args=bad", nil)
	expectError(t, resp, body, 400, "")
	resp, body = e.do("GET", "/containers/nope/top", nil)
	expectError(t, resp, body, 404, "")

	decodeAll := func(body []byte) []container.StatsResponse {
		var out []container.StatsResponse
		dec := json.NewDecoder(bytes.NewReader(body))
		for {
			var s container.StatsResponse
			if err := dec.Decode(&s); err == io.EOF {
				return out
			} else if err != nil {
				t.Fatalf("decode stats %s: %v", body, err)
			}
			out = append(out, s)
		}
	}
	resp, body = e.do("GET", "/containers/c/stats?stream=false", nil)
	if s := decodeAll(body); resp.StatusCode != 200 || len(s) != 1 || s[0].Name != "/c" || s[0].PidsStats.Limit != 0 ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("stats stream=false: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/containers/c/stats?stream=0&one-shot=1", nil)
	if s := decodeAll(body); len(s) != 1 || s[0].PidsStats.Limit != 99 {
		t.Fatalf("stats one-shot: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/v1.51/containers/c/stats", nil)
	if s := decodeAll(body); resp.StatusCode != 200 || len(s) != 3 || s[2].PidsStats.Current != 3 {
		t.Fatalf("stats stream: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/containers/c/stats?one-shot=1", nil)
	expectError(t, resp, body, 400, "cannot have stream=true and one-shot=true")
	resp, body = e.do("GET", "/containers/nope/stats", nil)
	expectError(t, resp, body, 404, "")
}
