package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/docker/docker/api/types/checkpoint"
	"github.com/docker/docker/errdefs"
)

// Checkpoints: dockerd serves them only in experimental mode (its
// router's experimental routes), and so does jevm.

// errExperimentalDisabled is dockerd's answer on an experimental route of
// a daemon started without --experimental.
var errExperimentalDisabled = errdefs.NotImplemented(errors.New("This experimental feature is disabled by default. Start the Docker daemon in experimental mode in order to enable it."))

func (s *Server) checkpointRoutes() []route {
	return []route{
		{http.MethodGet, "/containers/{name:.*}/checkpoints", s.getContainerCheckpoints},
		{http.MethodPost, "/containers/{name:.*}/checkpoints", withJSONBody(s.postContainerCheckpoint)},
		{http.MethodDelete, "/containers/{name}/checkpoints/{checkpoint}", s.deleteContainerCheckpoint},
	}
}

func (s *Server) postContainerCheckpoint(ctx context.Context, w http.ResponseWriter, vars map[string]string, opts *checkpoint.CreateOptions) error {
	if !s.opts.Experimental {
		return errExperimentalDisabled
	}
	if err := s.backend.CheckpointCreate(ctx, vars["name"], *opts); err != nil {
		return err
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (s *Server) getContainerCheckpoints(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if !s.opts.Experimental {
		return errExperimentalDisabled
	}
	list, err := s.backend.CheckpointList(ctx, vars["name"], checkpoint.ListOptions{CheckpointDir: r.Form.Get("dir")})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *Server) deleteContainerCheckpoint(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if !s.opts.Experimental {
		return errExperimentalDisabled
	}
	if err := s.backend.CheckpointDelete(ctx, vars["name"], checkpoint.DeleteOptions{CheckpointID: vars["checkpoint"], CheckpointDir: r.Form.Get("dir")}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
