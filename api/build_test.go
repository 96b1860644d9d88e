package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
)

// fakeBuild is the fake's build area: it records the options and the
// context it read, then writes buildOutput and fails with buildErr.
type fakeBuild struct {
	lastBuild   *build.ImageBuildOptions
	lastContext string
	buildOutput []string
	buildErr    error
	pruned      bool
	cancelled   string
}

func (f *fakeBackend) Build(ctx context.Context, opts *build.ImageBuildOptions, out io.Writer) (string, error) {
	if err := f.errs["Build"]; err != nil {
		return "", err
	}
	b, _ := io.ReadAll(opts.Context)
	f.mu.Lock()
	f.build.lastBuild = opts
	f.build.lastContext = string(b)
	lines, err := f.build.buildOutput, f.build.buildErr
	f.mu.Unlock()
	for _, l := range lines {
		fmt.Fprintf(out, "%s\r\n", l)
	}
	return "sha256:1234", err
}

func (f *fakeBackend) BuildCachePrune(ctx context.Context, opts build.CachePruneOptions) (*build.CachePruneReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.build.pruned = true
	return &build.CachePruneReport{CachesDeleted: []string{"a"}, SpaceReclaimed: 0}, nil
}

func (f *fakeBackend) BuildCancel(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != "known" {
		return errdefs.NotFound(errors.New("no such build: " + id))
	}
	f.build.cancelled = id
	return nil
}

func TestBuildOptions(t *testing.T) {
	e := newTestEnv(t)
	e.fake.build.buildOutput = []string{`{"stream":"Step 1/1 : FROM busybox\n"}`}
	resp, body := e.do("POST", `/v1.51/build?t=a:1&t=b&dockerfile=sub/Dockerfile&buildargs={"X":"1","Y":null}&labels={"l":"v"}&target=t1&nocache=1&pull=1&q=1&networkmode=none&extrahosts=h:1.2.3.4&shmsize=1048576&memory=67108864&cachefrom=["c"]&platform=linux/amd64&buildid=b1`, []byte("CONTEXT"))
	if resp.StatusCode != 200 || string(body) != e.fake.build.buildOutput[0]+"\r\n" {
		t.Fatalf("build: %d %q", resp.StatusCode, body)
	}
	o := e.fake.build.lastBuild
	if strings.Join(o.Tags, ",") != "a:1,b" || o.Dockerfile != "sub/Dockerfile" || *o.BuildArgs["X"] != "1" || o.BuildArgs["Y"] != nil ||
		o.Labels["l"] != "v" || o.Target != "t1" || !o.NoCache || !o.PullParent || !o.SuppressOutput || o.NetworkMode != "none" ||
		o.ExtraHosts[0] != "h:1.2.3.4" || o.ShmSize != 1<<20 || o.Memory != 64<<20 || o.CacheFrom[0] != "c" ||
		o.Platform != "linux/amd64" || o.BuildID != "b1" || !o.Remove || o.ForceRemove || o.Version != build.BuilderV1 {
		t.Fatalf("options %+v", o)
	}
	if e.fake.build.lastContext != "CONTEXT" {
		t.Fatalf("context %q", e.fake.build.lastContext)
	}

	// rm: on unless rm=0; forcerm implies it.
	e.do("POST", "/build?rm=0", []byte{})
	if e.fake.build.lastBuild.Remove {
		t.Fatal("rm=0 kept Remove")
	}
	e.do("POST", "/build?rm=0&forcerm=1", []byte{})
	if !e.fake.build.lastBuild.Remove || !e.fake.build.lastBuild.ForceRemove {
		t.Fatal("forcerm did not imply rm")
	}

	// Bad parameters are 400s before the backend is called.
	for q, msg := range map[string]string{
		"buildargs={":        "error reading build args",
		"labels=[1]":         "error reading labels",
		"memory=x":           `invalid memory value "x"`,
		"securityopt=a":      "security options are not supported on linux",
		"version=3":          `invalid version "3"`,
		"isolation=hyperv-x": `unsupported isolation: "hyperv-x"`,
	} {
		resp, body := e.do("POST", "/build?"+q, []byte{})
		var m struct{ Message string }
		json.Unmarshal(body, &m)
		if resp.StatusCode != 400 || !strings.Contains(m.Message, msg) {
			t.Errorf("%s: %d %s", q, resp.StatusCode, body)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	e := newTestEnv(t)
	// Before any output: the error's status.
	e.fake.errs["Build"] = errdefs.InvalidParameter(errors.New("failed to parse Dockerfile: unknown instruction: FRM"))
	resp, body := e.do("POST", "/build", []byte{})
	expectError(t, resp, body, 400, "failed to parse Dockerfile: unknown instruction: FRM")
	delete(e.fake.errs, "Build")

	// After output: in the stream, with a failed RUN's exit code.
	e.fake.build.buildOutput = []string{`{"stream":"Step 1/2 : FROM busybox\n"}`}
	e.fake.build.buildErr = &jsonmessage.JSONError{Code: 3, Message: "The command '/bin/sh -c exit 3' returned a non-zero code: 3"}
	resp, body = e.do("POST", "/build", []byte{})
	lines := strings.Split(strings.TrimSpace(string(body)), "\r\n")
	want := `{"errorDetail":{"code":3,"message":"The command '/bin/sh -c exit 3' returned a non-zero code: 3"},"error":"The command '/bin/sh -c exit 3' returned a non-zero code: 3"}`
	if resp.StatusCode != 200 || len(lines) != 2 || lines[1] != want {
		t.Fatalf("in-band error: %d %q", resp.StatusCode, body)
	}
}

func TestBuildPruneAndCancel(t *testing.T) {
	e := newTestEnv(t)
	resp, body := e.do("POST", "/build/prune?all=1", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"CachesDeleted":["a"]`) || !e.fake.build.pruned {
		t.Fatalf("prune: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("POST", "/build/prune?keep-storage=x", nil)
	expectError(t, resp, body, 400, "keep-storage is in bytes and expects an integer, got x")
	resp, body = e.do("POST", "/build/cancel", nil)
	expectError(t, resp, body, 400, "build ID not provided")
	resp, body = e.do("POST", "/build/cancel?id=nope", nil)
	expectError(t, resp, body, 404, "no such build: nope")
	resp, _ = e.do("POST", "/build/cancel?id=known", nil)
	if resp.StatusCode != 200 || e.fake.build.cancelled != "known" {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}
}
