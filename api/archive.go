package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

// ArchiveBackend serves the file routes: docker cp (HEAD/GET/PUT
// /containers/{name}/archive), docker export, docker diff and docker commit.
// A backend that does not implement it answers them 501.
type ArchiveBackend interface {
	// ContainerStatPath stats a path in the container (HEAD archive).
	ContainerStatPath(ctx context.Context, nameOrID, path string) (*container.PathStat, error)
	// ContainerArchivePath stats path, calls start with the stat (the
	// router sets its headers then and returns the body writer) and writes
	// a tar of the path to it. Errors before start become HTTP errors.
	ContainerArchivePath(ctx context.Context, nameOrID, path string, start func(*container.PathStat) (io.Writer, error)) error
	// ContainerExtractToDir extracts the tar content into the directory
	// path of the container (PUT archive).
	ContainerExtractToDir(ctx context.Context, nameOrID, path string, copyUIDGID, noOverwriteDirNonDir bool, content io.Reader) error
	// ContainerExport writes a tar of the container's file system to out.
	ContainerExport(ctx context.Context, nameOrID string, out io.Writer) error
	// ContainerChanges lists what changed in the container's file system
	// since it was created from its image.
	ContainerChanges(ctx context.Context, nameOrID string) ([]container.FilesystemChange, error)
	// ContainerCommit makes an image of the container and returns its ID.
	ContainerCommit(ctx context.Context, cfg *backend.CommitConfig) (string, error)
}

// pathStatHeader carries the stat of the path of an archive request.
const pathStatHeader = "X-Docker-Container-Path-Stat"

// archiveRoutes are the routes of the file operations.
func (s *Server) archiveRoutes() []route {
	return []route{
		{http.MethodHead, "/containers/{name:.*}/archive", s.headContainerArchive},
		{http.MethodGet, "/containers/{name:.*}/archive", s.getContainerArchive},
		{http.MethodPut, "/containers/{name:.*}/archive", s.putContainerArchive},
		{http.MethodGet, "/containers/{name:.*}/export", s.getContainerExport},
		{http.MethodGet, "/containers/{name:.*}/changes", s.getContainerChanges},
		{http.MethodPost, "/commit", s.postCommit},
	}
}

// archiveArgs are dockerd's httputils.ArchiveFormValues.
func archiveArgs(r *http.Request, vars map[string]string) (name, path string, err error) {
	name = vars["name"]
	if name == "" {
		return "", "", errdefs.InvalidParameter(errors.New("bad parameter: name cannot be empty"))
	}
	path = r.Form.Get("path")
	if path == "" {
		return "", "", errdefs.InvalidParameter(errors.New("bad parameter: path cannot be empty"))
	}
	return name, path, nil
}

// setPathStatHeader writes the stat as dockerd does: base64 of its JSON.
func setPathStatHeader(h http.Header, st *container.PathStat) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	h.Set(pathStatHeader, base64.StdEncoding.EncodeToString(b))
	return nil
}

func (s *Server) headContainerArchive(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	name, path, err := archiveArgs(r, vars)
	if err != nil {
		return err
	}
	st, err := s.backend.ContainerStatPath(ctx, name, path)
	if err != nil {
		return err
	}
	if err := setPathStatHeader(w.Header(), st); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) getContainerArchive(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	name, path, err := archiveArgs(r, vars)
	if err != nil {
		return err
	}
	return s.backend.ContainerArchivePath(ctx, name, path, func(st *container.PathStat) (io.Writer, error) {
		if err := setPathStatHeader(w.Header(), st); err != nil {
			return nil, err
		}
		w.Header().Set("Content-Type", "application/x-tar")
		w.WriteHeader(http.StatusOK)
		return w, nil
	})
}

func (s *Server) putContainerArchive(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	name, path, err := archiveArgs(r, vars)
	if err != nil {
		return err
	}
	if err := s.backend.ContainerExtractToDir(ctx, name, path, boolValue(r, "copyUIDGID"), boolValue(r, "noOverwriteDirNonDir"), r.Body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) getContainerExport(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	// Headers go out with the first byte of the tar; an error before it
	// is still an HTTP error.
	w.Header().Set("Content-Type", "application/x-tar")
	return s.backend.ContainerExport(ctx, vars["name"], w)
}

func (s *Server) getContainerChanges(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	changes, err := s.backend.ContainerChanges(ctx, vars["name"])
	if err != nil {
		return err
	}
	if changes == nil {
		changes = []container.FilesystemChange{}
	}
	return writeJSON(w, http.StatusOK, changes)
}

func (s *Server) postCommit(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	cfg := &backend.CommitConfig{
		Container: r.Form.Get("container"),
		Repo:      r.Form.Get("repo"),
		Tag:       r.Form.Get("tag"),
		Author:    r.Form.Get("author"),
		Comment:   r.Form.Get("comment"),
		Pause:     true,
		Changes:   r.Form["changes"],
	}
	if v := r.Form.Get("pause"); v != "" {
		cfg.Pause = boolValue(r, "pause")
	}
	// The body is an optional container config ("null" from the CLI);
	// as dockerd, it is checked before the query.
	if err := checkForJSON(r); err != nil {
		return err
	}
	if r.Body != nil {
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			return errdefs.InvalidParameter(err)
		}
		if t := strings.TrimSpace(string(body)); t != "" && t != "null" {
			var c container.Config
			if err := decodeJSON(strings.NewReader(t), &c); err != nil {
				return err
			}
			cfg.Config = &c
		}
	}
	if cfg.Container == "" {
		return errdefs.InvalidParameter(errors.New("bad parameter: container cannot be empty"))
	}
	if cfg.Repo == "" && cfg.Tag != "" {
		return errdefs.InvalidParameter(errors.New("invalid reference format: repository name must have at least one component"))
	}
	id, err := s.backend.ContainerCommit(ctx, cfg)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, &container.CommitResponse{ID: id})
}
