package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/migration"
)

// Live migration (docs/MIGRATION.md), jevm's own routes: a client asks
// the source daemon to move a container (POST
// /containers/{name}/jevm/migrate, what `docker jevm migrate` calls); the
// source then drives the target through /jevm/migrations.

// MigrationBackend serves live migration, both sides.
type MigrationBackend interface {
	// ContainerMigrate moves the running container to req.Target,
	// writing progress to out as JSON messages.
	ContainerMigrate(ctx context.Context, nameOrID string, req migration.Request, out io.Writer) error
	// MigrationOffer, MigrationBase, MigrationRun and MigrationAbort
	// are the target's side. MigrationRun calls hijack once it has found
	// the migration; the stream is the connection's after that.
	MigrationOffer(ctx context.Context, offer *migration.Offer) (migration.OfferResponse, error)
	MigrationBase(ctx context.Context, id string, r io.Reader) error
	// MigrationLog takes the container's log files, a tar stream.
	MigrationLog(ctx context.Context, id string, r io.Reader) error
	MigrationRun(ctx context.Context, id string, hijack func() (net.Conn, *bufio.Reader, error)) error
	MigrationAbort(ctx context.Context, id string) error
}

func (s *Server) migrationRoutes() []route {
	return []route{
		{http.MethodPost, "/containers/{name:.*}/jevm/migrate", withJSONBody(s.postContainerMigrate)},
		{http.MethodPost, "/jevm/migrations", withJSONBody(s.postMigration)},
		{http.MethodPut, "/jevm/migrations/{id}/base", s.putMigrationBase},
		{http.MethodPut, "/jevm/migrations/{id}/log", s.putMigrationLog},
		{http.MethodPost, "/jevm/migrations/{id}/run", s.postMigrationRun},
		{http.MethodDelete, "/jevm/migrations/{id}", s.deleteMigration},
	}
}

func (s *Server) postContainerMigrate(ctx context.Context, w http.ResponseWriter, vars map[string]string, req *migration.Request) error {
	w.Header().Set("Content-Type", "application/json")
	out := &streamWriter{w: w}
	return out.finish(s.backend.ContainerMigrate(ctx, vars["name"], *req, out))
}

func (s *Server) postMigration(ctx context.Context, w http.ResponseWriter, vars map[string]string, offer *migration.Offer) error {
	resp, err := s.backend.MigrationOffer(ctx, offer)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) putMigrationBase(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.backend.MigrationBase(ctx, vars["id"], r.Body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) putMigrationLog(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.backend.MigrationLog(ctx, vars["id"], r.Body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postMigrationRun(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return errdefs.System(errors.New("the connection cannot be hijacked"))
	}
	hijacked := false
	var conn net.Conn
	defer func() {
		if conn != nil {
			s.trackHijacked(conn, false)
		}
	}()
	err := s.backend.MigrationRun(context.WithoutCancel(ctx), vars["id"], func() (net.Conn, *bufio.Reader, error) {
		c, brw, err := hj.Hijack()
		if err != nil {
			return nil, nil, err
		}
		hijacked, conn = true, c
		s.trackHijacked(c, true)
		_ = c.SetDeadline(time.Time{})
		if rec, ok := w.(*responseRecorder); ok {
			rec.setHijackStatus(http.StatusSwitchingProtocols)
		}
		if _, err := c.Write([]byte("HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")); err != nil {
			return nil, nil, err
		}
		return c, brw.Reader, nil
	})
	if hijacked {
		return nil
	}
	return err
}

func (s *Server) deleteMigration(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.backend.MigrationAbort(ctx, vars["id"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
