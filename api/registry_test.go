package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var errFakeRegistry = errdefs.NotImplemented(errors.New("fake backend: no registry"))

func (f *fakeBackend) ImagePush(context.Context, string, *ocispec.Platform, *registry.AuthConfig, io.Writer) error {
	return errFakeRegistry
}

func (f *fakeBackend) AuthenticateToRegistry(context.Context, *registry.AuthConfig) (string, string, error) {
	return "", "", errFakeRegistry
}

// regFake serves only the registry routes; the rest of Backend is nil.
type regFake struct {
	Backend
	ref       string
	platform  *ocispec.Platform
	auth      *registry.AuthConfig
	out       string // written before err
	err       error
	loginAuth *registry.AuthConfig
	loginErr  error
}

func (f *regFake) ImagePush(_ context.Context, ref string, platform *ocispec.Platform, auth *registry.AuthConfig, out io.Writer) error {
	f.ref, f.platform, f.auth = ref, platform, auth
	if f.out != "" {
		io.WriteString(out, f.out)
	}
	return f.err
}

func (f *regFake) AuthenticateToRegistry(_ context.Context, auth *registry.AuthConfig) (string, string, error) {
	f.loginAuth = auth
	if f.loginErr != nil {
		return "", "", f.loginErr
	}
	return "Login Succeeded", "", nil
}

func regRequest(h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestPushRoute(t *testing.T) {
	f := &regFake{out: `{"status":"The push refers to repository [localhost:5000/app]"}` + "\r\n"}
	h := NewServer(f, Options{}).Handler()
	auth := base64.URLEncoding.EncodeToString([]byte(`{"username":"u","password":"p","serveraddress":"localhost:5000"}`))

	w := regRequest(h, "POST", "/v1.51/images/localhost:5000/app/push?tag=v1", "", registry.AuthHeader, auth)
	if w.Code != 200 || f.ref != "localhost:5000/app:v1" || f.auth.Username != "u" || f.auth.Password != "p" {
		t.Fatalf("push: %d %s ref=%q auth=%+v", w.Code, w.Body, f.ref, f.auth)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	// No tag: the bare name (all tags); no header: anonymous.
	w = regRequest(h, "POST", "/images/busybox/push", "")
	if w.Code != 200 || f.ref != "docker.io/library/busybox" || f.auth == nil || f.auth.Username != "" {
		t.Fatalf("push all: %d ref=%q auth=%+v", w.Code, f.ref, f.auth)
	}
	// platform: from API 1.46 (JSON), ignored before.
	plat := url.QueryEscape(`{"os":"linux","architecture":"arm64"}`)
	w = regRequest(h, "POST", "/v1.46/images/busybox/push?tag=1&platform="+plat, "")
	if w.Code != 200 || f.platform == nil || f.platform.Architecture != "arm64" {
		t.Fatalf("platform: %d %+v", w.Code, f.platform)
	}
	w = regRequest(h, "POST", "/v1.45/images/busybox/push?tag=1&platform="+plat, "")
	if w.Code != 200 || f.platform != nil {
		t.Fatalf("platform before 1.46: %d %+v", w.Code, f.platform)
	}
	w = regRequest(h, "POST", "/v1.46/images/busybox/push?tag=1&platform="+url.QueryEscape(`{"os":"linux"}`), "")
	if w.Code != 400 || !strings.Contains(w.Body.String(), "both OS and Architecture must be provided") {
		t.Fatalf("half a platform: %d %s", w.Code, w.Body)
	}
	// Bad references are 400 before the backend is called.
	f.ref = ""
	if w = regRequest(h, "POST", "/images/Bad/push?tag=x", ""); w.Code != 400 || f.ref != "" {
		t.Fatalf("bad name: %d %s", w.Code, w.Body)
	}
	if w = regRequest(h, "POST", "/images/busybox/push?tag=a%20b", ""); w.Code != 400 || f.ref != "" {
		t.Fatalf("bad tag: %d %s", w.Code, w.Body)
	}
	// An error after output goes into the stream, as dockerd does.
	f.err = errdefs.NotFound(errors.New("An image does not exist locally with the tag: localhost:5000/app"))
	w = regRequest(h, "POST", "/images/localhost:5000/app/push", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"error":"An image does not exist locally with the tag: localhost:5000/app"`) {
		t.Fatalf("in-band error: %d %s", w.Code, w.Body)
	}
	// An error before any output gets its status.
	f.out = ""
	w = regRequest(h, "POST", "/images/localhost:5000/app/push", "")
	if w.Code != 404 {
		t.Fatalf("early error: %d %s", w.Code, w.Body)
	}
}

func TestAuthRoute(t *testing.T) {
	f := &regFake{}
	h := NewServer(f, Options{}).Handler()
	w := regRequest(h, "POST", "/v1.51/auth", `{"username":"u","password":"p","serveraddress":"localhost:5000"}`, "Content-Type", "application/json")
	var ok registry.AuthenticateOKBody
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &ok) != nil || ok.Status != "Login Succeeded" {
		t.Fatalf("auth: %d %s", w.Code, w.Body)
	}
	if f.loginAuth.Username != "u" || f.loginAuth.ServerAddress != "localhost:5000" {
		t.Fatalf("auth config %+v", f.loginAuth)
	}
	if !strings.Contains(w.Body.String(), `"IdentityToken":""`) {
		t.Fatalf("dockerd always sends IdentityToken: %s", w.Body)
	}
	f.loginErr = errdefs.Unauthorized(errors.New(`Get "https://r/v2/": unauthorized: incorrect username or password`))
	w = regRequest(h, "POST", "/auth", `{"username":"u","password":"bad"}`)
	if w.Code != 401 || !strings.Contains(w.Body.String(), "incorrect username or password") {
		t.Fatalf("unauthorized: %d %s", w.Code, w.Body)
	}
	if w = regRequest(h, "POST", "/auth", `{"username":`); w.Code != 400 {
		t.Fatalf("bad JSON: %d %s", w.Code, w.Body)
	}
}
