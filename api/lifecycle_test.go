package api

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
)

// The fake backend's pause/update state lives here (the fake's own struct
// is shared with other work).
var fakeLifecycle = struct {
	sync.Mutex
	paused     map[string]bool // container ID
	lastUpdate map[*fakeBackend]*container.UpdateConfig
}{paused: map[string]bool{}, lastUpdate: map[*fakeBackend]*container.UpdateConfig{}}

func (f *fakeBackend) ContainerPause(_ context.Context, nameOrID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.lookup(nameOrID)
	if err != nil {
		return err
	}
	fakeLifecycle.Lock()
	defer fakeLifecycle.Unlock()
	switch {
	case !c.running:
		return errdefs.Conflict(fmt.Errorf("Container %s is not running", c.id))
	case fakeLifecycle.paused[c.id]:
		return errdefs.Conflict(fmt.Errorf("Container %s is already paused", c.id))
	}
	fakeLifecycle.paused[c.id] = true
	return nil
}

func (f *fakeBackend) ContainerUnpause(_ context.Context, nameOrID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.lookup(nameOrID)
	if err != nil {
		return err
	}
	fakeLifecycle.Lock()
	defer fakeLifecycle.Unlock()
	if !fakeLifecycle.paused[c.id] {
		return errdefs.Conflict(fmt.Errorf("Container %s is not paused", c.id))
	}
	delete(fakeLifecycle.paused, c.id)
	return nil
}

func (f *fakeBackend) ContainerUpdate(_ context.Context, nameOrID string, cfg *container.UpdateConfig) (container.UpdateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.lookup(nameOrID); err != nil {
		return container.UpdateResponse{}, err
	}
	fakeLifecycle.Lock()
	fakeLifecycle.lastUpdate[f] = cfg
	fakeLifecycle.Unlock()
	if cfg.CPUShares != 0 {
		return container.UpdateResponse{}, errdefs.InvalidParameter(fmt.Errorf("no cpu shares"))
	}
	var resp container.UpdateResponse
	if cfg.Memory != 0 {
		resp.Warnings = []string{"later"}
	}
	return resp, nil
}

func TestPauseUnpauseRoutes(t *testing.T) {
	e := newTestEnv(t)
	id := e.createContainer("p1", false)
	e.fake.mu.Lock()
	e.fake.containers[id].running = true
	e.fake.mu.Unlock()

	for _, prefix := range []string{"", "/v1.51"} {
		resp, body := e.do("POST", prefix+"/containers/p1/pause", nil)
		if resp.StatusCode != 204 || len(body) != 0 {
			t.Fatalf("pause: %d %s", resp.StatusCode, body)
		}
		resp, body = e.do("POST", prefix+"/containers/p1/pause", nil)
		expectError(t, resp, body, 409, fmt.Sprintf("Container %s is already paused", id))
		resp, body = e.do("POST", prefix+"/containers/p1/unpause", nil)
		if resp.StatusCode != 204 || len(body) != 0 {
			t.Fatalf("unpause: %d %s", resp.StatusCode, body)
		}
		resp, body = e.do("POST", prefix+"/containers/p1/unpause", nil)
		expectError(t, resp, body, 409, fmt.Sprintf("Container %s is not paused", id))
	}
	resp, body := e.do("POST", "/containers/nope/pause", nil)
	expectError(t, resp, body, 404, "No such container: nope")
}

func TestUpdateRoute(t *testing.T) {
	e := newTestEnv(t)
	e.createContainer("u1", false)

	resp, body := e.do("POST", "/v1.51/containers/u1/update", `{"Memory":536870912,"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("update: %d %s", resp.StatusCode, body)
	}
	var ur container.UpdateResponse
	if err := json.Unmarshal(body, &ur); err != nil || len(ur.Warnings) != 1 {
		t.Fatalf("update response %s: %v", body, err)
	}
	fakeLifecycle.Lock()
	got := fakeLifecycle.lastUpdate[e.fake]
	fakeLifecycle.Unlock()
	if got == nil || got.Memory != 512<<20 || got.RestartPolicy.Name != "on-failure" || got.RestartPolicy.MaximumRetryCount != 3 {
		t.Fatalf("backend got %+v", got)
	}

	// No warnings is an empty list, not null (the CLI ranges over it).
	resp, body = e.do("POST", "/containers/u1/update", `{"RestartPolicy":{"Name":"always"}}`)
	if resp.StatusCode != 200 || string(body) != "{\"Warnings\":[]}\n" && string(body) != `{"Warnings":[]}` {
		t.Fatalf("update without warnings: %d %q", resp.StatusCode, body)
	}
	resp, body = e.do("POST", "/containers/u1/update", `{"CpuShares":512}`)
	expectError(t, resp, body, 400, "no cpu shares")
	resp, body = e.do("POST", "/containers/u1/update", `{"Memory":`)
	expectError(t, resp, body, 400, "")
	resp, body = e.do("POST", "/containers/u1/update", []byte(`{}`), "Content-Type", "text/plain")
	expectError(t, resp, body, 400, "")
	resp, body = e.do("POST", "/containers/nope/update", `{}`)
	expectError(t, resp, body, 404, "No such container: nope")
}
