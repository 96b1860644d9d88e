package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/jevm/jevm/api"
)

// The container log is dockerd's json-file format, one JSON object per
// line, so that it survives the VM and the daemon and tools that read
// dockerd's logs can read ours.
type logEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// maxLogLine is where a line without newline is cut into a partial entry,
// as dockerd does at 16 KiB.
const maxLogLine = 16 << 10

// logWriter appends a container's output to its log file, one entry per
// line. It is safe for concurrent use by the stdout and stderr streams.
type logWriter struct {
	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	partial map[string][]byte
	now     func() time.Time
}

func openLogWriter(path string) (*logWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return &logWriter{f: f, w: bufio.NewWriter(f), partial: map[string][]byte{}, now: time.Now}, nil
}

// streamWriter returns an io.Writer that logs to stream ("stdout"/"stderr").
func (l *logWriter) streamWriter(stream string) io.Writer {
	return writerFunc(func(p []byte) (int, error) { return len(p), l.write(stream, p) })
}

func (l *logWriter) write(stream string, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := append(l.partial[stream], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		if err := l.entry(stream, buf[:i+1]); err != nil {
			return err
		}
		buf = buf[i+1:]
	}
	for len(buf) >= maxLogLine {
		if err := l.entry(stream, buf[:maxLogLine]); err != nil {
			return err
		}
		buf = buf[maxLogLine:]
	}
	l.partial[stream] = append([]byte(nil), buf...)
	// Flush at line granularity so `logs -f` readers see output promptly.
	return l.w.Flush()
}

func (l *logWriter) entry(stream string, line []byte) error {
	b, err := json.Marshal(logEntry{Log: string(line), Stream: stream, Time: l.now().UTC()})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = l.w.Write(b)
	return err
}

// Close writes out partial lines and closes the file.
func (l *logWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, stream := range []string{"stdout", "stderr"} {
		if len(l.partial[stream]) > 0 {
			_ = l.entry(stream, l.partial[stream])
			delete(l.partial, stream)
		}
	}
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// logReadOptions are the parsed query options of /containers/{id}/logs.
type logReadOptions struct {
	Stdout, Stderr bool
	Since, Until   time.Time // zero: unbounded
	Tail           int       // -1: all
	Follow         bool
}

// readLog sends the log's entries matching opts to out. With Follow it keeps
// reading new entries until stillRunning reports false (then drains what is
// left) or ctx is done.
func readLog(ctx context.Context, path string, opts logReadOptions, stillRunning func() bool, out chan<- api.LogMessage) {
	defer close(out)
	f, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			sendLog(ctx, out, api.LogMessage{Err: err})
		}
		if !opts.Follow {
			return
		}
		// The log appears on first start; wait for it.
		for f == nil {
			if !stillRunning() || !sleepCtx(ctx, 100*time.Millisecond) {
				return
			}
			f, _ = os.Open(path)
		}
	}
	defer f.Close()

	accept := func(e *logEntry) bool {
		if (e.Stream == "stdout" && !opts.Stdout) || (e.Stream == "stderr" && !opts.Stderr) {
			return false
		}
		if !opts.Since.IsZero() && e.Time.Before(opts.Since) {
			return false
		}
		if !opts.Until.IsZero() && e.Time.After(opts.Until) {
			return false
		}
		return true
	}

	r := bufio.NewReaderSize(f, 64<<10)
	// The backlog: all of it, or only the last Tail entries.
	var backlog []logEntry
	var pending []byte
	readLines := func(emit func(logEntry) bool) bool {
		for {
			chunk, err := r.ReadBytes('\n')
			pending = append(pending, chunk...)
			if err != nil {
				return true // at EOF; keep a partial line for later
			}
			var e logEntry
			line := pending
			pending = nil
			if json.Unmarshal(line, &e) != nil || !accept(&e) {
				continue
			}
			if !emit(e) {
				return false
			}
		}
	}
	readLines(func(e logEntry) bool {
		backlog = append(backlog, e)
		if opts.Tail >= 0 && len(backlog) > opts.Tail {
			backlog = backlog[1:]
		}
		return true
	})
	emit := func(e logEntry) bool {
		if !opts.Until.IsZero() && e.Time.After(opts.Until) {
			return false
		}
		return sendLog(ctx, out, api.LogMessage{Stream: e.Stream, Line: []byte(e.Log), Timestamp: e.Time})
	}
	for _, e := range backlog {
		if !emit(e) {
			return
		}
	}
	if !opts.Follow {
		return
	}
	for {
		running := stillRunning()
		if !readLines(emit) {
			return
		}
		if !running {
			return // drained everything written before the exit
		}
		if !opts.Until.IsZero() && time.Now().After(opts.Until) {
			return
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return
		}
	}
}

func sendLog(ctx context.Context, out chan<- api.LogMessage, m api.LogMessage) bool {
	select {
	case out <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
