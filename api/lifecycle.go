package api

import (
	"context"
	"net/http"

	"github.com/docker/docker/api/types/container"
)

// LifecycleBackend serves pause, unpause and update.
type LifecycleBackend interface {
	ContainerPause(ctx context.Context, nameOrID string) error
	ContainerUnpause(ctx context.Context, nameOrID string) error
	// ContainerUpdate applies a restart policy and resources; Warnings is
	// never nil.
	ContainerUpdate(ctx context.Context, nameOrID string, cfg *container.UpdateConfig) (container.UpdateResponse, error)
}

func (s *Server) postContainerPause(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.backend.ContainerPause(ctx, vars["name"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postContainerUnpause(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.backend.ContainerUnpause(ctx, vars["name"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postContainerUpdate(ctx context.Context, w http.ResponseWriter, vars map[string]string, cfg *container.UpdateConfig) error {
	resp, err := s.backend.ContainerUpdate(ctx, vars["name"], cfg)
	if err != nil {
		return err
	}
	if resp.Warnings == nil {
		resp.Warnings = []string{}
	}
	return writeJSON(w, http.StatusOK, resp)
}
