package api

import (
	"context"
	"net/http"
	"runtime"
)

// systemRoutes are added to the router by newRouter.
func (s *Server) systemRoutes() []route {
	return []route{
		{http.MethodGet, "/_ping", s.getPing}, // and HEAD
		{http.MethodGet, "/version", s.getVersion},
		{http.MethodGet, "/info", s.getInfo},
		{http.MethodGet, "/events", s.getEvents},
		{http.MethodPost, "/auth", s.postAuth}, // registry.go
	}
}

func (s *Server) getPing(_ context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	h := w.Header()
	h.Add("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Add("Pragma", "no-cache")
	// No BuildKit: the classic builder protocol, and no swarm.
	h.Set("Builder-Version", "1")
	h.Set("Swarm", "inactive")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	_, err := w.Write([]byte("OK"))
	return err
}

func (s *Server) getVersion(ctx context.Context, w http.ResponseWriter, _ *http.Request, _ map[string]string) error {
	v := s.backend.SystemVersion(ctx)
	if v.Version == "" {
		v.Version = s.opts.ServerVersion
	}
	if v.APIVersion == "" {
		v.APIVersion = s.opts.APIVersion
	}
	if v.MinAPIVersion == "" {
		v.MinAPIVersion = s.opts.MinAPIVersion
	}
	if v.Os == "" {
		v.Os = runtime.GOOS
	}
	if v.Arch == "" {
		v.Arch = runtime.GOARCH
	}
	if v.GoVersion == "" {
		v.GoVersion = runtime.Version()
	}
	return writeJSON(w, http.StatusOK, v)
}

func (s *Server) getInfo(ctx context.Context, w http.ResponseWriter, _ *http.Request, _ map[string]string) error {
	info, err := s.backend.SystemInfo(ctx)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, info)
}
