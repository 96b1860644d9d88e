package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
)

// fakeImageIO records the image archive calls of the fake backend.
type fakeImageIO struct {
	saveNames []string
	savePlat  *ocispec.Platform
	loadBody  string
	loadOpts  backend.ImageLoadConfig
	loadErr   error
	imp       *backend.ImageImportConfig
	impBody   string
	histName  string
	distRef   string
	distAuth  *registry.AuthConfig
}

func (f *fakeBackend) ImageSave(_ context.Context, names []string, platform *ocispec.Platform, out io.Writer) error {
	f.mu.Lock()
	f.imageIO.saveNames, f.imageIO.savePlat = names, platform
	f.mu.Unlock()
	for _, n := range names {
		if strings.HasPrefix(n, "missing") {
			return errdefs.NotFound(fmt.Errorf("No such image: %s", n))
		}
	}
	_, err := io.WriteString(out, "TAR:"+strings.Join(names, ","))
	return err
}

func (f *fakeBackend) ImageLoad(_ context.Context, r io.Reader, opts backend.ImageLoadConfig, out io.Writer) error {
	b, _ := io.ReadAll(r)
	f.mu.Lock()
	f.imageIO.loadBody, f.imageIO.loadOpts = string(b), opts
	err := f.imageIO.loadErr
	f.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, `{"stream":"Loaded image: x:latest\n"}`+"\r\n")
	return err
}

func (f *fakeBackend) ImageImport(_ context.Context, req *backend.ImageImportConfig, out io.Writer) error {
	b, _ := io.ReadAll(req.Body)
	f.mu.Lock()
	f.imageIO.imp, f.imageIO.impBody = req, string(b)
	f.mu.Unlock()
	if req.Src != "-" {
		return errdefs.InvalidParameter(errors.New("bad url"))
	}
	_, err := io.WriteString(out, `{"status":"sha256:abc"}`+"\r\n")
	return err
}

func (f *fakeBackend) ImageHistory(_ context.Context, name string, _ *ocispec.Platform) ([]image.HistoryResponseItem, error) {
	f.mu.Lock()
	f.imageIO.histName = name
	f.mu.Unlock()
	if name == "missing" {
		return nil, errdefs.NotFound(errors.New("No such image: missing:latest"))
	}
	return []image.HistoryResponseItem{{ID: "sha256:abc", CreatedBy: "sh", Size: 3, Tags: []string{name + ":latest"}}, {ID: "<missing>"}}, nil
}

func (f *fakeBackend) DistributionInspect(_ context.Context, ref string, auth *registry.AuthConfig) (*registry.DistributionInspect, error) {
	f.mu.Lock()
	f.imageIO.distRef, f.imageIO.distAuth = ref, auth
	f.mu.Unlock()
	return &registry.DistributionInspect{
		Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("x"), Size: 1},
		Platforms:  []ocispec.Platform{{OS: "linux", Architecture: "amd64"}},
	}, nil
}

func TestImageSaveRoutes(t *testing.T) {
	e := newTestEnv(t)
	resp, body := e.do(http.MethodGet, "/v1.47/images/get?names=busybox&names=sha256:abc", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" || string(body) != "TAR:busybox,sha256:abc" {
		t.Fatalf("save: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = e.do(http.MethodGet, "/v1.47/images/library/busybox:1/get", nil)
	if resp.StatusCode != 200 || string(body) != "TAR:library/busybox:1" {
		t.Fatalf("save by path: %d %q", resp.StatusCode, body)
	}
	// An unknown name is an HTTP error: nothing was written yet.
	resp, body = e.do(http.MethodGet, "/v1.47/images/get?names=missing", nil)
	if resp.StatusCode != 404 || !strings.Contains(string(body), "No such image: missing") {
		t.Fatalf("save of a missing image: %d %s", resp.StatusCode, body)
	}
	// Platforms (API 1.48): JSON, one at most.
	resp, body = e.do(http.MethodGet, `/v1.48/images/get?names=a&platform={"os":"linux","architecture":"amd64"}&platform={"os":"linux","architecture":"arm64"}`, nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "multiple platform parameters not supported") {
		t.Fatalf("two platforms: %d %s", resp.StatusCode, body)
	}
	resp, _ = e.do(http.MethodGet, `/v1.48/images/get?names=a&platform={"os":"linux","architecture":"arm64"}`, nil)
	if resp.StatusCode != 200 || e.fake.imageIO.savePlat == nil || e.fake.imageIO.savePlat.Architecture != "arm64" {
		t.Fatalf("platform: %d %+v", resp.StatusCode, e.fake.imageIO.savePlat)
	}
	resp, _ = e.do(http.MethodGet, `/v1.48/images/get?names=a&platform={"os":"linux"}`, nil)
	if resp.StatusCode != 400 {
		t.Fatalf("platform without architecture: %d", resp.StatusCode)
	}
	// Before 1.48 the parameter is ignored.
	resp, _ = e.do(http.MethodGet, `/v1.47/images/get?names=a&platform=bogus`, nil)
	if resp.StatusCode != 200 || e.fake.imageIO.savePlat != nil {
		t.Fatalf("platform before 1.48: %d %+v", resp.StatusCode, e.fake.imageIO.savePlat)
	}
}

func TestImageLoadRoute(t *testing.T) {
	e := newTestEnv(t)
	resp, body := e.do(http.MethodPost, "/v1.47/images/load", []byte("tarball"))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), "Loaded image: x:latest") {
		t.Fatalf("load: %d %s", resp.StatusCode, body)
	}
	if e.fake.imageIO.loadBody != "tarball" || !e.fake.imageIO.loadOpts.Quiet {
		t.Fatalf("load got %+v (quiet is the default)", e.fake.imageIO)
	}
	e.do(http.MethodPost, "/v1.47/images/load?quiet=0", []byte("t"))
	if e.fake.imageIO.loadOpts.Quiet {
		t.Fatal("quiet=0 was not passed")
	}
	// A failed load is still a 200, with the error as the last message.
	e.fake.imageIO.loadErr = errdefs.InvalidParameter(errors.New("invalid archive: unexpected EOF"))
	resp, body = e.do(http.MethodPost, "/v1.47/images/load", []byte("t"))
	var m jsonmessage.JSONMessage
	if resp.StatusCode != 200 || json.Unmarshal([]byte(strings.TrimSpace(string(body))), &m) != nil || m.Error == nil || m.Error.Message != "invalid archive: unexpected EOF" {
		t.Fatalf("failed load: %d %s", resp.StatusCode, body)
	}
}

func TestImageImportRoute(t *testing.T) {
	e := newTestEnv(t)
	resp, body := e.do(http.MethodPost, "/v1.47/images/create?fromSrc=-&repo=foo&tag=1&message=hi&changes=CMD%20%5B%22sh%22%5D&changes=ENV%20A%3Db&platform=linux/amd64", []byte("rootfs"))
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"sha256:abc"`) {
		t.Fatalf("import: %d %s", resp.StatusCode, body)
	}
	imp := e.fake.imageIO.imp
	if imp.Src != "-" || imp.Repo != "docker.io/library/foo" || imp.Tag != "1" || imp.Message != "hi" ||
		len(imp.Changes) != 2 || imp.Changes[1] != "ENV A=b" || imp.Platform != "linux/amd64" || e.fake.imageIO.impBody != "rootfs" {
		t.Fatalf("import request: %+v body %q", imp, e.fake.imageIO.impBody)
	}
	// repo without tag: latest; no repo: untagged.
	e.do(http.MethodPost, "/v1.47/images/create?fromSrc=-&repo=bar", []byte("x"))
	if imp := e.fake.imageIO.imp; imp.Repo != "docker.io/library/bar" || imp.Tag != "latest" {
		t.Fatalf("default tag: %+v", imp)
	}
	e.do(http.MethodPost, "/v1.47/images/create?fromSrc=-", []byte("x"))
	if imp := e.fake.imageIO.imp; imp.Repo != "" || imp.Tag != "" {
		t.Fatalf("untagged: %+v", imp)
	}
	for _, c := range []struct{ q, want string }{
		{"repo=Bad", "must be lowercase"},
		{"repo=foo@sha256:" + strings.Repeat("a", 64), "cannot import digest reference"},
		{"repo=foo&platform=%2F", "invalid OS component"},
		{"repo=foo&platform=nintendo64", "unknown operating system or architecture"},
	} {
		resp, body := e.do(http.MethodPost, "/v1.47/images/create?fromSrc=-&"+c.q, []byte("x"))
		if resp.StatusCode != 400 || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %s, want 400 with %q", c.q, resp.StatusCode, body, c.want)
		}
	}
	// An error before any output keeps its status.
	resp, body = e.do(http.MethodPost, "/v1.47/images/create?fromSrc=http://x/y.tar", nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "bad url") {
		t.Fatalf("url import error: %d %s", resp.StatusCode, body)
	}
}

func TestImageHistoryAndDistributionRoutes(t *testing.T) {
	e := newTestEnv(t)
	resp, body := e.do(http.MethodGet, "/v1.47/images/busybox/history", nil)
	var items []image.HistoryResponseItem
	if resp.StatusCode != 200 || json.Unmarshal(body, &items) != nil || len(items) != 2 || items[0].ID != "sha256:abc" || items[1].ID != "<missing>" {
		t.Fatalf("history: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.do(http.MethodGet, "/v1.47/images/missing/history", nil); resp.StatusCode != 404 {
		t.Fatalf("history of a missing image: %d", resp.StatusCode)
	}
	auth, _ := registry.EncodeAuthConfig(registry.AuthConfig{Username: "u", Password: "p"})
	resp, body = e.do(http.MethodGet, "/v1.47/distribution/localhost:5000/foo/bar:1/json", nil, registry.AuthHeader, auth)
	var di registry.DistributionInspect
	if resp.StatusCode != 200 || json.Unmarshal(body, &di) != nil || len(di.Platforms) != 1 || di.Descriptor.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("distribution: %d %s", resp.StatusCode, body)
	}
	if e.fake.imageIO.distRef != "localhost:5000/foo/bar:1" || e.fake.imageIO.distAuth.Username != "u" {
		t.Fatalf("distribution got %q %+v", e.fake.imageIO.distRef, e.fake.imageIO.distAuth)
	}
}

func TestImageInspectPlatform(t *testing.T) {
	e := newTestEnv(t)
	e.fake.addImage("busybox:latest")
	q := `?platform={"os":"windows","architecture":"amd64"}`
	// The fake's images have no platform, so any platform mismatches.
	resp, body := e.do(http.MethodGet, "/v1.49/images/busybox/json"+q, nil)
	if resp.StatusCode != 404 || !strings.Contains(string(body), "image with reference busybox was found but its platform") {
		t.Fatalf("inspect with another platform: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.do(http.MethodGet, "/v1.48/images/busybox/json"+q, nil); resp.StatusCode != 200 {
		t.Fatalf("platform before API 1.49: %d", resp.StatusCode)
	}
	if resp, body := e.do(http.MethodGet, "/v1.49/images/busybox/json"+q+"&manifests=1", nil); resp.StatusCode != 400 || !strings.Contains(string(body), "conflicting options") {
		t.Fatalf("platform and manifests: %d %s", resp.StatusCode, body)
	}
	linux := &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	if err := inspectPlatform(&image.InspectResponse{Os: "linux", Architecture: "amd64"}, "x", linux); err != nil {
		t.Errorf("the native platform: %v", err)
	}
	if err := inspectPlatform(&image.InspectResponse{Os: "linux", Architecture: "arm64", Variant: "v8"}, "x", linux); err == nil || !strings.Contains(err.Error(), "its platform (linux/arm64/v8) does not match the specified platform (linux/amd64)") {
		t.Errorf("arm64: %v", err)
	}
}
