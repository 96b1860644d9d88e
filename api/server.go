package api

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	dtypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/errdefs"
	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"
)

// Defaults for Options.
const (
	DefaultAPIVersion      = "1.51"
	DefaultMinAPIVersion   = "1.24"
	DefaultServerVersion   = "dev"
	DefaultShutdownTimeout = 10 * time.Second
	DefaultUnixSocket      = "/run/jevm/docker.sock"
	defaultTCPPort         = "2375"
	defaultTLSPort         = "2376" // dockerd's port for tcp:// with --tls
)

// Options configures a Server. Zero values take the defaults above.
type Options struct {
	// Logger receives the request log and server errors.
	Logger *logrus.Entry
	// APIVersion is the highest (and default) API version served, e.g. "1.51".
	APIVersion string
	// MinAPIVersion is the lowest API version accepted, e.g. "1.24".
	MinAPIVersion string
	// ServerVersion is the engine version shown in the Server header
	// ("Docker/<ServerVersion> (linux)") and, when the backend leaves it
	// empty, in GET /version.
	ServerVersion string
	// ShutdownTimeout bounds how long Serve waits for in-flight requests
	// once its context is cancelled.
	ShutdownTimeout time.Duration
	// Experimental is dockerd's --experimental: the Docker-Experimental
	// header says so, and the CLI then shows experimental commands.
	Experimental bool
}

// Server serves the Docker Remote API on top of a Backend.
type Server struct {
	backend Backend
	opts    Options
	log     *logrus.Entry
	handler http.Handler

	// drainCtx is cancelled when shutdown starts: long-running streams
	// (wait, attach, followed logs) end then instead of holding shutdown.
	drainCtx context.Context
	drain    context.CancelFunc

	mu       sync.Mutex
	hijacked map[net.Conn]struct{} // connections of running attaches
}

// NewServer builds the router for backend.
func NewServer(backend Backend, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = logrus.NewEntry(logrus.StandardLogger())
	}
	if opts.APIVersion == "" {
		opts.APIVersion = DefaultAPIVersion
	}
	if opts.MinAPIVersion == "" {
		opts.MinAPIVersion = DefaultMinAPIVersion
	}
	if opts.ServerVersion == "" {
		opts.ServerVersion = DefaultServerVersion
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &Server{
		backend:  backend,
		opts:     opts,
		log:      opts.Logger,
		hijacked: map[net.Conn]struct{}{},
	}
	s.drainCtx, s.drain = context.WithCancel(context.Background())
	s.handler = s.logRequests(s.commonHeaders(s.newRouter()))
	return s
}

// Handler returns the complete HTTP handler (routes and middleware).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves the API on the listeners until ctx is cancelled or one of
// them fails, then shuts down: it stops accepting, ends the long-running
// streams (wait, attach, followed logs), closes hijacked connections and
// waits up to Options.ShutdownTimeout for the remaining requests. It
// closes the listeners. It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, listeners []net.Listener) error {
	if len(listeners) == 0 {
		return errors.New("api: no listeners")
	}
	errWriter := s.log.WriterLevel(logrus.DebugLevel)
	defer errWriter.Close()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(errWriter, "", 0),
	}

	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		s.log.WithField("addr", l.Addr().String()).Info("API listening")
		go func(l net.Listener) {
			err := srv.Serve(l)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}(l)
	}

	var serveErr error
	pending := len(listeners)
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		pending--
	}

	s.log.Debug("API server shutting down")
	// End streams and hijacked sessions first: http.Server.Shutdown waits
	// for neither the blocked handlers of open streams, nor (at all) for
	// hijacked connections.
	s.drain()
	s.closeHijacked()

	shutCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		s.log.WithError(err).Warn("API server: forcing close of remaining connections")
		srv.Close()
	}
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil && serveErr == nil {
			serveErr = err
		}
	}

	// Give hijacked handlers (whose connections are closed by now) a
	// chance to unwind, but never block shutdown on a stuck backend.
	for s.hijackedCount() > 0 {
		if shutCtx.Err() != nil {
			s.log.Warn("API server: attach sessions still running after shutdown timeout")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return serveErr
}

func (s *Server) trackHijacked(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.hijacked[c] = struct{}{}
		if s.drainCtx.Err() != nil {
			c.Close() // hijacked while shutting down
		}
	} else {
		delete(s.hijacked, c)
	}
}

func (s *Server) hijackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hijacked)
}

func (s *Server) closeHijacked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.hijacked {
		c.Close()
	}
}

// streamContext derives a context for a long-running stream: cancelled
// with the request or when the server starts shutting down.
func (s *Server) streamContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(s.drainCtx, cancel)
	return ctx, func() { stop(); cancel() }
}

// handlerFunc is the signature of every route handler. A returned error
// is written by writeError unless the response was already started.
type handlerFunc func(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error

// route is one entry of an area's route table (xxxRoutes); newRouter
// serves each with and without the /vN.NN prefix.
type route struct {
	method, path string
	h            handlerFunc
}

type apiVersionKey struct{}

// VersionFromContext returns the API version the request was served
// with (from the /v1.xx path prefix, else the default).
func VersionFromContext(ctx context.Context) string {
	v, _ := ctx.Value(apiVersionKey{}).(string)
	return v
}

const versionPrefix = "/v{version:[0-9.]+}"

func (s *Server) newRouter() *mux.Router {
	m := mux.NewRouter()
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errdefs.NotFound(errors.New("page not found")))
	})
	m.NotFoundHandler = notFound
	m.MethodNotAllowedHandler = notFound

	add := func(method, path string, h handlerFunc) {
		wrapped := s.wrap(h)
		methods := []string{method}
		if method == http.MethodGet && path == "/_ping" {
			methods = append(methods, http.MethodHead)
		}
		m.Path(versionPrefix + path).Methods(methods...).Handler(wrapped)
		m.Path(path).Methods(methods...).Handler(wrapped)
	}

	// Order matters: within an area the fixed paths come before the
	// {name:.*} patterns that also match them.
	for _, routes := range [][]route{
		s.systemRoutes(),     // system.go, events.go
		s.checkpointRoutes(), // checkpoints.go: before DELETE /containers/{name:.*}
		s.migrationRoutes(),  // migrate.go: before POST /containers/{name:.*}/...
		s.containerRoutes(),  // containers.go, attach.go, lifecycle.go, stats.go
		s.execRoutes(),       // exec.go
		s.imageRoutes(),      // images.go
		s.buildRoutes(),      // build.go
		s.volumeRoutes(),     // volumes.go, with /system/df
		s.archiveRoutes(),    // archive.go: cp, export, diff, commit
		s.networkRoutes(),    // networks.go
		s.pluginRoutes(),     // plugins.go: none installed
		s.swarmRoutes(),      // swarm.go: not part of a swarm
	} {
		for _, rt := range routes {
			add(rt.method, rt.path, rt.h)
		}
	}
	return m
}

// wrap checks the API version, parses the form and maps a handler's
// error to a response.
func (s *Server) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vars := mux.Vars(r)
		if vars == nil {
			vars = map[string]string{}
		}
		version := vars["version"]
		if version == "" {
			version = s.opts.APIVersion
		}
		if versions.LessThan(version, s.opts.MinAPIVersion) {
			s.writeError(w, r, errdefs.InvalidParameter(fmt.Errorf(
				"client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version",
				version, s.opts.MinAPIVersion)))
			return
		}
		if versions.GreaterThan(version, s.opts.APIVersion) {
			s.writeError(w, r, errdefs.InvalidParameter(fmt.Errorf(
				"client version %s is too new. Maximum supported API version is %s",
				version, s.opts.APIVersion)))
			return
		}
		if err := r.ParseForm(); err != nil {
			s.writeError(w, r, errdefs.InvalidParameter(err))
			return
		}
		ctx := context.WithValue(r.Context(), apiVersionKey{}, version)
		r = r.WithContext(ctx)
		if err := h(ctx, w, r, vars); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// commonHeaders sets the headers dockerd puts on every response.
func (s *Server) commonHeaders(next http.Handler) http.Handler {
	server := fmt.Sprintf("Docker/%s (%s)", s.opts.ServerVersion, runtime.GOOS)
	experimental := strconv.FormatBool(s.opts.Experimental)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Server", server)
		h.Set("Api-Version", s.opts.APIVersion)
		h.Set("Ostype", runtime.GOOS)
		h.Set("Docker-Experimental", experimental)
		next.ServeHTTP(w, r)
	})
}

// quietRoute tells whether a request is polled often enough to be logged
// at debug level only.
func quietRoute(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	return false
}

func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &responseRecorder{ResponseWriter: w}
		aborted := s.serveRecovering(next, rec, r)
		status := rec.statusCode()
		entry := s.log.WithFields(logrus.Fields{
			"method":   r.Method,
			"path":     r.URL.Path,
			"status":   status,
			"duration": time.Since(start).Round(time.Microsecond).String(),
		})
		switch {
		case status >= 500:
			entry.Warn("API request")
		case quietRoute(r):
			entry.Debug("API request")
		default:
			entry.Info("API request")
		}
		if aborted {
			panic(http.ErrAbortHandler) // net/http closes the connection, silently
		}
	})
}

// serveRecovering serves r and turns a handler's panic into an error
// logged with its stack (net/http would only print it to the server's
// debug-level log) and, if nothing was answered yet, a 500 with a
// message; it reports a response that had started (or a hijacked
// connection), which must be aborted.
func (s *Server) serveRecovering(next http.Handler, rec *responseRecorder, r *http.Request) (aborted bool) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			aborted = true
			return
		}
		s.log.WithFields(logrus.Fields{
			"method": r.Method,
			"path":   r.URL.Path,
			"panic":  fmt.Sprint(v),
			"stack":  string(debug.Stack()),
		}).Error("API handler panicked")
		if rec.started() {
			aborted = true
			return
		}
		writeJSON(rec, http.StatusInternalServerError, &dtypes.ErrorResponse{Message: fmt.Sprintf("internal error: %v", v)})
	}()
	next.ServeHTTP(rec, r)
	return false
}
