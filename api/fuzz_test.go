package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/sirupsen/logrus"
)

// fuzzVersion maps a fuzz byte onto the API versions jevm serves (1.24 to
// 1.51), so the version-dependent parts of a handler are reached.
func fuzzVersion(v uint8) string { return fmt.Sprintf("1.%d", 24+int(v)%28) }

// swapBackend lets one server (whose route table is costly to build)
// serve every fuzz input with a fresh fake backend.
type swapBackend struct{ *fakeBackend }

func fuzzServer(t testing.TB) (*swapBackend, http.Handler) {
	sb := &swapBackend{newFakeBackend()}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return sb, NewServer(sb, Options{Logger: logrus.NewEntry(l)}).Handler()
}

// checkErrorBody: a 4xx answer carries dockerd's {"message": ...}.
func checkErrorBody(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	var e struct{ Message string }
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Message == "" {
		t.Fatalf("%d without a JSON message: %q", w.Code, w.Body)
	}
}

// FuzzContainerCreate sends arbitrary create bodies, names, platforms and
// API versions through the router to postContainersCreate. Whatever the
// input: no panic, no 5xx (the fake backend's errors are all 4xx), a
// body that does not hold a JSON object never reaches the backend, and
// what reaches it has a Config.
func FuzzContainerCreate(f *testing.F) {
	f.Add(uint8(27), "", "", []byte(`{"Image":"busybox","Cmd":["echo","hi"]}`))
	f.Add(uint8(27), "web", "linux/amd64", []byte(`{"Image":"busybox","HostConfig":{"Memory":1048576,"PortBindings":{"80/tcp":[{"HostPort":"8080"}]}},"NetworkingConfig":{"EndpointsConfig":{"a":{},"b":{"GwPriority":3}}}}`))
	f.Add(uint8(0), "/x", "", []byte(`{"Image":"busybox","HostConfig":{"IpcMode":"","Annotations":{"a":"b"}}}`))
	f.Add(uint8(19), "a b", "", []byte(`{}`))
	f.Add(uint8(27), "", "linux/arm64/v8", []byte(`{"Image":"busybox","HostConfig":null,"NetworkingConfig":{"EndpointsConfig":{"n":null}}}`))
	f.Add(uint8(27), "", "", []byte(`{"Image":"busybox"} {"Image":"again"}`))
	f.Add(uint8(27), "", "", []byte(`{"Image":1}`))
	f.Add(uint8(27), "", "not/a/platform/at/all", []byte(`{"Image":"busybox"}`))
	f.Add(uint8(27), "", "", []byte(`{"Image":"busybox","ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Test":["CMD","true"],"Interval":-1}}`))
	f.Add(uint8(27), "", "", []byte(``))
	f.Add(uint8(27), "", "", []byte(`{"Image":"busybox"}}`)) // a stray '}' after the value passes, as in dockerd
	sb, h := fuzzServer(f)
	f.Fuzz(func(t *testing.T, ver uint8, name, platform string, body []byte) {
		fake := newFakeBackend()
		fake.addImage("busybox")
		sb.fakeBackend = fake
		q := url.Values{}
		if name != "" {
			q.Set("name", name)
		}
		if platform != "" {
			q.Set("platform", platform)
		}
		r := httptest.NewRequest(http.MethodPost, "/v"+fuzzVersion(ver)+"/containers/create?"+q.Encode(), bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch {
		case w.Code == http.StatusCreated:
			var resp container.CreateResponse
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.ID == "" || resp.Warnings == nil {
				t.Fatalf("201 with %q", w.Body)
			}
			if fake.lastCreate == nil || fake.lastHostConfig == nil || fake.lastNetConfig == nil {
				t.Fatalf("201 but the backend got config %v host %v net %v", fake.lastCreate, fake.lastHostConfig, fake.lastNetConfig)
			}
		case w.Code >= 400 && w.Code < 500:
			checkErrorBody(t, w)
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		// Only the first value counts: like dockerd's ReadJSON, decodeJSON
		// refuses content after it unless that is a stray '}' or ']'
		// (json.Decoder.More), which dockerd accepts too.
		var v map[string]json.RawMessage
		if json.NewDecoder(bytes.NewReader(body)).Decode(&v) != nil && fake.lastCreate != nil {
			t.Fatalf("a body that does not start with a JSON object reached the backend: %q", body)
		}
	})
}

// FuzzListFilters sends arbitrary filters arguments to the list routes
// that parse them (parseFilters): 200 or 400 with a message, never
// another status, and the backend sees exactly what filters.FromJSON made.
func FuzzListFilters(f *testing.F) {
	f.Add(`{"label":{"a=b":true},"status":{"running":true}}`)
	f.Add(`{"label":["a","b=c"]}`) // the legacy list form
	f.Add(`{"until":{"10m":true},"label!":{"x":true}}`)
	f.Add(`{"name":{"":true}}`)
	f.Add(`{"a":{"b":false}}`)
	f.Add(`[]`)
	f.Add(`{"a":`)
	f.Add(`null`)
	f.Add(`"label=a"`)
	sb, h := fuzzServer(f)
	f.Fuzz(func(t *testing.T, arg string) {
		fake := newFakeBackend()
		sb.fakeBackend = fake
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/containers/json?all=1&filters="+url.QueryEscape(arg), nil))
		want, wantErr := filters.FromJSON(arg)
		switch w.Code {
		case http.StatusOK:
			if wantErr != nil {
				t.Fatalf("200 for filters FromJSON refuses: %v", wantErr)
			}
			a, _ := want.MarshalJSON()
			b, _ := fake.lastList.Filters.MarshalJSON()
			if !bytes.Equal(a, b) {
				t.Fatalf("backend got filters %s, want %s", b, a)
			}
		case http.StatusBadRequest:
			if wantErr == nil {
				t.Fatalf("400 for filters FromJSON accepts: %s", w.Body)
			}
			checkErrorBody(t, w)
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}

// FuzzPathStatHeader: the X-Docker-Container-Path-Stat header jevmd
// writes for any stat the guest reports (names and link targets are the
// guest's, so anything) is a valid header value that the docker client's
// decoding (base64, then JSON) reads back; names that are valid UTF-8 come
// back unchanged (JSON turns invalid bytes into U+FFFD, as in dockerd).
func FuzzPathStatHeader(f *testing.F) {
	f.Add("passwd", int64(42), uint32(0o644), int64(1735689600), int64(0), "")
	f.Add("link", int64(0), uint32(os.ModeSymlink|0o777), int64(0), int64(5), "../../etc/shadow")
	f.Add("new\nline\r\x00", int64(-1), uint32(0xffffffff), int64(-62135596800), int64(999999999), "\xff\xfe")
	f.Add("far future", int64(1<<62), uint32(os.ModeDir|0o755), int64(253402300800), int64(0), "")
	f.Fuzz(func(t *testing.T, name string, size int64, mode uint32, sec, nsec int64, link string) {
		st := &container.PathStat{Name: name, Size: size, Mode: os.FileMode(mode), Mtime: time.Unix(sec, nsec).UTC(), LinkTarget: link}
		hdr := http.Header{}
		if err := setPathStatHeader(hdr, st); err != nil {
			// json.Marshal refuses times outside years 0-9999; the
			// handler then answers with an error, not a broken header.
			if y := st.Mtime.Year(); y >= 0 && y <= 9999 {
				t.Fatalf("setPathStatHeader(%+v): %v", st, err)
			}
			if hdr.Get(pathStatHeader) != "" {
				t.Fatal("a header was set despite the error")
			}
			return
		}
		v := hdr.Get(pathStatHeader)
		if v == "" || strings.ContainsAny(v, "\r\n\x00 ") {
			t.Fatalf("header value %q", v)
		}
		// What the docker client does (client/container_copy.go).
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Fatal(err)
		}
		var got container.PathStat
		if err := json.NewDecoder(strings.NewReader(string(raw))).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if got.Size != st.Size || got.Mode != st.Mode || !got.Mtime.Equal(st.Mtime) {
			t.Fatalf("read back %+v, wrote %+v", got, st)
		}
		if utf8.ValidString(name) && got.Name != name || utf8.ValidString(link) && got.LinkTarget != link {
			t.Fatalf("read back %q -> %q, wrote %q -> %q", got.Name, got.LinkTarget, name, link)
		}
	})
}
