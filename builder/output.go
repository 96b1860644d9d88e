package builder

import (
	"encoding/json"
	"io"
	"sync"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/pkg/jsonmessage"
)

// output writes dockerd's build message stream: {"stream": ...} for text,
// {"aux": {"ID": ...}} for the image of each stage. With quiet (q=1), the
// text is suppressed and only the final image ID is written.
type output struct {
	mu    sync.Mutex
	w     io.Writer
	quiet bool
}

func (o *output) write(m *jsonmessage.JSONMessage) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.Write(append(b, '\r', '\n'))
}

// stream writes text unless the build is quiet.
func (o *output) stream(s string) {
	if o.quiet || s == "" {
		return
	}
	o.write(&jsonmessage.JSONMessage{Stream: s})
}

// forceStream writes text even when the build is quiet.
func (o *output) forceStream(s string) { o.write(&jsonmessage.JSONMessage{Stream: s}) }

func (o *output) aux(imageID string) {
	b, err := json.Marshal(build.Result{ID: imageID})
	if err != nil {
		return
	}
	raw := json.RawMessage(b)
	o.write(&jsonmessage.JSONMessage{Aux: &raw})
}

// streamWriter is an io.Writer of stream messages (a RUN step's output).
func (o *output) streamWriter() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		o.stream(string(p))
		return len(p), nil
	})
}

// raw is where a pull's progress messages go: they are JSON messages
// already; a quiet build drops them.
func (o *output) raw() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		if o.quiet {
			return len(p), nil
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.w.Write(p)
	})
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
