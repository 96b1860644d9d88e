package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
)

// ImageArchiveBackend serves docker save, load, import and history and
// GET /distribution/{name}/json.
type ImageArchiveBackend interface {
	// ImageSave writes a docker-archive of the named images to out.
	// Errors before the first byte (unknown names) become HTTP errors.
	ImageSave(ctx context.Context, names []string, platform *ocispec.Platform, out io.Writer) error
	// ImageLoad reads an archive from r and writes JSON messages to out.
	ImageLoad(ctx context.Context, r io.Reader, opts backend.ImageLoadConfig, out io.Writer) error
	// ImageImport makes an image of a root file system tar and writes
	// JSON progress, then the image ID as the last status, to out.
	ImageImport(ctx context.Context, req *backend.ImageImportConfig, out io.Writer) error
	ImageHistory(ctx context.Context, nameOrID string, platform *ocispec.Platform) ([]image.HistoryResponseItem, error)
	DistributionInspect(ctx context.Context, ref string, auth *registry.AuthConfig) (*registry.DistributionInspect, error)
}

// formPlatform reads the JSON-encoded OCI platform parameter of API 1.48+
// (save, load, history), as dockerd decodes it; nil when absent.
func formPlatform(ctx context.Context, r *http.Request, allowMany bool) (*ocispec.Platform, error) {
	if versions.LessThan(VersionFromContext(ctx), "1.48") {
		return nil, nil
	}
	if vals := r.Form["platform"]; len(vals) > 1 && !allowMany {
		return nil, errdefs.InvalidParameter(errors.New("multiple platform parameters not supported"))
	}
	return decodePlatform(r.Form.Get("platform"))
}

// decodePlatform decodes a JSON-encoded OCI platform parameter as dockerd's
// httputils.DecodePlatform does; "" is nil.
func decodePlatform(s string) (*ocispec.Platform, error) {
	if s == "" {
		return nil, nil
	}
	var p ocispec.Platform
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("failed to parse platform: %w", err))
	}
	if p.OS == "" && p.Architecture == "" && (p.Variant != "" || p.OSVersion != "" || len(p.OSFeatures) > 0) {
		return nil, errdefs.InvalidParameter(errors.New("optional platform fields provided, but OS and Architecture are missing"))
	}
	if p.OS == "" || p.Architecture == "" {
		return nil, errdefs.InvalidParameter(errors.New("both OS and Architecture must be provided"))
	}
	return &p, nil
}

// inspectPlatform checks an inspected image against the platform an API
// 1.49+ client asked for, with the answer dockerd's graph-driver store
// gives (its images have one platform).
func inspectPlatform(img *image.InspectResponse, name string, want *ocispec.Platform) error {
	have := ocispec.Platform{OS: img.Os, Architecture: img.Architecture, Variant: img.Variant, OSVersion: img.OsVersion}
	if platforms.Only(*want).Match(platforms.Normalize(have)) {
		return nil
	}
	return errdefs.NotFound(fmt.Errorf("image with reference %s was found but its platform (%s) does not match the specified platform (%s)",
		name, platforms.FormatAll(have), platforms.FormatAll(*want)))
}

// getImagesGet serves GET /images/get?names=... and GET /images/{name}/get.
func (s *Server) getImagesGet(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	names := r.Form["names"]
	if name, ok := vars["name"]; ok {
		names = []string{name}
	}
	if len(names) == 0 {
		return errdefs.InvalidParameter(errors.New("no image names given"))
	}
	platform, err := formPlatform(ctx, r, false)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-tar")
	out := &streamWriter{w: w}
	err = s.backend.ImageSave(ctx, names, platform, out)
	if err != nil && out.Started() {
		// The tar is cut short; a client reading it sees the error as a
		// broken archive, as with dockerd.
		s.log.WithError(err).WithField("names", names).Warn("save failed")
	}
	return out.finish(err)
}

// postImagesLoad serves POST /images/load. As dockerd, the answer is
// always 200 with JSON messages; a failure is the last message.
func (s *Server) postImagesLoad(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	platform, err := formPlatform(ctx, r, false)
	if err != nil {
		return err
	}
	quiet := true
	if v := r.Form.Get("quiet"); v != "" {
		quiet = boolValue(r, "quiet")
	}
	w.Header().Set("Content-Type", "application/json")
	out := &streamWriter{w: w}
	err = s.backend.ImageLoad(ctx, r.Body, backend.ImageLoadConfig{Quiet: quiet, Platform: platform}, out)
	if err != nil {
		s.log.WithError(err).Warn("load failed")
		writeStreamError(out, err)
		return nil
	}
	if !out.Started() {
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

// writeStreamError writes err as the JSON error message dockerd's stream
// formatter writes, whether or not the stream has started.
func writeStreamError(out io.Writer, err error) {
	var jerr *jsonmessage.JSONError
	if !errors.As(err, &jerr) {
		jerr = &jsonmessage.JSONError{Message: err.Error()}
	}
	b, mErr := json.Marshal(&jsonmessage.JSONMessage{Error: jerr, ErrorMessage: err.Error()})
	if mErr != nil {
		b = []byte(`{"error":"format error"}`)
	}
	_, _ = out.Write(append(b, '\r', '\n'))
}

// postImagesImport is POST /images/create with fromSrc (docker import).
func (s *Server) postImagesImport(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	req := &backend.ImageImportConfig{
		Src:     r.Form.Get("fromSrc"),
		Body:    r.Body,
		Message: r.Form.Get("message"),
		Changes: r.Form["changes"],
	}
	if repo := r.Form.Get("repo"); repo != "" {
		ref, err := reference.ParseNormalizedNamed(repo)
		if err != nil {
			return errdefs.InvalidParameter(err)
		}
		if _, ok := ref.(reference.Digested); ok {
			return errdefs.InvalidParameter(errors.New("cannot import digest reference"))
		}
		tagged := reference.TagNameOnly(ref).(reference.NamedTagged)
		if tag := r.Form.Get("tag"); tag != "" {
			if tagged, err = reference.WithTag(reference.TrimNamed(ref), tag); err != nil {
				return errdefs.InvalidParameter(err)
			}
		}
		req.Repo, req.Tag = tagged.Name(), tagged.Tag()
	}
	if versions.GreaterThanOrEqualTo(VersionFromContext(ctx), "1.32") {
		if p := r.Form.Get("platform"); p != "" {
			if _, err := platforms.Parse(p); err != nil {
				return errdefs.InvalidParameter(err)
			}
			req.Platform = p
		}
	}
	w.Header().Set("Content-Type", "application/json")
	out := &streamWriter{w: w}
	err := s.backend.ImageImport(ctx, req, out)
	if err != nil && out.Started() {
		s.log.WithError(err).WithField("src", req.Src).Warn("import failed")
	}
	return out.finish(err)
}

func (s *Server) getImageHistory(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	platform, err := formPlatform(ctx, r, false)
	if err != nil {
		return err
	}
	items, err := s.backend.ImageHistory(ctx, vars["name"], platform)
	if err != nil {
		return err
	}
	if items == nil {
		items = []image.HistoryResponseItem{}
	}
	return writeJSON(w, http.StatusOK, items)
}

// getDistributionInfo serves GET /distribution/{name}/json; as dockerd, a
// missing or undecodable X-Registry-Auth means anonymous.
func (s *Server) getDistributionInfo(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	auth, err := registry.DecodeAuthConfig(r.Header.Get(registry.AuthHeader))
	if err != nil || auth == nil {
		auth = &registry.AuthConfig{}
	}
	info, err := s.backend.DistributionInspect(ctx, vars["name"], auth)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, info)
}
