package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	dtypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/jevm/jevm/api/types/backend"
)

// attachLingerTimeout bounds how long a finished attach waits for the
// client to close its side before the connection is closed.
const attachLingerTimeout = 2 * time.Second

func (s *Server) postContainerAttach(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	name := vars["name"]
	hj, ok := w.(http.Hijacker)
	if !ok {
		return errdefs.InvalidParameter(fmt.Errorf("error attaching to container %s, hijack connection missing", name))
	}
	_, upgrade := r.Header["Upgrade"]
	version := VersionFromContext(ctx)

	// Not the request's cancellation: clients half-close their side right
	// away when they have no stdin, and net/http takes that EOF for a
	// disconnect. A client that is really gone is noticed by failing
	// writes (or a reset while reading its input) instead.
	ctx, cancel := s.streamContext(context.WithoutCancel(ctx))
	defer cancel()

	cfg := &backend.AttachConfig{
		UseStdin:   boolValue(r, "stdin"),
		UseStdout:  boolValue(r, "stdout"),
		UseStderr:  boolValue(r, "stderr"),
		Logs:       boolValue(r, "logs"),
		Stream:     boolValue(r, "stream"),
		DetachKeys: r.Form.Get("detachKeys"),
	}
	h := s.newHijacker(w, hj, upgrade, version, cancel, cfg.UseStdin, cfg.UseStdout, cfg.UseStderr)
	cfg.GetStreams = h.getStreams

	err := s.backend.ContainerAttach(ctx, name, cfg)

	if !h.hijacked() {
		// Not hijacked yet: an ordinary HTTP error response.
		if err == nil {
			err = errdefs.System(fmt.Errorf("attach to %s: backend returned without attaching", name))
		}
		return err
	}
	if err != nil {
		s.log.WithError(err).WithField("container", name).Warn("attach ended with error")
		if h.multiplexed && ctx.Err() == nil {
			// Shown by the client's stdcopy as "error from daemon in stream".
			_, _ = stdcopy.NewStdWriter(connWriter{h.sess}, stdcopy.Systemerr).Write([]byte(err.Error()))
		}
	}
	h.finish()
	return nil
}

// hijacker takes over a request's connection for a raw or multiplexed
// stream (attach, exec start) when the backend asks for the streams.
type hijacker struct {
	s                              *Server
	w                              http.ResponseWriter
	hj                             http.Hijacker
	upgrade                        bool
	version                        string
	cancel                         context.CancelFunc
	useStdin, useStdout, useStderr bool

	mu          sync.Mutex
	sess        *attachSession
	multiplexed bool
}

func (s *Server) newHijacker(w http.ResponseWriter, hj http.Hijacker, upgrade bool, version string, cancel context.CancelFunc, useStdin, useStdout, useStderr bool) *hijacker {
	return &hijacker{s: s, w: w, hj: hj, upgrade: upgrade, version: version, cancel: cancel,
		useStdin: useStdin, useStdout: useStdout, useStderr: useStderr}
}

// getStreams is the GetStreams callback of AttachConfig and
// ExecStartConfig: it hijacks the connection, writes the response head
// (101 UPGRADED if the client asked for an upgrade, else 200) and returns
// the client's streams, stdout and stderr in stdcopy framing when mux.
func (h *hijacker) getStreams(mux bool) (io.ReadCloser, io.Writer, io.Writer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sess != nil {
		return nil, nil, nil, errors.New("attach: GetStreams called twice")
	}
	conn, brw, err := h.hj.Hijack()
	if err != nil {
		return nil, nil, nil, err
	}
	sess := &attachSession{conn: conn, br: brw.Reader, cancel: h.cancel}
	h.sess = sess
	h.multiplexed = mux
	h.s.trackHijacked(conn, true)
	_ = conn.SetDeadline(time.Time{})

	contentType := dtypes.MediaTypeRawStream
	if mux && versions.GreaterThanOrEqualTo(h.version, "1.42") {
		contentType = dtypes.MediaTypeMultiplexedStream
	}
	hdr := h.w.Header().Clone()
	hdr.Set("Content-Type", contentType)
	var head bytes.Buffer
	status := http.StatusOK
	if h.upgrade {
		status = http.StatusSwitchingProtocols
		hdr.Set("Connection", "Upgrade")
		hdr.Set("Upgrade", "tcp")
		head.WriteString("HTTP/1.1 101 UPGRADED\r\n")
	} else {
		head.WriteString("HTTP/1.1 200 OK\r\n")
	}
	_ = hdr.Write(&head)
	head.WriteString("\r\n")
	if rec, ok := h.w.(*responseRecorder); ok {
		rec.setHijackStatus(status)
	}
	if _, err := sess.write(head.Bytes()); err != nil {
		return nil, nil, nil, err
	}

	var stdin io.ReadCloser = eofReader{}
	if h.useStdin {
		stdin = stdinReader{sess}
	} else {
		// Nobody reads the client's side: consume it so that a reset
		// (client gone) is noticed and unread input cannot turn our
		// close into a RST.
		go sess.discardInput()
	}
	var stdout, stderr io.Writer = io.Discard, io.Discard
	out := connWriter{sess}
	if h.useStdout {
		stdout = out
		if mux {
			stdout = stdcopy.NewStdWriter(out, stdcopy.Stdout)
		}
	}
	if h.useStderr {
		stderr = out
		if mux {
			stderr = stdcopy.NewStdWriter(out, stdcopy.Stderr)
		}
	}
	return stdin, stdout, stderr, nil
}

// hijacked tells whether getStreams took the connection.
func (h *hijacker) hijacked() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sess != nil
}

// finish ends a hijacked session (see attachSession.finish).
func (h *hijacker) finish() {
	h.sess.finish(attachLingerTimeout)
	h.s.trackHijacked(h.sess.conn, false)
}

// attachSession is the hijacked connection of one attach.
type attachSession struct {
	conn   net.Conn
	br     *bufio.Reader // may hold input that arrived with the request
	cancel context.CancelFunc

	rmu         sync.Mutex // serializes reads of br
	stdinClosed atomic.Bool

	wmu  sync.Mutex // serializes writes (stdout and stderr frames)
	werr error
}

func (a *attachSession) write(p []byte) (int, error) {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if a.werr != nil {
		return 0, a.werr
	}
	n, err := a.conn.Write(p)
	if err != nil {
		a.werr = err
		a.cancel() // client gone
	}
	return n, err
}

func (a *attachSession) readStdin(p []byte) (int, error) {
	if a.stdinClosed.Load() {
		return 0, io.EOF
	}
	a.rmu.Lock()
	defer a.rmu.Unlock()
	n, err := a.br.Read(p)
	if err != nil && a.stdinClosed.Load() {
		// Woken up by Close (read deadline): report a clean end.
		err = io.EOF
	}
	return n, err
}

func (a *attachSession) closeStdin() {
	if !a.stdinClosed.Swap(true) {
		_ = a.conn.SetReadDeadline(time.Now())
	}
}

func (a *attachSession) discardInput() {
	buf := make([]byte, 4096)
	for {
		a.rmu.Lock()
		_, err := a.br.Read(buf)
		a.rmu.Unlock()
		if err != nil {
			var ne net.Error
			if !errors.Is(err, io.EOF) && !(errors.As(err, &ne) && ne.Timeout()) && !a.stdinClosed.Load() {
				a.cancel()
			}
			return
		}
	}
}

// finish ends the session: our write side is shut so the client reads
// EOF, then we give the client a moment to close its side (so that no
// unread input turns the close into a reset that could destroy output
// still in flight), then close.
func (a *attachSession) finish(linger time.Duration) {
	a.wmu.Lock()
	cw, canCloseWrite := a.conn.(interface{ CloseWrite() error })
	if canCloseWrite {
		_ = cw.CloseWrite()
	}
	a.werr = net.ErrClosed
	a.wmu.Unlock()

	if canCloseWrite {
		a.stdinClosed.Store(true)
		_ = a.conn.SetReadDeadline(time.Now().Add(linger))
		a.rmu.Lock()
		_, _ = io.Copy(io.Discard, a.br)
		a.rmu.Unlock()
	}
	_ = a.conn.Close()
}

type stdinReader struct{ a *attachSession }

func (r stdinReader) Read(p []byte) (int, error) { return r.a.readStdin(p) }
func (r stdinReader) Close() error               { r.a.closeStdin(); return nil }

type connWriter struct{ a *attachSession }

func (w connWriter) Write(p []byte) (int, error) { return w.a.write(p) }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
func (eofReader) Close() error             { return nil }
