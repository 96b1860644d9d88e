package api

import (
	"context"
	"io"
	"net/http"
	"sync"

	"github.com/docker/docker/api/types/versions"
	"golang.org/x/net/websocket"

	"github.com/jevm/jevm/api/types/backend"
)

// getContainerAttachWS: GET /containers/{name}/attach/ws, attach over a
// websocket (what browser-based tools use). The streams are never
// multiplexed: stdin arrives in the client's frames, output leaves in ours
// (binary frames from API 1.28, text before), as dockerd does with
// golang.org/x/net/websocket, which this uses too.
func (s *Server) getContainerAttachWS(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	version := VersionFromContext(ctx)
	useStdin, useStdout, useStderr := true, true, true
	if versions.GreaterThanOrEqualTo(version, "1.42") {
		useStdin, useStdout, useStderr = boolValue(r, "stdin"), boolValue(r, "stdout"), boolValue(r, "stderr")
	}
	ctx, cancel := s.streamContext(context.WithoutCancel(ctx))
	defer cancel()

	done := make(chan struct{})
	var served sync.WaitGroup
	var once sync.Once
	var conn *websocket.Conn
	getStreams := func(bool) (io.ReadCloser, io.Writer, io.Writer, error) {
		got := make(chan *websocket.Conn, 1)
		srv := websocket.Server{Handler: func(c *websocket.Conn) {
			got <- c
			<-done // the handshake's handler owns the connection until the attach ends
		}}
		served.Add(1)
		go func() {
			defer served.Done()
			srv.ServeHTTP(w, r)
			once.Do(func() { close(got) })
		}()
		c, ok := <-got
		if !ok {
			return nil, nil, nil, io.ErrUnexpectedEOF // the handshake failed; ServeHTTP answered
		}
		if versions.GreaterThanOrEqualTo(version, "1.28") {
			c.PayloadType = websocket.BinaryFrame
		}
		conn = c
		return c, c, c, nil
	}
	err := s.backend.ContainerAttach(ctx, vars["name"], &backend.AttachConfig{
		UseStdin: useStdin, UseStdout: useStdout, UseStderr: useStderr,
		Logs:       boolValue(r, "logs"),
		Stream:     boolValue(r, "stream"),
		DetachKeys: r.Form.Get("detachKeys"),
		GetStreams: getStreams,
	})
	close(done)
	if conn == nil {
		served.Wait()
		return err // not upgraded: an ordinary error response
	}
	if err != nil {
		s.log.WithError(err).WithField("container", vars["name"]).Warn("websocket attach ended with error")
	}
	conn.Close()
	served.Wait()
	return nil
}
