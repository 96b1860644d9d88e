package api

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// RegistryBackend serves the registry's write side and authentication:
// POST /images/{name}/push (route in images.go) and POST /auth (route in
// system.go), as dockerd's image and system routers do.
type RegistryBackend interface {
	// ImagePush pushes ref: "name:tag", or a bare name for every tag of
	// the repository. It writes JSON progress messages to out; an error
	// returned before anything was written gets its HTTP status, a later
	// one goes into the stream (dockerd reports unknown images and
	// registry refusals that way, after its first line).
	// platform (API 1.46+, nil when not given) must match the image's.
	ImagePush(ctx context.Context, ref string, platform *ocispec.Platform, auth *registry.AuthConfig, out io.Writer) error
	// AuthenticateToRegistry checks credentials against a registry and
	// returns the status ("Login Succeeded") and an identity token.
	AuthenticateToRegistry(ctx context.Context, auth *registry.AuthConfig) (status, identityToken string, err error)
}

// pushReference is dockerd's reading of POST /images/{name}/push: with a
// tag, name:tag (the name must not hold a digest); without, the name as
// given (a bare name pushes all its tags).
func pushReference(name, tag string) (reference.Named, error) {
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	if tag == "" {
		return ref, nil
	}
	if _, ok := ref.(reference.Digested); ok {
		return nil, errdefs.InvalidParameter(errors.New("cannot push a digest reference"))
	}
	tagged, err := reference.WithTag(ref, tag)
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	return tagged, nil
}

func (s *Server) postImagePush(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	ref, err := pushReference(vars["name"], r.Form.Get("tag"))
	if err != nil {
		return err
	}
	var platform *ocispec.Platform
	// Older clients may send a platform too; dockerd ignores it before 1.46.
	if p := r.Form.Get("platform"); p != "" && versions.GreaterThanOrEqualTo(VersionFromContext(ctx), "1.46") {
		if platform, err = decodePlatform(p); err != nil {
			return err
		}
	}
	// As dockerd: an undecodable X-Registry-Auth is ignored (anonymous).
	auth, err := registry.DecodeAuthConfig(r.Header.Get(registry.AuthHeader))
	if err != nil || auth == nil {
		auth = &registry.AuthConfig{}
	}
	w.Header().Set("Content-Type", "application/json")
	out := &streamWriter{w: w}
	err = s.backend.ImagePush(ctx, ref.String(), platform, auth, out)
	if err != nil && out.Started() {
		s.log.WithError(err).WithField("image", ref.String()).Warn("push failed")
	}
	return out.finish(err)
}

func (s *Server) postAuth(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	var cfg *registry.AuthConfig
	if err := decodeJSON(r.Body, &cfg); err != nil {
		return err
	}
	if cfg == nil {
		cfg = &registry.AuthConfig{}
	}
	status, token, err := s.backend.AuthenticateToRegistry(ctx, cfg)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, &registry.AuthenticateOKBody{Status: status, IdentityToken: token})
}
