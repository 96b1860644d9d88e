package qemu

// QMP client.
//
// jevm speaks QMP itself rather than through github.com/digitalocean/
// go-qemu's qmp.SocketMonitor, which it used until that client's reply
// buffer was found shared with its reader (go-qemu issue #226, open): the
// reader scanned the next line (an event, which QEMU sends during
// hot-plugs and migrations) into the buffer a command's reply was still
// being decoded from, so a reply could read as the event that followed
// it (the race detector caught it around disk hot-plug). Its handshake
// also took an event for the capabilities reply (go-qemu PR #210, open).
//
// The protocol (QEMU's docs/interop/qmp-spec): a greeting line, then
// qmp_capabilities, then one JSON object per line each way. Each command
// carries an "id" that QEMU copies into its reply, so a reply is matched
// to its command and the late reply of a command whose context expired
// is dropped, never taken as the next command's. Events are read and
// dropped: jevm polls query-migrate and query-status instead. A line
// from QEMU (a process the guest may have taken over) is bounded.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// maxQMPLine bounds one line from QEMU: replies are small (query-block
// and query-pci answers are a few KiB per device).
const maxQMPLine = 1 << 20

// monitor is a connected QMP socket.
type monitor struct {
	conn *net.UnixConn

	writing chan struct{} // holds one token while a command (and its descriptor) is written

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan qmpReply
	readErr error         // why the reader stopped; set before done closes
	done    chan struct{} // closed when the reader stopped

	closeOnce sync.Once
}

// qmpReply is a reply line: "return" or "error", with the command's id.
type qmpReply struct {
	ID     *uint64         `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
	QMP   *struct {
		Capabilities []string `json:"capabilities"`
	} `json:"QMP"`
}

// dialQMP connects to the QMP socket at path, retrying while QEMU has not
// created it yet. exited, if not nil, aborts the wait when QEMU is gone.
func dialQMP(ctx context.Context, path string, exited <-chan struct{}) (*monitor, error) {
	for {
		m, err := tryQMP(ctx, path)
		if err == nil {
			return m, nil
		}
		if !retryableDial(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect qmp %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-exited:
			return nil, fmt.Errorf("connect qmp %s: qemu exited", path)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func retryableDial(err error) bool {
	// ENOENT: QEMU has not created the socket yet; ECONNREFUSED: it
	// exists but is not listening yet (or is stale).
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// tryQMP connects and negotiates capabilities, within ctx (QEMU serves one
// QMP client at a time: a second one would wait for the greeting
// forever).
func tryQMP(ctx context.Context, path string) (*monitor, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	conn := c.(*net.UnixConn)
	m, err := handshakeQMP(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp handshake on %s: %w", path, err)
	}
	return m, nil
}

// handshakeQMP reads the greeting, leaves capabilities negotiation mode
// and starts the reader.
func handshakeQMP(ctx context.Context, conn *net.UnixConn) (*monitor, error) {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 4096), maxQMPLine)
	next := func() (qmpReply, error) {
		var r qmpReply
		if !sc.Scan() {
			err := sc.Err()
			if err == nil {
				err = errors.New("qemu closed the socket")
			}
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return r, err
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return r, fmt.Errorf("bad line from qemu: %w", err)
		}
		return r, nil
	}
	greeting, err := next()
	if err != nil {
		return nil, err
	}
	if greeting.QMP == nil {
		return nil, errors.New("no QMP greeting")
	}
	if _, err := conn.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n")); err != nil {
		return nil, err
	}
	for {
		r, err := next()
		if err != nil {
			return nil, err
		}
		if r.Event != "" {
			continue // an event may come before the reply
		}
		if r.Error != nil {
			return nil, fmt.Errorf("qmp_capabilities: %s", r.Error.Desc)
		}
		break
	}
	if !stop() || ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	_ = conn.SetDeadline(time.Time{})
	m := &monitor{conn: conn, writing: make(chan struct{}, 1), pending: map[uint64]chan qmpReply{}, done: make(chan struct{})}
	go m.read(sc)
	return m, nil
}

// read hands each reply to the command waiting for it, until the socket
// closes or QEMU sends a line it should not.
func (m *monitor) read(sc *bufio.Scanner) {
	err := func() error {
		for sc.Scan() {
			var r qmpReply
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				return fmt.Errorf("bad line from qemu: %w", err)
			}
			if r.Event != "" || r.ID == nil {
				continue
			}
			m.mu.Lock()
			ch := m.pending[*r.ID]
			delete(m.pending, *r.ID)
			m.mu.Unlock()
			if ch != nil {
				ch <- r // buffered: the reader never waits on a command
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
		return errors.New("qemu closed the monitor socket")
	}()
	m.mu.Lock()
	m.readErr = err
	m.mu.Unlock()
	close(m.done)
	m.conn.Close()
}

// run executes one QMP command and unmarshals its "return" into ret (if
// not nil).
func (m *monitor) run(ctx context.Context, cmd string, args any, ret any) error {
	return m.runFile(ctx, cmd, args, ret, nil)
}

// passFile hands QEMU an open file under name (QMP getfd: the descriptor
// travels with the command, SCM_RIGHTS), for a later "fd:name" URI. QEMU
// keeps its own copy; the caller closes f when it likes.
func (m *monitor) passFile(ctx context.Context, name string, f *os.File) error {
	return m.runFile(ctx, "getfd", map[string]any{"fdname": name}, nil, f)
}

// runFile sends cmd (with file's descriptor, if not nil) and waits for its
// reply, or until ctx ends (a reply that comes later is dropped).
func (m *monitor) runFile(ctx context.Context, cmd string, args any, ret any, file *os.File) error {
	ch := make(chan qmpReply, 1)
	m.mu.Lock()
	m.nextID++
	id := m.nextID
	m.pending[id] = ch
	m.mu.Unlock()
	forget := func() {
		m.mu.Lock()
		delete(m.pending, id)
		m.mu.Unlock()
	}
	b, err := json.Marshal(struct {
		Execute string `json:"execute"`
		Args    any    `json:"arguments,omitempty"`
		ID      uint64 `json:"id"`
	}{cmd, args, id})
	if err != nil {
		forget()
		return fmt.Errorf("qmp %s: encode: %w", cmd, err)
	}
	if err := m.send(ctx, append(b, '\n'), file); err != nil {
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	var r qmpReply
	select {
	case r = <-ch:
	case <-m.done:
		select {
		case r = <-ch: // answered, then QEMU closed the socket (quit)
		default:
			forget()
			m.mu.Lock()
			err := m.readErr
			m.mu.Unlock()
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
	case <-ctx.Done():
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
	if r.Error != nil {
		return fmt.Errorf("qmp %s: %s", cmd, r.Error.Desc)
	}
	if ret != nil {
		if err := json.Unmarshal(r.Return, ret); err != nil {
			return fmt.Errorf("qmp %s: decode return value: %w", cmd, err)
		}
	}
	return nil
}

// send writes one command line, with file's descriptor if not nil. A
// write QEMU does not take within qmpWriteTimeout (it stopped reading its
// monitor) closes the socket: QEMU may have half a command, so the
// monitor is unusable.
func (m *monitor) send(ctx context.Context, line []byte, file *os.File) error {
	select {
	case m.writing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.readErr
	}
	defer func() { <-m.writing }()
	_ = m.conn.SetWriteDeadline(time.Now().Add(qmpWriteTimeout))
	var err error
	if file == nil {
		_, err = m.conn.Write(line)
	} else {
		var rc syscall.RawConn
		if rc, err = file.SyscallConn(); err != nil {
			return err // nothing sent
		}
		cerr := rc.Control(func(fd uintptr) {
			_, _, err = m.conn.WriteMsgUnix(line, syscall.UnixRights(int(fd)), nil)
		})
		if err == nil && cerr != nil {
			return cerr // nothing sent
		}
	}
	if err != nil {
		m.close()
	}
	return err
}

// qmpWriteTimeout bounds one command's write: QEMU reads its monitor
// from its main loop, at once unless it is stuck.
const qmpWriteTimeout = 10 * time.Second

// The device state of a snapshot goes to and comes from a file the
// daemon opens and hands QEMU (fd: URIs), not an exec: URI: QEMU runs
// under -sandbox with spawn=deny, so it may not start `cat` (which also
// cost every restore a shell and a cat).
const stateFDName = "jevm-state"

// saveTo migrates the stopped VM's device state into a new file at path.
func (m *monitor) saveTo(ctx context.Context, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer f.Close()
	if err := m.passFile(ctx, stateFDName, f); err != nil {
		return err
	}
	return m.run(ctx, "migrate", map[string]any{"uri": "fd:" + stateFDName}, nil)
}

// restoreFrom starts the incoming migration (-incoming defer) from the
// state file at path.
func (m *monitor) restoreFrom(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer f.Close()
	if err := m.passFile(ctx, stateFDName, f); err != nil {
		return err
	}
	return m.run(ctx, "migrate-incoming", map[string]any{"uri": "fd:" + stateFDName}, nil)
}

// incomingFrom starts the incoming migration (-incoming defer) from f, a
// socket another host's migration arrives on (migrate.go).
func (m *monitor) incomingFrom(ctx context.Context, f *os.File) error {
	if err := m.passFile(ctx, stateFDName, f); err != nil {
		return err
	}
	return m.run(ctx, "migrate-incoming", map[string]any{"uri": "fd:" + stateFDName}, nil)
}

func (m *monitor) close() {
	m.closeOnce.Do(func() { m.conn.Close() })
}

// setIgnoreShared turns on the x-ignore-shared migration capability: RAM
// blocks backed by a shared memory-backend-file are neither sent nor
// expected; the template's memory file is the clone's RAM.
func (m *monitor) setIgnoreShared(ctx context.Context) error {
	args := map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	}
	return m.run(ctx, "migrate-set-capabilities", args, nil)
}

type migrationInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

// waitMigration polls query-migrate until the migration completed or
// failed.
func (m *monitor) waitMigration(ctx context.Context, exited <-chan struct{}) error {
	delay := 2 * time.Millisecond
	for {
		var info migrationInfo
		if err := m.run(ctx, "query-migrate", nil, &info); err != nil {
			return err
		}
		switch info.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			if info.ErrorDesc != "" {
				return fmt.Errorf("migration %s: %s", info.Status, info.ErrorDesc)
			}
			return fmt.Errorf("migration %s", info.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for migration (status %q): %w", info.Status, ctx.Err())
		case <-exited:
			return errors.New("qemu exited during migration")
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}

type statusInfo struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

func (m *monitor) queryStatus(ctx context.Context) (statusInfo, error) {
	var st statusInfo
	err := m.run(ctx, "query-status", nil, &st)
	return st, err
}
