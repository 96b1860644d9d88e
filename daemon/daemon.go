// Package daemon is jevm's engine: it keeps the containers, their state and
// logs, and runs each container in its own VM through vmbackend. It
// implements the backend interfaces the api package declares.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	units "github.com/docker/go-units"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/volumes"
)

// Config is the daemon's part of jevmd's configuration.
type Config struct {
	// DataRoot holds containers, images and templates (dockerd's data-root).
	DataRoot string
	// ExecRoot holds run-time state: the VMs' sockets (dockerd's exec-root).
	ExecRoot string
	// DefaultShape is the VM size of a container without -m/--cpus.
	DefaultShape vmbackend.Shape
	// MinMemoryMiB is the smallest VM a container gets.
	MinMemoryMiB int
	// Version strings for /version and /info.
	ServerVersion string
	APIVersion    string
	MinAPIVersion string
	GitCommit     string
	// Settings shown by /info.
	RegistryMirrors    []string
	InsecureRegistries []string
	Debug              bool
	// Network configures container networking (network.go).
	Network NetworkConfig
	// DefaultUlimits are dockerd's --default-ulimit (daemon.json
	// "default-ulimits"): every container gets those it does not set
	// itself, merged at start (ulimits.go).
	DefaultUlimits []*units.Ulimit
	// DefaultLogConfig is dockerd's --log-driver/--log-opt (daemon.json
	// "log-driver", "log-opts"): the logging of containers that do not
	// choose a driver (logconfig.go). Empty Type: json-file. Check it
	// with ValidateLogConfig.
	DefaultLogConfig container.LogConfig
	// Experimental is dockerd's --experimental, shown by /info and
	// /version.
	Experimental bool
	// LiveRestoreDisabled is dockerd's --live-restore=false: Shutdown
	// stops the running containers instead of leaving their VMs running
	// for the next daemon. jevm's default is to keep them (a VM does not
	// depend on the daemon's process), the same as dockerd with
	// --live-restore.
	LiveRestoreDisabled bool
	// SharedStorage are the host directories that hold the same files as
	// NFS exports the VMs reach (jevmd --shared-storage): volumes and
	// bind mounts there are mounted by the guests, so they follow
	// checkpoints and migrated containers (volumes.SharedStorage).
	SharedStorage []volumes.SharedStorage
	// VMPoolSize is how many blank VMs the warm pool keeps ready per
	// shape (pool.go); 0 turns the pool off.
	VMPoolSize int
	// MigrationTLS is the TLS client configuration this daemon reaches
	// migration targets with (its CA and its own certificate); nil: it
	// migrates nothing (migrate_out.go).
	MigrationTLS *tls.Config
}

// Daemon is the engine.
type Daemon struct {
	cfg    Config
	log    *logrus.Entry
	vms    vmbackend.Provider
	images ImageService

	containers *containerStore
	events     *eventBus
	// volumes is the volume store (mounts.go, volumes.go).
	volumes *volumes.Store
	// execs are the exec instances of running containers (exec.go).
	execs *execStore
	// net is the network controller (network/controller, used through
	// network.go); nil in unit tests that build a Daemon by hand.
	net networkController
	// swarmNets gives containers addresses on swarm networks (nil
	// outside swarm mode; SetSwarmAttacher).
	swarmMu   sync.Mutex
	swarmNets SwarmAttacher
	// pool is the warm pool of blank VMs (pool.go); nil when off.
	pool *vmPool
	// migIn are the live migrations offered to this daemon
	// (migrate_in.go); baseIDs caches base disks' digests
	// (migrate_out.go).
	migIn   incomingMigrations
	baseIDs struct {
		sync.Mutex
		m map[string]baseIDEntry
	}
	// stopping is closed when Shutdown begins.
	stopping chan struct{}
	// wg tracks container monitors so Shutdown can let them finish.
	wg sync.WaitGroup

	startedAt time.Time
}

// New loads the containers under cfg.DataRoot and re-adopts the VMs of those
// that were running when the previous daemon stopped.
func New(ctx context.Context, cfg Config, vms vmbackend.Provider, images ImageService, log *logrus.Entry) (*Daemon, error) {
	if cfg.DefaultShape.MemoryMiB == 0 {
		cfg.DefaultShape.MemoryMiB = 256
	}
	if cfg.DefaultShape.VCPUs == 0 {
		cfg.DefaultShape.VCPUs = 1
	}
	if cfg.MinMemoryMiB == 0 {
		cfg.MinMemoryMiB = 128
	}
	if err := validateUlimits(cfg.DefaultUlimits); err != nil {
		return nil, fmt.Errorf("default-ulimits: %w", err)
	}
	if err := ValidateLogConfig(cfg.DefaultLogConfig); err != nil {
		return nil, fmt.Errorf("default logging configuration: %w", err)
	}
	cfg.DefaultLogConfig = normalizeDefaultLogConfig(cfg.DefaultLogConfig)
	for _, dir := range []string{cfg.containersDir(), cfg.vmStateRoot()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	d := &Daemon{
		cfg:        cfg,
		log:        log,
		vms:        vms,
		images:     images,
		containers: newContainerStore(),
		events:     newEventBus(),
		execs:      newExecStore(),
		stopping:   make(chan struct{}),
		startedAt:  time.Now(),
	}
	if err := d.openVolumes(); err != nil {
		return nil, err
	}
	// Networks before the containers: re-adopted VMs keep their taps.
	if err := d.initNetworking(cfg.Network); err != nil {
		return nil, err
	}
	if err := d.restore(ctx); err != nil {
		return nil, err
	}
	d.reconcileNetworking()
	return d, nil
}

func (c Config) containersDir() string { return filepath.Join(c.DataRoot, "containers") }
func (c Config) vmStateRoot() string   { return filepath.Join(c.ExecRoot, "vms") }

// vmStateDir is short on purpose: unix socket paths are limited to 108 bytes.
func (d *Daemon) vmStateDir(id string) string { return filepath.Join(d.cfg.vmStateRoot(), id[:12]) }

func (d *Daemon) machineSpec(c *Container) vmbackend.MachineSpec {
	return vmbackend.MachineSpec{
		ID:         c.ID,
		Shape:      c.Shape,
		RootDisk:   c.diskPath(),
		StateDir:   d.vmStateDir(c.ID),
		ConsoleLog: c.consolePath(),
		Resources:  resourcesFor(c.HostConfig), // resources.go
	}
}

// restore loads every container record and brings running ones back.
func (d *Daemon) restore(ctx context.Context) error {
	entries, err := os.ReadDir(d.cfg.containersDir())
	if err != nil {
		return fmt.Errorf("read containers: %w", err)
	}
	var adopt []*Container
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(d.cfg.containersDir(), e.Name())
		c, err := loadContainer(dir)
		if err != nil {
			// A directory without a record is the leftover of a create
			// that crashed half-way: nothing refers to it.
			d.log.WithError(err).WithField("dir", dir).Warn("removing incomplete container directory")
			d.reapVM(ctx, e.Name(), dir)
			_ = os.RemoveAll(dir)
			continue
		}
		d.containers.add(c)
		recoverRestoreDisk(d.log, c)
		d.restoreMounts(c)
		if c.running() {
			adopt = append(adopt, c)
		}
	}
	// VMs first, then the containers that joined them (pods.go).
	for _, c := range adopt {
		if _, joins := joinsVM(c.HostConfig); !joins {
			d.readopt(ctx, c)
		}
	}
	for _, c := range adopt {
		if _, joins := joinsVM(c.HostConfig); joins {
			c.mu.Lock()
			d.readoptJoined(ctx, c)
			c.mu.Unlock()
		}
	}
	// Restart policies: start what dockerd starts on boot (restartpolicy.go).
	d.autoStartRestored()
	d.log.WithFields(logrus.Fields{"containers": len(entries), "readopted": len(adopt)}).Info("containers restored")
	return nil
}

// reapVM stops the VM of a container directory without a record: one an
// incoming live migration had started (migrate_in.go) when the daemon
// died. VMs outlive the daemon, so it would run on, unowned.
func (d *Daemon) reapVM(ctx context.Context, id, dir string) {
	if !validContainerID.MatchString(id) {
		return
	}
	spec := vmbackend.MachineSpec{ID: id, StateDir: d.vmStateDir(id), ConsoleLog: filepath.Join(dir, "console.log"), Shape: d.cfg.DefaultShape}
	if _, err := os.Stat(spec.StateDir); err != nil {
		return
	}
	if m, err := d.vms.Adopt(ctx, spec); err == nil {
		d.log.WithField("container", id[:12]).Warn("stopping the VM of an unfinished incoming migration")
		_ = m.Kill(ctx)
	}
	_ = os.RemoveAll(spec.StateDir)
}

// readopt reconnects to the VM of a container that was running when the
// previous daemon stopped. If that cannot be done honestly, the container is
// marked exited with the reason.
func (d *Daemon) readopt(ctx context.Context, c *Container) {
	log := d.log.WithField("container", c.ID[:12])
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	spec := d.machineSpec(c)
	// A daemon that died during a live migration (migrate_out.go): a
	// guest it sent but never handed over runs on here.
	out := c.MigratingOut
	spec.ResumeUncommittedMigration = out != nil && !out.Committed
	m, err := d.vms.Adopt(ctx, spec)
	if out != nil {
		log.WithFields(logrus.Fields{"target": out.Target, "committed": out.Committed, "adopted": err == nil}).Warn("jevmd stopped during a live migration of the container")
		c.MigratingOut = nil
		_ = c.save()
	}
	if err != nil {
		code, found := lastExitMarker(c.consolePath(), c.State.ConsoleOffset)
		reason := ""
		if !found {
			code = 255
			reason = "the container's VM stopped while jevmd was down; its exit status is unknown"
		}
		if out != nil && out.Committed {
			reason = fmt.Sprintf("jevmd stopped while handing the container over to %s in a live migration: it runs there if that host resumed it", out.Target)
		}
		if !errors.Is(err, vmbackend.ErrNotRunning) {
			reason = fmt.Sprintf("could not re-adopt the container's VM after a daemon restart: %v", err)
		}
		log.WithError(err).WithField("exitCode", code).Warn("VM not re-adopted; marking container exited")
		d.markExited(c, code, reason)
		return
	}
	if err := d.attachRuntimeKeepingPause(ctx, c, m); err != nil {
		log.WithError(err).Warn("agent of re-adopted VM did not answer; stopping it")
		_ = m.Kill(context.Background())
		d.markExited(c, 255, fmt.Sprintf("could not reconnect to the container's agent after a daemon restart: %v", err))
		return
	}
	log.Info("re-adopted running container")
}

// markExited records an exit without a runtime. Callers hold c.mu.
func (d *Daemon) markExited(c *Container, code int, reason string) {
	c.State.Status = "exited"
	c.State.Pid = 0
	c.State.ExitCode = code
	c.State.Error = reason
	c.State.FinishedAt = time.Now().UTC()
	if err := c.save(); err != nil {
		d.log.WithError(err).Error("save container")
	}
}

// exitMarkerWindow bounds what is read of a console log for the exit
// marker: the guest writes the log (it is untrusted), and the marker is
// the last thing it writes before powering off.
const exitMarkerWindow = 64 << 10

// lastExitMarker returns the exit code of the last "JEVM-EXIT <code>"
// marker the agent wrote on the console since offset (the log's size when
// this run's VM started: a marker of an earlier run must not stand for
// this one), reading at most the last exitMarkerWindow bytes.
func lastExitMarker(consoleLog string, offset int64) (int, bool) {
	f, err := os.Open(consoleLog)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() <= offset {
		return 0, false
	}
	from := max(offset, st.Size()-exitMarkerWindow)
	b := make([]byte, st.Size()-from)
	n, _ := f.ReadAt(b, from)
	b = b[:n]
	i := strings.LastIndex(string(b), "JEVM-EXIT ")
	if i < 0 {
		return 0, false
	}
	var code int
	if _, err := fmt.Sscanf(string(b[i:]), "JEVM-EXIT %d", &code); err != nil {
		return 0, false
	}
	return code, true
}

// Shutdown stops serving: running containers keep running in their VMs
// (they are re-adopted by the next daemon), as with dockerd's live-restore,
// unless live restore is disabled: then they are stopped first, each with
// its stop signal and timeout, all within ctx (dockerd's
// --shutdown-timeout).
func (d *Daemon) Shutdown(ctx context.Context) error {
	close(d.stopping)
	d.pool.close()         // blanks are not containers: they go
	d.shutdownFileOps(ctx) // maintenance clones of stopped containers (maintenance.go)
	if d.cfg.LiveRestoreDisabled {
		d.stopAllForShutdown(ctx)
	}
	for _, c := range d.containers.all() {
		c.mu.Lock()
		if c.run != nil {
			c.run.detach()
		}
		c.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Proxies and DNS stop; bridges no running container needs go.
	d.shutdownNetworking()
	return d.vms.Close()
}

// stopAllForShutdown stops every running container as dockerd does when it
// shuts down without live-restore: in parallel, with each container's stop
// signal and timeout. A container that is not gone when ctx ends has its VM
// killed. Restart policies are not applied now (the daemon is stopping) and
// the stop is not a manual one, so the next daemon starts the containers
// whose policy says so.
func (d *Daemon) stopAllForShutdown(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range d.containers.all() {
		c.mu.Lock()
		r := c.run
		if r == nil || !c.running() {
			c.mu.Unlock()
			continue
		}
		sig := syscall.SIGTERM
		if c.Config.StopSignal != "" {
			if s, err := parseSignal(c.Config.StopSignal); err == nil {
				sig = s
			}
		}
		timeout := defaultStopTimeout
		if c.Config.StopTimeout != nil {
			timeout = *c.Config.StopTimeout
		}
		paused := c.State.Status == container.StatePaused
		c.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			log := d.log.WithField("container", c.ID[:12])
			if paused {
				// A paused VM cannot take a signal; nothing it runs can
				// clean up, so end it.
				_ = r.machine.Kill(ctx)
				<-r.finished
				return
			}
			if err := d.stopRun(ctx, c, r, sig, timeout); err != nil {
				log.WithError(err).Warn("container did not stop within the shutdown timeout; killing its VM")
				_ = r.machine.Kill(context.Background())
				<-r.finished
			}
			log.Info("stopped at daemon shutdown (live restore is off)")
		}()
	}
	wg.Wait()
}

// shutdownGrace is what dockerd adds to a container's stop timeout when it
// sizes the shutdown timeout: time for the kill after the timeout.
const shutdownGrace = 5 * time.Second

// ShutdownTimeout is how long Shutdown may take, as dockerd computes it:
// the configured --shutdown-timeout, raised to the longest stop timeout of
// a running container plus a grace period when live restore is off; a
// negative result means no limit.
func (d *Daemon) ShutdownTimeout(configured time.Duration) time.Duration {
	if configured < 0 || !d.cfg.LiveRestoreDisabled {
		return configured
	}
	out := configured
	for _, c := range d.containers.all() {
		c.mu.Lock()
		running := c.running()
		stop := defaultStopTimeout
		if c.Config.StopTimeout != nil {
			stop = *c.Config.StopTimeout
		}
		c.mu.Unlock()
		if !running {
			continue
		}
		if stop < 0 {
			return -1
		}
		if t := time.Duration(stop)*time.Second + shutdownGrace; t > out {
			out = t
		}
	}
	return out
}
