package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/checkpoint"
)

// fakeCheckpoints records the checkpoint calls.
type fakeCheckpoints struct {
	*fakeBackend
	calls []string
}

func (f *fakeCheckpoints) CheckpointCreate(_ context.Context, name string, o checkpoint.CreateOptions) error {
	f.calls = append(f.calls, "create "+name+" "+o.CheckpointID+" "+o.CheckpointDir+" "+map[bool]string{true: "exit", false: "leave"}[o.Exit])
	return nil
}
func (f *fakeCheckpoints) CheckpointList(_ context.Context, name string, o checkpoint.ListOptions) ([]checkpoint.Summary, error) {
	f.calls = append(f.calls, "list "+name+" "+o.CheckpointDir)
	return []checkpoint.Summary{{Name: "c1"}}, nil
}
func (f *fakeCheckpoints) CheckpointDelete(_ context.Context, name string, o checkpoint.DeleteOptions) error {
	f.calls = append(f.calls, "delete "+name+" "+o.CheckpointID+" "+o.CheckpointDir)
	return nil
}
func (f *fakeCheckpoints) ContainerRestore(_ context.Context, name, id, dir string) error {
	f.calls = append(f.calls, "restore "+name+" "+id+" "+dir)
	return nil
}

func checkpointEnv(t *testing.T, experimental bool) (*testEnv, *fakeCheckpoints) {
	t.Helper()
	fc := &fakeCheckpoints{fakeBackend: newFakeBackend()}
	srv := NewServer(fc, Options{Logger: testLogger(t), Experimental: experimental})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &testEnv{t: t, fake: fc.fakeBackend, srv: srv, hs: hs}, fc
}

// Without --experimental the routes answer dockerd's 501 and a start from
// a checkpoint its 400; with it they reach the backend (the DELETE of a
// checkpoint is not taken for a container's).
func TestCheckpointRoutes(t *testing.T) {
	e, fc := checkpointEnv(t, false)
	for _, r := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1.51/containers/c1/checkpoints", `{"CheckpointID":"c1"}`},
		{http.MethodGet, "/v1.51/containers/c1/checkpoints", ""},
		{http.MethodDelete, "/v1.51/containers/c1/checkpoints/c1", ""},
	} {
		resp, body := e.do(r.method, r.path, r.body)
		if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(body), "experimental mode") {
			t.Errorf("%s %s without experimental: %d %s", r.method, r.path, resp.StatusCode, body)
		}
	}
	if resp, body := e.do(http.MethodPost, "/v1.51/containers/c1/start?checkpoint=c1", nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "checkpoint is only supported in experimental mode") {
		t.Errorf("start from a checkpoint without experimental: %d %s", resp.StatusCode, body)
	}
	if len(fc.calls) != 0 {
		t.Fatalf("the backend was called: %v", fc.calls)
	}

	e, fc = checkpointEnv(t, true)
	if resp, body := e.do(http.MethodPost, "/v1.51/containers/c1/checkpoints", `{"CheckpointID":"cp","CheckpointDir":"/d","Exit":true}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	resp, body := e.do(http.MethodGet, "/v1.51/containers/c1/checkpoints?dir=/d", nil)
	var list []checkpoint.Summary
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0].Name != "c1" {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(http.MethodDelete, "/v1.51/containers/c1/checkpoints/cp?dir=/d", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(http.MethodPost, "/v1.51/containers/c1/start?checkpoint=cp&checkpoint-dir=/d", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("restore: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.do(http.MethodPost, "/v1.51/containers/c1/checkpoints", `{bad`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a bad body: %d", resp.StatusCode)
	}
	want := []string{"create c1 cp /d exit", "list c1 /d", "delete c1 cp /d", "restore c1 cp /d"}
	if strings.Join(fc.calls, "|") != strings.Join(want, "|") {
		t.Fatalf("calls %q, want %q", fc.calls, want)
	}
}
