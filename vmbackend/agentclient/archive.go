package agentclient

// File operations (docker cp, export, diff, commit): see "File operations"
// in docs/AGENT_PROTOCOL.md. Each data-carrying operation gets a stream of
// its own at or above agentproto.FileStreamBase; data is flow-controlled
// by credit both ways, so the client's single reader never blocks on a
// slow consumer (a docker cp client, the disk).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// fileChunk bounds one data frame the host sends.
const fileChunk = 256 << 10

// nextFileStream hands out file-operation stream numbers (unique in this
// process, so unique on every connection).
var nextFileStream atomic.Uint32

func newFileStreamID() uint32 {
	for {
		n := nextFileStream.Add(1)
		if id := agentproto.FileStreamBase + n%(1<<30); id >= agentproto.FileStreamBase {
			return id
		}
	}
}

// FileError is a file operation the agent refused or that failed in the
// guest. Code is one of agentproto.FileErrNotFound, FileErrInvalid or "".
type FileError struct {
	Op      string
	Code    string
	Message string
}

func (e *FileError) Error() string { return e.Message }

// IsNotFound reports whether err is a FileError for a missing path.
func IsNotFound(err error) bool {
	var fe *FileError
	return errors.As(err, &fe) && fe.Code == agentproto.FileErrNotFound
}

// IsInvalid reports whether err is a FileError for an invalid request
// (e.g. an extraction point that is not a directory).
func IsInvalid(err error) bool {
	var fe *FileError
	return errors.As(err, &fe) && fe.Code == agentproto.FileErrInvalid
}

// fileStreams is the client's table of file-operation streams.
type fileStreams struct {
	mu sync.Mutex
	m  map[uint32]*fileStream
}

// fileStream is the host end of one file operation's stream.
type fileStream struct {
	c    *client
	id   uint32
	op   string
	done chan struct{} // closed by finish

	mu        sync.Mutex
	cond      *sync.Cond
	data      [][]byte // guest data not yet read
	unacked   int64    // guest data read but not yet credited back
	window    int64
	credit    int64 // bytes we may still send
	ended     bool  // MsgStreamEnd (or the connection) ended the stream
	endErr    error
	cancelled bool // we gave up (Close before the end)
}

func (c *client) openFileStream(op string, window int64) *fileStream {
	s := &fileStream{c: c, id: newFileStreamID(), op: op, window: window, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	c.files.mu.Lock()
	if c.files.m == nil {
		c.files.m = map[uint32]*fileStream{}
	}
	c.files.m[s.id] = s
	c.files.mu.Unlock()
	go func() {
		select {
		case <-c.done:
			err := c.err()
			if err == nil {
				err = ErrClosed
			}
			s.finish(fmt.Errorf("agentclient: %s: %w", op, err))
		case <-s.done:
		}
	}()
	return s
}

func (s *fileStream) unregister() {
	s.c.files.mu.Lock()
	if s.c.files.m[s.id] == s {
		delete(s.c.files.m, s.id)
	}
	s.c.files.mu.Unlock()
}

// finish ends the stream (once) with err (nil: success).
func (s *fileStream) finish(err error) {
	s.mu.Lock()
	if !s.ended {
		s.ended, s.endErr = true, err
		close(s.done)
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

// dispatchFile takes the frames of file-operation streams off the reader
// loop: data, credit and end. It reports whether it consumed the frame
// (replies with an ID go through the normal request path).
func (c *client) dispatchFile(f *agentproto.Frame) bool {
	if f.Stream < agentproto.FileStreamBase {
		return false
	}
	c.files.mu.Lock()
	s := c.files.m[f.Stream]
	c.files.mu.Unlock()
	switch f.Type {
	case agentproto.FrameStdout, agentproto.FrameStderr:
		if s != nil && len(f.Payload) > 0 {
			s.mu.Lock()
			if !s.ended {
				s.data = append(s.data, f.Payload)
				s.cond.Broadcast()
			}
			s.mu.Unlock()
		}
		return true
	case agentproto.FrameMsg:
	default:
		return true
	}
	m, err := agentproto.DecodeMsg(f)
	if err != nil {
		return false
	}
	switch m.Type {
	case agentproto.MsgCredit:
		if s != nil && m.File != nil {
			s.mu.Lock()
			s.credit += m.File.Credit
			s.cond.Broadcast()
			s.mu.Unlock()
		}
		return true
	case agentproto.MsgStreamEnd:
		if s != nil {
			var err error
			if m.Message != "" {
				code := ""
				if m.File != nil {
					code = m.File.ErrCode
				}
				err = &FileError{Op: s.op, Code: code, Message: m.Message}
			}
			s.finish(err)
		}
		return true
	}
	return false
}

// Read returns the guest's data; io.EOF after a successful end.
func (s *fileStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	for len(s.data) == 0 && !s.ended {
		s.cond.Wait()
	}
	if len(s.data) == 0 {
		err := s.endErr
		s.mu.Unlock()
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	n := copy(p, s.data[0])
	if s.data[0] = s.data[0][n:]; len(s.data[0]) == 0 {
		s.data[0] = nil
		s.data = s.data[1:]
	}
	s.unacked += int64(n)
	var credit int64
	if !s.ended && s.unacked >= s.window/4 {
		credit, s.unacked = s.unacked, 0
	}
	s.mu.Unlock()
	if credit > 0 {
		s.c.w.WriteMsg(s.id, &agentproto.Msg{Type: agentproto.MsgCredit, File: &agentproto.FileOp{Credit: credit}})
	}
	return n, nil
}

// Close stops reading: an operation still running in the guest is
// cancelled.
func (s *fileStream) Close() error {
	s.mu.Lock()
	ended := s.ended
	if !ended {
		s.cancelled = true
	}
	s.data = nil
	s.mu.Unlock()
	if !ended {
		s.c.w.WriteMsg(s.id, &agentproto.Msg{Type: agentproto.MsgCancel})
		s.finish(fmt.Errorf("agentclient: %s cancelled", s.op))
	}
	s.unregister()
	return nil
}

// errStreamEnded is returned by Write when the guest ended the operation
// before it took all the data.
var errStreamEnded = errors.New("agentclient: the guest ended the operation")

// Write sends data to the guest within the credit it granted.
func (s *fileStream) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		s.mu.Lock()
		for s.credit <= 0 && !s.ended {
			s.cond.Wait()
		}
		if s.ended {
			s.mu.Unlock()
			return done, errStreamEnded
		}
		k := int64(len(p))
		if k > s.credit {
			k = s.credit
		}
		if k > fileChunk {
			k = fileChunk
		}
		s.credit -= k
		s.mu.Unlock()
		if err := s.c.w.WriteFrame(agentproto.FrameStdin, s.id, p[:k]); err != nil {
			return done, err
		}
		done += int(k)
		p = p[k:]
	}
	return done, nil
}

func (s *fileStream) wait(ctx context.Context) error {
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endErr
}

// fileRequest sends a file-operation request and turns an error reply into
// a FileError.
func (c *client) fileRequest(ctx context.Context, stream uint32, m *agentproto.Msg) (*agentproto.Msg, error) {
	r, err := c.request(ctx, stream, m)
	var ae *AgentError
	if errors.As(err, &ae) {
		code := ""
		if r != nil && r.File != nil {
			code = r.File.ErrCode
		}
		return nil, &FileError{Op: m.Type, Code: code, Message: ae.Message}
	}
	return r, err
}

// Mount asks the agent of a fresh clone to mount the container's root
// (req's RootDevice, RootFSType, TimeUnixNano, Entropy) without running
// anything: a maintenance clone for file operations on a stopped
// container. The agent powers the VM off when the connection goes.
func (c *Client) Mount(ctx context.Context, req *agentproto.StartRequest) error {
	_, err := c.impl.fileRequest(ctx, 0, &agentproto.Msg{Type: agentproto.MsgMount, Start: req})
	return err
}

// StatPath stats a path in the container, as dockerd's HEAD archive.
func (c *Client) StatPath(ctx context.Context, path string) (*agentproto.PathStat, error) {
	r, err := c.impl.fileRequest(ctx, 0, &agentproto.Msg{Type: agentproto.MsgStatPath, Container: c.container, File: &agentproto.FileOp{Path: path}})
	if err != nil {
		return nil, err
	}
	if r.File == nil || r.File.Stat == nil {
		return nil, errors.New("agentclient: stat-path reply without a stat")
	}
	return r.File.Stat, nil
}

// produce starts an operation whose data comes from the guest.
func (c *client) produce(ctx context.Context, container, typ string, op *agentproto.FileOp) (*agentproto.Msg, *fileStream, error) {
	if op.Window == 0 {
		op.Window = agentproto.DefaultFileWindow
	}
	s := c.openFileStream(typ, op.Window)
	r, err := c.fileRequest(ctx, s.id, &agentproto.Msg{Type: typ, Container: container, File: op})
	if err != nil {
		s.finish(err)
		s.unregister()
		return nil, nil, err
	}
	return r, s, nil
}

// ArchiveGet returns the stat of path and a tar of it (dockerd's GET
// archive). Closing the reader before its end cancels the operation in
// the guest. A read error reports a failure in the guest.
func (c *Client) ArchiveGet(ctx context.Context, path string) (*agentproto.PathStat, io.ReadCloser, error) {
	r, s, err := c.impl.produce(ctx, c.container, agentproto.MsgArchiveGet, &agentproto.FileOp{Path: path})
	if err != nil {
		return nil, nil, err
	}
	if r.File == nil || r.File.Stat == nil {
		s.Close()
		return nil, nil, errors.New("agentclient: archive-get reply without a stat")
	}
	return r.File.Stat, s, nil
}

// Export returns a tar of the container's whole root file system.
func (c *Client) Export(ctx context.Context) (io.ReadCloser, error) {
	_, s, err := c.impl.produce(ctx, c.container, agentproto.MsgExport, &agentproto.FileOp{})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Changes compares the container's root with the image's base disk, which
// the host hot-plugged with the virtio serial baseSerial.
func (c *Client) Changes(ctx context.Context, baseSerial string) ([]agentproto.Change, error) {
	_, s, err := c.impl.produce(ctx, c.container, agentproto.MsgChanges, &agentproto.FileOp{BaseSerial: baseSerial})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var out []agentproto.Change
	dec := json.NewDecoder(bufio.NewReader(s))
	for {
		var ch agentproto.Change
		err := dec.Decode(&ch)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
}

// DiffLayer returns an uncompressed OCI layer tar of the container's
// changes against the base disk baseSerial. With freeze the root file
// system is frozen (its writers wait) until the layer is read.
func (c *Client) DiffLayer(ctx context.Context, baseSerial string, freeze bool) (io.ReadCloser, error) {
	_, s, err := c.impl.produce(ctx, c.container, agentproto.MsgDiffLayer, &agentproto.FileOp{BaseSerial: baseSerial, Freeze: freeze})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ArchivePut extracts the tar from body into the directory op.Path of the
// container (dockerd's PUT archive; op carries NoOverwriteDirNonDir,
// CopyUIDGID and User). It returns when the guest is done.
func (c *Client) ArchivePut(ctx context.Context, op agentproto.FileOp, body io.Reader) error {
	s := c.impl.openFileStream(agentproto.MsgArchivePut, 0)
	defer s.unregister()
	r, err := c.impl.fileRequest(ctx, s.id, &agentproto.Msg{Type: agentproto.MsgArchivePut, Container: c.container, File: &op})
	if err != nil {
		s.finish(err)
		return err
	}
	window := int64(agentproto.DefaultFileWindow)
	if r.File != nil && r.File.Window > 0 {
		window = r.File.Window
	}
	s.mu.Lock()
	s.credit += window
	s.cond.Broadcast()
	s.mu.Unlock()

	copyErr := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(s, body, make([]byte, fileChunk))
		if err == nil {
			err = s.c.w.WriteFrame(agentproto.FrameEOF, s.id, nil)
		}
		copyErr <- err
	}()
	var cerr error
	select {
	case cerr = <-copyErr:
	case <-s.done:
		// The guest ended first (an error, or the tar's end): the copy
		// stops at its next write.
	case <-ctx.Done():
		cerr = ctx.Err()
	}
	if cerr != nil && !errors.Is(cerr, errStreamEnded) {
		// The client's upload broke: stop the extraction.
		s.c.w.WriteMsg(s.id, &agentproto.Msg{Type: agentproto.MsgCancel})
		s.finish(cerr)
		return cerr
	}
	if err := s.wait(ctx); err != nil {
		return err
	}
	return nil
}
