package api

// POST /build (docker build with the classic builder), /build/prune and
// /build/cancel.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/errdefs"
)

// BuildBackend serves /build.
type BuildBackend interface {
	// Build reads the context tar from opts.Context and writes the JSON
	// message stream to out, as PullImage does: an error before any
	// output gets its own status, one after is written into the stream.
	Build(ctx context.Context, opts *build.ImageBuildOptions, out io.Writer) (string, error)
	BuildCachePrune(ctx context.Context, opts build.CachePruneOptions) (*build.CachePruneReport, error)
	BuildCancel(ctx context.Context, buildID string) error
}

func (s *Server) buildRoutes() []route {
	return []route{
		{http.MethodPost, "/build", s.postBuild},
		{http.MethodPost, "/build/prune", s.postBuildPrune},
		{http.MethodPost, "/build/cancel", s.postBuildCancel},
	}
}

// buildOptions parses POST /build's query as dockerd does.
func buildOptions(ctx context.Context, r *http.Request) (*build.ImageBuildOptions, error) {
	intValue := func(k string) (int64, error) {
		v := r.Form.Get(k)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, errdefs.InvalidParameter(fmt.Errorf("invalid %s value %q: %w", k, v, err))
		}
		return n, nil
	}
	opts := &build.ImageBuildOptions{
		Version:        build.BuilderV1,
		Dockerfile:     r.Form.Get("dockerfile"),
		SuppressOutput: boolValue(r, "q"),
		NoCache:        boolValue(r, "nocache"),
		ForceRemove:    boolValue(r, "forcerm"),
		PullParent:     boolValue(r, "pull"),
		CPUSetCPUs:     r.Form.Get("cpusetcpus"),
		CPUSetMems:     r.Form.Get("cpusetmems"),
		CgroupParent:   r.Form.Get("cgroupparent"),
		NetworkMode:    r.Form.Get("networkmode"),
		Tags:           r.Form["t"],
		ExtraHosts:     r.Form["extrahosts"],
		SecurityOpt:    r.Form["securityopt"],
		Squash:         boolValue(r, "squash"),
		Target:         r.Form.Get("target"),
		RemoteContext:  r.Form.Get("remote"),
		SessionID:      r.Form.Get("session"),
		BuildID:        r.Form.Get("buildid"),
	}
	var err error
	for k, dst := range map[string]*int64{
		"memory": &opts.Memory, "memswap": &opts.MemorySwap, "cpushares": &opts.CPUShares,
		"cpuperiod": &opts.CPUPeriod, "cpuquota": &opts.CPUQuota, "shmsize": &opts.ShmSize,
	} {
		if *dst, err = intValue(k); err != nil {
			return nil, err
		}
	}
	if opts.SecurityOpt != nil {
		return nil, errdefs.InvalidParameter(errors.New("security options are not supported on linux"))
	}
	switch {
	case opts.ForceRemove:
		opts.Remove = true
	case r.Form.Get("rm") == "":
		opts.Remove = true
	default:
		opts.Remove = boolValue(r, "rm")
	}
	version := VersionFromContext(ctx)
	if versions.GreaterThanOrEqualTo(version, "1.32") {
		opts.Platform = r.Form.Get("platform")
	}
	if v := r.Form.Get("outputs"); v != "" && versions.GreaterThanOrEqualTo(version, "1.40") {
		if err := json.Unmarshal([]byte(v), &opts.Outputs); err != nil {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid outputs specified: %w", err))
		}
	}
	if i := r.Form.Get("isolation"); i != "" {
		opts.Isolation = container.Isolation(i)
		if !opts.Isolation.IsValid() {
			return nil, errdefs.InvalidParameter(fmt.Errorf("unsupported isolation: %q", i))
		}
	}
	jsonParams := []struct {
		key, what string
		dst       any
	}{
		{"ulimits", "ulimit settings", &opts.Ulimits},
		{"buildargs", "build args", &opts.BuildArgs},
		{"labels", "labels", &opts.Labels},
		{"cachefrom", "cache-from", &opts.CacheFrom},
	}
	for _, p := range jsonParams {
		if v := r.Form.Get(p.key); v != "" {
			if err := json.Unmarshal([]byte(v), p.dst); err != nil {
				return nil, errdefs.InvalidParameter(fmt.Errorf("error reading %s: %w", p.what, err))
			}
		}
	}
	if v := r.Form.Get("version"); v != "" {
		switch build.BuilderVersion(v) {
		case build.BuilderV1, build.BuilderBuildKit:
			opts.Version = build.BuilderVersion(v)
		default:
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid version %q", v))
		}
	}
	// X-Registry-Config: base64url JSON of registry -> credentials, for
	// pulls of base images.
	if h := r.Header.Get("X-Registry-Config"); h != "" {
		b, err := base64.URLEncoding.DecodeString(h)
		if err != nil {
			b, err = base64.StdEncoding.DecodeString(h)
		}
		if err == nil {
			auths := map[string]registry.AuthConfig{}
			if json.Unmarshal(b, &auths) == nil {
				opts.AuthConfigs = auths
			}
		}
	}
	return opts, nil
}

func (s *Server) postBuild(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	opts, err := buildOptions(ctx, r)
	if err != nil {
		return err
	}
	opts.Context = r.Body
	w.Header().Set("Content-Type", "application/json")
	out := &streamWriter{w: w}
	_, err = s.backend.Build(ctx, opts, out)
	if err != nil && out.Started() {
		s.log.WithError(err).Info("build failed")
	}
	return out.finish(err)
}

func (s *Server) postBuildPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	opts := build.CachePruneOptions{All: boolValue(r, "all"), Filters: f}
	for _, k := range []string{"keep-storage", "reserved-space", "max-used-space", "min-free-space"} {
		if v := r.Form.Get(k); v != "" {
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return errdefs.InvalidParameter(fmt.Errorf("%s is in bytes and expects an integer, got %v", k, v))
			}
		}
	}
	rep, err := s.backend.BuildCachePrune(ctx, opts)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

func (s *Server) postBuildCancel(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	id := r.Form.Get("id")
	if id == "" {
		return errdefs.InvalidParameter(errors.New("build ID not provided"))
	}
	if err := s.backend.BuildCancel(ctx, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
