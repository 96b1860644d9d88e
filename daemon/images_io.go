package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
)

// ImageArchiver is implemented by image services that move images in and
// out as archives and answer history and distribution questions (the
// image store's adapter does). It is separate from ImageService so that
// services without it (test fakes) answer these routes 501.
type ImageArchiver interface {
	// SaveImages writes a docker-archive of the named images to out and
	// returns their IDs.
	SaveImages(ctx context.Context, names []string, platform *ocispec.Platform, out io.Writer) ([]string, error)
	// LoadImages loads a docker-archive or OCI layout archive, writing
	// JSON progress and "Loaded image" messages to out.
	LoadImages(ctx context.Context, r io.Reader, opts backend.ImageLoadConfig, out io.Writer) ([]LoadedImage, error)
	// ImportImage makes an image of a root file system tar.
	ImportImage(ctx context.Context, r io.Reader, req ImportRequest) (string, error)
	ImageHistory(ctx context.Context, nameOrID string, platform *ocispec.Platform) ([]image.HistoryResponseItem, error)
	DistributionInspect(ctx context.Context, ref string, auth *registry.AuthConfig) (*registry.DistributionInspect, error)
}

// LoadedImage is one image a load recorded, with its tags (familiar form).
type LoadedImage struct {
	ID   string
	Tags []string
}

// ImportRequest describes the image ImageArchiver.ImportImage makes.
type ImportRequest struct {
	Config    *container.Config // the empty config with the changes applied
	Platform  string
	Message   string
	Repo, Tag string
}

func (d *Daemon) archiver() (ImageArchiver, error) {
	a, ok := d.images.(ImageArchiver)
	if !ok {
		return nil, errdefs.NotImplemented(errors.New("the image store cannot save, load or import images"))
	}
	return a, nil
}

// ImageSave serves GET /images/get and GET /images/{name}/get.
func (d *Daemon) ImageSave(ctx context.Context, names []string, platform *ocispec.Platform, out io.Writer) error {
	a, err := d.archiver()
	if err != nil {
		return err
	}
	ids, err := a.SaveImages(ctx, names, platform, out)
	if err != nil {
		return err
	}
	for _, id := range ids {
		d.imageEvent(events.ActionSave, id, id, d.imageLabels(id))
	}
	return nil
}

// ImageLoad serves POST /images/load.
func (d *Daemon) ImageLoad(ctx context.Context, r io.Reader, opts backend.ImageLoadConfig, out io.Writer) error {
	a, err := d.archiver()
	if err != nil {
		return err
	}
	loaded, err := a.LoadImages(ctx, r, opts, out)
	if err != nil {
		return err
	}
	for _, li := range loaded {
		d.imageEvent(events.ActionLoad, li.ID, li.ID, d.imageLabels(li.ID))
	}
	return nil
}

// ImageImport serves POST /images/create?fromSrc=... : the changes are
// applied to an empty config with commit's parser, the tar comes from the
// body or from the URL (fetched here, with dockerd's "Downloading from"
// and "Importing" progress), and the new image's ID is the last message.
func (d *Daemon) ImageImport(ctx context.Context, req *backend.ImageImportConfig, out io.Writer) error {
	a, err := d.archiver()
	if err != nil {
		return err
	}
	cfg, err := applyChanges(&container.Config{}, req.Changes)
	if err != nil {
		return errdefs.InvalidParameter(err)
	}
	src := req.Src
	msg := req.Message
	if msg == "" {
		msg = "Imported from " + src
	}
	body := req.Body
	if src != "-" {
		if !strings.Contains(src, "://") {
			src = "http://" + src
		}
		u, err := url.Parse(src)
		if err != nil {
			return errdefs.InvalidParameter(err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return errdefs.InvalidParameter(fmt.Errorf("unsupported URL scheme %q: only http and https", u.Scheme))
		}
		hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return errdefs.InvalidParameter(err)
		}
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			return errdefs.System(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 400 {
			return errdefs.InvalidParameter(fmt.Errorf("error downloading %s: %s", u, resp.Status))
		}
		writeJSONMessage(out, &jsonmessage.JSONMessage{Status: "Downloading from " + u.String()})
		body = &importProgress{r: resp.Body, out: out, total: resp.ContentLength, start: time.Now()}
	}
	if body == nil {
		return errdefs.InvalidParameter(errors.New("no image file system given"))
	}
	id, err := a.ImportImage(ctx, body, ImportRequest{Config: cfg, Platform: req.Platform, Message: msg, Repo: req.Repo, Tag: req.Tag})
	if err != nil {
		return err
	}
	if p, ok := body.(*importProgress); ok {
		p.report(true)
	}
	d.imageEvent(events.ActionImport, id, id, d.imageLabels(id))
	writeJSONMessage(out, &jsonmessage.JSONMessage{Status: id})
	return nil
}

// ImageHistory serves GET /images/{name}/history.
func (d *Daemon) ImageHistory(ctx context.Context, nameOrID string, platform *ocispec.Platform) ([]image.HistoryResponseItem, error) {
	a, err := d.archiver()
	if err != nil {
		return nil, err
	}
	return a.ImageHistory(ctx, nameOrID, platform)
}

// DistributionInspect serves GET /distribution/{name}/json.
func (d *Daemon) DistributionInspect(ctx context.Context, ref string, auth *registry.AuthConfig) (*registry.DistributionInspect, error) {
	a, err := d.archiver()
	if err != nil {
		return nil, err
	}
	return a.DistributionInspect(ctx, ref, auth)
}

func writeJSONMessage(out io.Writer, m *jsonmessage.JSONMessage) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	_, _ = out.Write(append(b, '\r', '\n'))
}

// importProgress reports "Importing" progress of a download, at most every
// 100 ms, as dockerd's progress reader does.
type importProgress struct {
	r     io.Reader
	out   io.Writer
	total int64
	n     int64
	start time.Time
	last  time.Time
}

func (p *importProgress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.report(false)
	return n, err
}

func (p *importProgress) report(final bool) {
	now := time.Now()
	if !final && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	total := p.total
	if total < 0 {
		total = 0
	}
	writeJSONMessage(p.out, &jsonmessage.JSONMessage{
		Status:   "Importing",
		Progress: &jsonmessage.JSONProgress{Current: p.n, Total: total, Start: p.start.Unix()},
	})
}
