package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/network/controller"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// runtime is a container's VM and main process while it runs.
type runtime struct {
	machine vmbackend.Machine
	agent   *agentclient.Client
	proc    *agentclient.Process
	logw    *logWriter
	// stopRequested is set by stop/kill paths so the monitor can tell an
	// asked-for exit from a crash (restart policies).
	stopRequested bool
	// detachCh is closed when the daemon shuts down: the monitor then lets
	// the VM run on for the next daemon to adopt.
	detachOnce sync.Once
	detachCh   chan struct{}
	// finished is closed when the monitor has recorded the exit.
	finished chan struct{}
	// podHost is set for a container that runs in another container's
	// VM (pods.go): that container's ID. machine is then the member's
	// view of the VM and agent a Client scoped to it (Client.For).
	podHost string
	// keptHealth is the health state the run goes on from (a migrated
	// container's, from its source) instead of "starting".
	keptHealth *container.Health
}

func (r *runtime) detach() { r.detachOnce.Do(func() { close(r.detachCh) }) }

// outputHub fans a container's output out to its log and to attached
// clients. It lives as long as the container, across runs: `docker run`
// attaches before it starts the container.
type outputHub struct {
	mu   sync.Mutex
	logw *logWriter
	subs map[*subscriber]struct{}
}

type subscriber struct {
	stdout, stderr io.Writer
	done           chan struct{} // closed at the end of the run, or on a write error
	closeOnce      sync.Once
}

func (s *subscriber) close() { s.closeOnce.Do(func() { close(s.done) }) }

func newOutputHub() *outputHub { return &outputHub{subs: map[*subscriber]struct{}{}} }

func (h *outputHub) subscribe(stdout, stderr io.Writer) *subscriber {
	s := &subscriber{stdout: stdout, stderr: stderr, done: make(chan struct{})}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *outputHub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	s.close()
}

// beginRun directs output to a run's log.
func (h *outputHub) beginRun(logw *logWriter) {
	h.mu.Lock()
	h.logw = logw
	h.mu.Unlock()
}

// endRun ends every current subscription: their attach calls return.
func (h *outputHub) endRun() {
	h.mu.Lock()
	h.logw = nil
	for s := range h.subs {
		delete(h.subs, s)
		s.close()
	}
	h.mu.Unlock()
}

func (h *outputHub) writer(stream string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.logw != nil {
			if err := h.logw.write(stream, p); err != nil {
				logrus.WithError(err).Warn("write container log")
			}
		}
		for s := range h.subs {
			w := s.stdout
			if stream == "stderr" {
				w = s.stderr
			}
			if w == nil {
				continue
			}
			if _, err := w.Write(p); err != nil {
				// The client went away; drop it, the container goes on.
				delete(h.subs, s)
				s.close()
			}
		}
		return len(p), nil
	})
}

// stdinPipe buffers what attached clients send to a container's stdin until
// a run's process takes it, as dockerd's stdin pipe does for `run -i`.
type stdinPipe struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func newStdinPipe() *stdinPipe {
	r, w := io.Pipe()
	return &stdinPipe{r: r, w: w}
}

// startContainer clones a VM for c and starts its main process. Callers
// hold c.mu. On error nothing is left: the steps' cleanups are unwound
// (steps.go).
func (d *Daemon) startContainer(ctx context.Context, c *Container) error {
	if _, ok := joinsVM(c.HostConfig); ok {
		return d.startJoined(ctx, c) // pods.go
	}
	log := d.log.WithField("container", c.ID[:12])
	s := &vmStart{d: d, c: c}
	var mounts *mountSession
	var netAtt *controller.Attachment
	var linkHosts []string
	var proc *agentclient.Process
	var podShareTag string
	var consoleOffset int64
	// A blank of the warm pool this start claims, if there is one
	// (pool.go); nil: the template is cloned now.
	var pooled *blank
	taken := 0 // blanks taken (one per run of the steps)
	defer func() {
		for ; taken > 0; taken-- {
			d.pool.started()
		}
	}()
	steps := []step{
		// A maintenance clone (docker cp/export/diff/commit of the stopped
		// container) may be using the disk: wait for it (maintenance.go).
		{"wait-file-ops", func(ctx context.Context) error { return d.waitFileOps(ctx, c) }},
		{"machine-spec", func(context.Context) error {
			d.refreshShape(c) // `docker update -m/--cpus` applies from the next start (update.go)
			s.spec = d.machineSpec(c)
			// This run's exit marker comes after what the console has now.
			if st, err := os.Stat(c.consolePath()); err == nil {
				consoleOffset = st.Size()
			}
			if pooled = d.pool.take(c.Shape); pooled != nil {
				taken++
				// Killed unless it became the container's; what moved
				// to the container's names the cleanups below undo.
				b := pooled
				s.cs.push("discard-blank", func() { b.discard(d) })
			}
			return nil
		}},
		s.stateDirStep(),
		// Bind mounts, volumes, tmpfs (mounts.go): 9p shares and mount requests.
		{"prepare-mounts", func(ctx context.Context) (err error) {
			if mounts, err = d.prepareMounts(ctx, c, true); err != nil {
				return err
			}
			s.cs.push("release-mounts", func() { d.releaseMounts(c) })
			if pooled != nil {
				// Every share through the blank's pod share (pool.go).
				s.spec.Shares, podShareTag, err = d.claimShare(c, pooled, mounts)
				return err
			}
			// For the mounts of containers that may join this VM later
			// (podshare.go); release-mounts removes it.
			s.spec.Shares, podShareTag = d.podShareFor(c.ID, mounts.shares)
			return nil
		}},
		// Legacy links (links.go): the linked containers' addresses.
		{"resolve-links", func(context.Context) (err error) {
			linkHosts, c.LinkEnv, err = d.resolveLinks(c)
			return err
		}},
		// Networks (network.go): endpoints, taps, published ports.
		{"attach-networks", func(ctx context.Context) (err error) {
			if netAtt, err = d.attachNetworks(ctx, c, linkHosts); err != nil {
				return err
			}
			s.cs.push("detach-networks", func() { d.detachNetworks(c) })
			s.spec.NICs = netAtt.NICs
			// For containers that may join this VM later (pods.go).
			writePodFiles(c, netAtt.Hosts, netAtt.ResolvConf)
			return nil
		}},
		s.startMachineStep("VM", &pooled),
		s.connectAgentStep("guest agent"),
		s.openLogStep(true),
		{"start-process", func(ctx context.Context) (err error) {
			if pooled != nil {
				// The blank's console file is the container's now.
				consoleOffset = 0
				if st, err := os.Stat(c.consolePath()); err == nil {
					consoleOffset = st.Size()
				}
			}
			proc, err = d.startProcess(ctx, c, s.agent, mounts, netAtt)
			return err
		}},
	}
	tr, err := runSteps(ctx, log, "container", &s.cs, steps)
	if err != nil && tr.failedIn("start-machine", "connect-agent") && d.templateCorrupt(ctx, c.Shape) {
		// Once more, on a template built again (what failed was
		// undone: runSteps unwound the cleanup stack).
		log.Warn("starting again on a rebuilt template")
		tr, err = runSteps(ctx, log, "container", &s.cs, steps)
	}
	if err != nil {
		return err
	}
	r := s.beginRun(proc)
	d.mountsStarted(c)
	c.State = ContainerState{Status: container.StateRunning, Pid: s.machine.Pid(), StartedAt: time.Now().UTC(), PodShare: podShareTag, ConsoleOffset: consoleOffset}
	if err := c.save(); err != nil {
		log.WithError(err).Error("save container")
	}
	d.containerEvent(c, events.ActionStart, nil)
	// One line per start with every step's time (bench/ reads it: where a
	// start's time goes).
	fields := logrus.Fields{"clone": tr.duration("start-machine").String(), "total": tr.since("start-machine").String(), "pid": s.machine.Pid()}
	for i, n := range tr.names {
		fields[n+"_ms"] = ms(tr.took[i])
	}
	for n, v := range proc.Timings() { // the agent's phases, within start-process
		fields["guest_"+n+"_ms"] = v
	}
	log.WithFields(fields).Info("container started")
	d.monitorRun(c, r)
	return nil
}

// startProcess sends the agent the start request: the clone becomes the
// container's machine and runs its main process.
func (d *Daemon) startProcess(ctx context.Context, c *Container, client *agentclient.Client, mounts *mountSession, netAtt *controller.Attachment) (*agentclient.Process, error) {
	req, err := d.startRequest(c, mounts)
	if err != nil {
		return nil, err
	}
	req.RootDevice = d.vms.GuestRootDevice()
	req.Hosts, req.ResolvConf, req.Interfaces = netAtt.Hosts, netAtt.ResolvConf, netAtt.Interfaces
	// Named so that containers joining the VM can name it (pods.go).
	req.Container = c.ID
	hub := c.hub()
	proc, err := client.Start(ctx, req, agentclient.ProcessIO{Stdout: hub.writer("stdout"), Stderr: hub.writer("stderr")})
	if err != nil {
		return nil, startError(c, err)
	}
	return proc, nil
}

// startRequest is what the agent needs to run c's main process, in its
// own VM or in another's (pods.go), but the root device and networking.
func (d *Daemon) startRequest(c *Container, mounts *mountSession) (*agentproto.StartRequest, error) {
	entropy, err := startEntropy()
	if err != nil {
		return nil, err
	}
	caps, err := containerCapabilities(c.HostConfig) // caps.go
	if err != nil {
		return nil, err
	}
	filter, err := containerSeccomp(c.HostConfig) // security.go
	if err != nil {
		return nil, err
	}
	req := &agentproto.StartRequest{
		Privileged:      c.HostConfig.Privileged,
		MaskedPaths:     c.HostConfig.MaskedPaths,
		ReadonlyPaths:   c.HostConfig.ReadonlyPaths,
		WritableCgroups: writableCgroups(c.HostConfig),
		Domainname:      c.Config.Domainname,
		Sysctls:         containerSysctls(c.HostConfig),
		HostPID:         sharesGuestPIDNamespace(c.HostConfig),
		HoldAfterExit:   c.buildHold != nil,
		ShmSize:         c.HostConfig.ShmSize,
		ReadOnly:        c.HostConfig.ReadonlyRootfs,
		Hostname:        c.Config.Hostname,
		Entropy:         entropy,
		TimeUnixNano:    time.Now().UnixNano(),
		Mounts:          mounts.requests,
		Files:           c.memFiles,
		Process: agentproto.ProcessRequest{
			Args:  append([]string{c.Path}, c.Args...),
			Env:   mergeEnv(c.LinkEnv, containerEnv(c)), // a container's own variables win, as in dockerd
			Cwd:   c.Config.WorkingDir,
			User:  c.Config.User,
			TTY:   c.Config.Tty,
			Stdin: c.Config.OpenStdin,
			Rows:  uint16(c.HostConfig.ConsoleSize[0]),
			Cols:  uint16(c.HostConfig.ConsoleSize[1]),
			// ulimits.go: merged with the daemon's defaults now.
			Rlimits: d.containerRlimits(c),
			// --group-add; execs and probes get them too, as in dockerd.
			AdditionalGroups: c.HostConfig.GroupAdd,
			Capabilities:     caps,
			Seccomp:          filter,
			NoNewPrivileges:  noNewPrivileges(c.HostConfig),
		},
	}
	c.Rlimits = req.Process.Rlimits // for execs; saved once started
	return req, nil
}

// sharesGuestPIDNamespace tells whether the container's processes stay in
// the guest's PID namespace, where the agent is PID 1, rather than the main
// process being PID 1 of a namespace of its own (runc's default):
//   - --pid host: the guest's namespace is the "host" one.
//   - --init: dockerd makes its docker-init PID 1, which passes the signals
//     it gets on to the entrypoint and reaps orphans. The agent, PID 1 of
//     the guest's namespace, does just that: the signals it sends reach the
//     entrypoint as an ordinary process (a shell without a trap dies of
//     SIGTERM: 143), and it reaps every orphan. `ps` then shows the
//     agent, not docker-init, as PID 1.
func sharesGuestPIDNamespace(hc *container.HostConfig) bool {
	return hc.PidMode.IsHost() || (hc.Init != nil && *hc.Init)
}

// startError turns the agent's refusal to start a process into dockerd's
// error kinds: a missing or non-executable command is the caller's mistake
// (400, and the CLI exits 127 or 126 as with dockerd).
func startError(c *Container, err error) error {
	code := 0
	switch {
	case agentclient.IsCommandNotFound(err):
		code = 127
	case agentclient.IsCommandNotExecutable(err):
		code = 126
	default:
		return fmt.Errorf("start container process: %w", err)
	}
	msg := err.Error()
	c.State.ExitCode = code
	c.State.Error = msg
	_ = c.save()
	return errdefs.InvalidParameter(fmt.Errorf("failed to create task for container: %s", msg))
}

// connectStdin feeds the container's stdin pipe into the new process.
func (d *Daemon) connectStdin(c *Container, proc *agentclient.Process) {
	if c.stdin == nil {
		c.stdin = newStdinPipe()
	}
	pipe := c.stdin
	go func() {
		w := proc.Stdin()
		_, _ = io.CopyBuffer(w, pipe.r, make([]byte, stdinCopyBuffer))
		_ = w.Close()
	}()
}

// errAgentExited is the re-adopt steps' way to say that the agent reports
// the main process exited: not a failure, the run is over.
var errAgentExited = errors.New("the container's process exited")

// attachRuntime reconnects a re-adopted VM's agent and resumes monitoring.
// Callers hold c.mu.
func (d *Daemon) attachRuntime(ctx context.Context, c *Container, m vmbackend.Machine) error {
	s := &vmStart{d: d, c: c, machine: m}
	var proc *agentclient.Process
	steps := []step{
		s.connectAgentStep(""),
		{"agent-phase", func(context.Context) error {
			switch s.hello.Phase {
			case "running":
				return nil
			case "exited":
				return errAgentExited
			default:
				return fmt.Errorf("agent reports phase %q", s.hello.Phase)
			}
		}},
		{"release-checkpoint-hold", func(ctx context.Context) error {
			// A daemon that died during a checkpoint left the processes
			// held (checkpoint.go): they run again. Nothing to do, and no
			// error, in a guest that holds none.
			if _, joins := joinsVM(c.HostConfig); !joins {
				if err := s.agent.Thaw(ctx); err != nil {
					d.log.WithError(err).WithField("container", c.ID[:12]).Debug("release a checkpoint's hold")
				}
			}
			return nil
		}},
		s.openLogStep(false),
		{"reattach-process", func(context.Context) error {
			hub := c.hub()
			proc = s.agent.Reattach(agentclient.ProcessIO{Stdout: hub.writer("stdout"), Stderr: hub.writer("stderr")})
			return nil
		}},
	}
	if _, err := runSteps(ctx, d.log.WithField("container", c.ID[:12]), "readopt", &s.cs, steps); err != nil {
		if errors.Is(err, errAgentExited) {
			code := 255
			if s.hello.Exit != nil {
				code = s.hello.Exit.Code
			}
			_ = m.Kill(ctx)
			d.markExited(c, code, "")
			return nil
		}
		return err
	}
	r := s.beginRun(proc)
	c.State.Pid = m.Pid()
	_ = c.save()
	d.monitorRun(c, r)
	return nil
}

// monitor waits for a run to end and records how it ended.
func (d *Daemon) monitor(c *Container, r *runtime) {
	defer d.wg.Done()
	defer close(r.finished)
	log := d.log.WithField("container", c.ID[:12])

	select {
	case <-r.proc.Exited():
	case <-r.agent.Done():
	case <-r.machine.Done():
	case <-r.detachCh:
		// Daemon shutdown: leave the VM running for the next daemon.
		if r.podHost == "" {
			r.agent.Close() // a member's is its host's connection
		}
		r.logw.Close()
		return
	}
	status, ok := r.proc.Status()
	reason := ""
	if !ok && r.podHost != "" {
		status, reason = joinedStatus(r) // pods.go
	} else if !ok {
		// The agent went away without reporting an exit: the VM died.
		select {
		case <-r.machine.Done():
		case <-time.After(2 * time.Second):
		}
		c.mu.Lock()
		offset := c.State.ConsoleOffset
		c.mu.Unlock()
		if code, found := lastExitMarker(c.consolePath(), offset); found {
			status = agentproto.ExitStatus{Code: code}
		} else {
			status = agentproto.ExitStatus{Code: 137}
			if err := r.agent.Err(); err != nil && !errors.Is(err, io.EOF) {
				reason = fmt.Sprintf("the container's VM stopped unexpectedly: %v", err)
			}
		}
	}
	c.mu.Lock()
	hold := c.buildHold
	// A container that is removed once it exits (--rm) needs neither
	// its disk synced nor its file systems unmounted cleanly: the disk
	// is deleted next. Its output was drained before the exit was
	// reported (the agent's drain), and its volumes and bind mounts are
	// written through to the host on every call (9p cache=mmap), so
	// nothing is lost by not waiting for the guest's power-off (~250 ms
	// under TCG, on the path of every `docker run --rm`). A restart of
	// it (docker restart) keeps its disk, and waits.
	disposable := ok && c.HostConfig.AutoRemove && !c.lc.restarting
	c.mu.Unlock()
	if r.podHost != "" {
		// A member's VM runs on: its process is gone and the agent has
		// unmounted its root; Kill below unplugs its disk.
	} else if hold != nil {
		// A build step's VM waits after the exit: the changes of a step
		// that succeeded are read now (build.go); either way it is
		// stopped below, as nothing else powers it off.
		if ok && status.Code == 0 {
			d.captureBuildDiff(r, hold)
		}
	} else if !disposable { // a disposable one is killed below at once
		// The agent powers the VM off after reporting; give it a moment,
		// then make sure no VMM process outlives the container.
		select {
		case <-r.machine.Done():
		case <-time.After(5 * time.Second):
			log.Warn("VM did not power off after its process exited; killing it")
		}
	}
	if err := r.machine.Kill(context.Background()); err != nil && r.podHost != "" {
		log.WithError(err).Warn("release the container's disk from the VM it ran in")
	}
	if r.podHost == "" {
		r.agent.Close()
	}

	c.mu.Lock()
	d.releaseMounts(c) // the VM is gone (mounts.go)
	// Taps, addresses, port proxies (network.go).
	d.detachNetworks(c)
	c.hub().endRun()
	r.logw.Close()
	c.run = nil
	if c.stdin != nil {
		// A new run gets a fresh stdin pipe.
		c.stdin.w.Close()
		c.stdin = nil
	}
	c.State.Status = container.StateExited
	c.State.Pid = 0
	c.State.ExitCode = status.Code
	c.State.OOMKilled = status.OOMKilled
	c.State.Error = reason
	c.State.FinishedAt = time.Now().UTC()
	d.dieEvent(c)
	restarting := d.restartAfterExit(c, r) // restart policy (restartpolicy.go)
	if err := c.save(); err != nil {
		log.WithError(err).Error("save container")
	}
	_ = os.RemoveAll(d.vmStateDir(c.ID))
	c.notifyWaiters(waitExit)
	autoRemove := c.HostConfig.AutoRemove && !restarting && !c.lc.restarting
	c.mu.Unlock()
	log.WithField("exitCode", status.Code).Info("container exited")

	if autoRemove {
		if err := d.removeContainer(context.Background(), c, true); err != nil {
			log.WithError(err).Warn("auto-remove")
		}
	}
}

// containerEnv is the environment dockerd gives a process: the merged
// config env plus HOSTNAME, a default PATH and TERM for TTYs.
func containerEnv(c *Container) []string {
	env := []string{"HOSTNAME=" + c.Config.Hostname}
	if c.Config.Tty {
		env = append(env, "TERM=xterm")
	}
	env = mergeEnv(env, c.Config.Env)
	hasPath := false
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return env
}

// mergeEnv overlays over on base by variable name, keeping order.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	index := map[string]int{}
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
			continue
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// defaultSysctls are what dockerd sets in a container's network namespace
// unless the container sets them itself: unprivileged ICMP echo sockets
// (ping without CAP_NET_RAW) and unprivileged low ports.
var defaultSysctls = map[string]string{
	"net.ipv4.ping_group_range":           "0 2147483647",
	"net.ipv4.ip_unprivileged_port_start": "0",
}

// containerSysctls is `--sysctl` over dockerd's defaults.
func containerSysctls(hc *container.HostConfig) map[string]string {
	out := make(map[string]string, len(defaultSysctls)+len(hc.Sysctls))
	for k, v := range defaultSysctls {
		out[k] = v
	}
	for k, v := range hc.Sysctls {
		out[k] = v
	}
	return out
}
