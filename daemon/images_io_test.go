package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
)

// fakeArchiver is an image service with the archive operations; the
// ImageService methods it does not need stay unimplemented (nil).
type fakeArchiver struct {
	ImageService
	imp     ImportRequest
	impBody string
	impErr  error
}

func (f *fakeArchiver) ImageConfig(string) (string, *container.Config, error) {
	return "sha256:abc", &container.Config{Labels: map[string]string{"l": "v"}}, nil
}

func (f *fakeArchiver) SaveImages(_ context.Context, names []string, _ *ocispec.Platform, out io.Writer) ([]string, error) {
	io.WriteString(out, "tar")
	return []string{"sha256:abc"}, nil
}

func (f *fakeArchiver) LoadImages(_ context.Context, r io.Reader, _ backend.ImageLoadConfig, out io.Writer) ([]LoadedImage, error) {
	return []LoadedImage{{ID: "sha256:abc", Tags: []string{"x:1"}}}, nil
}

func (f *fakeArchiver) ImportImage(_ context.Context, r io.Reader, req ImportRequest) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	f.imp, f.impBody = req, string(b)
	if f.impErr != nil {
		return "", f.impErr
	}
	return "sha256:abc", nil
}

func (f *fakeArchiver) ImageHistory(context.Context, string, *ocispec.Platform) ([]image.HistoryResponseItem, error) {
	return nil, nil
}

func (f *fakeArchiver) DistributionInspect(context.Context, string, *registry.AuthConfig) (*registry.DistributionInspect, error) {
	return nil, nil
}

func TestImageImport(t *testing.T) {
	fa := &fakeArchiver{}
	d := &Daemon{events: newEventBus(), images: fa}
	ctx := context.Background()

	var out bytes.Buffer
	err := d.ImageImport(ctx, &backend.ImageImportConfig{
		Src: "-", Body: strings.NewReader("rootfs"), Repo: "docker.io/library/foo", Tag: "1",
		Changes: []string{`CMD ["/app", "x"]`, "ENV A=b", "WORKDIR /srv"},
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if c := fa.imp.Config; strings.Join(c.Cmd, " ") != "/app x" || strings.Join(c.Env, ",") != "A=b" || c.WorkingDir != "/srv" {
		t.Errorf("config %+v", c)
	}
	if fa.imp.Message != "Imported from -" || fa.imp.Repo != "docker.io/library/foo" || fa.impBody != "rootfs" {
		t.Errorf("request %+v body %q", fa.imp, fa.impBody)
	}
	if strings.TrimSpace(out.String()) != `{"status":"sha256:abc"}` {
		t.Errorf("output %q", out.String())
	}
	all, _, cancel := d.events.subscribe()
	cancel()
	if len(all) != 1 || all[0].Status != "import" || all[0].ID != "sha256:abc" || all[0].Actor.Attributes["l"] != "v" {
		t.Errorf("events %+v", all)
	}

	// A change the parser refuses is 400, before anything is read.
	err = d.ImageImport(ctx, &backend.ImageImportConfig{Src: "-", Body: strings.NewReader("x"), Changes: []string{"RUN echo"}}, io.Discard)
	if !errdefs.IsInvalidParameter(err) {
		t.Errorf("RUN change: %v", err)
	}

	// From a URL: "Downloading from", "Importing" progress, the body.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/rootfs.tar" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "remote-rootfs")
	}))
	defer srv.Close()
	out.Reset()
	src := strings.TrimPrefix(srv.URL, "http://") + "/rootfs.tar" // no scheme: http:// is added
	if err := d.ImageImport(ctx, &backend.ImageImportConfig{Src: src, Message: "m"}, &out); err != nil {
		t.Fatal(err)
	}
	if fa.impBody != "remote-rootfs" || fa.imp.Message != "m" {
		t.Errorf("URL import got %q %+v", fa.impBody, fa.imp)
	}
	for _, want := range []string{`"status":"Downloading from ` + srv.URL + `/rootfs.tar"`, `"status":"Importing"`, `"current":13`, `"status":"sha256:abc"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("URL import output lacks %s:\n%s", want, out.String())
		}
	}
	if err := d.ImageImport(ctx, &backend.ImageImportConfig{Src: srv.URL + "/nope"}, io.Discard); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing URL: %v", err)
	}
	if err := d.ImageImport(ctx, &backend.ImageImportConfig{Src: "ftp://x/y"}, io.Discard); !errdefs.IsInvalidParameter(err) {
		t.Errorf("ftp URL: %v", err)
	}
	fa.impErr = errors.New("boom")
	if err := d.ImageImport(ctx, &backend.ImageImportConfig{Src: "-", Body: strings.NewReader("x")}, io.Discard); err == nil || err.Error() != "boom" {
		t.Errorf("store error: %v", err)
	}
}

func TestImageSaveLoadEvents(t *testing.T) {
	d := &Daemon{events: newEventBus(), images: &fakeArchiver{}}
	if err := d.ImageSave(context.Background(), []string{"x"}, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := d.ImageLoad(context.Background(), strings.NewReader(""), backend.ImageLoadConfig{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	all, _, cancel := d.events.subscribe()
	cancel()
	if len(all) != 2 || all[0].Status != "save" || all[1].Status != "load" || all[1].Actor.Attributes["name"] != "sha256:abc" {
		t.Errorf("events %+v", all)
	}
	// An image service without the archive operations answers 501.
	d = &Daemon{events: newEventBus(), images: struct{ ImageService }{}}
	if err := d.ImageSave(context.Background(), []string{"x"}, nil, io.Discard); !errdefs.IsNotImplemented(err) {
		t.Errorf("without an archiver: %v", err)
	}
}
