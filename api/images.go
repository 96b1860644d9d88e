package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// imageRoutes are added to the router by newRouter: the fixed paths first,
// since {name:.*} also matches them.
func (s *Server) imageRoutes() []route {
	return []route{
		{http.MethodGet, "/images/json", s.getImagesJSON},
		{http.MethodPost, "/images/create", s.postImagesCreate},
		{http.MethodPost, "/images/prune", s.postImagesPrune},
		{http.MethodGet, "/images/get", s.getImagesGet},     // images_io.go
		{http.MethodPost, "/images/load", s.postImagesLoad}, // images_io.go
		{http.MethodGet, "/images/{name:.*}/json", s.getImageInspect},
		{http.MethodGet, "/images/{name:.*}/get", s.getImagesGet},
		{http.MethodGet, "/images/{name:.*}/history", s.getImageHistory},
		{http.MethodGet, "/distribution/{name:.*}/json", s.getDistributionInfo},
		{http.MethodPost, "/images/{name:.*}/tag", s.postImageTag},
		{http.MethodPost, "/images/{name:.*}/push", s.postImagePush}, // registry.go
		{http.MethodDelete, "/images/{name:.*}", s.deleteImage},
	}
}

// pullReference combines the fromImage and tag parameters of
// POST /images/create as dockerd does: "tag" may also hold a digest, a
// tag in fromImage is replaced by an explicit tag, and without either the
// tag defaults to "latest". The result is fully qualified
// ("docker.io/library/busybox:latest").
func pullReference(fromImage, tag string) (reference.Named, error) {
	// "docker pull -a" sends a trailing ":".
	ref, err := reference.ParseNormalizedNamed(strings.TrimSuffix(fromImage, ":"))
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	switch {
	case tag == "":
		ref = reference.TagNameOnly(ref)
	case strings.Contains(tag, ":"): // a digest, "sha256:..."
		ref, err = reference.ParseNormalizedNamed(reference.TrimNamed(ref).String() + "@" + tag)
	default:
		ref, err = reference.WithTag(ref, tag)
	}
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	if reference.FamiliarName(ref) == "scratch" {
		return nil, errdefs.Forbidden(errors.New("'scratch' is a reserved name"))
	}
	return ref, nil
}

func (s *Server) postImagesCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	fromImage, fromSrc := r.Form.Get("fromImage"), r.Form.Get("fromSrc")
	switch {
	case fromImage == "" && fromSrc != "":
		return s.postImagesImport(ctx, w, r)
	case fromImage == "":
		return errdefs.InvalidParameter(errors.New("fromImage must be given"))
	}
	ref, err := pullReference(fromImage, r.Form.Get("tag"))
	if err != nil {
		return err
	}
	platform := ""
	if versions.GreaterThanOrEqualTo(VersionFromContext(ctx), "1.32") {
		platform = r.Form.Get("platform")
	}
	// As dockerd: a missing or undecodable X-Registry-Auth means anonymous.
	auth, err := registry.DecodeAuthConfig(r.Header.Get(registry.AuthHeader))
	if err != nil || auth == nil {
		auth = &registry.AuthConfig{}
	}

	w.Header().Set("Content-Type", "application/json")
	out := &streamWriter{w: w}
	err = s.backend.PullImage(ctx, ref.String(), platform, auth, out)
	if err != nil && out.Started() {
		s.log.WithError(err).WithField("image", ref.String()).Warn("pull failed")
	}
	return out.finish(err)
}

func (s *Server) getImagesJSON(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	version := VersionFromContext(ctx)
	if versions.LessThan(version, "1.41") {
		// Old clients filter by a repository glob.
		if p := r.Form.Get("filter"); p != "" {
			f.Add("reference", p)
		}
	}
	opts := image.ListOptions{All: boolValue(r, "all"), Filters: f}
	if versions.GreaterThanOrEqualTo(version, "1.42") {
		opts.SharedSize = boolValue(r, "shared-size")
	}
	if versions.GreaterThanOrEqualTo(version, "1.47") {
		opts.Manifests = boolValue(r, "manifests")
	}
	// "digests" (RepoDigests) is always filled in.
	list, err := s.backend.ImageList(ctx, opts)
	if err != nil {
		return err
	}
	if list == nil {
		list = []image.Summary{}
	}
	for i := range list {
		img := &list[i]
		if versions.LessThan(version, "1.43") {
			if len(img.RepoTags) == 0 && len(img.RepoDigests) == 0 {
				img.RepoTags = []string{"<none>:<none>"}
				img.RepoDigests = []string{"<none>@<none>"}
			}
		}
		if img.RepoTags == nil {
			img.RepoTags = []string{}
		}
		if img.RepoDigests == nil {
			img.RepoDigests = []string{}
		}
		if versions.LessThan(version, "1.44") {
			img.VirtualSize = img.Size //nolint:staticcheck // field of old API versions
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *Server) getImageInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	var platform *ocispec.Platform
	if versions.GreaterThanOrEqualTo(VersionFromContext(ctx), "1.49") {
		p, err := decodePlatform(r.Form.Get("platform"))
		if err != nil {
			return err
		}
		if p != nil && boolValue(r, "manifests") {
			return errdefs.InvalidParameter(errors.New("conflicting options: manifests and platform options cannot both be set"))
		}
		platform = p
	}
	img, err := s.backend.ImageInspect(ctx, vars["name"])
	if err != nil {
		return err
	}
	if platform != nil {
		if err := inspectPlatform(img, vars["name"], platform); err != nil {
			return err
		}
	}
	imageInspectForVersion(img, VersionFromContext(ctx))
	return writeJSON(w, http.StatusOK, img)
}

// imageInspectForVersion applies the version gates dockerd applies to
// GET /images/{name}/json (swagger.yaml and moby's image router): older
// clients get the fields they were written against. compose v1 (API 1.41
// and older) reads ContainerConfig and fails without it.
func imageInspectForVersion(img *image.InspectResponse, version string) {
	if versions.LessThan(version, "1.44") {
		img.VirtualSize = img.Size //nolint:staticcheck // still sent before API 1.44
		if img.Created == "" {
			img.Created = time.Time{}.Format(time.RFC3339Nano)
		}
	}
	if versions.GreaterThanOrEqualTo(version, "1.45") {
		img.Container = ""        //nolint:staticcheck // omitted from API 1.45
		img.ContainerConfig = nil //nolint:staticcheck // omitted from API 1.45
	} else if img.ContainerConfig == nil { //nolint:staticcheck // still sent before API 1.45
		// dockerd sends the image's container_config, an empty config
		// when the image has none.
		img.ContainerConfig = &container.Config{} //nolint:staticcheck // still sent before API 1.45
	}
	if versions.LessThan(version, "1.48") {
		img.Descriptor = nil
	}
}

// postImageTag passes the target as a fully qualified repository
// ("docker.io/library/foo") and a tag ("latest" if none was given).
func (s *Server) postImageTag(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	repo, tag := r.Form.Get("repo"), r.Form.Get("tag")
	if repo == "" {
		return errdefs.InvalidParameter(errors.New("repository name must be given"))
	}
	ref, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return errdefs.InvalidParameter(err)
	}
	if _, ok := ref.(reference.Digested); ok {
		return errdefs.InvalidParameter(errors.New("refusing to create a tag with a digest reference"))
	}
	var tagged reference.NamedTagged
	if tag != "" {
		tagged, err = reference.WithTag(ref, tag)
		if err != nil {
			return errdefs.InvalidParameter(err)
		}
	} else {
		tagged = reference.TagNameOnly(ref).(reference.NamedTagged)
	}
	if reference.FamiliarName(tagged) == "sha256" {
		return errdefs.InvalidParameter(errors.New("refusing to create an ambiguous tag using digest algorithm as name"))
	}
	if err := s.backend.ImageTag(ctx, vars["name"], tagged.Name(), tagged.Tag()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (s *Server) deleteImage(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	name := vars["name"]
	if strings.TrimSpace(name) == "" {
		return errdefs.InvalidParameter(errors.New("image name cannot be blank"))
	}
	list, err := s.backend.ImageDelete(ctx, name, boolValue(r, "force"), !boolValue(r, "noprune"))
	if err != nil {
		return err
	}
	if list == nil {
		list = []image.DeleteResponse{}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *Server) postImagesPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	rep, err := s.backend.ImagesPrune(ctx, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}
