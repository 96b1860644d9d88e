package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	dtypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
)

// statusFromError maps a backend error to an HTTP status the way dockerd
// does (api/server/httpstatus): by the errdefs kind anywhere in the chain.
func statusFromError(err error) int {
	switch {
	case errdefs.IsNotFound(err):
		return http.StatusNotFound
	case errdefs.IsInvalidParameter(err):
		return http.StatusBadRequest
	case errdefs.IsConflict(err):
		return http.StatusConflict
	case errdefs.IsUnauthorized(err):
		return http.StatusUnauthorized
	case errdefs.IsUnavailable(err):
		return http.StatusServiceUnavailable
	case errdefs.IsForbidden(err):
		return http.StatusForbidden
	case errdefs.IsNotModified(err):
		return http.StatusNotModified
	case errdefs.IsNotImplemented(err):
		return http.StatusNotImplemented
	default:
		// System, Unknown, DataLoss, Cancelled, Deadline and untyped
		// errors: dockerd answers 500 for all of them.
		return http.StatusInternalServerError
	}
}

// writeError is the one place where an error becomes a response:
// status from the errdefs kind, body {"message": "..."}. If the handler
// already started the response (a stream), it can only be logged.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusFromError(err)
	entry := s.log.WithError(err).WithFields(map[string]any{"method": r.Method, "path": r.URL.Path, "status": status})
	if status >= 500 {
		entry.Error("API handler failed")
	} else {
		entry.Debug("API handler error")
	}
	if rec, ok := w.(*responseRecorder); ok && rec.started() {
		return
	}
	if status == http.StatusNotModified {
		// 304 carries no body.
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, &dtypes.ErrorResponse{Message: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return encodeJSON(w, v)
}

// encodeJSON writes v as one line of JSON.
func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// boolValue parses a boolean query parameter as dockerd does: absent,
// "", "0", "no", "false" and "none" are false, anything else true.
func boolValue(r *http.Request, k string) bool {
	switch strings.ToLower(strings.TrimSpace(r.Form.Get(k))) {
	case "", "0", "no", "false", "none":
		return false
	}
	return true
}

// intValue parses an optional integer query parameter.
func intValue(r *http.Request, k string) (int, bool, error) {
	v := r.Form.Get(k)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, false, errdefs.InvalidParameter(fmt.Errorf("invalid value for %s: %q: must be an integer", k, v))
	}
	return n, true, nil
}

// checkForJSON requires a JSON content type when there is a body.
func checkForJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" && (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0) {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return errdefs.InvalidParameter(fmt.Errorf("unsupported Content-Type header (%s): must be 'application/json'", ct))
	}
	return nil
}

// readJSON reads a request body that must be JSON into v, with dockerd's
// errors: 400 for another content type (checkForJSON), for malformed JSON,
// an empty body or content after the value (decodeJSON).
func readJSON(r *http.Request, v any) error {
	if err := checkForJSON(r); err != nil {
		return err
	}
	return decodeJSON(r.Body, v)
}

// jsonBodyHandler is a handler of a JSON request body decoded into a T.
type jsonBodyHandler[T any] func(ctx context.Context, w http.ResponseWriter, vars map[string]string, req *T) error

// withJSONBody is the handler of the routes that decode a JSON body into a
// request type, then call the backend: it reads the body with readJSON and
// calls h with it only if that succeeded.
func withJSONBody[T any](h jsonBodyHandler[T]) handlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
		var req T
		if err := readJSON(r, &req); err != nil {
			return err
		}
		return h(ctx, w, vars, &req)
	}
}

// decodeJSON decodes exactly one JSON value from a request body.
func decodeJSON(body io.Reader, out any) error {
	if body == nil {
		body = http.NoBody
	}
	dec := json.NewDecoder(body)
	if err := dec.Decode(out); err != nil {
		if errors.Is(err, io.EOF) {
			return errdefs.InvalidParameter(errors.New("invalid JSON: got EOF while reading request body"))
		}
		return errdefs.InvalidParameter(fmt.Errorf("invalid JSON: %w", err))
	}
	if dec.More() {
		return errdefs.InvalidParameter(errors.New("unexpected content after JSON"))
	}
	return nil
}

// responseRecorder remembers the status for the request log and whether
// the response was started; it passes Flush and Hijack through.
type responseRecorder struct {
	http.ResponseWriter
	mu       sync.Mutex
	status   int
	hijacked bool
}

func (rw *responseRecorder) setStatus(code int) {
	rw.mu.Lock()
	if rw.status == 0 {
		rw.status = code
	}
	rw.mu.Unlock()
}

func (rw *responseRecorder) WriteHeader(code int) {
	rw.setStatus(code)
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *responseRecorder) Write(p []byte) (int, error) {
	rw.setStatus(http.StatusOK)
	return rw.ResponseWriter.Write(p)
}

func (rw *responseRecorder) Flush() {
	rw.setStatus(http.StatusOK)
	if f, ok := rw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (rw *responseRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := rw.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	c, brw, err := hj.Hijack()
	if err == nil {
		rw.mu.Lock()
		rw.hijacked = true
		rw.mu.Unlock()
	}
	return c, brw, err
}

// setHijackStatus records the status line written by hand on a hijacked
// connection.
func (rw *responseRecorder) setHijackStatus(code int) { rw.setStatus(code) }

func (rw *responseRecorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

func (rw *responseRecorder) started() bool {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.status != 0 || rw.hijacked
}

func (rw *responseRecorder) statusCode() int {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.status == 0 {
		return http.StatusOK
	}
	return rw.status
}

// streamWriter is handed to a backend that streams its answer: the 200
// header is only written with the first byte, so an error before any
// output can still get its own status; every write is flushed.
type streamWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	started bool
}

func (sw *streamWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if !sw.started {
		sw.started = true
		sw.w.WriteHeader(http.StatusOK)
	}
	n, err := sw.w.Write(p)
	if f, ok := sw.w.(http.Flusher); ok {
		f.Flush()
	}
	return n, err
}

func (sw *streamWriter) Started() bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.started
}

// finish reports err in the stream as a JSON message if output already
// started, as dockerd does; otherwise it returns err for writeError.
func (sw *streamWriter) finish(err error) error {
	if err == nil {
		return nil
	}
	if !sw.Started() {
		return err
	}
	var jerr *jsonmessage.JSONError
	if !errors.As(err, &jerr) {
		jerr = &jsonmessage.JSONError{Message: err.Error()}
	}
	b, mErr := json.Marshal(&jsonmessage.JSONMessage{Error: jerr, ErrorMessage: err.Error()})
	if mErr != nil {
		b = []byte(`{"error":"format error"}`)
	}
	sw.Write(append(b, '\r', '\n'))
	return nil
}
