package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

// fakeArchive adds the file operations to the fake backend.
type fakeArchive struct {
	*fakeBackend
	put     []string
	commits []*backend.CommitConfig
}

var testStat = &container.PathStat{Name: "passwd", Size: 42, Mode: 0o644, Mtime: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}

func (f *fakeArchive) ContainerStatPath(ctx context.Context, name, path string) (*container.PathStat, error) {
	if path != "/etc/passwd" {
		return nil, errdefs.NotFound(fmt.Errorf("Could not find the file %s in container %s", path, name))
	}
	return testStat, nil
}

func (f *fakeArchive) ContainerArchivePath(ctx context.Context, name, path string, start func(*container.PathStat) (io.Writer, error)) error {
	st, err := f.ContainerStatPath(ctx, name, path)
	if err != nil {
		return err
	}
	w, err := start(st)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "TAR")
	return err
}

func (f *fakeArchive) ContainerExtractToDir(ctx context.Context, name, path string, copyUIDGID, noOverwrite bool, content io.Reader) error {
	b, _ := io.ReadAll(content)
	f.put = append(f.put, fmt.Sprintf("%s %s %v %v %s", name, path, copyUIDGID, noOverwrite, b))
	if path == "/file" {
		return errdefs.InvalidParameter(fmt.Errorf("extraction point is not a directory"))
	}
	return nil
}

func (f *fakeArchive) ContainerExport(ctx context.Context, name string, out io.Writer) error {
	if name == "missing" {
		return errdefs.NotFound(fmt.Errorf("No such container: missing"))
	}
	_, err := io.WriteString(out, "EXPORT")
	return err
}

func (f *fakeArchive) ContainerChanges(ctx context.Context, name string) ([]container.FilesystemChange, error) {
	return []container.FilesystemChange{{Path: "/tmp/x", Kind: container.ChangeAdd}, {Path: "/etc", Kind: container.ChangeModify}}, nil
}

func (f *fakeArchive) ContainerCommit(ctx context.Context, cfg *backend.CommitConfig) (string, error) {
	f.commits = append(f.commits, cfg)
	return "sha256:abc", nil
}

func newArchiveEnv(t *testing.T) (*testEnv, *fakeArchive) {
	t.Helper()
	fa := &fakeArchive{fakeBackend: newFakeBackend()}
	srv := NewServer(fa, Options{Logger: testLogger(t), ServerVersion: "9.9.9"})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &testEnv{t: t, fake: fa.fakeBackend, srv: srv, hs: hs}, fa
}

// decodeStat is what the docker client does with the header.
func decodeStat(t *testing.T, h http.Header) container.PathStat {
	t.Helper()
	var st container.PathStat
	raw, err := base64.StdEncoding.DecodeString(h.Get("X-Docker-Container-Path-Stat"))
	if err != nil {
		t.Fatalf("stat header: %v", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("stat header %s: %v", raw, err)
	}
	return st
}

func TestArchiveRoutes(t *testing.T) {
	e, fa := newArchiveEnv(t)

	resp, body := e.do(http.MethodHead, "/v1.51/containers/c1/archive?path=/etc/passwd", nil)
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	if st := decodeStat(t, resp.Header); st.Name != "passwd" || st.Size != 42 || st.Mode != 0o644 || !st.Mtime.Equal(testStat.Mtime) {
		t.Fatalf("stat %+v", st)
	}
	// The header is base64 of exactly dockerd's JSON field names.
	raw, _ := base64.StdEncoding.DecodeString(resp.Header.Get("X-Docker-Container-Path-Stat"))
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	for _, k := range []string{"name", "size", "mode", "mtime", "linkTarget"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("stat JSON %s lacks %q", raw, k)
		}
	}
	resp, _ = e.do(http.MethodHead, "/containers/c1/archive?path=/nope", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("HEAD missing: %d", resp.StatusCode)
	}
	resp, body = e.do(http.MethodGet, "/containers/c1/archive?path=/nope", nil)
	expectError(t, resp, body, 404, "Could not find the file /nope in container c1")
	resp, body = e.do(http.MethodGet, "/containers/c1/archive", nil)
	expectError(t, resp, body, 400, "bad parameter: path cannot be empty")

	resp, body = e.do(http.MethodGet, "/containers/c1/archive?path=/etc/passwd", nil)
	if resp.StatusCode != 200 || string(body) != "TAR" || resp.Header.Get("Content-Type") != "application/x-tar" || decodeStat(t, resp.Header).Name != "passwd" {
		t.Fatalf("GET: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	resp, _ = e.do(http.MethodPut, "/containers/c1/archive?path=/tmp&noOverwriteDirNonDir=true&copyUIDGID=1", []byte("DATA"))
	if resp.StatusCode != 200 || len(fa.put) != 1 || fa.put[0] != "c1 /tmp true true DATA" {
		t.Fatalf("PUT: %d %q", resp.StatusCode, fa.put)
	}
	resp, body = e.do(http.MethodPut, "/containers/c1/archive?path=/file", []byte("DATA"))
	expectError(t, resp, body, 400, "extraction point is not a directory")

	resp, body = e.do(http.MethodGet, "/containers/c1/export", nil)
	if resp.StatusCode != 200 || string(body) != "EXPORT" {
		t.Fatalf("export: %d %q", resp.StatusCode, body)
	}
	resp, body = e.do(http.MethodGet, "/containers/missing/export", nil)
	expectError(t, resp, body, 404, "No such container: missing")

	resp, body = e.do(http.MethodGet, "/containers/c1/changes", nil)
	if resp.StatusCode != 200 || string(body) != `[{"Kind":1,"Path":"/tmp/x"},{"Kind":0,"Path":"/etc"}]`+"\n" {
		t.Fatalf("changes: %d %s", resp.StatusCode, body)
	}

	resp, body = e.do(http.MethodPost, "/v1.51/commit?container=c1&repo=newimg&tag=1&comment=hi&author=me&pause=0&changes=ENV+A%3D1&changes=CMD+%5B%22x%22%5D", "null")
	if resp.StatusCode != 201 || string(body) != `{"Id":"sha256:abc"}`+"\n" {
		t.Fatalf("commit: %d %s", resp.StatusCode, body)
	}
	c := fa.commits[0]
	if c.Container != "c1" || c.Repo != "newimg" || c.Tag != "1" || c.Pause || c.Author != "me" || c.Comment != "hi" ||
		len(c.Changes) != 2 || c.Changes[1] != `CMD ["x"]` || c.Config != nil {
		t.Fatalf("commit config %+v", c)
	}
	e.do(http.MethodPost, "/commit?container=c1", `{"Cmd":["a"]}`)
	if c := fa.commits[1]; !c.Pause || c.Config == nil || c.Config.Cmd[0] != "a" {
		t.Fatalf("commit defaults %+v", c)
	}
}
