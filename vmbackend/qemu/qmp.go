package qemu

// QMP client.
//
// We use github.com/digitalocean/go-qemu's qmp.SocketMonitor rather than a
// hand-rolled JSON loop: it is a small, widely used client that already does
// the greeting/qmp_capabilities handshake and separates asynchronous events
// from command replies on one socket, and it is already a dependency of the
// module. What it lacks is context support (Run blocks until QEMU answers),
// so this file wraps it: every command runs with a context, and a command
// whose context expires is abandoned (its goroutine ends when QEMU answers
// or the socket closes; QEMU is usually being killed at that point).
// We never call Events, so the monitor drops events instead of blocking on
// an unread channel; we poll query-migrate/query-status instead.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// monitor is a connected QMP socket.
type monitor struct {
	mon *qmp.SocketMonitor

	closeOnce sync.Once
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

func tryQMP(ctx context.Context, path string) (*monitor, error) {
	mon, err := qmp.NewSocketMonitor("unix", path, 2*time.Second)
	if err != nil {
		return nil, err
	}
	// Connect reads the greeting without a deadline; QEMU serves one QMP
	// client at a time, so a second client would wait forever. Bound it
	// by ctx.
	done := make(chan error, 1)
	go func() { done <- mon.Connect() }()
	select {
	case err := <-done:
		if err != nil {
			mon.Disconnect()
			return nil, fmt.Errorf("qmp handshake on %s: %w", path, err)
		}
		return &monitor{mon: mon}, nil
	case <-ctx.Done():
		// The handshake goroutine still owns the monitor; release it
		// when it returns (QEMU answering or exiting).
		go func() {
			<-done
			mon.Disconnect()
		}()
		return nil, fmt.Errorf("qmp handshake on %s: %w", path, ctx.Err())
	}
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

func (m *monitor) runFile(ctx context.Context, cmd string, args any, ret any, file *os.File) error {
	b, err := json.Marshal(qmp.Command{Execute: cmd, Args: args})
	if err != nil {
		return fmt.Errorf("qmp %s: encode: %w", cmd, err)
	}
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var out []byte
		var err error
		if file != nil {
			out, err = m.mon.RunWithFile(b, file)
		} else {
			out, err = m.mon.Run(b)
		}
		ch <- result{out, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
	if r.err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, r.err)
	}
	if ret != nil {
		var resp struct {
			Return json.RawMessage `json:"return"`
		}
		if err := json.Unmarshal(r.out, &resp); err != nil {
			return fmt.Errorf("qmp %s: decode reply: %w", cmd, err)
		}
		if err := json.Unmarshal(resp.Return, ret); err != nil {
			return fmt.Errorf("qmp %s: decode return value: %w", cmd, err)
		}
	}
	return nil
}

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
	m.closeOnce.Do(func() { m.mon.Disconnect() })
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
