package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

// volFake serves only the volume routes; the rest of Backend is nil.
type volFake struct {
	Backend
	pruneFilters filters.Args
	dfOpts       backend.DiskUsageOptions
	removed      string
	force        bool
	created      volume.CreateOptions
}

func (f *volFake) VolumeList(ctx context.Context, fl filters.Args) ([]*volume.Volume, []string, error) {
	return []*volume.Volume{{Name: "v1", Driver: "local"}}, nil, nil
}

func (f *volFake) VolumeCreate(ctx context.Context, req volume.CreateOptions) (*volume.Volume, error) {
	f.created = req
	return &volume.Volume{Name: req.Name, Driver: "local", Labels: req.Labels}, nil
}

func (f *volFake) VolumeInspect(ctx context.Context, name string) (*volume.Volume, error) {
	if name != "v1" {
		return nil, errdefs.NotFound(errors.New("get " + name + ": no such volume"))
	}
	return &volume.Volume{Name: "v1"}, nil
}

func (f *volFake) VolumeRemove(ctx context.Context, name string, force bool) error {
	f.removed, f.force = name, force
	if name == "busy" {
		return errdefs.Conflict(errors.New("remove busy: volume is in use - [abc]"))
	}
	return nil
}

func (f *volFake) VolumesPrune(ctx context.Context, fl filters.Args) (*volume.PruneReport, error) {
	f.pruneFilters = fl
	return &volume.PruneReport{}, nil
}

func (f *volFake) SystemDiskUsage(ctx context.Context, opts backend.DiskUsageOptions) (*system.DiskUsage, error) {
	f.dfOpts = opts
	du := &system.DiskUsage{}
	if opts.Volumes {
		du.Volumes = &volume.DiskUsage{Items: []*volume.Volume{{Name: "v1", UsageData: &volume.UsageData{Size: 10, RefCount: 1}}}}
	}
	if opts.Containers {
		du.Containers = &container.DiskUsage{Items: []*container.Summary{}}
	}
	return du, nil
}

func volRequest(t *testing.T, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	} else {
		r = httptest.NewRequest(method, path, nil)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestVolumeRoutes(t *testing.T) {
	f := &volFake{}
	h := NewServer(f, Options{}).Handler()

	w := volRequest(t, h, "GET", "/v1.51/volumes", "")
	var list volume.ListResponse
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &list) != nil || len(list.Volumes) != 1 {
		t.Fatalf("list: %d %s", w.Code, w.Body)
	}
	w = volRequest(t, h, "POST", "/v1.51/volumes/create", `{"Name":"data","Labels":{"a":"b"},"DriverOpts":{"type":"tmpfs"}}`)
	if w.Code != 201 || f.created.Name != "data" || f.created.DriverOpts["type"] != "tmpfs" {
		t.Fatalf("create: %d %s %+v", w.Code, w.Body, f.created)
	}
	if w = volRequest(t, h, "GET", "/v1.51/volumes/v1", ""); w.Code != 200 {
		t.Fatalf("inspect: %d", w.Code)
	}
	if w = volRequest(t, h, "GET", "/v1.51/volumes/nope", ""); w.Code != 404 || !strings.Contains(w.Body.String(), "no such volume") {
		t.Fatalf("inspect missing: %d %s", w.Code, w.Body)
	}
	if w = volRequest(t, h, "DELETE", "/v1.51/volumes/v1?force=1", ""); w.Code != 204 || f.removed != "v1" || !f.force {
		t.Fatalf("delete: %d %v", w.Code, f.force)
	}
	if w = volRequest(t, h, "DELETE", "/v1.51/volumes/busy", ""); w.Code != 409 || !strings.Contains(w.Body.String(), "volume is in use - [abc]") {
		t.Fatalf("delete busy: %d %s", w.Code, w.Body)
	}
	if w = volRequest(t, h, "PUT", "/v1.51/volumes/v1?version=1", "{}"); w.Code != 503 {
		t.Fatalf("update: %d", w.Code)
	}

	// Prune: only anonymous volumes from API 1.42 on.
	volRequest(t, h, "POST", "/v1.51/volumes/prune", "")
	if f.pruneFilters.Contains("all") {
		t.Fatal("1.51 prune got all=true")
	}
	volRequest(t, h, "POST", "/v1.41/volumes/prune", "")
	if !f.pruneFilters.ExactMatch("all", "true") {
		t.Fatal("1.41 prune lacks all=true")
	}

	// system df: all parts, or the asked types.
	w = volRequest(t, h, "GET", "/v1.51/system/df", "")
	var du struct {
		Volumes    []*volume.Volume
		BuildCache []any
		LayersSize int64
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &du) != nil || len(du.Volumes) != 1 || du.Volumes[0].UsageData.Size != 10 || du.BuildCache == nil {
		t.Fatalf("df: %d %s", w.Code, w.Body)
	}
	if !f.dfOpts.Volumes || !f.dfOpts.Images || !f.dfOpts.Containers {
		t.Fatalf("df opts %+v", f.dfOpts)
	}
	if w = volRequest(t, h, "GET", "/v1.51/system/df?type=volume", ""); w.Code != 200 || f.dfOpts.Images || f.dfOpts.Containers || !f.dfOpts.Volumes {
		t.Fatalf("df type=volume: %d %+v", w.Code, f.dfOpts)
	}
	if w = volRequest(t, h, "GET", "/v1.51/system/df?type=bogus", ""); w.Code != 400 {
		t.Fatalf("df bogus type: %d", w.Code)
	}
}
