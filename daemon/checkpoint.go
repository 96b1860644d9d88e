package daemon

// Checkpoints (docker checkpoint, with --experimental as dockerd): a
// running container's whole VM saved (memory and devices, its root disk at
// that instant, the addresses it had), and brought back by `docker start
// --checkpoint`: the guest resumes where it was, its processes, their
// memory and its files included. docs/CHECKPOINT.md.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/docker/docker/api/types/checkpoint"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/internal/atomicfile"
	"github.com/jevm/jevm/internal/diskcopy"
	"github.com/jevm/jevm/network/controller"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// validCheckpointName is dockerd's pattern for checkpoint IDs.
var validCheckpointName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// checkpointMetaName is the daemon's record in a checkpoint directory
// (beside the VM's files).
const checkpointMetaName = "checkpoint.json"

// checkpointMeta is what the daemon keeps of a checkpoint.
type checkpointMeta struct {
	Name      string    `json:"name"`
	Container string    `json:"container"` // the ID of the container it was made of
	Created   time.Time `json:"created"`
	// Networks are the container's endpoints then (by network name): a
	// restore asks for the same addresses, which the guest has.
	Networks map[string]checkpointEndpoint `json:"networks,omitempty"`
	VM       vmbackend.CheckpointInfo      `json:"vm"`
}

type checkpointEndpoint struct {
	IP   string `json:"ip,omitempty"`
	IPv6 string `json:"ipv6,omitempty"`
	MAC  string `json:"mac,omitempty"`
}

func (c *Container) checkpointsDir() string { return filepath.Join(c.Dir, "checkpoints") }

// checkpointDir is checkpoint id's directory: under dir if given (the
// API's CheckpointDir), else under the container's.
func checkpointDir(c *Container, dir, id string) string {
	if dir == "" {
		dir = c.checkpointsDir()
	}
	return filepath.Join(dir, id)
}

// CheckpointCreate serves POST /containers/{id}/checkpoints: the
// container's VM is saved into a new checkpoint; the container stops
// unless opts.Exit is false (--leave-running).
func (d *Daemon) CheckpointCreate(ctx context.Context, ref string, opts checkpoint.CreateOptions) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	if !validCheckpointName.MatchString(opts.CheckpointID) {
		return errdefs.InvalidParameter(fmt.Errorf("Invalid checkpoint ID (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", opts.CheckpointID))
	}
	if opts.CheckpointDir != "" && !filepath.IsAbs(opts.CheckpointDir) {
		return errdefs.InvalidParameter(fmt.Errorf("checkpoint directory %q is not an absolute path", opts.CheckpointDir))
	}
	members := len(d.members(c)) // before c.mu: it takes the others'
	c.mu.Lock()
	locked := true
	defer func() {
		if locked {
			c.mu.Unlock()
		}
	}()
	if c.State.Status == container.StatePaused {
		return errdefs.Conflict(fmt.Errorf("Container %s is paused. Unpause the container before checkpointing it", c.ID))
	}
	if !c.running() || c.run == nil {
		return errdefs.Conflict(fmt.Errorf("Container %s is not running", c.ID))
	}
	if _, joins := joinsVM(c.HostConfig); joins || members > 0 {
		return errdefs.Conflict(errors.New("jevm cannot checkpoint a container that shares its VM with others (pods) yet"))
	}
	if dests := d.hostShared(c); len(dests) > 0 {
		return errHostShared("checkpoint", dests)
	}
	r := c.run
	cp, ok := r.machine.(vmbackend.Checkpointer)
	if !ok {
		return errdefs.NotImplemented(errors.New("this VM backend cannot checkpoint containers"))
	}
	dir := checkpointDir(c, opts.CheckpointDir, opts.CheckpointID)
	if _, err := os.Stat(dir); err == nil {
		return errdefs.Conflict(fmt.Errorf("checkpoint with name %s already exists for container %s", opts.CheckpointID, c.Name))
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("cannot checkpoint container %s: %w", c.Name, err)
	}
	meta := checkpointMeta{Name: opts.CheckpointID, Container: c.ID, Created: time.Now().UTC(), Networks: d.endpointsOf(c)}
	t0 := time.Now()
	held := d.holdForCheckpoint(ctx, c, r)
	info, err := cp.Checkpoint(ctx, dir, !opts.Exit)
	if err != nil {
		os.RemoveAll(dir)
		d.releaseCheckpointHold(c, r, held)
		return fmt.Errorf("Cannot checkpoint container %s: %w", c.Name, err)
	}
	meta.VM = info
	b, _ := json.MarshalIndent(meta, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(dir, checkpointMetaName), append(b, '\n'), 0o600); err != nil {
		os.RemoveAll(dir)
		if opts.Exit {
			_ = r.machine.Resume(context.Background())
		}
		d.releaseCheckpointHold(c, r, held)
		return fmt.Errorf("Cannot checkpoint container %s: %w", c.Name, err)
	}
	d.log.WithFields(logrus.Fields{"container": c.ID[:12], "checkpoint": opts.CheckpointID, "took": time.Since(t0).Round(time.Millisecond), "stateBytes": info.StateBytes, "exit": opts.Exit, "held": held}).Info("checkpoint created")
	d.containerEvent(c, events.ActionCheckpoint, nil)
	if !opts.Exit {
		d.releaseCheckpointHold(c, r, held)
		return nil
	}
	// The container stops: as a stop would (no restart policy), its VM
	// killed (it is paused after the checkpoint).
	c.HasBeenManuallyStopped = true
	c.lc.autoStart = false
	r.stopRequested = true
	_ = c.save()
	locked = false
	c.mu.Unlock()
	if err := r.machine.Kill(context.WithoutCancel(ctx)); err != nil {
		d.log.WithError(err).WithField("container", c.ID[:12]).Warn("stop the checkpointed VM")
	}
	select {
	case <-r.finished:
	case <-ctx.Done():
	}
	return nil
}

// holdForCheckpoint has the agent hold c's processes still (frozen) for
// the checkpoint about to be made, so that a guest restored from it runs
// none of their code before `restored` gave it the host's time and, for a
// fork, its own identity (the agent thaws them then). A hold that fails
// (a guest without cgroup2, processes that would not freeze in time)
// does not stop the checkpoint: its restores then behave as before the
// hold existed, with the container's code running for a moment first.
func (d *Daemon) holdForCheckpoint(ctx context.Context, c *Container, r *runtime) bool {
	if err := r.agent.Freeze(ctx); err != nil {
		d.log.WithError(err).WithField("container", c.ID[:12]).Warn("checkpoint: the container's processes could not be held still; a guest restored from it may run them briefly before it has its time and identity")
		return false
	}
	return true
}

// releaseCheckpointHold thaws what holdForCheckpoint froze, in the
// container that goes on running (--leave-running, a failed checkpoint).
func (d *Daemon) releaseCheckpointHold(c *Container, r *runtime, held bool) {
	if !held {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), agentReleaseTimeout)
	defer cancel()
	if err := r.agent.Thaw(ctx); err != nil {
		d.log.WithError(err).WithField("container", c.ID[:12]).Error("checkpoint: release the container's processes")
	}
}

// agentReleaseTimeout bounds a thaw of a checkpoint's hold: the agent
// moves the processes back, bounded by its own freeze timeout (10 s).
const agentReleaseTimeout = 30 * time.Second

// endpointsOf lists c's addresses on its networks. Callers hold c.mu.
func (d *Daemon) endpointsOf(c *Container) map[string]checkpointEndpoint {
	hc := &container.HostConfig{}
	ns := &container.NetworkSettings{}
	d.fillNetworkSettings(c, hc, ns)
	out := map[string]checkpointEndpoint{}
	for name, es := range ns.Networks {
		if es == nil || (es.IPAddress == "" && es.GlobalIPv6Address == "") {
			continue
		}
		out[name] = checkpointEndpoint{IP: es.IPAddress, IPv6: es.GlobalIPv6Address, MAC: es.MacAddress}
	}
	return out
}

// CheckpointList serves GET /containers/{id}/checkpoints.
func (d *Daemon) CheckpointList(ctx context.Context, ref string, opts checkpoint.ListOptions) ([]checkpoint.Summary, error) {
	c, err := d.containers.get(ref)
	if err != nil {
		return nil, err
	}
	dir := opts.CheckpointDir
	if dir == "" {
		dir = c.checkpointsDir()
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return []checkpoint.Summary{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []checkpoint.Summary{}
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), checkpointMetaName)); err == nil {
				out = append(out, checkpoint.Summary{Name: e.Name()})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CheckpointDelete serves DELETE /containers/{id}/checkpoints/{name}.
func (d *Daemon) CheckpointDelete(ctx context.Context, ref string, opts checkpoint.DeleteOptions) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	if !validCheckpointName.MatchString(opts.CheckpointID) {
		return errdefs.InvalidParameter(fmt.Errorf("Invalid checkpoint ID (%s)", opts.CheckpointID))
	}
	dir := checkpointDir(c, opts.CheckpointDir, opts.CheckpointID)
	if _, err := os.Stat(filepath.Join(dir, checkpointMetaName)); err != nil {
		return errdefs.NotFound(fmt.Errorf("checkpoint %s does not exist for container %s", opts.CheckpointID, c.Name))
	}
	return os.RemoveAll(dir)
}

// readCheckpointMeta loads checkpoint id of c.
func readCheckpointMeta(c *Container, dir, id string) (string, checkpointMeta, error) {
	var meta checkpointMeta
	if !validCheckpointName.MatchString(id) {
		return "", meta, errdefs.InvalidParameter(fmt.Errorf("Invalid checkpoint ID (%s)", id))
	}
	path := checkpointDir(c, dir, id)
	b, err := os.ReadFile(filepath.Join(path, checkpointMetaName))
	if err != nil {
		return "", meta, errdefs.NotFound(fmt.Errorf("checkpoint %s does not exist for container %s", id, c.Name))
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return "", meta, fmt.Errorf("checkpoint %s: %w", id, err)
	}
	return path, meta, nil
}

// ContainerRestore serves POST /containers/{id}/start?checkpoint=: the
// stopped container starts from the checkpoint instead of from its
// image's entrypoint.
func (d *Daemon) ContainerRestore(ctx context.Context, ref, id, dir string) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removing {
		return errdefs.Conflict(fmt.Errorf("container is marked for removal and cannot be started"))
	}
	if c.running() || c.State.Status == container.StatePaused {
		return errdefs.Conflict(fmt.Errorf("Container %s is running: a checkpoint is restored into a stopped container", c.ID))
	}
	path, meta, err := readCheckpointMeta(c, dir, id)
	if err != nil {
		return err
	}
	if _, joins := joinsVM(c.HostConfig); joins {
		return errdefs.Conflict(errors.New("jevm cannot restore a container that shares another container's VM"))
	}
	if _, ok := d.vms.(vmbackend.Restorer); !ok {
		return errdefs.NotImplemented(errors.New("this VM backend cannot restore checkpoints"))
	}
	if err := d.beforeStart(c); err != nil {
		return err
	}
	return d.restoreContainer(ctx, c, path, meta)
}

// restoreContainer starts c's VM from the checkpoint at path. Callers
// hold c.mu. On error nothing is left, and the container's disk is as it
// was.
func (d *Daemon) restoreContainer(ctx context.Context, c *Container, path string, meta checkpointMeta) error {
	// A fork: another container than the checkpoint's takes its memory
	// and files, with its own identity.
	fork := meta.Container != c.ID
	log := d.log.WithFields(logrus.Fields{"container": c.ID[:12], "checkpoint": meta.Name, "fork": fork})
	restorer := d.vms.(vmbackend.Restorer)
	s := &vmStart{d: d, c: c}
	var netAtt *controller.Attachment
	var proc *agentclient.Process
	var consoleOffset int64
	steps := []step{
		{"wait-file-ops", func(ctx context.Context) error { return d.waitFileOps(ctx, c) }},
		{"machine-spec", func(context.Context) error {
			s.spec = d.machineSpec(c)
			if st, err := os.Stat(c.consolePath()); err == nil {
				consoleOffset = st.Size()
			}
			return nil
		}},
		s.stateDirStep(),
		s.resumedMountsStep("restore"),
		// The same addresses as at the checkpoint, which the guest has;
		// a fork's own, which the agent gives the guest below.
		{"attach-networks", func(ctx context.Context) (err error) {
			saved := c.NetConfig
			if !fork {
				c.NetConfig = withCheckpointAddresses(saved, meta.Networks)
			}
			netAtt, err = d.attachNetworks(ctx, c, nil)
			c.NetConfig = saved
			if err != nil {
				return err
			}
			s.cs.push("detach-networks", func() { d.detachNetworks(c) })
			s.spec.NICs = netAtt.NICs
			return nil
		}},
		{"restore-disk", func(context.Context) error {
			disk := c.diskPath()
			before := disk + ".before-restore"
			if err := os.Rename(disk, before); err != nil {
				return fmt.Errorf("set the container's disk aside: %w", err)
			}
			if err := diskcopy.Copy(restorer.CheckpointDisk(path), disk); err != nil {
				_ = os.Rename(before, disk)
				return fmt.Errorf("the checkpoint's disk: %w", err)
			}
			s.cs.push("restore-disk", func() { _ = os.Rename(before, disk) })
			return nil
		}},
		s.resumedMachineStep("restore-machine", func(ctx context.Context) (vmbackend.Machine, error) {
			return restorer.Restore(ctx, s.spec, path)
		}),
	}
	// The time and fresh entropy; a fork's identity.
	steps = append(steps, s.resumedGuestSteps("restored", func(req *agentproto.RestoredRequest) {
		if fork {
			req.Hostname, req.Hosts, req.ResolvConf = c.Config.Hostname, netAtt.Hosts, netAtt.ResolvConf
			req.Interfaces = netAtt.Interfaces
		}
	}, &proc)...)
	tr, err := runSteps(ctx, log, "restore", &s.cs, steps)
	if err != nil {
		return err
	}
	_ = os.Remove(c.diskPath() + ".before-restore")
	r := s.beginRun(proc)
	c.State = ContainerState{Status: container.StateRunning, Pid: s.machine.Pid(), StartedAt: time.Now().UTC(), ConsoleOffset: consoleOffset}
	if err := c.save(); err != nil {
		log.WithError(err).Error("save container")
	}
	d.containerEvent(c, events.ActionStart, nil)
	log.WithFields(logrus.Fields{"restore": tr.duration("restore-machine").String(), "total": tr.since("wait-file-ops").String()}).Info("container restored from checkpoint")
	d.monitorRun(c, r)
	return nil
}

// resumedGuestSteps are the last steps of a start whose guest goes on
// where it was (a checkpoint's restore, an incoming migration): the
// agent, connected, says the process runs; it gets `restored` (the
// host's time, fresh entropy, and what identity adds); the log opens and
// the process's output is re-attached into *proc. what says whose guest
// in errors ("restored", "migrated").
func (s *vmStart) resumedGuestSteps(what string, identity func(*agentproto.RestoredRequest), proc **agentclient.Process) []step {
	return []step{
		s.connectAgentStep("guest agent"),
		{"agent-phase", func(context.Context) error {
			if s.hello.Phase != "running" {
				return fmt.Errorf("the %s guest's agent is %q, not running its process", what, s.hello.Phase)
			}
			return nil
		}},
		{"restored", func(ctx context.Context) error {
			entropy, err := startEntropy()
			if err != nil {
				return err
			}
			req := agentproto.RestoredRequest{TimeUnixNano: time.Now().UnixNano(), Entropy: entropy}
			identity(&req)
			return s.agent.Restored(ctx, req)
		}},
		s.openLogStep(true),
		{"reattach-process", func(context.Context) error {
			*proc = s.agent.Reattach(agentclientIO(s.c.hub()))
			return nil
		}},
	}
}

// resumedMachineStep starts, with start, the VM of a guest that goes on
// where it was (a restore, an incoming migration): a machine the saved
// state does not fit (ErrCheckpointIncompatible) is the request's fault
// (400); the machine is killed if a later step fails.
func (s *vmStart) resumedMachineStep(name string, start func(context.Context) (vmbackend.Machine, error)) step {
	return step{name, func(ctx context.Context) error {
		m, err := start(ctx)
		if errors.Is(err, vmbackend.ErrCheckpointIncompatible) {
			return errdefs.InvalidParameter(err)
		}
		if err != nil {
			return err
		}
		s.machine = m
		s.cs.push("kill-machine", func() { _ = m.Kill(context.Background()) })
		return nil
	}}
}

// resumedMountsStep marks the volumes of a guest that resumes with its
// mounts (a restore, an incoming migration) in use: only volumes it
// mounts itself (NFS) can have moved with its state; mounts shared from
// the host (9p) cannot.
func (s *vmStart) resumedMountsStep(op string) step {
	d, c := s.d, s.c
	return step{"resumed-mounts", func(ctx context.Context) error {
		ms, err := d.prepareMounts(ctx, c, true)
		if err != nil {
			return err
		}
		s.cs.push("release-mounts", func() { d.releaseMounts(c) })
		if len(ms.shares) > 0 {
			return errHostShared(op, d.hostShared(c))
		}
		return nil
	}}
}

// agentclientIO is a run's output as the agent client takes it.
func agentclientIO(hub *outputHub) agentclient.ProcessIO {
	return agentclient.ProcessIO{Stdout: hub.writer("stdout"), Stderr: hub.writer("stderr")}
}

// withCheckpointAddresses is nc with each network's endpoint asking for
// the address it had at the checkpoint (unless the user set one).
func withCheckpointAddresses(nc *network.NetworkingConfig, eps map[string]checkpointEndpoint) *network.NetworkingConfig {
	if nc == nil {
		return nil
	}
	out := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
	for name, es := range nc.EndpointsConfig {
		cp := &network.EndpointSettings{}
		if es != nil {
			cp = es.Copy()
		}
		if ep, ok := eps[name]; ok {
			if cp.IPAMConfig == nil {
				cp.IPAMConfig = &network.EndpointIPAMConfig{}
			}
			if cp.IPAMConfig.IPv4Address == "" {
				cp.IPAMConfig.IPv4Address = ep.IP
			}
			if cp.IPAMConfig.IPv6Address == "" {
				cp.IPAMConfig.IPv6Address = ep.IPv6
			}
			if cp.MacAddress == "" {
				cp.MacAddress = ep.MAC
			}
		}
		out.EndpointsConfig[name] = cp
	}
	return out
}

// recoverRestoreDisk undoes what a restore left when the daemon died
// during it (checkpoint.go's restore-disk step): a container that is not
// running gets its own disk back; one that runs (the restore had
// succeeded) loses the set-aside copy.
func recoverRestoreDisk(log *logrus.Entry, c *Container) {
	before := c.diskPath() + ".before-restore"
	if _, err := os.Stat(before); err != nil {
		return
	}
	if c.running() {
		_ = os.Remove(before)
		return
	}
	if err := os.Rename(before, c.diskPath()); err != nil {
		log.WithError(err).WithField("container", c.ID[:12]).Error("put the container's disk back after an interrupted restore")
		return
	}
	log.WithField("container", c.ID[:12]).Warn("an interrupted restore from a checkpoint: the container's disk is its own again")
}
