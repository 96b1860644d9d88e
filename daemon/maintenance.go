package daemon

// Maintenance clones: file operations (docker cp, export, diff, commit) on
// a container that is not running. The container's disk is only usable
// inside a VM, so the daemon starts a clone with the container's own
// machine spec (the provider refuses a second VM for the same ID, so the
// disk is never used twice), sends the agent "mount" instead of "start",
// and serves the operations through it. The clone lingers briefly after
// its last operation, so that the CLI's request pairs (HEAD then PUT for
// `docker cp` into a container) and scripts of several `docker cp` share
// one clone; a start of the container ends the linger at once and waits
// for the clone to be gone (startContainer -> waitFileOps).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// maintenanceLinger is how long a maintenance clone waits for another
// operation after its last one.
const maintenanceLinger = 3 * time.Second

// maintenanceStartWait bounds how long a start waits for the operations of
// a maintenance clone of the same container to finish.
const maintenanceStartWait = 2 * time.Minute

// fsSession is an agent that has the container's root file system mounted.
type fsSession struct {
	agent   *agentclient.Client
	machine vmbackend.Machine
	// running: the container's own VM (else a maintenance clone).
	running bool
}

// maintVM is one maintenance clone.
type maintVM struct {
	d    *Daemon
	c    *Container
	spec vmbackend.MachineSpec
	log  *logrus.Entry
	// mounts are the container's volume and bind mounts (shares in spec),
	// so that file operations on their paths reach the volume, not the
	// disk underneath; tmpfs mounts are left out, their contents do not
	// exist while the container is stopped.
	mounts []agentproto.MountRequest

	ready   chan struct{} // closed when started (or failed: err)
	done    chan struct{} // closed when the VM is gone
	err     error
	machine vmbackend.Machine
	agent   *agentclient.Client

	// Guarded by maint.Mutex.
	users   int  // operations in flight
	closing bool // no new operations: shutting down
	timer   *time.Timer

	shutOnce   sync.Once
	t0, tReady time.Time
	ops        int
	opsTime    time.Duration
}

// maint holds the maintenance clones by container.
var maint = struct {
	sync.Mutex
	vms map[*Container]*maintVM
}{vms: map[*Container]*maintVM{}}

// waitFileOps makes way for a start of c: a lingering maintenance clone is
// shut down now, one with operations in flight once they end. Callers hold
// c.mu (the clone never needs it).
func (d *Daemon) waitFileOps(ctx context.Context, c *Container) error {
	maint.Lock()
	mv := maint.vms[c]
	if mv == nil {
		maint.Unlock()
		return nil
	}
	mv.closing = true
	idle := mv.users == 0
	if idle && mv.timer != nil {
		mv.timer.Stop()
	}
	maint.Unlock()
	if idle {
		go mv.shutdown()
	} else {
		d.log.WithField("container", c.ID[:12]).Info("start waits for a file operation on the container's disk")
	}
	t := time.NewTimer(maintenanceStartWait)
	defer t.Stop()
	select {
	case <-mv.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errdefs.Conflict(fmt.Errorf("container %s is busy with a file operation (docker cp, export, diff or commit); try again", c.ID))
	}
}

// withContainerFS runs fn with an agent serving the container's files: the
// running container's, or a maintenance clone's.
func (d *Daemon) withContainerFS(ctx context.Context, c *Container, op string, fn func(*fsSession) error) error {
	for {
		c.mu.Lock()
		switch {
		case c.removing:
			c.mu.Unlock()
			return errdefs.Conflict(fmt.Errorf("container %s is being removed", c.ID))
		case c.State.Status == container.StateDead:
			c.mu.Unlock()
			return errdefs.Conflict(fmt.Errorf("container %s is dead", c.ID))
		case c.State.Status == container.StatePaused:
			// The VM's vCPUs are stopped, its agent with them.
			c.mu.Unlock()
			return errdefs.Conflict(fmt.Errorf("container %s is paused: jevm reaches a container's files through its VM's agent, which is paused too; unpause the container first", c.ID))
		case c.run != nil && c.running():
			r := c.run
			c.mu.Unlock()
			return fn(&fsSession{agent: r.agent, machine: r.machine, running: true})
		}
		maint.Lock()
		mv := maint.vms[c]
		if mv != nil && mv.closing {
			maint.Unlock()
			c.mu.Unlock()
			select {
			case <-mv.done:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if mv == nil {
			mv = &maintVM{
				d: d, c: c, spec: d.machineSpec(c),
				log:   d.log.WithField("container", c.ID[:12]),
				ready: make(chan struct{}), done: make(chan struct{}),
				t0: time.Now(),
			}
			// No network in a maintenance VM: the host mounts every volume.
			ms, err := d.prepareMounts(context.Background(), c, false)
			if err != nil {
				maint.Unlock()
				c.mu.Unlock()
				return fmt.Errorf("prepare the container's mounts: %w", err)
			}
			mv.spec.Shares = ms.shares
			for _, req := range ms.requests {
				if req.Type != "tmpfs" {
					mv.mounts = append(mv.mounts, req)
				}
			}
			maint.vms[c] = mv
			go mv.start()
		}
		mv.users++
		if mv.timer != nil {
			mv.timer.Stop()
			mv.timer = nil
		}
		maint.Unlock()
		c.mu.Unlock()
		return mv.run(ctx, op, fn)
	}
}

// run serves one operation on the clone.
func (mv *maintVM) run(ctx context.Context, op string, fn func(*fsSession) error) error {
	defer mv.release()
	select {
	case <-mv.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if mv.err != nil {
		return mv.err
	}
	t := time.Now()
	err := fn(&fsSession{agent: mv.agent, machine: mv.machine})
	took := time.Since(t)
	maint.Lock()
	mv.ops++
	mv.opsTime += took
	maint.Unlock()
	mv.log.WithFields(logrus.Fields{"op": op, "took": took.Round(time.Millisecond).String()}).Debug("file operation in a maintenance VM")
	return err
}

// release ends an operation; the last one starts the linger (or the
// shutdown, if a start is waiting or the clone failed).
func (mv *maintVM) release() {
	maint.Lock()
	defer maint.Unlock()
	mv.users--
	if mv.users > 0 {
		return
	}
	failed := false
	select {
	case <-mv.ready:
		failed = mv.err != nil
	default:
	}
	if mv.closing || failed {
		mv.closing = true
		go mv.shutdown()
		return
	}
	mv.timer = time.AfterFunc(maintenanceLinger, func() {
		maint.Lock()
		if mv.users > 0 || mv.closing {
			maint.Unlock()
			return
		}
		mv.closing = true
		maint.Unlock()
		mv.shutdown()
	})
}

// start clones the VM and mounts the container's root in it, with the
// steps of a container's start (steps.go); the container's shares were
// prepared by withContainerFS and are released by shutdown. On failure the
// VM is gone at once.
func (mv *maintVM) start() {
	defer close(mv.ready)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := &vmStart{d: mv.d, c: mv.c, spec: mv.spec}
	steps := []step{
		s.stateDirStep(),
		s.startMachineStep("maintenance VM", nil),
		s.connectAgentStep("the maintenance VM's agent"),
		{"mount-root", func(ctx context.Context) error {
			entropy, err := startEntropy()
			if err != nil {
				return err
			}
			req := &agentproto.StartRequest{RootDevice: mv.d.vms.GuestRootDevice(), Entropy: entropy, TimeUnixNano: time.Now().UnixNano(), Mounts: mv.mounts}
			if err := s.agent.Mount(ctx, req); err != nil {
				return fmt.Errorf("mount the container's disk in the maintenance VM: %w", err)
			}
			return nil
		}},
	}
	_, err := runSteps(ctx, mv.log, "maintenance", &s.cs, steps)
	mv.tReady = time.Now()
	if err != nil {
		mv.err = err
		mv.log.WithError(err).Warn("maintenance VM failed")
		return
	}
	mv.machine, mv.agent = s.machine, s.agent
}

// shutdown powers the clone off, waits for it to go and logs its cost.
func (mv *maintVM) shutdown() { mv.shutOnce.Do(mv.doShutdown) }

func (mv *maintVM) doShutdown() {
	<-mv.ready
	tEnd := time.Now()
	var stats vmbackend.MachineStats
	if mv.machine != nil {
		if st, err := mv.machine.Stats(); err == nil {
			stats = st
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if mv.agent != nil {
			if err := mv.agent.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				mv.log.WithError(err).Debug("maintenance VM shutdown request")
			}
		}
		select {
		case <-mv.machine.Done():
		case <-sctx.Done():
			mv.log.Warn("maintenance VM did not power off; killing it")
		}
		cancel()
		_ = mv.machine.Kill(context.Background())
	}
	if mv.agent != nil {
		mv.agent.Close()
	}
	os.RemoveAll(mv.spec.StateDir)
	mv.d.releaseMounts(mv.c) // the VM is gone: its shares can go
	maint.Lock()
	if maint.vms[mv.c] == mv {
		delete(maint.vms, mv.c)
	}
	ops, opsTime := mv.ops, mv.opsTime
	maint.Unlock()
	close(mv.done)
	if mv.machine == nil {
		return
	}
	mv.log.WithFields(logrus.Fields{
		"start":    mv.tReady.Sub(mv.t0).Round(time.Millisecond).String(),
		"ops":      ops,
		"opsTime":  opsTime.Round(time.Millisecond).String(),
		"shutdown": time.Since(tEnd).Round(time.Millisecond).String(),
		"lifetime": time.Since(mv.t0).Round(time.Millisecond).String(),
		"cpu":      stats.CPUTime.Round(time.Millisecond).String(),
		"pssMiB":   stats.PSSBytes >> 20,
	}).Info("maintenance VM for file operations on a stopped container")
}

// shutdownFileOps ends the maintenance clones (daemon shutdown): lingering
// ones at once, busy ones when their operations end (bounded by ctx).
func (d *Daemon) shutdownFileOps(ctx context.Context) {
	maint.Lock()
	var all []*maintVM
	for _, mv := range maint.vms {
		mv.closing = true
		if mv.timer != nil {
			mv.timer.Stop()
		}
		if mv.users == 0 {
			go mv.shutdown()
		}
		all = append(all, mv)
	}
	maint.Unlock()
	for _, mv := range all {
		select {
		case <-mv.done:
		case <-ctx.Done():
			return
		}
	}
}
