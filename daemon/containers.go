package daemon

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	timetypes "github.com/docker/docker/api/types/time"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/vmbackend"
)

// defaultStopTimeout is dockerd's grace period before SIGKILL.
const defaultStopTimeout = 10

// ContainerCreate makes a container: its record, its log and its own
// copy-on-write root disk on the image's base disk. Nothing of a failed
// create is left behind.
func (d *Daemon) ContainerCreate(ctx context.Context, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig) (resp container.CreateResponse, retErr error) {
	if cfg == nil {
		return resp, errdefs.InvalidParameter(fmt.Errorf("config cannot be empty in order to create a container"))
	}
	if hostCfg == nil {
		hostCfg = &container.HostConfig{}
	}
	if err := validateHostConfig(hostCfg); err != nil {
		return resp, err
	}
	// The log config is fixed here: the container's, or the daemon's
	// default, merged as dockerd does (logconfig.go).
	logCfg, err := resolveLogConfig(hostCfg.LogConfig, d.cfg.DefaultLogConfig)
	if err != nil {
		return resp, err
	}
	hostCfg.LogConfig = logCfg
	if err := validateHealthcheck(cfg.Healthcheck); err != nil {
		return resp, err
	}
	if cfg.Image == "" {
		return resp, errdefs.InvalidParameter(fmt.Errorf("no image specified"))
	}
	imageID, imgCfg, err := d.images.ImageConfig(cfg.Image)
	if err != nil {
		return resp, err
	}
	merged := mergeImageConfig(cfg, imgCfg)
	argv := append(append([]string{}, merged.Entrypoint...), merged.Cmd...)
	if len(argv) == 0 {
		return resp, errdefs.InvalidParameter(fmt.Errorf("no command specified"))
	}
	// Networks and published ports (network.go).
	if netCfg, err = d.prepareNetworking(hostCfg, merged, netCfg); err != nil {
		return resp, err
	}
	shape, warnings, err := d.shapeFor(hostCfg)
	if err != nil {
		return resp, err
	}

	id := newID()
	if name != "" {
		name = strings.TrimPrefix(name, "/")
		if !validName.MatchString(name) {
			return resp, errdefs.InvalidParameter(fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
		}
		if err := d.containers.reserve(name, id); err != nil {
			return resp, err
		}
	} else if name, err = d.containers.generateName(id); err != nil {
		return resp, err
	}
	if merged.Hostname == "" {
		merged.Hostname = id[:12]
	}
	c := &Container{
		ID:         id,
		Name:       name,
		Created:    time.Now().UTC(),
		ImageRef:   cfg.Image,
		ImageID:    imageID,
		Config:     merged,
		HostConfig: hostCfg,
		NetConfig:  netCfg,
		Path:       argv[0],
		Args:       argv[1:],
		Shape:      shape,
		State:      ContainerState{Status: container.StateCreated},
		Dir:        d.containerDir(id),
	}
	defer func() {
		if retErr != nil {
			d.containers.release(name)
			_ = os.RemoveAll(c.Dir)
		}
	}()
	// Bind mounts and volumes (mounts.go); it cleans up after itself on
	// error, and the volumes it made go with a later failure.
	if err := d.registerMounts(c); err != nil {
		return resp, err
	}
	defer func() {
		if retErr != nil {
			d.removeMounts(c, true)
		}
	}()
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return resp, fmt.Errorf("create container directory: %w", err)
	}
	// The image store has the image's base disk; the VM backend layers the
	// container's own disk over it in its format.
	base, err := d.images.BaseDisk(ctx, imageID)
	if err != nil {
		return resp, fmt.Errorf("image disk: %w", err)
	}
	if err := d.vms.CreateRootDisk(ctx, base, c.diskPath()); err != nil {
		return resp, errdefs.System(fmt.Errorf("create root disk: %w", err))
	}
	if err := c.save(); err != nil {
		return resp, err
	}
	d.containers.add(c)
	c.mu.Lock()
	d.containerEvent(c, events.ActionCreate, nil)
	c.mu.Unlock()
	d.log.WithFields(map[string]any{"container": id[:12], "name": name, "image": cfg.Image}).Info("container created")
	return container.CreateResponse{ID: id, Warnings: warnings}, nil
}

func (d *Daemon) containerDir(id string) string { return d.cfg.containersDir() + "/" + id }

// validateHostConfig refuses what jevm cannot honour yet, rather than
// silently ignoring it.
func validateHostConfig(hc *container.HostConfig) error {
	notYet := func(what string) error {
		return errdefs.InvalidParameter(fmt.Errorf("%s: not supported by jevm yet", what))
	}
	switch {
	case hc.Privileged:
		return notYet("--privileged")
	}
	if hc.Memory != 0 && hc.Memory < 6*1024*1024 {
		return errdefs.InvalidParameter(fmt.Errorf("Minimum memory limit allowed is 6MB"))
	}
	if hc.NanoCPUs < 0 {
		return errdefs.InvalidParameter(fmt.Errorf("invalid CPU value"))
	}
	if err := container.ValidateRestartPolicy(hc.RestartPolicy); err != nil {
		return errdefs.InvalidParameter(err)
	}
	if hc.AutoRemove && hc.RestartPolicy.Name != "" && hc.RestartPolicy.Name != container.RestartPolicyDisabled {
		return errdefs.InvalidParameter(fmt.Errorf("can't create 'AutoRemove' container with restart policy"))
	}
	if err := validateUlimits(hc.Ulimits); err != nil { // ulimits.go
		return errdefs.InvalidParameter(err)
	}
	return nil
}

// shapeFor maps -m and --cpus to a VM size. The VM's memory is the
// container's memory limit (rounded up to 64 MiB, at least MinMemoryMiB).
func (d *Daemon) shapeFor(hc *container.HostConfig) (shape vmbackend.Shape, warnings []string, err error) {
	shape = d.cfg.DefaultShape
	if hc.Memory > 0 {
		mib := int((hc.Memory + (1<<20 - 1)) >> 20)
		mib = (mib + 63) / 64 * 64
		if mib < d.cfg.MinMemoryMiB {
			warnings = append(warnings, fmt.Sprintf("a jeVM needs at least %d MiB of memory; the memory limit was raised from %d MiB", d.cfg.MinMemoryMiB, hc.Memory>>20))
			mib = d.cfg.MinMemoryMiB
		}
		shape.MemoryMiB = mib
	}
	switch {
	case hc.NanoCPUs > 0:
		shape.VCPUs = int((hc.NanoCPUs + 1e9 - 1) / 1e9)
	case hc.CPUCount > 0:
		shape.VCPUs = int(hc.CPUCount)
	}
	return shape, warnings, nil
}

// mergeImageConfig applies dockerd's rules: container settings win, the
// image fills the gaps; an entrypoint given by the user drops the image's
// command.
func mergeImageConfig(cfg, img *container.Config) *container.Config {
	m := *cfg
	if img == nil {
		return &m
	}
	m.Env = mergeEnv(img.Env, cfg.Env)
	if len(cfg.Entrypoint) == 0 {
		m.Entrypoint = img.Entrypoint
		if len(cfg.Cmd) == 0 {
			m.Cmd = img.Cmd
		}
	}
	if m.WorkingDir == "" {
		m.WorkingDir = img.WorkingDir
	}
	if m.User == "" {
		m.User = img.User
	}
	if len(img.Labels) > 0 {
		labels := map[string]string{}
		for k, v := range img.Labels {
			labels[k] = v
		}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		m.Labels = labels
	}
	if len(img.ExposedPorts) > 0 {
		ports := nat.PortSet{}
		for k := range img.ExposedPorts {
			ports[k] = struct{}{}
		}
		for k := range cfg.ExposedPorts {
			ports[k] = struct{}{}
		}
		m.ExposedPorts = ports
	}
	if len(img.Volumes) > 0 {
		vols := map[string]struct{}{}
		for k := range img.Volumes {
			vols[k] = struct{}{}
		}
		for k := range cfg.Volumes {
			vols[k] = struct{}{}
		}
		m.Volumes = vols
	}
	if m.StopSignal == "" {
		m.StopSignal = img.StopSignal
	}
	m.Healthcheck = mergeHealthcheck(cfg.Healthcheck, img.Healthcheck)
	if len(m.OnBuild) == 0 {
		m.OnBuild = img.OnBuild
	}
	if len(m.Shell) == 0 {
		m.Shell = img.Shell
	}
	return &m
}

// ContainerStart starts a created or exited container in a new clone.
func (d *Daemon) ContainerStart(ctx context.Context, ref string) (err error) {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removing {
		return errdefs.Conflict(fmt.Errorf("container is marked for removal and cannot be started"))
	}
	if c.State.Status == container.StatePaused {
		return errdefs.Conflict(fmt.Errorf("cannot start a paused container, try unpause instead"))
	}
	if c.running() {
		return errdefs.NotModified(fmt.Errorf("container %s is already running", c.ID))
	}
	if err := d.beforeStart(c); err != nil {
		return err
	}
	err = d.startContainer(ctx, c)
	if err != nil && c.HostConfig.AutoRemove {
		// As dockerd does: a --rm container whose start failed is removed
		// (`docker run --rm` waits for that before it reports the error).
		go func() {
			if rmErr := d.removeContainer(context.Background(), c, true); rmErr != nil {
				d.log.WithError(rmErr).WithField("container", c.ID[:12]).Warn("remove after failed start")
			}
		}()
	}
	return err
}

// ContainerStop sends the stop signal, then SIGKILL after the timeout.
func (d *Daemon) ContainerStop(ctx context.Context, ref string, opts container.StopOptions) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if done, err := d.beforeStop(ctx, c, true); done || err != nil {
		c.mu.Unlock()
		return err
	}
	if !c.running() || c.run == nil {
		c.mu.Unlock()
		return errdefs.NotModified(fmt.Errorf("container %s is already stopped", c.ID))
	}
	r := c.run
	r.stopRequested = true
	sigName := opts.Signal
	if sigName == "" {
		sigName = c.Config.StopSignal
	}
	timeout := defaultStopTimeout
	if c.Config.StopTimeout != nil {
		timeout = *c.Config.StopTimeout
	}
	if opts.Timeout != nil {
		timeout = *opts.Timeout
	}
	c.mu.Unlock()

	sig := syscall.SIGTERM
	if sigName != "" {
		if sig, err = parseSignal(sigName); err != nil {
			return err
		}
	}
	if err := d.stopRun(ctx, c, r, sig, timeout); err != nil {
		return err
	}
	d.lockedContainerEvent(c, events.ActionStop, nil)
	return nil
}

// stopRun signals the run's process and escalates to SIGKILL, and to
// killing the VM if the agent does not answer.
func (d *Daemon) stopRun(ctx context.Context, c *Container, r *runtime, sig syscall.Signal, timeout int) error {
	log := d.log.WithField("container", c.ID[:12])
	if err := r.proc.Signal(ctx, int(sig)); err != nil {
		log.WithError(err).Warn("stop signal not delivered")
	} else {
		d.killEvent(c, sig)
	}
	if timeout < 0 {
		select {
		case <-r.finished:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case <-r.finished:
		return nil
	case <-time.After(time.Duration(timeout) * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	log.WithField("timeout", timeout).Info("container did not stop in time; sending SIGKILL")
	if err := r.proc.Signal(ctx, int(syscall.SIGKILL)); err != nil {
		log.WithError(err).Warn("SIGKILL not delivered")
	} else {
		d.killEvent(c, syscall.SIGKILL)
	}
	select {
	case <-r.finished:
		return nil
	case <-time.After(5 * time.Second):
	}
	log.Warn("process did not die; killing its VM")
	if err := r.machine.Kill(ctx); err != nil {
		return fmt.Errorf("kill VM: %w", err)
	}
	<-r.finished
	return nil
}

// ContainerKill sends a signal to the container's main process.
func (d *Daemon) ContainerKill(ctx context.Context, ref string, signal string) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if signal != "" {
		if sig, err = parseSignal(signal); err != nil {
			return err
		}
	}
	c.mu.Lock()
	if done, err := d.beforeStop(ctx, c, killEndsContainer(c, sig)); done || err != nil {
		c.mu.Unlock()
		return err
	}
	r := c.run
	if !c.running() || r == nil {
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("Cannot kill container: %s: Container %s is not running", ref, c.ID))
	}
	if sig == syscall.SIGKILL {
		r.stopRequested = true
	}
	c.mu.Unlock()
	if err := r.proc.Signal(ctx, int(sig)); err != nil {
		if sig != syscall.SIGKILL {
			return fmt.Errorf("deliver %s: %w", unix.SignalName(sig), err)
		}
		// The agent is unreachable: SIGKILL means the VM goes.
		d.killEvent(c, sig)
		return r.machine.Kill(ctx)
	}
	d.killEvent(c, sig)
	if sig == syscall.SIGKILL {
		select {
		case <-r.finished:
		case <-time.After(5 * time.Second):
			_ = r.machine.Kill(ctx)
			<-r.finished
		}
	}
	return nil
}

// parseSignal accepts "SIGTERM", "TERM", "term" and "15", as dockerd does.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, errdefs.InvalidParameter(fmt.Errorf("Invalid signal: %s", s))
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, errdefs.InvalidParameter(fmt.Errorf("Invalid signal: %s", s))
}

// ContainerRestart stops the container if it runs, then starts it.
func (d *Daemon) ContainerRestart(ctx context.Context, ref string, opts container.StopOptions) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	if err := d.ContainerStop(ctx, c.ID, opts); err != nil && !errdefs.IsNotModified(err) {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running() {
		return nil
	}
	// dockerd counts only restarts made by a restart policy in
	// RestartCount, not explicit ones.
	if err := d.beforeStart(c); err != nil {
		return err
	}
	if err := d.startContainer(ctx, c); err != nil {
		return err
	}
	d.containerEvent(c, events.ActionRestart, nil)
	return nil
}

// ContainerWait registers a waiter and returns its channel.
func (d *Daemon) ContainerWait(ctx context.Context, ref string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
	c, err := d.containers.get(ref)
	if err != nil {
		return nil, err
	}
	switch cond {
	case "", container.WaitConditionNotRunning:
		cond = container.WaitConditionNotRunning
	case container.WaitConditionNextExit, container.WaitConditionRemoved:
	default:
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid condition: %q", cond))
	}
	w := &waiter{cond: cond, ch: make(chan container.WaitResponse, 1)}
	c.mu.Lock()
	if cond == container.WaitConditionNotRunning && !c.running() {
		resp := container.WaitResponse{StatusCode: int64(c.State.ExitCode)}
		c.mu.Unlock()
		w.ch <- resp
		return w.ch, nil
	}
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		c.dropWaiter(w)
		c.mu.Unlock()
	}()
	return w.ch, nil
}

// ContainerAttach streams the container's output (and input) until the
// current or next run ends.
func (d *Daemon) ContainerAttach(ctx context.Context, ref string, cfg *backend.AttachConfig) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("container %s is being removed", c.ID))
	}
	tty := c.Config.Tty
	openStdin := c.Config.OpenStdin
	stdinOnce := c.Config.StdinOnce
	logDriver, logPath := c.logConfig().Type, c.logFilePath()
	c.mu.Unlock()
	if cfg.Logs && logDriver == logDriverNone {
		return errReadLogsNotSupported
	}
	detachKeys, err := attachDetachKeys(cfg.DetachKeys)
	if err != nil {
		return err
	}

	stdin, stdout, stderr, err := cfg.GetStreams(!tty)
	if err != nil {
		return err
	}
	if !cfg.UseStdout {
		stdout = nil
	}
	if !cfg.UseStderr || tty {
		stderr = nil
	}
	if cfg.Logs {
		msgs := make(chan backend.LogMessage)
		go readLog(ctx, logPath, logReadOptions{Stdout: stdout != nil, Stderr: stderr != nil, Tail: -1}, func() bool { return false }, msgs)
		for m := range msgs {
			w := stdout
			if m.Stream == "stderr" {
				w = stderr
			}
			if w != nil {
				if _, err := w.Write(m.Line); err != nil {
					return nil
				}
			}
		}
	}
	if !cfg.Stream {
		return nil
	}
	c.mu.Lock()
	hub := c.hub()
	sub := hub.subscribe(stdout, stderr)
	var pipe *stdinPipe
	if cfg.UseStdin && openStdin && stdin != nil {
		if c.stdin == nil {
			c.stdin = newStdinPipe()
		}
		pipe = c.stdin
	}
	d.containerEvent(c, events.ActionAttach, nil)
	c.mu.Unlock()
	defer hub.unsubscribe(sub)

	d.attachStreams(ctx, c, sub, pipe, stdin, tty, stdinOnce, detachKeys)
	return nil
}

// ContainerLogs reads the container's log (json-file or local; logfile.go).
func (d *Daemon) ContainerLogs(ctx context.Context, ref string, opts container.LogsOptions) (<-chan backend.LogMessage, bool, error) {
	c, err := d.containers.get(ref)
	if err != nil {
		return nil, false, err
	}
	if !opts.ShowStdout && !opts.ShowStderr {
		return nil, false, errdefs.InvalidParameter(fmt.Errorf("You must choose at least one stream"))
	}
	c.mu.Lock()
	logDriver, logPath := c.logConfig().Type, c.logFilePath()
	c.mu.Unlock()
	if logDriver == logDriverNone {
		return nil, false, errReadLogsNotSupported
	}
	ro := logReadOptions{Stdout: opts.ShowStdout, Stderr: opts.ShowStderr, Tail: -1, Follow: opts.Follow}
	if opts.Tail != "" && opts.Tail != "all" {
		n, err := strconv.Atoi(opts.Tail)
		if err == nil && n >= 0 {
			ro.Tail = n
		}
	}
	now := time.Now()
	if opts.Since != "" {
		if ro.Since, err = parseLogTime(opts.Since, now); err != nil {
			return nil, false, err
		}
	}
	if opts.Until != "" {
		if ro.Until, err = parseLogTime(opts.Until, now); err != nil {
			return nil, false, err
		}
	}
	c.mu.Lock()
	tty := c.Config.Tty
	c.mu.Unlock()
	stillRunning := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.run != nil
	}
	out := make(chan backend.LogMessage, 64)
	go readLog(ctx, logPath, ro, stillRunning, out)
	return out, tty, nil
}

// parseLogTime accepts what `docker logs --since/--until` send: unix
// seconds with a fraction, RFC 3339 or a duration before now.
func parseLogTime(v string, now time.Time) (time.Time, error) {
	ts, err := timetypes.GetTimestamp(v, now)
	if err != nil {
		return time.Time{}, errdefs.InvalidParameter(err)
	}
	sec, nsec, err := timetypes.ParseTimestamps(ts, 0)
	if err != nil {
		return time.Time{}, errdefs.InvalidParameter(err)
	}
	return time.Unix(sec, nsec), nil
}

// ContainerResize sets the TTY size of the main process.
func (d *Daemon) ContainerResize(ctx context.Context, ref string, height, width uint) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	r := c.run
	tty := c.Config.Tty
	c.mu.Unlock()
	if r == nil {
		return errdefs.Conflict(fmt.Errorf("Container %s is not running", c.ID))
	}
	if !tty {
		return nil
	}
	if err := r.proc.Resize(ctx, uint16(height), uint16(width)); err != nil {
		return err
	}
	d.lockedContainerEvent(c, events.ActionResize, map[string]string{"height": strconv.FormatUint(uint64(height), 10), "width": strconv.FormatUint(uint64(width), 10)})
	return nil
}

// ContainerRemove removes a container, killing its VM first with force.
func (d *Daemon) ContainerRemove(ctx context.Context, ref string, opts container.RemoveOptions) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	if opts.RemoveLinks {
		return errdefs.InvalidParameter(fmt.Errorf("jevm has no legacy links to remove"))
	}
	if opts.RemoveVolumes {
		c.mu.Lock()
		c.removeVolumes = true
		c.mu.Unlock()
	}
	return d.removeContainer(ctx, c, opts.Force)
}

func (d *Daemon) removeContainer(ctx context.Context, c *Container, force bool) error {
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("removal of container %s is already in progress", c.ID))
	}
	if err := d.beforeRemove(c, force); err != nil {
		c.mu.Unlock()
		return err
	}
	if c.running() {
		if !force {
			c.mu.Unlock()
			return errdefs.Conflict(fmt.Errorf("cannot remove container %q: container is running: stop the container before removing or force remove", "/"+c.Name))
		}
	}
	c.removing = true
	r := c.run
	c.mu.Unlock()
	if r != nil {
		r.stopRequested = true
		d.killEvent(c, syscall.SIGKILL)
		if err := r.machine.Kill(ctx); err != nil {
			d.log.WithError(err).WithField("container", c.ID[:12]).Warn("kill VM for removal")
		}
		<-r.finished
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.RemoveAll(c.Dir); err != nil {
		c.removing = false
		return fmt.Errorf("remove container files: %w", err)
	}
	_ = os.RemoveAll(d.vmStateDir(c.ID))
	d.containers.remove(c)
	// Volume references; `rm -v` and --rm also remove anonymous volumes.
	d.removeMounts(c, c.removeVolumes || c.HostConfig.AutoRemove)
	d.containerEvent(c, events.ActionDestroy, nil)
	c.State.Status = container.StateDead
	c.notifyWaiters(waitRemoved)
	d.log.WithField("container", c.ID[:12]).Info("container removed")
	go d.images.GCDisks(d.imageUsers)
	return nil
}

// ContainerRename renames a container.
func (d *Daemon) ContainerRename(ctx context.Context, ref, newName string) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	newName = strings.TrimPrefix(newName, "/")
	if newName == "" {
		return errdefs.InvalidParameter(fmt.Errorf("Neither old nor new names may be empty"))
	}
	if !validName.MatchString(newName) {
		return errdefs.InvalidParameter(fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", newName))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Name == newName {
		return errdefs.InvalidParameter(fmt.Errorf("Renaming a container with the same name as its current name"))
	}
	old := c.Name
	if err := d.containers.rename(c, old, newName); err != nil {
		return err
	}
	c.Name = newName
	if err := c.save(); err != nil {
		c.Name = old
		_ = d.containers.rename(c, newName, old)
		return err
	}
	d.containerEvent(c, events.ActionRename, map[string]string{"oldName": "/" + old})
	return nil
}

// ContainersPrune removes stopped containers.
func (d *Daemon) ContainersPrune(ctx context.Context, pruneFilters filters.Args) (*container.PruneReport, error) {
	if err := pruneFilters.Validate(map[string]bool{"label": true, "label!": true, "until": true}); err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	var until time.Time
	if vals := pruneFilters.Get("until"); len(vals) > 0 {
		t, err := parseLogTime(vals[0], time.Now())
		if err != nil {
			return nil, err
		}
		until = t
	}
	report := &container.PruneReport{}
	for _, c := range d.containers.all() {
		c.mu.Lock()
		keep := c.running() || c.removing ||
			(!until.IsZero() && c.Created.After(until)) ||
			!matchLabels(pruneFilters, c.Config.Labels)
		c.mu.Unlock()
		if keep {
			continue
		}
		if err := d.removeContainer(ctx, c, false); err != nil {
			continue
		}
		report.ContainersDeleted = append(report.ContainersDeleted, c.ID)
	}
	d.logEvent(events.ContainerEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(report.SpaceReclaimed, 10)})
	return report, nil
}

// matchLabels applies "label" and "label!" filters.
func matchLabels(f filters.Args, labels map[string]string) bool {
	if !f.MatchKVList("label", labels) {
		return false
	}
	for _, neg := range f.Get("label!") {
		k, v, hasV := strings.Cut(neg, "=")
		if got, ok := labels[k]; ok && (!hasV || got == v) {
			return false
		}
	}
	return true
}
