package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/errdefs"
)

// NetworkBackend serves /networks (docs/NETWORKING.md).
type NetworkBackend interface {
	NetworkCreate(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error)
	NetworkList(ctx context.Context, f filters.Args) ([]network.Summary, error)
	NetworkInspect(ctx context.Context, nameOrID string, opts network.InspectOptions) (network.Inspect, error)
	// NetworkRemove refuses a network with active endpoints (Conflict)
	// and the predefined networks (Forbidden).
	NetworkRemove(ctx context.Context, nameOrID string) error
	NetworkConnect(ctx context.Context, nameOrID string, opts network.ConnectOptions) error
	NetworkDisconnect(ctx context.Context, nameOrID string, opts network.DisconnectOptions) error
	NetworksPrune(ctx context.Context, f filters.Args) (*network.PruneReport, error)
}

// networkRoutes are added to the router by newRouter; the fixed paths come
// before {id:.*}, which also matches them.
func (s *Server) networkRoutes() []route {
	return []route{
		{http.MethodGet, "/networks", s.getNetworksList},
		{http.MethodGet, "/networks/", s.getNetworksList},
		{http.MethodPost, "/networks/create", withJSONBody(s.postNetworksCreate)},
		{http.MethodPost, "/networks/prune", s.postNetworksPrune},
		{http.MethodPost, "/networks/{id:.*}/connect", withJSONBody(s.postNetworkConnect)},
		{http.MethodPost, "/networks/{id:.*}/disconnect", withJSONBody(s.postNetworkDisconnect)},
		{http.MethodGet, "/networks/{id:.*}", s.getNetworkInspect},
		{http.MethodDelete, "/networks/{id:.*}", s.deleteNetwork},
	}
}

func (s *Server) getNetworksList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	list, err := s.backend.NetworkList(ctx, f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []network.Summary{}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *Server) getNetworkInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	ni, err := s.backend.NetworkInspect(ctx, vars["id"], network.InspectOptions{Scope: r.Form.Get("scope"), Verbose: boolValue(r, "verbose")})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ni)
}

func (s *Server) postNetworksCreate(ctx context.Context, w http.ResponseWriter, _ map[string]string, req *network.CreateRequest) error {
	if versions.LessThan(VersionFromContext(ctx), "1.48") {
		// EnableIPv4 came with API 1.48 (dockerd drops it before).
		req.EnableIPv4 = nil
	}
	resp, err := s.backend.NetworkCreate(ctx, *req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) postNetworkConnect(ctx context.Context, w http.ResponseWriter, vars map[string]string, opts *network.ConnectOptions) error {
	if opts.Container == "" {
		return errdefs.InvalidParameter(errors.New("a container name or ID is required"))
	}
	if err := s.backend.NetworkConnect(ctx, vars["id"], *opts); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) postNetworkDisconnect(ctx context.Context, w http.ResponseWriter, vars map[string]string, opts *network.DisconnectOptions) error {
	if opts.Container == "" {
		return errdefs.InvalidParameter(errors.New("a container name or ID is required"))
	}
	if err := s.backend.NetworkDisconnect(ctx, vars["id"], *opts); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) deleteNetwork(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.backend.NetworkRemove(ctx, vars["id"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postNetworksPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	rep, err := s.backend.NetworksPrune(ctx, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}
