package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// docker exec: an exec instance is created (registered with its settings),
// then started once; its process runs through the container's agent on a
// stream of its own. As with dockerd, the instances of a container live as
// long as the run they were created in: they go when the container stops
// (or is removed), and are not persisted.

// execResizeWait bounds how long a resize waits for its exec to start (the
// CLI resizes right after the start request's hijack).
const execResizeWait = 10 * time.Second

// execRecordGrace is how long the execs of a run that ended can still be
// inspected.
const execRecordGrace = 5 * time.Second

// execKillTimeout bounds the SIGKILL sent to an exec whose client went away.
const execKillTimeout = 10 * time.Second

type execStore struct {
	mu      sync.Mutex
	byID    map[string]*execInstance
	watched map[*runtime]struct{} // runs whose end drops their execs
}

func newExecStore() *execStore {
	return &execStore{byID: map[string]*execInstance{}, watched: map[*runtime]struct{}{}}
}

// execInstance is one exec. Its fields after mu are guarded by mu.
type execInstance struct {
	id      string
	c       *Container
	run     *runtime
	cfg     container.ExecOptions
	created time.Time
	// started is closed once the start attempt is over (process running,
	// or failed to start).
	started chan struct{}
	// done is closed once the exit was recorded.
	done chan struct{}

	mu          sync.Mutex
	startCalled bool
	running     bool
	exitCode    *int
	pid         int
	proc        *agentclient.Process
}

func (s *execStore) add(e *execInstance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[e.id] = e
	if _, ok := s.watched[e.run]; !ok {
		s.watched[e.run] = struct{}{}
		go func(r *runtime) {
			<-r.finished
			// A client whose exec died with the container asks for its
			// exit code right after: answer it a little longer.
			time.Sleep(execRecordGrace)
			s.dropRun(r)
		}(e.run)
	}
}

func (s *execStore) dropRun(r *runtime) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.watched, r)
	for id, e := range s.byID {
		if e.run == r {
			delete(s.byID, id)
		}
	}
}

func (s *execStore) get(id string) (*execInstance, error) {
	s.mu.Lock()
	e := s.byID[id]
	s.mu.Unlock()
	if e == nil {
		return nil, errdefs.NotFound(fmt.Errorf("No such exec instance: %s", id))
	}
	return e, nil
}

// ids lists the exec IDs of run, oldest first (inspect's ExecIDs; nil
// when there are none, as dockerd shows null).
func (s *execStore) ids(r *runtime) []string {
	if r == nil {
		return nil
	}
	s.mu.Lock()
	var list []*execInstance
	for _, e := range s.byID {
		if e.run == r {
			list = append(list, e)
		}
	}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].created.Before(list[j].created) })
	var out []string
	for _, e := range list {
		out = append(out, e.id)
	}
	return out
}

// execIDs is inspect's ExecIDs. Callers hold c.mu.
func (d *Daemon) execIDs(c *Container) []string { return d.execs.ids(c.run) }

// execCommand is how dockerd's exec events name the command.
func execCommand(cmd []string) string {
	if len(cmd) == 0 {
		return ""
	}
	return cmd[0] + " " + strings.Join(cmd[1:], " ")
}

func errContainerNotRunning(c *Container) error {
	return errdefs.Conflict(fmt.Errorf("container %s is not running", c.ID))
}

func errContainerPaused(c *Container) error {
	return errdefs.Conflict(fmt.Errorf("Container %s is paused, unpause the container before exec", c.ID))
}

// ContainerExecCreate registers an exec in a running container.
func (d *Daemon) ContainerExecCreate(ctx context.Context, ref string, cfg *container.ExecOptions) (string, error) {
	if cfg == nil || len(cfg.Cmd) == 0 {
		return "", errdefs.InvalidParameter(errors.New("No exec command specified"))
	}
	c, err := d.containers.get(ref)
	if err != nil {
		return "", err
	}
	if cfg.DetachKeys != "" {
		if _, err := attachDetachKeys(cfg.DetachKeys); err != nil {
			return "", err
		}
	}
	if cfg.User != "" {
		// As dockerd: the user is looked up in the container when the
		// exec is created, so that a missing one is a 400 now rather than
		// a failed start later.
		c.mu.Lock()
		r := c.run
		running := c.running() && r != nil && c.State.Status != container.StatePaused
		c.mu.Unlock()
		if running {
			err := r.agent.CheckUser(ctx, cfg.User)
			switch {
			case errors.Is(err, errors.ErrUnsupported):
			case err != nil && ctx.Err() == nil && r.agent.Err() == nil:
				return "", errdefs.InvalidParameter(err)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.removing:
		return "", errdefs.Conflict(fmt.Errorf("container %s is being removed", c.ID))
	case c.State.Status == container.StatePaused:
		return "", errContainerPaused(c)
	case !c.running() || c.run == nil:
		return "", errContainerNotRunning(c)
	}
	e := &execInstance{
		id:      newID(),
		c:       c,
		run:     c.run,
		cfg:     *cfg,
		created: time.Now(),
		started: make(chan struct{}),
		done:    make(chan struct{}),
	}
	e.cfg.Cmd = append([]string(nil), cfg.Cmd...)
	e.cfg.Env = append([]string(nil), cfg.Env...)
	d.execs.add(e)
	d.containerEvent(c, events.Action(string(events.ActionExecCreate)+": "+execCommand(e.cfg.Cmd)), map[string]string{"execID": e.id})
	return e.id, nil
}

// execProcessRequest is the exec's process as the agent runs it: the
// container's environment (with TERM for a terminal) overlaid with the
// exec's, and the container's user and working directory unless the exec
// names its own. Callers hold c.mu.
func execProcessRequest(c *Container, cfg *container.ExecOptions, size *[2]uint) *agentproto.ProcessRequest {
	// The daemon's part of the environment depends on the exec's TTY, not
	// the container's.
	cc := *c.Config
	cc.Tty = cfg.Tty
	env := mergeEnv(mergeEnv(c.LinkEnv, containerEnv(&Container{ID: c.ID, Name: c.Name, Config: &cc, HostConfig: c.HostConfig})), cfg.Env)
	req := &agentproto.ProcessRequest{
		Args:  append([]string(nil), cfg.Cmd...),
		Env:   env,
		Cwd:   cfg.WorkingDir,
		User:  cfg.User,
		TTY:   cfg.Tty,
		Stdin: cfg.AttachStdin,
		// As runc's exec: the container's rlimits.
		Rlimits:          c.Rlimits,
		AdditionalGroups: c.HostConfig.GroupAdd,
		Capabilities:     execCapabilities(c, cfg.Privileged), // caps.go
	}
	if req.Cwd == "" {
		req.Cwd = c.Config.WorkingDir
	}
	if req.User == "" {
		req.User = c.Config.User
	}
	if cfg.Tty && size != nil && size[0] > 0 && size[1] > 0 {
		req.Rows, req.Cols = uint16(size[0]), uint16(size[1])
	}
	return req
}

// execStartError is dockerd's message and exit code for a process the
// runtime could not start.
func execStartError(err error) (int, error) {
	msg := err.Error()
	code := 126
	if agentclient.IsCommandNotFound(err) {
		code = 127
	}
	var ae *agentclient.AgentError
	if errors.As(err, &ae) {
		return code, fmt.Errorf("OCI runtime exec failed: exec failed: unable to start container process: %s: unknown", msg)
	}
	return code, fmt.Errorf("exec failed: %w", err)
}

// ContainerExecStart starts an exec and, unless detached, copies its
// streams until it exits.
func (d *Daemon) ContainerExecStart(ctx context.Context, id string, cfg *backend.ExecStartConfig) (retErr error) {
	e, err := d.execs.get(id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	switch {
	case e.exitCode != nil:
		e.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("Error: Exec command %s has already run", e.id))
	case e.startCalled:
		e.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("Error: Exec command %s is already running", e.id))
	}
	e.startCalled = true
	e.mu.Unlock()
	started := false
	defer func() {
		if !started {
			// As dockerd does: an exec that failed to start has exit code
			// 126 (127 for a missing command, set below).
			e.mu.Lock()
			if e.exitCode == nil {
				code := 126
				e.exitCode = &code
			}
			e.mu.Unlock()
			close(e.started)
			close(e.done)
		}
	}()

	c := e.c
	size := cfg.ConsoleSize
	if size == nil {
		size = e.cfg.ConsoleSize
	}
	c.mu.Lock()
	r := c.run
	paused := c.State.Status == container.StatePaused
	var req *agentproto.ProcessRequest
	var serr error
	if r == e.run && r != nil && c.running() && !paused {
		req = execProcessRequest(c, &e.cfg, size)
		// The container's seccomp filter, also for exec --privileged, as
		// with runc (security.go).
		req.Seccomp, serr = containerSeccomp(c.HostConfig)
		req.NoNewPrivileges = noNewPrivileges(c.HostConfig)
	}
	c.mu.Unlock()
	switch {
	case serr != nil:
		return serr
	case paused:
		return errContainerPaused(c)
	case req == nil:
		return errContainerNotRunning(c)
	}

	var stdin io.ReadCloser
	var stdout, stderr io.Writer
	if !cfg.Detach {
		if cfg.GetStreams == nil {
			return errdefs.System(errors.New("exec start without streams"))
		}
		// As dockerd: the start request's Tty decides the framing, not the
		// exec's own. SDKs create an exec with a TTY and start it with
		// Tty=false, then read stdcopy frames (all output as stdout, since
		// the TTY merges the streams).
		stdin, stdout, stderr, err = cfg.GetStreams(!cfg.Tty)
		if err != nil {
			return err
		}
		if !e.cfg.AttachStdin {
			stdin = nil
		}
		if !e.cfg.AttachStdout {
			stdout = nil
		}
		if !e.cfg.AttachStderr || e.cfg.Tty {
			stderr = nil
		}
	}
	req.Stdin = stdin != nil
	out := newOutputQueue()
	pio := agentclient.ProcessIO{}
	if stdout != nil {
		pio.Stdout = out.writer(stdout)
	}
	if stderr != nil {
		pio.Stderr = out.writer(stderr)
	}
	proc, err := r.agent.Exec(ctx, req, pio)
	if err != nil {
		out.close()
		code, serr := execStartError(err)
		if agentclient.IsProcessesHeld(err) {
			serr = errdefs.Conflict(fmt.Errorf("Container %s is being checkpointed, try the exec again when the checkpoint is done", c.ID))
		}
		e.mu.Lock()
		e.exitCode = &code
		e.mu.Unlock()
		d.log.WithError(err).WithField("exec", e.id[:12]).Info("exec did not start")
		return serr
	}
	started = true
	e.mu.Lock()
	e.running = true
	e.pid = proc.Pid()
	e.proc = proc
	e.mu.Unlock()
	close(e.started)
	d.execEvent(c, events.Action(string(events.ActionExecStart)+": "+execCommand(e.cfg.Cmd)), map[string]string{"execID": e.id})
	go d.waitExec(e, proc)

	if cfg.Detach {
		return nil
	}
	detached := make(chan struct{})
	if stdin != nil {
		keys, _ := attachDetachKeys(e.cfg.DetachKeys)
		go func() {
			w := proc.Stdin()
			_, err := copyStdin(w, stdin, keys)
			if errors.Is(err, errDetached) {
				close(detached)
				return
			}
			// The client closed its input: so does the process's stdin.
			_ = w.Close()
		}()
	}
	select {
	case <-proc.Exited():
		// All output reached the queue before Exited: deliver it, then
		// let the exit be recorded before the client asks for it.
		out.close()
		<-e.done
		return nil
	case <-detached:
		out.close()
		d.execEvent(c, events.ActionExecDetach, map[string]string{"execID": e.id})
		return nil
	case <-ctx.Done():
		// The client went away: as dockerd does, kill the process.
		kctx, cancel := context.WithTimeout(context.Background(), execKillTimeout)
		defer cancel()
		if err := proc.Signal(kctx, int(syscall.SIGKILL)); err != nil {
			d.log.WithError(err).WithField("exec", e.id[:12]).Debug("kill exec of a gone client")
		}
		out.abandon()
		return ctx.Err()
	}
}

// execEvent publishes an exec event. Callers do not hold c.mu.
func (d *Daemon) execEvent(c *Container, action events.Action, attrs map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d.containerEvent(c, action, attrs)
}

// waitExec records an exec's exit.
func (d *Daemon) waitExec(e *execInstance, proc *agentclient.Process) {
	<-proc.Exited()
	st, ok := proc.Status()
	code := st.Code
	if !ok {
		// The connection (the VM) went first: everything in it was killed.
		code = 128 + int(syscall.SIGKILL)
	}
	e.mu.Lock()
	e.running = false
	e.exitCode = &code
	e.mu.Unlock()
	d.execEvent(e.c, events.ActionExecDie, map[string]string{"execID": e.id, "exitCode": strconv.Itoa(code)})
	close(e.done)
}

// ContainerExecInspect describes an exec.
func (d *Daemon) ContainerExecInspect(id string) (*backend.ExecInspect, error) {
	e, err := d.execs.get(id)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	priv := e.cfg.Privileged
	pc := &backend.ExecProcessConfig{
		Tty:        e.cfg.Tty,
		Entrypoint: e.cfg.Cmd[0],
		Arguments:  append([]string{}, e.cfg.Cmd[1:]...),
		Privileged: &priv,
		User:       e.cfg.User,
	}
	ei := &backend.ExecInspect{
		ID:            e.id,
		Running:       e.running,
		ProcessConfig: pc,
		OpenStdin:     e.cfg.AttachStdin,
		OpenStdout:    e.cfg.AttachStdout,
		OpenStderr:    e.cfg.AttachStderr,
		CanRemove:     e.exitCode != nil,
		ContainerID:   e.c.ID,
		DetachKeys:    []byte(e.cfg.DetachKeys),
		Pid:           e.pid,
	}
	if e.exitCode != nil {
		code := *e.exitCode
		ei.ExitCode = &code
	}
	return ei, nil
}

// ContainerExecResize sets the terminal size of an exec (waiting a little
// for it to start).
func (d *Daemon) ContainerExecResize(ctx context.Context, id string, height, width uint) error {
	e, err := d.execs.get(id)
	if err != nil {
		return err
	}
	select {
	case <-e.started:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(execResizeWait):
		return errors.New("timeout waiting for exec session ready")
	}
	e.mu.Lock()
	proc, running := e.proc, e.running
	e.mu.Unlock()
	if proc == nil || !running {
		return errdefs.Conflict(fmt.Errorf("exec %s is not running", e.id))
	}
	if !e.cfg.Tty {
		return nil
	}
	var ae *agentclient.AgentError
	if err := proc.Resize(ctx, uint16(height), uint16(width)); err != nil {
		if errors.As(err, &ae) {
			return errdefs.Conflict(err)
		}
		return err
	}
	return nil
}

// outputQueue decouples an exec's output from its client: the agent
// connection's reader (shared by every process of the container) only
// appends to the queue, a goroutine writes to the client. Past
// maxQueuedOutput the reader waits (backpressure from a client that does
// not read).
type outputQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	chunks  []queuedChunk
	size    int
	closed  bool // no more writes; drain and stop
	dropped bool // the client is gone: discard
	stopped chan struct{}
}

type queuedChunk struct {
	w    io.Writer
	data []byte
}

const maxQueuedOutput = 16 << 20

func newOutputQueue() *outputQueue {
	q := &outputQueue{stopped: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.loop()
	return q
}

func (q *outputQueue) writer(w io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		q.mu.Lock()
		defer q.mu.Unlock()
		for q.size > maxQueuedOutput && !q.dropped && !q.closed {
			q.cond.Wait()
		}
		if q.dropped || q.closed {
			return len(p), nil
		}
		q.chunks = append(q.chunks, queuedChunk{w, append([]byte(nil), p...)})
		q.size += len(p)
		q.cond.Broadcast()
		return len(p), nil
	})
}

func (q *outputQueue) loop() {
	defer close(q.stopped)
	for {
		q.mu.Lock()
		for len(q.chunks) == 0 && !q.closed && !q.dropped {
			q.cond.Wait()
		}
		if q.dropped || len(q.chunks) == 0 {
			q.mu.Unlock()
			return
		}
		ch := q.chunks[0]
		q.chunks = q.chunks[1:]
		q.size -= len(ch.data)
		q.cond.Broadcast()
		q.mu.Unlock()
		if _, err := ch.w.Write(ch.data); err != nil {
			q.abandon()
			return
		}
	}
}

// close delivers what is queued and stops.
func (q *outputQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
	<-q.stopped
}

// abandon drops what is queued and stops.
func (q *outputQueue) abandon() {
	q.mu.Lock()
	q.dropped = true
	q.chunks, q.size = nil, 0
	q.cond.Broadcast()
	q.mu.Unlock()
}
