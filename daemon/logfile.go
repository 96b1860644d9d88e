package daemon

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/api/types/backend"
)

// The container log is dockerd's json-file format, one JSON object per
// line, so that it survives the VM and the daemon and tools that read
// dockerd's logs can read ours. The logging drivers and their options are
// in logconfig.go; json-file and local both store this format, none
// stores nothing.
type logEntry struct {
	Log    string            `json:"log"`
	Stream string            `json:"stream"`
	Attrs  map[string]string `json:"attrs,omitempty"`
	Time   time.Time         `json:"time"`
}

// maxLogLine is where a line without newline is cut into a partial entry,
// as dockerd does at 16 KiB.
const maxLogLine = 16 << 10

// errReadLogsNotSupported is dockerd's answer to `docker logs` (and attach
// with logs) on a container whose driver stores nothing: 501.
var errReadLogsNotSupported = errdefs.NotImplemented(errors.New("configured logging driver does not support reading"))

// logFileState coordinates the writer and the readers of one log file
// (by path): the writer rotates under mu, readers list and open the files
// under mu's read lock, so they always see a consistent set of files, and
// gen counts the rotations, so that a following reader knows how many
// files it has to catch up on.
type logFileState struct {
	mu   sync.RWMutex
	gen  uint64
	refs int // guarded by logFiles.mu
}

var logFiles = struct {
	mu sync.Mutex
	m  map[string]*logFileState
}{m: map[string]*logFileState{}}

func acquireLogFile(path string) *logFileState {
	logFiles.mu.Lock()
	defer logFiles.mu.Unlock()
	s := logFiles.m[path]
	if s == nil {
		s = &logFileState{}
		logFiles.m[path] = s
	}
	s.refs++
	return s
}

func releaseLogFile(path string, s *logFileState) {
	logFiles.mu.Lock()
	defer logFiles.mu.Unlock()
	if s.refs--; s.refs == 0 && logFiles.m[path] == s {
		delete(logFiles.m, path)
	}
}

// rotatedLogName is the i-th rotated file: path.1 is the newest.
func rotatedLogName(path string, i int, ext string) string {
	return fmt.Sprintf("%s.%d%s", path, i, ext)
}

// logWriter appends a container's output to its log file, one entry per
// line, rotating the file as the driver's options say. It is safe for
// concurrent use by the stdout and stderr streams.
type logWriter struct {
	mu      sync.Mutex
	discard bool // driver none
	path    string
	set     logSettings
	attrs   map[string]string // json-file's "attrs" of every entry
	state   *logFileState
	f       *os.File // nil after a failed rotation: reopened on the next entry
	w       *bufio.Writer
	size    int64 // of the current file, buffered bytes included
	last    time.Time
	partial map[string][]byte
	now     func() time.Time
	// compressing is closed when the compression of the last rotated
	// file is done; the next rotation waits for it.
	compressing chan struct{}
	closed      bool
}

// openContainerLog opens c's log with c's logging driver and options.
func openContainerLog(c *Container) (*logWriter, error) {
	lc := c.logConfig()
	set, err := parseLogSettings(lc.Type, lc.Config)
	if err != nil {
		return nil, fmt.Errorf("failed to initialize logging driver: %w", err)
	}
	if set.driver == logDriverNone {
		return &logWriter{discard: true}, nil
	}
	var attrs map[string]string
	if set.driver == logDriverJSONFile {
		if attrs, err = set.logAttrs(newLogTagInfo(c)); err != nil {
			return nil, fmt.Errorf("failed to initialize logging driver: %w", err)
		}
	}
	path := c.logFilePath()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return newLogWriter(path, set, attrs)
}

func newLogWriter(path string, set logSettings, attrs map[string]string) (*logWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &logWriter{
		path: path, set: set, attrs: attrs, state: acquireLogFile(path),
		f: f, w: bufio.NewWriter(f), size: fi.Size(),
		partial: map[string][]byte{}, now: time.Now,
	}
	// A rotated file that a daemon crash left uncompressed.
	if set.compress && set.maxFiles > 1 {
		if _, err := os.Stat(path + ".1"); err == nil {
			l.startCompression(path+".1", time.Time{})
		}
	}
	return l, nil
}

func (l *logWriter) write(stream string, p []byte) error {
	if l.discard {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return os.ErrClosed
	}
	var errs []error
	buf := append(l.partial[stream], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		errs = append(errs, l.entry(stream, buf[:i+1]))
		buf = buf[i+1:]
	}
	for len(buf) >= maxLogLine {
		errs = append(errs, l.entry(stream, buf[:maxLogLine]))
		buf = buf[maxLogLine:]
	}
	l.partial[stream] = append([]byte(nil), buf...)
	// Flush at line granularity so `logs -f` readers see output promptly.
	if l.f != nil {
		errs = append(errs, l.w.Flush())
	}
	return errors.Join(errs...)
}

// entry writes one entry, rotating first when it would take the current
// file past max-size (a file holds at least one entry, however long).
// Callers hold l.mu.
func (l *logWriter) entry(stream string, line []byte) error {
	t := l.now().UTC()
	b, err := json.Marshal(logEntry{Log: string(line), Stream: stream, Attrs: l.attrs, Time: t})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	var rotErr error
	if l.set.maxSize >= 0 && l.size > 0 && l.size+int64(len(b)) > l.set.maxSize {
		if rotErr = l.rotate(); rotErr != nil {
			rotErr = fmt.Errorf("rotate container log: %w", rotErr)
		}
	}
	if l.f == nil {
		if err := l.reopen(); err != nil {
			return errors.Join(rotErr, err)
		}
	}
	n, err := l.w.Write(b)
	l.size += int64(n)
	l.last = t
	return errors.Join(rotErr, err)
}

// rotate moves the current file to path.1 (path.1 to path.2, ..., the
// oldest beyond max-file goes), as dockerd's log file does, or with
// max-file 1 drops it; then starts a new current file and, with compress,
// gzips path.1 to path.1.gz in the background. Readers that have the old
// file open keep reading it. Callers hold l.mu.
func (l *logWriter) rotate() error {
	var errs []error
	if l.f != nil {
		errs = append(errs, l.w.Flush(), l.f.Close())
		l.f = nil
	}
	l.waitCompression()
	ext := ""
	if l.set.compress {
		ext = ".gz"
	}
	l.state.mu.Lock()
	if l.set.maxFiles < 2 {
		errs = append(errs, removeIfExists(l.path))
	} else {
		errs = append(errs, removeIfExists(rotatedLogName(l.path, l.set.maxFiles-1, ext)))
		for i := l.set.maxFiles - 1; i > 1; i-- {
			errs = append(errs, renameIfExists(rotatedLogName(l.path, i-1, ext), rotatedLogName(l.path, i, ext)))
		}
		errs = append(errs, renameIfExists(l.path, l.path+".1"))
	}
	l.state.gen++
	// Truncate anyway, in case the file could not be moved away.
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o640)
	l.state.mu.Unlock()
	l.size = 0
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	l.f = f
	l.w.Reset(f)
	if l.set.compress && l.set.maxFiles > 1 {
		l.startCompression(l.path+".1", l.last)
	}
	return errors.Join(errs...)
}

// reopen opens the current file again after a failed rotation.
func (l *logWriter) reopen() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	l.w.Reset(f)
	return nil
}

func (l *logWriter) startCompression(name string, last time.Time) {
	done := make(chan struct{})
	l.compressing = done
	go func() {
		defer close(done)
		if err := compressLogFile(name, last); err != nil {
			logrus.WithError(err).WithField("file", name).Warn("compress rotated container log")
		}
	}()
}

func (l *logWriter) waitCompression() {
	if l.compressing != nil {
		<-l.compressing
		l.compressing = nil
	}
}

// gzipLogMeta is what dockerd puts in the gzip header of a rotated file:
// the time of its last entry, so readers with --since can skip it.
type gzipLogMeta struct {
	LastTime time.Time `json:"lastTime,omitempty"`
}

// compressLogFile writes name.gz and then removes name; readers prefer
// name, so at every moment one of them is complete.
func compressLogFile(name string, last time.Time) (retErr error) {
	in, err := os.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(name+".gz", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); retErr == nil {
			retErr = cerr
		}
		if retErr != nil {
			_ = os.Remove(name + ".gz")
			return
		}
		retErr = removeIfExists(name)
	}()
	zw := gzip.NewWriter(out)
	if !last.IsZero() {
		zw.Header.Extra, _ = json.Marshal(gzipLogMeta{LastTime: last})
	}
	if _, err := io.Copy(zw, in); err != nil {
		return err
	}
	return zw.Close()
}

func removeIfExists(name string) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func renameIfExists(from, to string) error {
	if err := os.Rename(from, to); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Close writes out partial lines and closes the file.
func (l *logWriter) Close() error {
	if l.discard {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	for _, stream := range []string{"stdout", "stderr"} {
		if len(l.partial[stream]) > 0 {
			_ = l.entry(stream, l.partial[stream])
			delete(l.partial, stream)
		}
	}
	var err error
	if l.f != nil {
		err = l.w.Flush()
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
		l.f = nil
	}
	l.waitCompression()
	releaseLogFile(l.path, l.state)
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

// logSource is one open file of a log: the current one, a rotated one or
// a gzipped rotated one.
type logSource struct {
	r       *bufio.Reader
	closers []io.Closer
	pending []byte // a line not yet complete at EOF
}

func (s *logSource) close() {
	if s == nil {
		return
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i].Close()
	}
}

func closeSources(srcs []*logSource) {
	for _, s := range srcs {
		s.close()
	}
}

// each decodes the entries up to EOF and hands those accept takes to emit;
// false when emit wants no more. A line that is not complete at EOF is
// kept for the next call (the writer may be in the middle of it).
func (s *logSource) each(accept func(*logEntry) bool, emit func(logEntry) bool) bool {
	if s == nil || s.r == nil {
		return true
	}
	for {
		chunk, err := s.r.ReadBytes('\n')
		s.pending = append(s.pending, chunk...)
		if err != nil {
			return true
		}
		var e logEntry
		line := s.pending
		s.pending = nil
		if json.Unmarshal(line, &e) != nil || !accept(&e) {
			continue
		}
		if !emit(e) {
			return false
		}
	}
}

// openLogPlain opens a file of the log; nil if it does not exist.
func openLogPlain(name string) (*logSource, error) {
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return &logSource{r: bufio.NewReaderSize(f, 64<<10), closers: []io.Closer{f}}, nil
}

// openLogRotated opens the i-th rotated file, plain or gzipped (plain
// first: it is complete until its compression is); nil if neither exists.
// A gzipped file whose last entry is before since is skipped unread.
func openLogRotated(path string, i int, since time.Time) (*logSource, error) {
	if src, err := openLogPlain(rotatedLogName(path, i, "")); src != nil || err != nil {
		return src, err
	}
	f, err := os.Open(rotatedLogName(path, i, ".gz"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		// An unreadable leftover (a crash during compression): skip it.
		f.Close()
		return &logSource{}, nil
	}
	var meta gzipLogMeta
	if !since.IsZero() && json.Unmarshal(zr.Header.Extra, &meta) == nil && !meta.LastTime.IsZero() && meta.LastTime.Before(since) {
		zr.Close()
		f.Close()
		return &logSource{}, nil
	}
	return &logSource{r: bufio.NewReaderSize(zr, 64<<10), closers: []io.Closer{f, zr}}, nil
}

// openLogFiles opens, under the log's read lock, its rotated files (oldest
// first) and its current file (nil if it does not exist yet), and returns
// the rotation count they belong to.
func openLogFiles(path string, st *logFileState, since time.Time) (rotated []*logSource, cur *logSource, gen uint64, err error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	for i := 1; ; i++ {
		src, err := openLogRotated(path, i, since)
		if err != nil {
			closeSources(rotated)
			return nil, nil, 0, err
		}
		if src == nil {
			break
		}
		rotated = append([]*logSource{src}, rotated...)
	}
	if cur, err = openLogPlain(path); err != nil {
		closeSources(rotated)
		return nil, nil, 0, err
	}
	return rotated, cur, st.gen, nil
}

// logRotatedSince tells a follower whose current file belongs to rotation
// gen what has been written since: after n more rotations its file is
// path.n (or gone), the files after it are path.n-1 ... path.1, then the
// new current file. Nothing when there was no rotation.
func logRotatedSince(path string, st *logFileState, gen uint64) (newer []*logSource, cur *logSource, newGen uint64, rotated bool, err error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.gen == gen {
		return nil, nil, gen, false, nil
	}
	n := st.gen - gen
	if n > 1<<10 {
		n = 1 << 10
	}
	for i := int(n) - 1; i >= 1; i-- {
		src, err := openLogRotated(path, i, time.Time{})
		if err != nil {
			closeSources(newer)
			return nil, nil, 0, false, err
		}
		if src != nil {
			newer = append(newer, src)
		}
	}
	if cur, err = openLogPlain(path); err != nil {
		closeSources(newer)
		return nil, nil, 0, false, err
	}
	return newer, cur, st.gen, true, nil
}

// readLog sends the log's entries matching opts to out, from its rotated
// files on. With Follow it keeps reading new entries, across rotations,
// until stillRunning reports false (then drains what is left) or ctx is
// done.
func readLog(ctx context.Context, path string, opts logReadOptions, stillRunning func() bool, out chan<- backend.LogMessage) {
	defer close(out)
	st := acquireLogFile(path)
	defer releaseLogFile(path, st)

	var rotated []*logSource
	var cur *logSource
	var gen uint64
	for {
		var err error
		rotated, cur, gen, err = openLogFiles(path, st, opts.Since)
		if err != nil {
			sendLog(ctx, out, backend.LogMessage{Err: err})
			return
		}
		if cur != nil || !opts.Follow {
			break
		}
		// The log appears on first start; wait for it.
		closeSources(rotated)
		rotated = nil
		if !stillRunning() || !sleepCtx(ctx, 100*time.Millisecond) {
			return
		}
	}
	defer func() { closeSources(rotated); cur.close() }()

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
	emit := func(e logEntry) bool {
		if !opts.Until.IsZero() && e.Time.After(opts.Until) {
			return false
		}
		return sendLog(ctx, out, backend.LogMessage{Stream: e.Stream, Line: []byte(e.Log), Timestamp: e.Time})
	}

	// The backlog: all of it as it is read, or only the last Tail entries.
	var backlog []logEntry
	collect := emit
	if opts.Tail >= 0 {
		collect = func(e logEntry) bool {
			backlog = append(backlog, e)
			if len(backlog) > opts.Tail {
				backlog = backlog[1:]
			}
			return true
		}
	}
	for _, src := range rotated {
		if !src.each(accept, collect) {
			return
		}
	}
	closeSources(rotated)
	rotated = nil
	if !cur.each(accept, collect) {
		return
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
		if cur == nil {
			// A rotation could not create the new file; the writer
			// tries again with its next entry.
			cur, _ = openLogPlain(path)
		}
		if !cur.each(accept, emit) {
			return
		}
		newer, next, ngen, didRotate, err := logRotatedSince(path, st, gen)
		if err != nil {
			sendLog(ctx, out, backend.LogMessage{Err: err})
			return
		}
		if didRotate {
			// The writer closed the file before rotating it away: the
			// rest of it is complete. Then the files written after it.
			ok := cur.each(accept, emit)
			cur.close()
			cur, gen, rotated = next, ngen, newer
			for _, src := range newer {
				if ok {
					ok = src.each(accept, emit)
				}
			}
			closeSources(rotated)
			rotated = nil
			if !ok {
				return
			}
			continue
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

func sendLog(ctx context.Context, out chan<- backend.LogMessage, m backend.LogMessage) bool {
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
