package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dtypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/api/types/backend"
)

func testLogger(t *testing.T) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if os.Getenv("API_TEST_LOG") != "" {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return logrus.NewEntry(l)
}

type testEnv struct {
	t    *testing.T
	fake *fakeBackend
	srv  *Server
	hs   *httptest.Server
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	fake := newFakeBackend()
	srv := NewServer(fake, Options{Logger: testLogger(t), ServerVersion: "9.9.9"})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &testEnv{t: t, fake: fake, srv: srv, hs: hs}
}

// do sends a request; body may be nil, a string (sent as JSON) or []byte.
func (e *testEnv) do(method, path string, body any, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.hs.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, data
}

// expectError checks status, JSON content type and the exact message.
func expectError(t *testing.T, resp *http.Response, body []byte, status int, msg string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if len(m) != 1 || m["message"] == nil {
		t.Fatalf("error body %s: want exactly {\"message\":...}", body)
	}
	if msg != "" && m["message"] != msg {
		t.Fatalf("message = %q, want %q", m["message"], msg)
	}
}

// createContainer makes a container in the fake and returns its ID.
func (e *testEnv) createContainer(name string, tty bool) string {
	e.t.Helper()
	e.fake.addImage("busybox")
	resp, err := e.fake.ContainerCreate(context.Background(), name, &container.Config{Image: "busybox", Tty: tty}, &container.HostConfig{}, nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.ID
}

func TestVersionPrefixAndHeaders(t *testing.T) {
	e := newTestEnv(t)
	for _, p := range []string{"/containers/json", "/v1.51/containers/json", "/v1.24/containers/json", "/v1.41/containers/json"} {
		resp, body := e.do("GET", p, nil)
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
		}
		checkCommonHeaders(t, resp)
	}
	resp, body := e.do("GET", "/v1.99/containers/json", nil)
	expectError(t, resp, body, 400, "client version 1.99 is too new. Maximum supported API version is 1.51")
	checkCommonHeaders(t, resp)
	resp, body = e.do("GET", "/v1.12/containers/json", nil)
	expectError(t, resp, body, 400, "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version")
	resp, body = e.do("HEAD", "/v1.52/_ping", nil)
	if resp.StatusCode != 400 {
		t.Fatalf("HEAD too new ping: %d", resp.StatusCode)
	}

	// The effective version reaches the handlers: before 1.43 untagged
	// images are listed as <none>:<none>.
	e.fake.mu.Lock()
	e.fake.images["<none>"] = "sha256:abc"
	e.fake.mu.Unlock()
	for v, want := range map[string]string{"/v1.42": "<none>:<none>", "/v1.51": "", "": ""} {
		resp, body = e.do("GET", v+"/images/json", nil)
		var list []image.Summary
		if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 || len(list) != 1 {
			t.Fatalf("%s/images/json: %d %s %v", v, resp.StatusCode, body, err)
		}
		got := strings.Join(list[0].RepoTags, ",")
		if got != want || list[0].RepoTags == nil {
			t.Fatalf("%s: RepoTags %q, want %q", v, got, want)
		}
	}
}

func checkCommonHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	want := map[string]string{"Api-Version": "1.51", "Ostype": "linux", "Docker-Experimental": "false", "Server": "Docker/9.9.9 (linux)"}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Fatalf("header %s = %q, want %q", k, got, v)
		}
	}
}

func TestPing(t *testing.T) {
	e := newTestEnv(t)
	for _, method := range []string{"GET", "HEAD"} {
		for _, p := range []string{"/_ping", "/v1.51/_ping"} {
			resp, body := e.do(method, p, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("%s %s: %d", method, p, resp.StatusCode)
			}
			wantBody := "OK"
			if method == "HEAD" {
				wantBody = ""
			}
			if string(body) != wantBody {
				t.Fatalf("%s %s: body %q", method, p, body)
			}
			checkCommonHeaders(t, resp)
			if resp.Header.Get("Cache-Control") != "no-cache, no-store, must-revalidate" || resp.Header.Get("Pragma") != "no-cache" {
				t.Fatalf("%s %s: cache headers %v", method, p, resp.Header)
			}
		}
	}
}

func TestVersionAndInfo(t *testing.T) {
	e := newTestEnv(t)
	resp, body := e.do("GET", "/version", nil)
	var v dtypes.Version
	if err := json.Unmarshal(body, &v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("version: %d %s", resp.StatusCode, body)
	}
	if v.Version != "0.0.1-fake" || v.APIVersion != "1.51" || v.MinAPIVersion != "1.24" || v.Os != "linux" || v.GoVersion == "" {
		t.Fatalf("version: %+v", v)
	}
	resp, body = e.do("GET", "/v1.51/info", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"Name":"fakehost"`) {
		t.Fatalf("info: %d %s", resp.StatusCode, body)
	}
	e.fake.errs["SystemInfo"] = errdefs.Unavailable(errors.New("backend down"))
	resp, body = e.do("GET", "/info", nil)
	expectError(t, resp, body, 503, "backend down")
}

func TestErrorMapping(t *testing.T) {
	e := newTestEnv(t)
	cases := []struct {
		err    error
		status int
	}{
		{errdefs.NotFound(errors.New("m")), 404},
		{errdefs.InvalidParameter(errors.New("m")), 400},
		{errdefs.Conflict(errors.New("m")), 409},
		{errdefs.Unauthorized(errors.New("m")), 401},
		{errdefs.Forbidden(errors.New("m")), 403},
		{errdefs.Unavailable(errors.New("m")), 503},
		{errdefs.NotImplemented(errors.New("m")), 501},
		{errdefs.System(errors.New("m")), 500},
		{errdefs.Unknown(errors.New("m")), 500},
		{errdefs.Cancelled(errors.New("m")), 500},
		{errdefs.Deadline(errors.New("m")), 500},
		{errors.New("m"), 500},
		{fmt.Errorf("wrapped: %w", errdefs.NotFound(errors.New("m"))), 404},
		{fmt.Errorf("ctx: %w", context.Canceled), 500},
	}
	for _, c := range cases {
		e.fake.errs["ContainerInspect"] = c.err
		resp, body := e.do("GET", "/v1.51/containers/x/json", nil)
		expectError(t, resp, body, c.status, c.err.Error())
	}
	// 304 has no body.
	e.fake.errs["ContainerInspect"] = errdefs.NotModified(errors.New("m"))
	resp, body := e.do("GET", "/containers/x/json", nil)
	if resp.StatusCode != 304 || len(body) != 0 {
		t.Fatalf("304: %d %q", resp.StatusCode, body)
	}
}

func TestUnknownAndUnimplementedRoutes(t *testing.T) {
	e := newTestEnv(t)
	for _, r := range [][2]string{
		{"GET", "/nope"}, {"GET", "/v1.51/nope"},
		{"GET", "/containers/x/nope"}, {"POST", "/containers/x/changes"},
		{"PUT", "/containers/json"}, {"GET", "/build"},
	} {
		resp, body := e.do(r[0], r[1], nil)
		expectError(t, resp, body, 404, "page not found")
		checkCommonHeaders(t, resp)
	}
}

func TestContainerCreate(t *testing.T) {
	e := newTestEnv(t)
	e.fake.addImage("busybox:latest")

	resp, body := e.do("POST", "/containers/create", "{")
	expectError(t, resp, body, 400, "")
	if !strings.Contains(string(body), "invalid JSON") {
		t.Fatalf("bad JSON: %s", body)
	}
	resp, body = e.do("POST", "/containers/create", "")
	expectError(t, resp, body, 400, "invalid JSON: got EOF while reading request body")
	resp, body = e.do("POST", "/containers/create", `{"Image":"busybox"} {}`)
	expectError(t, resp, body, 400, "unexpected content after JSON")
	resp, body = e.do("POST", "/containers/create", `{}`)
	expectError(t, resp, body, 400, "config cannot be empty in order to create a container")
	resp, body = e.do("POST", "/containers/create", []byte(`{"Image":"busybox"}`), "Content-Type", "text/plain")
	expectError(t, resp, body, 400, "unsupported Content-Type header (text/plain): must be 'application/json'")

	for _, bad := range []string{"a", "-abc", "foo%20bar", "a/b", "_x", "x:y"} {
		resp, body = e.do("POST", "/containers/create?name="+bad, `{"Image":"busybox"}`)
		expectError(t, resp, body, 400, "")
	}
	resp, body = e.do("POST", "/containers/create?name=-abc", `{"Image":"busybox"}`)
	expectError(t, resp, body, 400, "Invalid container name (-abc), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")

	resp, body = e.do("POST", "/v1.51/containers/create?name=/web_1.x-y&platform=linux/amd64",
		`{"Image":"busybox","Cmd":["echo","hi"],"HostConfig":{"AutoRemove":true}}`)
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(string(body), `"Warnings":[]`) {
		t.Fatalf("create body: %s", body)
	}
	var cr container.CreateResponse
	if err := json.Unmarshal(body, &cr); err != nil || len(cr.ID) != 64 {
		t.Fatalf("create body: %s", body)
	}
	if e.fake.lastCreateName != "web_1.x-y" || e.fake.lastCreate.Cmd[1] != "hi" || !e.fake.lastHostConfig.AutoRemove {
		t.Fatalf("backend got %q %+v %+v", e.fake.lastCreateName, e.fake.lastCreate, e.fake.lastHostConfig)
	}
	// No name, no HostConfig: the backend still gets a HostConfig.
	resp, body = e.do("POST", "/containers/create", `{"Image":"busybox"}`)
	if resp.StatusCode != 201 || e.fake.lastHostConfig == nil || e.fake.lastCreateName != "" {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("POST", "/containers/create?name=web_1.x-y", `{"Image":"busybox"}`)
	expectError(t, resp, body, 409, "")
	resp, body = e.do("POST", "/containers/create", `{"Image":"alpine"}`)
	expectError(t, resp, body, 404, "No such image: alpine:latest")
}

func TestContainerOperations(t *testing.T) {
	e := newTestEnv(t)
	id := e.createContainer("c1", false)

	resp, body := e.do("POST", "/containers/c1/start", nil)
	if resp.StatusCode != 204 {
		t.Fatalf("start: %d %s", resp.StatusCode, body)
	}
	// The fake container exits as soon as it started (nobody attached);
	// make it look running for the next steps.
	e.fake.mu.Lock()
	c := e.fake.containers[id]
	e.fake.mu.Unlock()
	<-c.exited
	e.fake.mu.Lock()
	c.running = true
	e.fake.mu.Unlock()

	resp, body = e.do("POST", "/containers/c1/start", nil)
	if resp.StatusCode != 304 || len(body) != 0 {
		t.Fatalf("second start: %d %q", resp.StatusCode, body)
	}
	resp, body = e.do("POST", "/containers/c1/start", `{"Binds":["/a:/b"]}`)
	expectError(t, resp, body, 400, "starting container with non-empty request body was deprecated since API v1.22 and removed in v1.24")

	resp, _ = e.do("POST", "/v1.51/containers/c1/stop?t=5&signal=SIGINT", nil)
	if resp.StatusCode != 204 || e.fake.lastStop.Timeout == nil || *e.fake.lastStop.Timeout != 5 || e.fake.lastStop.Signal != "SIGINT" {
		t.Fatalf("stop: %d %+v", resp.StatusCode, e.fake.lastStop)
	}
	resp, _ = e.do("POST", "/v1.41/containers/c1/stop?signal=SIGINT", nil)
	if resp.StatusCode != 204 || e.fake.lastStop.Timeout != nil || e.fake.lastStop.Signal != "" {
		t.Fatalf("stop 1.41: %d %+v", resp.StatusCode, e.fake.lastStop)
	}
	resp, body = e.do("POST", "/containers/c1/stop?t=soon", nil)
	expectError(t, resp, body, 400, "")
	resp, _ = e.do("POST", "/containers/c1/restart?t=1", nil)
	if resp.StatusCode != 204 || *e.fake.lastRestart.Timeout != 1 {
		t.Fatalf("restart: %d", resp.StatusCode)
	}
	resp, _ = e.do("POST", "/containers/c1/kill?signal=KILL", nil)
	if resp.StatusCode != 204 || e.fake.lastKill != "KILL" {
		t.Fatalf("kill: %d %q", resp.StatusCode, e.fake.lastKill)
	}
	resp, _ = e.do("POST", "/containers/c1/resize?h=40&w=120", nil)
	if resp.StatusCode != 200 || e.fake.lastResize != [2]uint{40, 120} {
		t.Fatalf("resize: %d %v", resp.StatusCode, e.fake.lastResize)
	}
	resp, body = e.do("POST", "/containers/c1/resize?h=x&w=1", nil)
	expectError(t, resp, body, 400, "")

	resp, body = e.do("GET", "/containers/c1/json?size=1", nil)
	var insp container.InspectResponse
	if err := json.Unmarshal(body, &insp); err != nil || resp.StatusCode != 200 || insp.Name != "/c1" || !e.fake.lastInspectSz {
		t.Fatalf("inspect: %d %s", resp.StatusCode, body)
	}

	resp, body = e.do("GET", `/containers/json?all=1&limit=3&size=true&filters=`+`%7B%22status%22%3A%7B%22running%22%3Atrue%7D%7D`, nil)
	if resp.StatusCode != 200 || !e.fake.lastList.All || e.fake.lastList.Limit != 3 || !e.fake.lastList.Size ||
		!e.fake.lastList.Filters.ExactMatch("status", "running") {
		t.Fatalf("list: %d %s %+v", resp.StatusCode, body, e.fake.lastList)
	}
	resp, body = e.do("GET", `/containers/json?filters=%7B`, nil)
	expectError(t, resp, body, 400, "")
	resp, body = e.do("GET", `/containers/json?limit=many`, nil)
	expectError(t, resp, body, 400, "")

	resp, body = e.do("POST", "/containers/c1/rename?name=bad%20name", nil)
	expectError(t, resp, body, 400, "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
	resp, body = e.do("POST", "/containers/c1/rename", nil)
	expectError(t, resp, body, 400, "Neither old nor new names may be empty")
	resp, _ = e.do("POST", "/containers/c1/rename?name=c2", nil)
	if resp.StatusCode != 204 || e.fake.lastRename != [2]string{"c1", "c2"} {
		t.Fatalf("rename: %d %v", resp.StatusCode, e.fake.lastRename)
	}

	resp, body = e.do("POST", "/containers/c2/wait?condition=bogus", nil)
	expectError(t, resp, body, 400, `invalid condition: "bogus"`)

	resp, body = e.do("DELETE", "/containers/c2", nil)
	expectError(t, resp, body, 409, "")
	resp, _ = e.do("DELETE", "/containers/c2?force=1&v=true&link=0", nil)
	if resp.StatusCode != 204 || e.fake.lastRemove != (container.RemoveOptions{Force: true, RemoveVolumes: true}) {
		t.Fatalf("remove: %d %+v", resp.StatusCode, e.fake.lastRemove)
	}
	resp, body = e.do("DELETE", "/containers/c2", nil)
	expectError(t, resp, body, 404, "No such container: c2")

	e.createContainer("c3", false)
	resp, body = e.do("POST", `/containers/prune?filters=%7B%22until%22%3A%7B%2210m%22%3Atrue%7D%7D`, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ContainersDeleted":["`) || !e.fake.lastPrune.ExactMatch("until", "10m") {
		t.Fatalf("prune: %d %s", resp.StatusCode, body)
	}
}

func TestWaitEarlyHeader(t *testing.T) {
	e := newTestEnv(t)
	results := make(chan container.WaitResponse, 1)
	registered := make(chan container.WaitCondition, 1)
	e.fake.waitHook = func(ctx context.Context, name string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
		if name != "c1" {
			return nil, errdefs.NotFound(fmt.Errorf("No such container: %s", name))
		}
		registered <- cond
		return results, nil
	}

	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Post(e.hs.URL+"/v1.51/containers/c1/wait?condition=next-exit", "", nil)
		got <- result{resp, err}
	}()
	var r result
	select {
	case r = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("wait: no response header before the container exited")
	}
	if r.err != nil || r.resp.StatusCode != 200 || r.resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("wait: %v %v", r.err, r.resp)
	}
	defer r.resp.Body.Close()
	if c := <-registered; c != container.WaitConditionNextExit {
		t.Fatalf("condition %q", c)
	}
	results <- container.WaitResponse{StatusCode: 3}
	body, _ := io.ReadAll(r.resp.Body)
	if strings.TrimSpace(string(body)) != `{"StatusCode":3}` {
		t.Fatalf("wait body %q", body)
	}

	// An exit error travels in the body.
	go func() {
		results <- container.WaitResponse{StatusCode: 137, Error: &container.WaitExitError{Message: "oom"}}
	}()
	resp, body := e.do("POST", "/containers/c1/wait", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"Error":{"Message":"oom"},"StatusCode":137}` {
		t.Fatalf("wait with error: %d %s", resp.StatusCode, body)
	}
	if c := <-registered; c != container.WaitConditionNotRunning {
		t.Fatalf("default condition %q", c)
	}
	// Errors before the wait is registered keep their status.
	resp, body = e.do("POST", "/containers/nope/wait", nil)
	expectError(t, resp, body, 404, "No such container: nope")
}

// dialAttach sends an attach request by hand and reads the response head.
func dialAttach(t *testing.T, addr, path string, upgrade bool, extra string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hdr := "POST " + path + " HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n"
	if upgrade {
		hdr += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
	}
	if _, err := io.WriteString(conn, hdr+"\r\n"+extra); err != nil {
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

func TestAttachHijack(t *testing.T) {
	e := newTestEnv(t)
	e.fake.output = "hello\n"
	e.fake.errOutput = "oops\n"
	addr := e.hs.Listener.Addr().String()

	t.Run("upgrade multiplexed with stdin", func(t *testing.T) {
		id := e.createContainer("c1", false)
		// Input sent right behind the request lands in the server's read
		// buffer; it must reach the backend too.
		conn, br, resp := dialAttach(t, addr, "/v1.51/containers/c1/attach?stream=1&stdin=1&stdout=1&stderr=1", true, "early-")
		if resp.StatusCode != 101 || resp.Status != "101 UPGRADED" ||
			resp.Header.Get("Content-Type") != dtypes.MediaTypeMultiplexedStream ||
			resp.Header.Get("Upgrade") != "tcp" || resp.Header.Get("Connection") != "Upgrade" ||
			resp.Header.Get("Api-Version") != "1.51" {
			t.Fatalf("attach response: %s %v", resp.Status, resp.Header)
		}
		if _, err := io.WriteString(conn, "more\n"); err != nil {
			t.Fatal(err)
		}
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if r, b := e.do("POST", "/containers/c1/start", nil); r.StatusCode != 204 {
			t.Fatalf("start: %d %s", r.StatusCode, b)
		}
		var stdout, stderr bytes.Buffer
		if _, err := stdcopy.StdCopy(&stdout, &stderr, br); err != nil {
			t.Fatalf("stdcopy: %v", err)
		}
		if stdout.String() != "stdin: early-more\nhello\n" || stderr.String() != "oops\n" {
			t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
		}
		e.fake.mu.Lock()
		defer e.fake.mu.Unlock()
		if e.fake.stdin[id] != "early-more\n" {
			t.Fatalf("backend stdin %q", e.fake.stdin[id])
		}
		if a := e.fake.lastAttach; !a.UseStdin || !a.UseStdout || !a.UseStderr || !a.Stream || a.Logs {
			t.Fatalf("attach config %+v", a)
		}
	})

	t.Run("client half-closes before the hijack", func(t *testing.T) {
		// docker run without -i shuts its write side at once; net/http
		// sees that EOF before the hijack and cancels the request
		// context. The attach must survive it.
		e.createContainer("h1", false)
		e.fake.mu.Lock()
		e.fake.attachDelay = 200 * time.Millisecond
		e.fake.mu.Unlock()
		defer func() { e.fake.mu.Lock(); e.fake.attachDelay = 0; e.fake.mu.Unlock() }()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "POST /containers/h1/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		conn.(*net.TCPConn).CloseWrite()
		time.Sleep(50 * time.Millisecond)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("attach: %v %v", resp, err)
		}
		if r, b := e.do("POST", "/containers/h1/start", nil); r.StatusCode != 204 {
			t.Fatalf("start: %d %s", r.StatusCode, b)
		}
		var stdout, stderr bytes.Buffer
		if _, err := stdcopy.StdCopy(&stdout, &stderr, br); err != nil || stdout.String() != "hello\n" || stderr.String() != "oops\n" {
			t.Fatalf("stdout %q stderr %q err %v", stdout.String(), stderr.String(), err)
		}
	})

	t.Run("no upgrade header, tty, old API", func(t *testing.T) {
		e.createContainer("t1", true)
		_, br, resp := dialAttach(t, addr, "/v1.41/containers/t1/attach?stream=1&stdout=1&stderr=1&detachKeys=ctrl-x", false, "")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != dtypes.MediaTypeRawStream {
			t.Fatalf("attach response: %s %v", resp.Status, resp.Header)
		}
		if r, b := e.do("POST", "/containers/t1/start", nil); r.StatusCode != 204 {
			t.Fatalf("start: %d %s", r.StatusCode, b)
		}
		out, err := io.ReadAll(br)
		if err != nil || string(out) != "hello\noops\n" {
			t.Fatalf("raw output %q %v", out, err)
		}
		if e.fake.lastAttach.DetachKeys != "ctrl-x" {
			t.Fatalf("detach keys %q", e.fake.lastAttach.DetachKeys)
		}
	})

	t.Run("multiplexed frames labelled raw before 1.42", func(t *testing.T) {
		e.createContainer("m1", false)
		_, br, resp := dialAttach(t, addr, "/v1.41/containers/m1/attach?stream=1&stdout=1", true, "")
		if resp.StatusCode != 101 || resp.Header.Get("Content-Type") != dtypes.MediaTypeRawStream {
			t.Fatalf("attach response: %s %v", resp.Status, resp.Header)
		}
		e.do("POST", "/containers/m1/start", nil)
		var stdout, stderr bytes.Buffer
		if _, err := stdcopy.StdCopy(&stdout, &stderr, br); err != nil || stdout.String() != "hello\n" || stderr.Len() != 0 {
			t.Fatalf("stdout %q stderr %q err %v", stdout.String(), stderr.String(), err)
		}
	})

	t.Run("unknown container is an HTTP error", func(t *testing.T) {
		_, br, resp := dialAttach(t, addr, "/containers/nope/attach?stream=1&stdout=1", true, "")
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		expectError(t, resp, body, 404, "No such container: nope")
		_ = br
	})

	t.Run("backend error after hijack reaches the client", func(t *testing.T) {
		e.createContainer("e1", false)
		hook := errdefs.System(errors.New("vm exploded"))
		e.fake.mu.Lock()
		e.fake.output = ""
		e.fake.mu.Unlock()
		// A wrapper backend that fails after GetStreams.
		fb := &failingAttach{fakeBackend: e.fake, err: hook}
		srv := NewServer(fb, Options{Logger: testLogger(t)})
		hs := httptest.NewServer(srv.Handler())
		defer hs.Close()
		_, br, resp := dialAttach(t, hs.Listener.Addr().String(), "/containers/e1/attach?stream=1&stdout=1", true, "")
		if resp.StatusCode != 101 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		_, err := stdcopy.StdCopy(io.Discard, io.Discard, br)
		if err == nil || !strings.Contains(err.Error(), "vm exploded") {
			t.Fatalf("stdcopy error %v", err)
		}
	})
}

type failingAttach struct {
	*fakeBackend
	err error
}

func (f *failingAttach) ContainerAttach(_ context.Context, _ string, cfg *backend.AttachConfig) error {
	if _, _, _, err := cfg.GetStreams(true); err != nil {
		return err
	}
	return f.err
}

func TestLogs(t *testing.T) {
	e := newTestEnv(t)
	e.createContainer("c1", false)
	e.createContainer("t1", true)
	ts := time.Date(2024, 1, 2, 3, 4, 5, 1, time.UTC)
	e.fake.logs = []backend.LogMessage{
		{Stream: "stdout", Line: []byte("out1\n"), Timestamp: ts},
		{Stream: "stderr", Line: []byte("err1\n"), Timestamp: ts.Add(time.Second)},
		{Stream: "stdout", Line: []byte("out2\n"), Timestamp: ts.Add(2 * time.Second)},
	}
	demux := func(body []byte) (string, string, error) {
		var o, er bytes.Buffer
		_, err := stdcopy.StdCopy(&o, &er, bytes.NewReader(body))
		return o.String(), er.String(), err
	}

	resp, body := e.do("GET", "/v1.51/containers/c1/logs?stdout=1&stderr=1", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != dtypes.MediaTypeMultiplexedStream {
		t.Fatalf("logs: %d %v", resp.StatusCode, resp.Header)
	}
	if o, er, err := demux(body); err != nil || o != "out1\nout2\n" || er != "err1\n" {
		t.Fatalf("logs: %q %q %v", o, er, err)
	}

	resp, body = e.do("GET", "/containers/c1/logs?stdout=1&timestamps=1&tail=2&since=1700000000.5&until=2024-01-02T03:04:05Z", nil)
	if o, er, err := demux(body); err != nil || er != "" ||
		o != "2024-01-02T03:04:05.000000001Z out1\n2024-01-02T03:04:07.000000001Z out2\n" {
		t.Fatalf("timestamps: %q %q %v", o, er, err)
	}
	if lo := e.fake.lastLogs; lo.Tail != "2" || lo.Since != "1700000000.5" || lo.Until != "1704164645.000000000" || !lo.Timestamps || lo.ShowStderr {
		t.Fatalf("logs options %+v", lo)
	}

	resp, body = e.do("GET", "/containers/t1/logs?stdout=1&stderr=1&follow=1", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != dtypes.MediaTypeRawStream || string(body) != "out1\nerr1\nout2\n" {
		t.Fatalf("tty logs: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if !e.fake.lastLogs.Follow {
		t.Fatal("follow not passed")
	}

	resp, body = e.do("GET", "/containers/c1/logs", nil)
	expectError(t, resp, body, 400, "Bad parameters: you must choose at least one stream")
	resp, body = e.do("GET", "/containers/c1/logs?stdout=1&since=yesterday", nil)
	expectError(t, resp, body, 400, "")
	resp, body = e.do("GET", "/containers/c1/logs?stdout=1&tail=some", nil)
	expectError(t, resp, body, 400, "")
	resp, body = e.do("GET", "/containers/nope/logs?stdout=1", nil)
	expectError(t, resp, body, 404, "No such container: nope")

	e.fake.logs = append(e.fake.logs, backend.LogMessage{Err: errors.New("disk on fire")})
	_, body = e.do("GET", "/containers/c1/logs?stdout=1", nil)
	if _, _, err := demux(body); err == nil || !strings.Contains(err.Error(), "Error grabbing logs: disk on fire") {
		t.Fatalf("log error not in stream: %v", err)
	}
}

func TestPull(t *testing.T) {
	e := newTestEnv(t)
	e.fake.pullOutput = []string{`{"status":"Pulling from library/busybox","id":"latest"}`, `{"status":"Digest: sha256:1234"}`}

	resp, body := e.do("POST", "/v1.51/images/create?fromImage=busybox&tag=latest", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" ||
		string(body) != e.fake.pullOutput[0]+"\r\n"+e.fake.pullOutput[1]+"\r\n" {
		t.Fatalf("pull: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if e.fake.lastPullRef != "docker.io/library/busybox:latest" {
		t.Fatalf("ref %q", e.fake.lastPullRef)
	}

	// Error after output: 200 and an error message in the stream.
	e.fake.pullErr = errors.New("layer went missing")
	resp, body = e.do("POST", "/images/create?fromImage=busybox", nil)
	lines := strings.Split(strings.TrimSpace(string(body)), "\r\n")
	if resp.StatusCode != 200 || len(lines) != 3 ||
		lines[2] != `{"errorDetail":{"message":"layer went missing"},"error":"layer went missing"}` {
		t.Fatalf("error after output: %d %q", resp.StatusCode, body)
	}

	// Error before output: the mapped status.
	e.fake.errs["PullImage"] = errdefs.NotFound(errors.New("pull access denied for nope, repository does not exist"))
	resp, body = e.do("POST", "/images/create?fromImage=nope", nil)
	expectError(t, resp, body, 404, "pull access denied for nope, repository does not exist")
	e.fake.errs["PullImage"] = errdefs.Unauthorized(errors.New("authentication required"))
	resp, body = e.do("POST", "/images/create?fromImage=private/x", nil)
	expectError(t, resp, body, 401, "authentication required")
	delete(e.fake.errs, "PullImage")
	e.fake.pullErr = nil

	const dgst = "sha256:0123456789012345678901234567890123456789012345678901234567890123"
	for _, c := range []struct{ query, want string }{
		{"fromImage=busybox&tag=latest", "docker.io/library/busybox:latest"},
		{"fromImage=busybox", "docker.io/library/busybox:latest"},
		{"fromImage=busybox:1.0", "docker.io/library/busybox:1.0"},
		{"fromImage=busybox:1.0&tag=2.0", "docker.io/library/busybox:2.0"},
		{"fromImage=docker.io/library/busybox&tag=1.36", "docker.io/library/busybox:1.36"},
		{"fromImage=busybox&tag=" + dgst, "docker.io/library/busybox@" + dgst},
		{"fromImage=busybox@" + dgst, "docker.io/library/busybox@" + dgst},
		{"fromImage=localhost:5000/foo/bar&tag=v1", "localhost:5000/foo/bar:v1"},
		{"fromImage=localhost:5000/foo/bar:v2", "localhost:5000/foo/bar:v2"},
		{"fromImage=busybox:", "docker.io/library/busybox:latest"},
	} {
		resp, body = e.do("POST", "/images/create?"+c.query, nil)
		if resp.StatusCode != 200 || e.fake.lastPullRef != c.want {
			t.Fatalf("%s: %d %s ref %q, want %q", c.query, resp.StatusCode, body, e.fake.lastPullRef, c.want)
		}
	}
	resp, body = e.do("POST", "/images/create?fromImage=BusyBox", nil)
	expectError(t, resp, body, 400, "")
	resp, body = e.do("POST", "/images/create?fromImage=busybox&tag=sha256:nothex", nil)
	expectError(t, resp, body, 400, "")
	resp, body = e.do("POST", "/images/create?fromImage=scratch", nil)
	expectError(t, resp, body, 403, "'scratch' is a reserved name")
	resp, body = e.do("POST", "/images/create", nil)
	expectError(t, resp, body, 400, "")

	auth, _ := registry.EncodeAuthConfig(registry.AuthConfig{Username: "me", Password: "pw"})
	resp, _ = e.do("POST", "/images/create?fromImage=busybox&platform=linux/arm64", nil, registry.AuthHeader, auth)
	if resp.StatusCode != 200 || e.fake.lastPullAuth.Username != "me" || e.fake.lastPullAuth.Password != "pw" || e.fake.lastPullPlat != "linux/arm64" {
		t.Fatalf("auth/platform: %+v %q", e.fake.lastPullAuth, e.fake.lastPullPlat)
	}
	// Garbage auth is anonymous, as with dockerd.
	resp, _ = e.do("POST", "/images/create?fromImage=busybox", nil, registry.AuthHeader, base64.URLEncoding.EncodeToString([]byte("{")))
	if resp.StatusCode != 200 || e.fake.lastPullAuth == nil || e.fake.lastPullAuth.Username != "" {
		t.Fatalf("bad auth: %d %+v", resp.StatusCode, e.fake.lastPullAuth)
	}
}

func TestPullStreamsBeforeFinishing(t *testing.T) {
	e := newTestEnv(t)
	release := make(chan struct{})
	e.fake.pullHook = func(ctx context.Context, out io.Writer) error {
		io.WriteString(out, `{"status":"first"}`+"\r\n")
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		io.WriteString(out, `{"status":"second"}`+"\r\n")
		return nil
	}
	resp, err := http.Post(e.hs.URL+"/images/create?fromImage=busybox", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != `{"status":"first"}`+"\r\n" {
		t.Fatalf("first line %q %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != `{"status":"second"}`+"\r\n" {
		t.Fatalf("rest %q", rest)
	}
}

func TestImageRoutes(t *testing.T) {
	e := newTestEnv(t)
	e.fake.addImage("localhost:5000/busybox:latest")
	e.fake.addImage("a/b/c:tag")
	const dgst = "sha256:0123456789012345678901234567890123456789012345678901234567890123"
	for _, name := range []string{"localhost:5000/busybox:latest", "busybox@" + dgst, "a/b/c:tag", "localhost:5000/busybox"} {
		for _, prefix := range []string{"", "/v1.51"} {
			e.do("GET", prefix+"/images/"+name+"/json", nil)
			if e.fake.lastImageName != name {
				t.Fatalf("inspect %s routed as %q", name, e.fake.lastImageName)
			}
		}
	}
	resp, body := e.do("GET", "/images/a/b/c:tag/json", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"a/b/c:tag"`) {
		t.Fatalf("inspect: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/images/nope/json", nil)
	expectError(t, resp, body, 404, "No such image: nope")

	resp, body = e.do("GET", "/images/json?all=1&digests=1&filters=%7B%22dangling%22%3A%7B%22true%22%3Atrue%7D%7D", nil)
	var list []image.Summary
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 || len(list) != 2 || !e.fake.lastImageList.All ||
		!e.fake.lastImageList.Filters.ExactMatch("dangling", "true") {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}

	resp, body = e.do("POST", "/images/localhost:5000/busybox:latest/tag?repo=myrepo/x&tag=v2", nil)
	if resp.StatusCode != 201 || e.fake.lastTag != [3]string{"localhost:5000/busybox:latest", "docker.io/myrepo/x", "v2"} {
		t.Fatalf("tag: %d %s %v", resp.StatusCode, body, e.fake.lastTag)
	}
	resp, _ = e.do("POST", "/v1.51/images/a/b/c:tag/tag?repo=localhost:5000/y", nil)
	if resp.StatusCode != 201 || e.fake.lastTag != [3]string{"a/b/c:tag", "localhost:5000/y", "latest"} {
		t.Fatalf("tag: %d %v", resp.StatusCode, e.fake.lastTag)
	}
	resp, body = e.do("POST", "/images/a/b/c:tag/tag?repo=Bad", nil)
	expectError(t, resp, body, 400, "")
	resp, body = e.do("POST", "/images/a/b/c:tag/tag?repo=x&tag=a:b", nil)
	expectError(t, resp, body, 400, "")

	resp, body = e.do("DELETE", "/images/localhost:5000/y:latest?force=1&noprune=1", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `[{"Untagged":"localhost:5000/y:latest"}]` ||
		fmt.Sprint(e.fake.lastImageDel) != "[localhost:5000/y:latest true false]" {
		t.Fatalf("delete: %d %s %v", resp.StatusCode, body, e.fake.lastImageDel)
	}
	resp, _ = e.do("DELETE", "/v1.51/images/busybox@"+dgst, nil)
	if resp.StatusCode != 404 || fmt.Sprint(e.fake.lastImageDel) != "[busybox@"+dgst+" false true]" {
		t.Fatalf("delete digest: %d %v", resp.StatusCode, e.fake.lastImageDel)
	}
	resp, body = e.do("POST", "/images/prune?filters=%7B%22dangling%22%3A%7B%22false%22%3Atrue%7D%7D", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"SpaceReclaimed":0`) {
		t.Fatalf("prune: %d %s", resp.StatusCode, body)
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "sub", "docker.sock")

	// A stale socket file (nobody listening) is replaced.
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	l, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v %v", fi.Mode(), err)
	}
	// A live socket is not taken over.
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := Listen("unix://" + sock); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second listen: %v", err)
	}
	// Parent directory creation.
	l2, err := Listen(filepath.Join(dir, "a", "b", "c.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()

	lt, err := Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lt.Close()
	for _, bad := range []string{"fd://", "ssh://x", "localhost:2375"} {
		if _, err := Listen(bad); err == nil {
			t.Fatalf("Listen(%q) should fail", bad)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://" + filepath.Join(dir, "file")); err == nil {
		t.Fatal("Listen over a regular file should fail")
	}
}

func TestServeShutdown(t *testing.T) {
	fake := newFakeBackend()
	fake.addImage("busybox")
	if _, err := fake.ContainerCreate(context.Background(), "c1", &container.Config{Image: "busybox"}, &container.HostConfig{}, nil, nil); err != nil {
		t.Fatal(err)
	}
	srv := NewServer(fake, Options{Logger: testLogger(t), ShutdownTimeout: 5 * time.Second})
	unixL, err := Listen("unix://" + filepath.Join(t.TempDir(), "d.sock"))
	if err != nil {
		t.Fatal(err)
	}
	tcpL, err := Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, []net.Listener{unixL, tcpL}) }()

	// Both listeners serve.
	uc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", unixL.Addr().String())
	}}}
	for _, c := range []struct {
		client *http.Client
		url    string
	}{{uc, "http://docker/_ping"}, {http.DefaultClient, "http://" + tcpL.Addr().String() + "/_ping"}} {
		resp, err := c.client.Get(c.url)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("ping %s: %v", c.url, err)
		}
		resp.Body.Close()
	}

	// A hijacked attach and a pending wait must not hold up shutdown.
	_, attachBR, resp := dialAttach(t, tcpL.Addr().String(), "/containers/c1/attach?stream=1&stdout=1", true, "")
	if resp.StatusCode != 101 {
		t.Fatalf("attach %d", resp.StatusCode)
	}
	waitResp, err := http.Post("http://"+tcpL.Addr().String()+"/containers/c1/wait?condition=next-exit", "", nil)
	if err != nil || waitResp.StatusCode != 200 {
		t.Fatalf("wait: %v", err)
	}
	defer waitResp.Body.Close()

	start := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if _, err := io.ReadAll(attachBR); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("attach read after shutdown: %v", err)
	}
	body, _ := io.ReadAll(waitResp.Body)
	if !strings.Contains(string(body), "shutting down") {
		t.Fatalf("wait body after shutdown %q", body)
	}
	if _, err := net.DialTimeout("tcp", tcpL.Addr().String(), time.Second); err == nil {
		t.Fatal("tcp listener still open")
	}
}
