package api

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"

	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/versions"
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
	// No BuildKit: the classic builder protocol.
	h.Set("Builder-Version", "1")
	h.Set("Swarm", s.backend.SwarmStatus())
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
	return writeJSON(w, http.StatusOK, infoForVersion(info, VersionFromContext(ctx)))
}

// infoResponse is /info as a client of one API version sees it: the Info,
// plus fields that the current types no longer have but older versions
// always showed.
type infoResponse struct {
	*system.Info
	extra map[string]any
}

func (i infoResponse) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(i.Info)
	if err != nil || len(i.extra) == 0 {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range i.extra {
		if m[k], err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	return json.Marshal(m)
}

// infoForVersion adjusts /info to what each API version documents, as
// dockerd's router does: fields added later are dropped for older
// clients, fields removed later are put back for them.
func infoForVersion(info *system.Info, version string) infoResponse {
	if versions.LessThan(version, "1.25") {
		// Security options were names only.
		var names []string
		opts, err := system.DecodeSecurityOptions(info.SecurityOptions)
		if err != nil {
			info.Warnings = append(info.Warnings, err.Error())
		}
		for _, o := range opts {
			names = append(names, o.Name)
		}
		info.SecurityOptions = names
	}
	if versions.LessThan(version, "1.39") {
		if info.KernelVersion == "" {
			info.KernelVersion = "<unknown>"
		}
		if info.OperatingSystem == "" {
			info.OperatingSystem = "<unknown>"
		}
	}
	if versions.LessThan(version, "1.44") {
		for k, rt := range info.Runtimes {
			info.Runtimes[k] = system.RuntimeWithStatus{Runtime: rt.Runtime} // Status: 1.44
		}
	}
	if versions.LessThan(version, "1.46") {
		info.Containerd = nil // 1.46
	}
	if versions.LessThan(version, "1.47") && info.RegistryConfig != nil {
		// Shown, even empty, before 1.47.
		info.RegistryConfig.ExtraFields = map[string]any{
			"AllowNondistributableArtifactsCIDRs":     json.RawMessage(nil),
			"AllowNondistributableArtifactsHostnames": json.RawMessage(nil),
		}
	}
	if versions.LessThan(version, "1.49") {
		info.FirewallBackend = nil // 1.49
		// The "expected" commits were dropped in 1.49.
		info.ContainerdCommit.Expected = info.ContainerdCommit.ID //nolint:staticcheck // still part of API < 1.49
		info.RuncCommit.Expected = info.RuncCommit.ID             //nolint:staticcheck // still part of API < 1.49
		info.InitCommit.Expected = info.InitCommit.ID             //nolint:staticcheck // still part of API < 1.49
	}
	if versions.GreaterThanOrEqualTo(version, "1.42") {
		info.KernelMemory = false //nolint:staticcheck // gone from API 1.42
	}
	resp := infoResponse{Info: info}
	if versions.LessThan(version, "1.50") {
		info.DiscoveredDevices = nil // 1.50
		// Gone in 1.50; before, dockerd shows them, always false.
		resp.extra = map[string]any{"BridgeNfIptables": false, "BridgeNfIp6tables": false}
	}
	return resp
}
