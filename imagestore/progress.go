package imagestore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/go-units"
)

// progressInterval is the minimum time between two progress updates of one
// layer (the last update of a transfer is always sent).
const progressInterval = 100 * time.Millisecond

// progressOut writes newline-delimited jsonmessage.JSONMessage values, the
// way dockerd's stream formatter does, from any number of goroutines.
type progressOut struct {
	mu    sync.Mutex
	w     io.Writer
	wrote bool
	err   error
	last  map[string]time.Time
	lastN map[string]int64 // last current value sent, per id and action
}

func newProgressOut(w io.Writer) *progressOut {
	if w == nil {
		w = io.Discard
	}
	return &progressOut{w: w, last: map[string]time.Time{}, lastN: map[string]int64{}}
}

type flusher interface{ Flush() }

func (p *progressOut) write(m *jsonmessage.JSONMessage) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	b = append(b, '\r', '\n')
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wrote = true
	if p.err != nil {
		return // the client went away; keep going, quietly
	}
	if _, err := p.w.Write(b); err != nil {
		p.err = err
		return
	}
	if f, ok := p.w.(flusher); ok {
		f.Flush()
	}
}

// Wrote reports whether anything was written.
func (p *progressOut) Wrote() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wrote
}

// status writes a plain status line ({"status":...,"id":...}).
func (p *progressOut) status(id, msg string) {
	p.write(&jsonmessage.JSONMessage{ID: id, Status: msg})
}

// update writes a per-layer action with an empty progress detail, as
// dockerd does for "Pulling fs layer", "Download complete" and the like.
func (p *progressOut) update(id, action string) {
	p.mu.Lock()
	delete(p.last, id)
	p.mu.Unlock()
	p.write(&jsonmessage.JSONMessage{ID: id, Status: action, Progress: &jsonmessage.JSONProgress{}})
}

// progress writes a throttled progress bar update for a layer.
func (p *progressOut) progress(id, action string, current, total int64, start time.Time) {
	now := time.Now()
	p.mu.Lock()
	if current < total || total <= 0 {
		if t, ok := p.last[id]; ok && now.Sub(t) < progressInterval {
			p.mu.Unlock()
			return
		}
	}
	key := id + "\x00" + action
	if n, ok := p.lastN[key]; ok && n == current {
		p.mu.Unlock()
		return
	}
	p.lastN[key] = current
	p.last[id] = now
	p.mu.Unlock()
	jp := &jsonmessage.JSONProgress{Current: current, Total: total}
	if !start.IsZero() {
		jp.Start = start.Unix()
	}
	p.write(&jsonmessage.JSONMessage{
		ID:              id,
		Status:          action,
		Progress:        jp,
		ProgressMessage: progressBar(current, total),
	})
}

// progressBar renders the bar the old "progress" field carries, the way
// jsonmessage does for a wide terminal (without touching any terminal).
func progressBar(current, total int64) string {
	if current <= 0 && total <= 0 {
		return ""
	}
	if total <= 0 {
		return fmt.Sprintf("%8v", units.HumanSize(float64(current)))
	}
	pct := int(float64(current)/float64(total)*100) / 2
	if pct > 50 {
		pct = 50
	}
	bar := "[" + strings.Repeat("=", pct) + ">" + strings.Repeat(" ", 50-pct) + "] "
	if current > total {
		return bar + fmt.Sprintf("%8v", units.HumanSize(float64(current)))
	}
	return bar + fmt.Sprintf("%8v/%v", units.HumanSize(float64(current)), units.HumanSize(float64(total)))
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r  io.Reader
	n  int64
	fn func(n int64)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.n += int64(n)
		if c.fn != nil {
			c.fn(c.n)
		}
	}
	return n, err
}

// retryCountdown shows dockerd's "Retrying in N seconds" for a layer whose
// transfer (pull or push) failed, one second at a time; it returns false
// if ctx ends first.
func (p *progressOut) retryCountdown(ctx context.Context, id string, seconds int) bool {
	for d := seconds; d > 0; d-- {
		plural := "s"
		if d == 1 {
			plural = ""
		}
		p.update(id, fmt.Sprintf("Retrying in %d second%s", d, plural))
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return false
		}
	}
	return true
}
