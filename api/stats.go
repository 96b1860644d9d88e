package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

// getContainerTop: GET /containers/{name}/top?ps_args=.
func (s *Server) getContainerTop(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	top, err := s.backend.ContainerTop(ctx, vars["name"], r.Form.Get("ps_args"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, top)
}

// getContainerStats: GET /containers/{name}/stats?stream=&one-shot=.
func (s *Server) getContainerStats(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	stream := true
	if r.Form.Get("stream") != "" {
		stream = boolValue(r, "stream")
	}
	oneShot := boolValue(r, "one-shot")
	if stream && oneShot {
		return errdefs.InvalidParameter(errors.New("cannot have stream=true and one-shot=true"))
	}
	ctx, cancel := s.streamContext(ctx)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	sw := &streamWriter{w: w}
	enc := json.NewEncoder(sw)
	err := s.backend.ContainerStats(ctx, vars["name"], &backend.StatsConfig{
		Stream:  stream,
		OneShot: oneShot,
		Send:    func(st *container.StatsResponse) error { return enc.Encode(st) },
	})
	if err != nil && sw.Started() {
		// Mid-stream: the client sees the stream end.
		s.log.WithError(err).WithField("container", vars["name"]).Debug("stats stream ended")
		return nil
	}
	return err
}
