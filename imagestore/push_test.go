package imagestore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
)

// pushMessages returns the progress lines of a push as "id: status" (or the
// status alone), and the aux results.
func pushMessages(t *testing.T, b []byte) ([]string, []PushResult) {
	t.Helper()
	var lines []string
	var aux []PushResult
	for _, m := range parseProgress(t, b) {
		switch {
		case m.Aux != nil:
			var r PushResult
			if err := json.Unmarshal(*m.Aux, &r); err != nil {
				t.Fatalf("aux %s: %v", *m.Aux, err)
			}
			aux = append(aux, r)
		case m.Status == "Pushing":
			// progress lines vary in number
		case m.ID != "":
			lines = append(lines, m.ID+": "+m.Status)
		default:
			lines = append(lines, m.Status)
		}
	}
	return lines, aux
}

func TestPushRealRegistry(t *testing.T) {
	findToolT(t, "mke2fs")
	host := startRegistry(t)
	ctx := context.Background()
	s := newTestStore(t, "")

	l1 := makeLayer(t, dir("bin/", 0o755), file("bin/hello", strings.Repeat("hello\n", 50000)))
	l2 := makeLayer(t, dir("etc/", 0o755), file("etc/motd", "jevm\n"))
	src := makeImage(t, []string{"/bin/hello"}, nil, l1, l2)
	img := recordImage(t, s, src, "base:1")
	repo := host + "/test/app"
	for _, tag := range []string{"v1", "v2"} {
		if err := s.Tag(img.ID.String(), repo, tag); err != nil {
			t.Fatal(err)
		}
	}

	// One tag.
	var out bytes.Buffer
	start := time.Now()
	if err := s.Push(ctx, repo+":v1", nil, nil, &out); err != nil {
		t.Fatalf("push: %v\n%s", err, out.String())
	}
	t.Logf("push took %v; output:\n%s", time.Since(start), out.String())
	lines, aux := pushMessages(t, out.Bytes())
	top, bottom := shortID(l2.diffID), shortID(l1.diffID)
	mdgst := src.manifestDesc.Digest.String()
	checkLines(t, lines, []string{
		"The push refers to repository [" + repo + "]",
		top + ": Preparing", bottom + ": Preparing", // top layer first, as dockerd
		top + ": Pushed",
		fmt.Sprintf("v1: digest: %s size: %d", mdgst, src.manifestDesc.Size),
	})
	hasLines(t, lines, bottom+": Pushed")
	if len(aux) != 1 || aux[0].Tag != "v1" || aux[0].Digest != mdgst || aux[0].Size != int(src.manifestDesc.Size) {
		t.Errorf("aux %+v", aux)
	}
	if !strings.Contains(out.String(), `"status":"Pushing","progressDetail":{"current":`) {
		t.Errorf("no Pushing progress:\n%s", out.String())
	}
	got, err := s.Get(repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if !contains(got.RepoDigests, repo+"@"+mdgst) {
		t.Errorf("RepoDigests %v lack %s@%s", got.RepoDigests, repo, mdgst)
	}

	// The registry serves what was pushed: a fresh store pulls the same image.
	s2 := newTestStore(t, "")
	pulled, err := s2.Pull(ctx, repo+":v1", "", io.Discard)
	if err != nil {
		t.Fatalf("pull back: %v", err)
	}
	if pulled.ID != img.ID || !contains(pulled.RepoDigests, repo+"@"+mdgst) {
		t.Errorf("pulled %s %v, want %s with %s", pulled.ID, pulled.RepoDigests, img.ID, mdgst)
	}

	// All tags (a bare name): the layers are there now.
	out.Reset()
	start = time.Now()
	if err := s.Push(ctx, repo, nil, nil, &out); err != nil {
		t.Fatalf("push all: %v\n%s", err, out.String())
	}
	t.Logf("push of two tags, all blobs present, took %v", time.Since(start))
	lines, aux = pushMessages(t, out.Bytes())
	checkLines(t, lines, []string{"The push refers to repository [" + repo + "]", "v1: digest: " + mdgst, "v2: digest: " + mdgst})
	hasLines(t, lines, top+": Layer already exists", bottom+": Layer already exists")
	if len(aux) != 2 || aux[1].Tag != "v2" {
		t.Errorf("aux %+v", aux)
	}
	if _, err := s2.Pull(ctx, repo+":v2", "", io.Discard); err != nil {
		t.Errorf("pull v2: %v", err)
	}

	// Another repository of the same registry: the layers are mounted.
	if err := s.Tag(img.ID.String(), host+"/other/app", "x"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := s.Push(ctx, host+"/other/app:x", nil, nil, &out); err != nil {
		t.Fatalf("push other: %v\n%s", err, out.String())
	}
	lines, _ = pushMessages(t, out.Bytes())
	hasLines(t, lines, top+": Mounted from test/app", bottom+": Mounted from test/app")

	// A committed image: its new layer is pushed, the parent's exist.
	layer := rawTar(t, file("new", "x\n"))
	cimg, err := s.Commit(ctx, bytes.NewReader(layer), CommitOptions{Parent: img.ID.String(), Config: &container.Config{Cmd: []string{"cat", "/new"}}, Repo: repo, Tag: "committed"})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := s.Push(ctx, repo+":committed", nil, nil, &out); err != nil {
		t.Fatalf("push committed: %v\n%s", err, out.String())
	}
	lines, _ = pushMessages(t, out.Bytes())
	newTop := shortID(cimg.Config.RootFS.DiffIDs[2])
	checkLines(t, lines, []string{newTop + ": Preparing", newTop + ": Pushed", "committed: digest: " + cimg.Manifest.Digest.String()})
	hasLines(t, lines, top+": Layer already exists", bottom+": Layer already exists")
	back, err := s2.Pull(ctx, repo+":committed", "", io.Discard)
	if err != nil || back.ID != cimg.ID {
		t.Fatalf("pull committed: %v (%v)", err, back)
	}

	// dockerd's errors, after the first line.
	for ref, msg := range map[string]string{
		host + "/nope":          "An image does not exist locally with the tag: " + host + "/nope",
		repo + ":nope":          "tag does not exist: " + repo + ":nope",
		"localhost:1/test/app":  "An image does not exist locally with the tag: localhost:1/test/app",
		repo + "@" + mdgst + "": "cannot push a digest reference",
	} {
		out.Reset()
		err := s.Push(ctx, ref, nil, nil, &out)
		if err == nil || err.Error() != msg {
			t.Errorf("push %s: %v, want %q", ref, err, msg)
		}
		if !strings.Contains(out.String(), "The push refers to repository") {
			t.Errorf("push %s: no first line: %s", ref, out.String())
		}
	}
	// A platform (API 1.46) must match the image's; a mismatch or an
	// unknown image is an error before anything is written.
	out.Reset()
	err = s.Push(ctx, repo+":v1", &ocispec.Platform{OS: "linux", Architecture: "arm64"}, nil, &out)
	want := "image with reference " + repo + ":v1 was found but its platform (linux/amd64) does not match the specified platform (linux/arm64)"
	if !errdefs.IsNotFound(err) || err.Error() != want || out.Len() != 0 {
		t.Errorf("platform mismatch: %v (wrote %q), want %q", err, out.String(), want)
	}
	if err := s.Push(ctx, repo+":nope", &ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil, io.Discard); !errdefs.IsNotFound(err) {
		t.Errorf("platform and unknown tag: %v", err)
	}
	if err := s.Push(ctx, repo+":v1", &ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil, io.Discard); err != nil {
		t.Errorf("push with the image's platform: %v", err)
	}
	if err := s.Push(ctx, "Bad:name", nil, nil, io.Discard); !errdefs.IsInvalidParameter(err) {
		t.Errorf("bad name: %v", err)
	}
	// An unreachable registry.
	if err := s.Tag(img.ID.String(), "127.0.0.1:1/x", "y"); err != nil {
		t.Fatal(err)
	}
	err = s.Push(ctx, "127.0.0.1:1/x:y", nil, nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("unreachable: %v", err)
	}
}

func checkLines(t *testing.T, got, want []string) {
	t.Helper()
	i := 0
	for _, g := range got {
		if i < len(want) && strings.HasPrefix(g, want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("progress lacks %q (in this order):\n%s", want[i], strings.Join(got, "\n"))
	}
}

// hasLines checks that each of want is one of the lines.
func hasLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !contains(got, w) {
			t.Errorf("progress lacks %q:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// startAuthRegistry runs docker-registry with htpasswd authentication
// for user "jevm", password "s3cret".
func startAuthRegistry(t *testing.T) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return startRegistryConfig(t, `auth:
  htpasswd:
    realm: test
    path: %DIR%/htpasswd
`, map[string][]byte{"htpasswd": []byte("jevm:" + string(h) + "\n")})
}

func TestLoginPushPullBasicAuth(t *testing.T) {
	findToolT(t, "mke2fs")
	host := startAuthRegistry(t)
	ctx := context.Background()
	s := newTestStore(t, "")
	good := &registry.AuthConfig{Username: "jevm", Password: "s3cret", ServerAddress: host}
	bad := &registry.AuthConfig{Username: "jevm", Password: "wrong", ServerAddress: host}

	status, token, err := s.Login(ctx, good)
	if err != nil || status != "Login Succeeded" || token != "" {
		t.Fatalf("login: %q %q %v", status, token, err)
	}
	if _, _, err := s.Login(ctx, &registry.AuthConfig{Username: "jevm", Password: "s3cret", ServerAddress: "http://" + host}); err != nil {
		t.Errorf("login with scheme: %v", err)
	}
	_, _, err = s.Login(ctx, bad)
	want := "login attempt to http://" + host + "/v2/ failed with status: 401 Unauthorized"
	if err == nil || err.Error() != want {
		t.Errorf("bad password: %v, want %q", err, want)
	}

	src := makeImage(t, []string{"sh"}, nil, makeLayer(t, file("f", "data\n")))
	img := recordImage(t, s, src, "base:1")
	repo := host + "/private/app"
	if err := s.Tag(img.ID.String(), repo, "1"); err != nil {
		t.Fatal(err)
	}
	// dockerd's words (checked against Debian's dockerd and this registry).
	for _, c := range []struct {
		auth *registry.AuthConfig
		want string
	}{{nil, "no basic auth credentials"}, {bad, "unauthorized: authentication required"}} {
		var out bytes.Buffer
		err := s.Push(ctx, repo+":1", nil, c.auth, &out)
		if err == nil || err.Error() != c.want {
			t.Errorf("push with %+v: %v, want %q\n%s", c.auth, err, c.want, out.String())
		}
	}
	var out bytes.Buffer
	if err := s.Push(ctx, repo+":1", nil, good, &out); err != nil {
		t.Fatalf("push with credentials: %v\n%s", err, out.String())
	}

	s2 := newTestStore(t, "")
	_, err = s2.Pull(ctx, repo+":1", "", io.Discard)
	if want := `Head "http://` + host + `/v2/private/app/manifests/1": no basic auth credentials`; err == nil || err.Error() != want {
		t.Errorf("anonymous pull: %v, want %q", err, want)
	}
	_, err = s2.PullWithAuth(ctx, repo+":1", "", bad, io.Discard)
	if want := "unauthorized: authentication required"; err == nil || err.Error() != want {
		t.Errorf("pull with a wrong password: %v, want %q", err, want)
	}
	got, err := s2.PullWithAuth(ctx, repo+":1", "", good, io.Discard)
	if err != nil || got.ID != img.ID {
		t.Fatalf("pull with credentials: %v", err)
	}
}

// tokenServer is a registry front that asks for bearer tokens (Docker
// Hub's flow): /token hands out "tok" (and a refresh token) for the right
// basic credentials or refresh token, /v2/ accepts only that token.
func tokenServer(t *testing.T) *httptest.Server {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/token":
			ok := false
			if r.Method == http.MethodPost {
				r.ParseForm()
				ok = r.Form.Get("grant_type") == "refresh_token" && r.Form.Get("refresh_token") == "refresh-1"
			} else if u, p, has := r.BasicAuth(); has {
				ok = u == "jevm" && p == "s3cret" && r.URL.Query().Get("service") == "test-registry"
			}
			w.Header().Set("Content-Type", "application/json")
			if !ok {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"details":"incorrect username or password"}`)
				return
			}
			io.WriteString(w, `{"token":"tok","access_token":"tok","refresh_token":"refresh-1"}`)
		case "/v2/":
			if r.Header.Get("Authorization") == "Bearer tok" {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test-registry"`, srv.URL))
			w.WriteHeader(http.StatusUnauthorized)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLoginTokenAuth(t *testing.T) {
	srv := tokenServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	s := newTestStore(t, "")
	ctx := context.Background()

	status, token, err := s.Login(ctx, &registry.AuthConfig{Username: "jevm", Password: "s3cret", ServerAddress: host})
	if err != nil || status != "Login Succeeded" || token != "refresh-1" {
		t.Fatalf("login: %q %q %v", status, token, err)
	}
	status, _, err = s.Login(ctx, &registry.AuthConfig{IdentityToken: "refresh-1", ServerAddress: host})
	if err != nil || status != "Login Succeeded" {
		t.Fatalf("login with identity token: %q %v", status, err)
	}
	_, _, err = s.Login(ctx, &registry.AuthConfig{Username: "jevm", Password: "nope", ServerAddress: host})
	want := `Get "http://` + host + `/v2/": unauthorized: incorrect username or password`
	if !errdefs.IsUnauthorized(err) || err.Error() != want {
		t.Errorf("bad password: %v, want 401 %q", err, want)
	}
	if _, _, err := s.Login(ctx, &registry.AuthConfig{ServerAddress: "http://[::1"}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("bad address: %v", err)
	}
}

func TestLoginHost(t *testing.T) {
	for in, want := range map[string]string{
		"":                            "registry-1.docker.io",
		"https://index.docker.io/v1/": "registry-1.docker.io",
		"docker.io":                   "registry-1.docker.io",
		"localhost:5000":              "localhost:5000",
		"http://127.0.0.1:5000":       "127.0.0.1:5000",
		"https://reg.example.com/v2/": "reg.example.com",
	} {
		if got, err := loginHost(in); err != nil || got != want {
			t.Errorf("loginHost(%q) = %q %v, want %q", in, got, err, want)
		}
	}
}

func TestRegistryErrorMessage(t *testing.T) {
	for _, c := range []struct {
		status int
		hdr    http.Header
		body   string
		want   string
	}{
		{401, nil, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`, "unauthorized: authentication required"},
		{404, nil, `{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}`, "name unknown: repository name not known to registry"},
		{401, nil, `{"details":"incorrect username or password"}`, "unauthorized: incorrect username or password"},
		{401, nil, ``, "unauthorized: authentication required"},
		{403, http.Header{"Www-Authenticate": {`Bearer realm="x",error="insufficient_scope"`}}, ``, "denied: requested access to the resource is denied"},
	} {
		if got := registryErrorMessage(c.status, c.hdr, []byte(c.body)); got != c.want {
			t.Errorf("%d %s: %q, want %q", c.status, c.body, got, c.want)
		}
	}
}

// More layers than uploads at once: the rest say "Waiting" first, and
// every layer gets pushed.
func TestPushManyLayersWait(t *testing.T) {
	host := startRegistry(t)
	s := newTestStore(t, "")
	var layers []testLayer
	for i := 0; i < DefaultMaxConcurrentUploads+2; i++ {
		layers = append(layers, makeLayer(t, file(fmt.Sprintf("f%d", i), strings.Repeat("x", 1000*(i+1)))))
	}
	src := makeImage(t, []string{"sh"}, nil, layers...)
	img := recordImage(t, s, src, host+"/many/layers:1")
	var out bytes.Buffer
	if err := s.Push(context.Background(), host+"/many/layers:1", nil, nil, &out); err != nil {
		t.Fatalf("push: %v\n%s", err, out.String())
	}
	lines, _ := pushMessages(t, out.Bytes())
	waiting := 0
	for _, l := range lines {
		if strings.HasSuffix(l, ": Waiting") {
			waiting++
		}
	}
	if waiting != 2 {
		t.Errorf("%d layers waited, want 2:\n%s", waiting, strings.Join(lines, "\n"))
	}
	for _, d := range img.Config.RootFS.DiffIDs {
		hasLines(t, lines, shortID(d)+": Pushed")
	}
}

// A token-auth front (Docker Hub's flow) for a real docker-registry:
// /token hands out "tok" for jevm:s3cret (GET with basic credentials, or
// the OAuth password grant), /v2/… needs "Bearer tok" and is proxied.
func tokenRegistry(t *testing.T) string {
	backend := startRegistry(t)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: backend})
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			ok := false
			if r.Method == http.MethodPost {
				r.ParseForm()
				ok = r.Form.Get("grant_type") == "password" && r.Form.Get("username") == "jevm" && r.Form.Get("password") == "s3cret"
			} else if u, p, has := r.BasicAuth(); has {
				ok = u == "jevm" && p == "s3cret"
			}
			w.Header().Set("Content-Type", "application/json")
			if !ok {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"details":"incorrect username or password"}`)
				return
			}
			io.WriteString(w, `{"token":"tok","access_token":"tok"}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test-registry",scope="repository:x:pull"`, srv.URL))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestPushPullTokenAuth(t *testing.T) {
	findToolT(t, "mke2fs")
	host := tokenRegistry(t)
	ctx := context.Background()
	s := newTestStore(t, "")
	good := &registry.AuthConfig{Username: "jevm", Password: "s3cret", ServerAddress: host}
	bad := &registry.AuthConfig{Username: "jevm", Password: "wrong", ServerAddress: host}
	if st, _, err := s.Login(ctx, good); err != nil || st != "Login Succeeded" {
		t.Fatalf("login: %q %v", st, err)
	}

	src := makeImage(t, []string{"sh"}, nil, makeLayer(t, file("f", "token\n")))
	img := recordImage(t, s, src, host+"/tok/app:1")
	var out bytes.Buffer
	err := s.Push(ctx, host+"/tok/app:1", nil, bad, &out)
	if want := "unauthorized: incorrect username or password"; err == nil || err.Error() != want {
		t.Errorf("push with a wrong password: %v, want %q", err, want)
	}
	out.Reset()
	if err := s.Push(ctx, host+"/tok/app:1", nil, good, &out); err != nil {
		t.Fatalf("push: %v\n%s", err, out.String())
	}
	s2 := newTestStore(t, "")
	if _, err := s2.Pull(ctx, host+"/tok/app:1", "", io.Discard); err == nil {
		t.Errorf("anonymous pull worked")
	}
	got, err := s2.PullWithAuth(ctx, host+"/tok/app:1", "", good, io.Discard)
	if err != nil || got.ID != img.ID {
		t.Fatalf("pull: %v", err)
	}
}
