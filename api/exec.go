package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/jevm/jevm/api/types/backend"
)

// execRoutes are added to the router by newRouter.
func (s *Server) execRoutes() []route {
	return []route{
		{http.MethodPost, "/containers/{name:.*}/exec", withJSONBody(s.postContainerExecCreate)},
		{http.MethodPost, "/exec/{id:.*}/start", s.postExecStart},
		{http.MethodPost, "/exec/{id:.*}/resize", s.postExecResize},
		{http.MethodGet, "/exec/{id:.*}/json", s.getExecInspect},
	}
}

// postContainerExecCreate: POST /containers/{name}/exec.
func (s *Server) postContainerExecCreate(ctx context.Context, w http.ResponseWriter, vars map[string]string, cfg *container.ExecOptions) error {
	if len(cfg.Cmd) == 0 {
		return errdefs.InvalidParameter(errors.New("No exec command specified"))
	}
	id, err := s.backend.ContainerExecCreate(ctx, vars["name"], cfg)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: id})
}

// postExecStart: POST /exec/{id}/start. Unless detached, the connection is
// hijacked as for attach (101 UPGRADED when asked for, raw or multiplexed
// stream) and our write side is closed when the process exits.
func (s *Server) postExecStart(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	id := vars["id"]
	if err := checkForJSON(r); err != nil {
		return err
	}
	var opts container.ExecStartOptions
	if r.Body != nil {
		// The body is small; an empty one means the defaults.
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return errdefs.InvalidParameter(err)
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := decodeJSON(bytes.NewReader(body), &opts); err != nil {
				return err
			}
		}
	}
	if opts.Detach {
		err := s.backend.ContainerExecStart(ctx, id, &backend.ExecStartConfig{Detach: true, Tty: opts.Tty, ConsoleSize: opts.ConsoleSize})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}

	// As dockerd does: an unknown exec is a 404 before the hijack, and the
	// exec's own settings say which streams the client gets.
	ei, err := s.backend.ContainerExecInspect(id)
	if err != nil {
		return err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return errdefs.InvalidParameter(fmt.Errorf("error starting exec %s, hijack connection missing", id))
	}
	_, upgrade := r.Header["Upgrade"]
	version := VersionFromContext(ctx)
	// As for attach: the client's half-close is not a disconnect.
	ctx, cancel := s.streamContext(context.WithoutCancel(ctx))
	defer cancel()
	h := s.newHijacker(w, hj, upgrade, version, cancel, ei.OpenStdin, ei.OpenStdout, ei.OpenStderr)

	err = s.backend.ContainerExecStart(ctx, id, &backend.ExecStartConfig{Tty: opts.Tty, ConsoleSize: opts.ConsoleSize, GetStreams: h.getStreams})
	if !h.hijacked() {
		if err == nil {
			err = errdefs.System(fmt.Errorf("exec %s: backend returned without attaching", id))
		}
		return err
	}
	if err != nil && ctx.Err() == nil {
		// dockerd writes the error (e.g. the command was not found) into
		// the output stream; the CLI prints it and gets the exit code
		// from the exec's inspect.
		s.log.WithError(err).WithField("exec", id).Warn("exec start failed")
		var out io.Writer = connWriter{h.sess}
		if h.multiplexed {
			out = stdcopy.NewStdWriter(out, stdcopy.Stdout)
		}
		_, _ = out.Write([]byte(err.Error() + "\r\n"))
	}
	h.finish()
	return nil
}

// postExecResize: POST /exec/{id}/resize?h=&w=.
func (s *Server) postExecResize(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	h, wd, err := resizeParams(r)
	if err != nil {
		return err
	}
	if err := s.backend.ContainerExecResize(ctx, vars["id"], h, wd); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// getExecInspect: GET /exec/{id}/json.
func (s *Server) getExecInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	ei, err := s.backend.ContainerExecInspect(vars["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ei)
}
