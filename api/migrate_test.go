package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/jevm/jevm/api/types/migration"
)

// fakeMigrations records the migration calls.
type fakeMigrations struct {
	*fakeBackend
	calls []string
}

func (f *fakeMigrations) ContainerMigrate(_ context.Context, name string, req migration.Request, out io.Writer) error {
	f.calls = append(f.calls, "migrate "+name+" "+req.Target)
	if name == "missing" {
		return errdefs.NotFound(fmt.Errorf("No such container: %s", name))
	}
	if name == "panics" {
		panic("a bug")
	}
	fmt.Fprintln(out, `{"status":"Migrating"}`)
	if name == "panics-late" {
		panic("a late bug")
	}
	if name == "fails-late" {
		return fmt.Errorf("the target went away")
	}
	return nil
}
func (f *fakeMigrations) MigrationOffer(_ context.Context, o *migration.Offer) (migration.OfferResponse, error) {
	f.calls = append(f.calls, "offer "+o.ID+" "+o.Name)
	return migration.OfferResponse{NeedBase: true}, nil
}
func (f *fakeMigrations) MigrationBase(_ context.Context, id string, r io.Reader) error {
	b, _ := io.ReadAll(r)
	f.calls = append(f.calls, "base "+id+" "+string(b))
	return nil
}
func (f *fakeMigrations) MigrationLog(_ context.Context, id string, r io.Reader) error {
	b, _ := io.ReadAll(r)
	f.calls = append(f.calls, "log "+id+" "+string(b))
	return nil
}
func (f *fakeMigrations) MigrationRun(_ context.Context, id string, hijack func() (net.Conn, *bufio.Reader, error)) error {
	f.calls = append(f.calls, "run "+id)
	if id == "unknown" {
		return errdefs.NotFound(fmt.Errorf("no migration of container %s is offered here", id))
	}
	conn, br, err := hijack()
	if err != nil {
		return err
	}
	defer conn.Close()
	if id == "panics" {
		panic("a bug on the stream")
	}
	line, _ := br.ReadString('\n')
	_, err = conn.Write([]byte("got " + line))
	return err
}
func (f *fakeMigrations) MigrationAbort(_ context.Context, id string) error {
	f.calls = append(f.calls, "abort "+id)
	return nil
}

// The routes reach the backend: the client's request streams progress
// (an early error is the request's status, a late one a JSON message),
// the offer answers 201, the base's body arrives, the run is upgraded
// (101) and the stream goes both ways, an unknown run is a plain 404.
func TestMigrationRoutes(t *testing.T) {
	fm := &fakeMigrations{fakeBackend: newFakeBackend()}
	srv := NewServer(fm, Options{Logger: testLogger(t)})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	e := &testEnv{t: t, fake: fm.fakeBackend, srv: srv, hs: hs}

	resp, body := e.do(http.MethodPost, "/v1.51/containers/c1/jevm/migrate", `{"Target":"tcp://h2:2376"}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Migrating") {
		t.Fatalf("migrate: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(http.MethodPost, "/v1.51/containers/missing/jevm/migrate", `{"Target":"tcp://h2:2376"}`); resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "No such container") {
		t.Fatalf("migrate a missing container: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(http.MethodPost, "/v1.51/containers/fails-late/jevm/migrate", `{"Target":"tcp://h2:2376"}`); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"error":"the target went away"`) {
		t.Fatalf("a late failure: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(http.MethodPost, "/v1.51/containers/c1/jevm/migrate", `{"Target":`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad JSON: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(http.MethodPost, "/jevm/migrations", `{"Id":"abc","Name":"web"}`); resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"NeedBase":true`) {
		t.Fatalf("offer: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(http.MethodPut, "/jevm/migrations/abc/base", "DISK"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("base: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(http.MethodPut, "/jevm/migrations/abc/log", "LOG"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("log: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(http.MethodPost, "/jevm/migrations/unknown/run", nil, "Connection", "Upgrade", "Upgrade", "tcp"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("run of an unknown migration: %d %s", resp.StatusCode, body)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(hs.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /jevm/migrations/abc/run HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nhello\n")
	br := bufio.NewReader(conn)
	rresp, err := http.ReadResponse(br, nil)
	if err != nil || rresp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("run: %v %v", err, rresp)
	}
	if line, _ := br.ReadString('\n'); line != "got hello\n" {
		t.Fatalf("run stream: %q", line)
	}
	if resp, body := e.do(http.MethodDelete, "/jevm/migrations/abc", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("abort: %d %s", resp.StatusCode, body)
	}
	want := "migrate c1 tcp://h2:2376|migrate missing tcp://h2:2376|migrate fails-late tcp://h2:2376|offer abc web|base abc DISK|log abc LOG|run unknown|run abc|abort abc"
	if got := strings.Join(fm.calls, "|"); got != want {
		t.Fatalf("calls:\n%s\nwant\n%s", got, want)
	}
}

// A handler's panic is logged as an error with its stack; a request not
// yet answered gets a 500 with a message, a started or hijacked one is
// cut off; the server goes on serving.
func TestHandlerPanics(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	fm := &fakeMigrations{fakeBackend: newFakeBackend()}
	srv := NewServer(fm, Options{Logger: logrus.NewEntry(logger)})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	e := &testEnv{t: t, fake: fm.fakeBackend, srv: srv, hs: hs}
	panicked := func(what string) {
		t.Helper()
		for _, entry := range hook.AllEntries() {
			if entry.Level == logrus.ErrorLevel && entry.Message == "API handler panicked" && entry.Data["panic"] == what &&
				strings.Contains(entry.Data["stack"].(string), "fakeMigrations") {
				return
			}
		}
		t.Errorf("no error logged for the panic %q", what)
	}

	resp, body := e.do(http.MethodPost, "/v1.51/containers/panics/jevm/migrate", `{"Target":"tcp://h2:2376"}`)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), `"message":"internal error: a bug"`) {
		t.Fatalf("a panic before the answer: %d %s", resp.StatusCode, body)
	}
	panicked("a bug")

	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1.51/containers/panics-late/jevm/migrate", strings.NewReader(`{"Target":"tcp://h2:2376"}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("a panic in a stream: the stream ended cleanly: %s", b)
		}
	}
	panicked("a late bug")

	conn, err := net.Dial("tcp", strings.TrimPrefix(hs.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /jevm/migrations/panics/run HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	br := bufio.NewReader(conn)
	if rresp, err := http.ReadResponse(br, nil); err != nil || rresp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("run: %v %v", err, rresp)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
		t.Fatalf("after a panic on a hijacked connection: %q %v, want it closed", rest, err)
	}
	panicked("a bug on the stream")

	if resp, body := e.do(http.MethodPost, "/v1.51/containers/c1/jevm/migrate", `{"Target":"tcp://h2:2376"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the panics: %d %s", resp.StatusCode, body)
	}
}
