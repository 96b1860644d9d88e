package daemon

// Pods: a container created with `--network container:X` (compose's
// `network_mode: service:X`) runs inside X's jeVM, as vSphere's pods run
// several containers in one VM. It keeps its own root file system (its
// own disk, hot-plugged into X's running VM), its own mounts, PID and IPC
// namespaces (or X's, with --pid/--ipc container:X), its own guest cgroup,
// environment, user and stdio; it shares X's network stack: the same
// addresses, ports and localhost. The agent side is the join message
// (docs/AGENT_PROTOCOL.md, "Pods").
//
// What jevm chose where a VM makes dockerd's behaviour impossible:
//   - A member cannot outlive its VM. `docker stop X` first stops X's
//     members (each with its own stop signal and timeout, in parallel),
//     then X. When X's process exits by itself, its agent kills the
//     members (exit 137) before the VM powers off. (With dockerd a member
//     keeps running in X's network namespace, with X's interfaces gone.)
//   - `docker rm X` is refused while a member runs, even with -f: removing
//     X would kill the member's VM under it.
//   - Starting a member needs X running (dockerd's 409 otherwise).
//   - Pausing X pauses its VM and so its members; pausing a member freezes
//     only its processes (its guest cgroup).
//   - A member's volumes and bind mounts go through X's VM's pod share
//     (podshare.go): none are possible if X's own took every share slot
//     a VM starts with.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// joinsVM tells whether a container runs in another container's VM, and
// names that container as the user gave it.
func joinsVM(hc *container.HostConfig) (ref string, ok bool) {
	if !hc.NetworkMode.IsContainer() {
		return "", false
	}
	return hc.NetworkMode.ConnectedContainer(), true
}

// validatePodConfig checks a new container's namespace modes as dockerd
// does (its validateNetContainerMode, on the user's config) and what jevm
// adds: sharing another container's PID or IPC namespace means running in
// its VM, so the network must be shared too.
func validatePodConfig(cfg *container.Config, hc *container.HostConfig) error {
	if string(hc.NetworkMode) == "container" || hc.NetworkMode.IsContainer() {
		switch {
		case hc.NetworkMode.ConnectedContainer() == "":
			return errdefs.InvalidParameter(errors.New("invalid network mode: invalid container format container:<name|id>"))
		case cfg.Hostname != "":
			return errdefs.InvalidParameter(errors.New("conflicting options: hostname and the network mode"))
		case len(hc.Links) > 0:
			return errdefs.InvalidParameter(errors.New("conflicting options: container type network can't be used with links. This would result in undefined behavior"))
		case len(hc.DNS) > 0:
			return errdefs.InvalidParameter(errors.New("conflicting options: dns and the network mode"))
		case len(hc.ExtraHosts) > 0:
			return errdefs.InvalidParameter(errors.New("conflicting options: custom host-to-IP mapping and the network mode"))
		case len(hc.PortBindings) > 0 || hc.PublishAllPorts:
			return errdefs.InvalidParameter(errors.New("conflicting options: port publishing and the container type network mode"))
		case len(cfg.ExposedPorts) > 0:
			return errdefs.InvalidParameter(errors.New("conflicting options: port exposing and the container type network mode"))
		}
	}
	if (hc.PidMode.IsContainer() || hc.IpcMode.IsContainer()) && !hc.NetworkMode.IsContainer() {
		return errdefs.InvalidParameter(errors.New("--pid container: and --ipc container: need --network container: too with jevm: a container that shares another's process table or IPC runs in that container's VM, and so shares its network"))
	}
	return nil
}

// checkNamespaceContainers refuses a --pid or --ipc container:X whose X
// does not exist, as dockerd does at create (400, "No such container: X");
// that X is running is checked at start. (--network container:X is
// checked at start only, as dockerd's.)
func (d *Daemon) checkNamespaceContainers(hc *container.HostConfig) error {
	for _, ref := range []string{hc.PidMode.Container(), hc.IpcMode.Container()} {
		if ref == "" {
			continue
		}
		if _, err := d.containers.get(ref); err != nil {
			return errdefs.InvalidParameter(err)
		}
	}
	return nil
}

// podHost resolves the container whose VM c joins, following a host that
// itself joined another (dockerd's network namespace is then the same).
func (d *Daemon) podHost(c *Container) (*Container, error) {
	ref, _ := joinsVM(c.HostConfig)
	for hops := 0; hops < 8; hops++ {
		h, err := d.containers.get(ref)
		if err != nil {
			// dockerd: a system error at start, as the reference was
			// not checked at create.
			return nil, errdefs.System(err)
		}
		if h.ID == c.ID {
			return nil, errdefs.System(errdefs.InvalidParameter(errors.New("cannot join own network namespace")))
		}
		h.mu.Lock()
		next, joined := joinsVM(h.HostConfig)
		h.mu.Unlock()
		if !joined {
			return h, nil
		}
		ref = next
	}
	return nil, errdefs.InvalidParameter(errors.New("cannot join network namespace: too many containers joined in a chain"))
}

// namespaceContainer names, in the host's VM, the container whose
// PID or IPC namespace a member shares (mode container:Y): Y must be the
// host or another member of the same VM.
func (d *Daemon) namespaceContainer(what, ref string, host *Container) (string, error) {
	y, err := d.containers.get(ref)
	if err != nil {
		return "", err
	}
	if y.ID == host.ID {
		return host.ID, nil
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.run == nil || !y.running() || y.run.podHost != host.ID {
		return "", errdefs.InvalidParameter(fmt.Errorf("cannot join %s namespace of container %s: with jevm it must run in the same VM (--network container:%s)", what, strings.TrimPrefix(y.Name, "/"), strings.TrimPrefix(host.Name, "/")))
	}
	return y.ID, nil
}

// startJoined starts c in its host's VM. Callers hold c.mu.
func (d *Daemon) startJoined(ctx context.Context, c *Container) error {
	log := d.log.WithField("container", c.ID[:12])
	host, err := d.podHost(c)
	if err != nil {
		return err
	}
	host.mu.Lock()
	hr := host.run
	status := host.State.Status
	hostName, hostHostname, hostDomain := host.Name, host.Config.Hostname, host.Config.Domainname
	hostPodShare := host.State.PodShare
	hostRunning := host.running() && hr != nil
	host.mu.Unlock()
	switch {
	case status == container.StateRestarting:
		return fmt.Errorf("cannot join network namespace of container: Container %s is restarting, wait until the container is running", host.ID)
	case !hostRunning:
		return errdefs.Conflict(fmt.Errorf("cannot join network namespace of a non running container: container %s is %s", strings.TrimPrefix(hostName, "/"), status))
	case status == container.StatePaused:
		return errdefs.Conflict(fmt.Errorf("cannot join network namespace of container %s: it is paused", strings.TrimPrefix(hostName, "/")))
	}
	attacher, ok := hr.machine.(vmbackend.DiskAttacher)
	if !ok {
		return errdefs.NotImplemented(fmt.Errorf("the VM backend cannot add a disk to a running VM: --network container: is not available"))
	}
	// As dockerd: the member is named as its network's container is.
	c.HostConfig.NetworkMode = container.NetworkMode("container:" + host.ID)
	c.Config.Hostname, c.Config.Domainname = hostHostname, hostDomain

	s := &vmStart{d: d, c: c}
	var mounts *mountSession
	var serial string
	var proc *agentclient.Process
	member := hr.agent.For(c.ID)
	steps := []step{
		{"wait-file-ops", func(ctx context.Context) error { return d.waitFileOps(ctx, c) }},
		{"prepare-mounts", func(ctx context.Context) (err error) {
			if mounts, err = d.prepareMounts(ctx, c, true); err != nil {
				return err
			}
			s.cs.push("release-mounts", func() { d.releaseMounts(c) })
			return d.bindPodMounts(host, hostPodShare, c, mounts) // podshare.go
		}},
		{"attach-disk", func(ctx context.Context) (err error) {
			if serial, err = attacher.AttachDisk(ctx, c.diskPath(), false); err != nil {
				return fmt.Errorf("add the container's disk to the VM of %s: %w", strings.TrimPrefix(hostName, "/"), err)
			}
			s.cs.push("detach-disk", func() {
				if err := attacher.DetachDisk(context.Background(), c.diskPath()); err != nil {
					log.WithError(err).Warn("unplug the disk of a container whose join failed")
				}
			})
			return nil
		}},
		s.openLogStep(true),
		{"join", func(ctx context.Context) (err error) {
			req, err := d.startRequest(c, mounts)
			if err != nil {
				return err
			}
			req.Container = c.ID
			req.RootDevice, req.RootSerial = "", serial
			req.Hostname = hostHostname
			req.Domainname = ""
			req.Hosts, req.ResolvConf = readPodFile(host, "hosts"), readPodFile(host, "resolv.conf")
			// The network's sysctls are the VM's, set by its host.
			for k := range req.Sysctls {
				if strings.HasPrefix(k, "net.") {
					delete(req.Sysctls, k)
				}
			}
			if c.HostConfig.PidMode.IsContainer() {
				if req.PIDContainer, err = d.namespaceContainer("PID", c.HostConfig.PidMode.Container(), host); err != nil {
					return err
				}
			}
			if c.HostConfig.IpcMode.IsContainer() {
				if req.IPCContainer, err = d.namespaceContainer("IPC", c.HostConfig.IpcMode.Container(), host); err != nil {
					return err
				}
			}
			c.Rlimits = req.Process.Rlimits
			hub := c.hub()
			proc, err = member.Join(ctx, req, agentclient.ProcessIO{Stdout: hub.writer("stdout"), Stderr: hub.writer("stderr")})
			if err != nil {
				return startError(c, err)
			}
			return nil
		}},
	}
	tr, err := runSteps(ctx, log, "joined", &s.cs, steps)
	if err != nil {
		return err
	}
	m := &joinedMachine{id: c.ID, host: hr.machine, agent: member, proc: proc, disk: c.diskPath(), attacher: attacher}
	r := &runtime{machine: m, agent: member, proc: proc, logw: s.logw, podHost: host.ID, detachCh: make(chan struct{}), finished: make(chan struct{})}
	c.run = r
	d.mountsStarted(c)
	c.State = ContainerState{Status: container.StateRunning, Pid: m.Pid(), StartedAt: time.Now().UTC()}
	if err := c.save(); err != nil {
		log.WithError(err).Error("save container")
	}
	d.containerEvent(c, events.ActionStart, nil)
	log.WithFields(logrus.Fields{"vm": host.ID[:12], "total": tr.since("attach-disk").String()}).Info("container started in the VM of another")
	d.monitorRun(c, r)
	return nil
}

// joinedMachine is a member's view of its host's VM: what the daemon does
// to "the container's VM" (pause, kill) is done to the member alone.
type joinedMachine struct {
	id       string
	host     vmbackend.Machine
	agent    *agentclient.Client // scoped to the member (Client.For)
	proc     *agentclient.Process
	disk     string
	attacher vmbackend.DiskAttacher
}

var _ vmbackend.Machine = (*joinedMachine)(nil)

func (m *joinedMachine) ID() string                { return m.id }
func (m *joinedMachine) Pid() int                  { return m.host.Pid() }
func (m *joinedMachine) Agent() io.ReadWriteCloser { return m.host.Agent() }

// Done is the host VM's: a member ends with it.
func (m *joinedMachine) Done() <-chan struct{} { return m.host.Done() }

// Pause freezes the member's processes (its guest cgroup).
func (m *joinedMachine) Pause(ctx context.Context) error { return m.agent.Freeze(ctx) }

// Resume thaws them.
func (m *joinedMachine) Resume(ctx context.Context) error { return m.agent.Thaw(ctx) }

// Kill ends the member's process (SIGKILL) and unplugs its disk; the VM
// runs on.
func (m *joinedMachine) Kill(ctx context.Context) error {
	select {
	case <-m.proc.Exited():
	case <-m.host.Done():
	default:
		_ = m.proc.Signal(ctx, 9)
		select {
		case <-m.proc.Exited():
		case <-m.host.Done():
		case <-time.After(10 * time.Second):
		}
	}
	select {
	case <-m.proc.Exited():
	case <-m.host.Done():
		return nil
	default:
		return fmt.Errorf("the process of container %s did not exit", m.id[:12])
	}
	if err := m.attacher.DetachDisk(ctx, m.disk); err != nil {
		return err
	}
	return nil
}

// Stats are the VM's, as seen on the host (throttling applies to all of
// the VM's containers).
func (m *joinedMachine) Stats() (vmbackend.MachineStats, error) { return m.host.Stats() }

// UpdateResources: the VM's CPU bounds are its host's.
func (m *joinedMachine) UpdateResources(context.Context, vmbackend.Resources) error {
	return errdefs.InvalidParameter(errors.New("the CPU limits of a container that runs in another container's VM are that VM's: update the other container"))
}

// members are the running containers that joined host's VM.
func (d *Daemon) members(host *Container) []*Container {
	var out []*Container
	for _, c := range d.containers.all() {
		if c == host {
			continue
		}
		c.mu.Lock()
		if c.run != nil && c.run.podHost == host.ID {
			out = append(out, c)
		}
		c.mu.Unlock()
	}
	return out
}

// stopMembers stops the containers in host's VM before host itself, each
// with its own stop signal and timeout, in parallel. Callers do not hold
// host.mu.
func (d *Daemon) stopMembers(ctx context.Context, host *Container) {
	ms := d.members(host)
	if len(ms) == 0 {
		return
	}
	done := make(chan struct{}, len(ms))
	for _, m := range ms {
		go func() {
			if err := d.ContainerStop(ctx, m.ID, container.StopOptions{}); err != nil && !errdefs.IsNotModified(err) {
				d.log.WithError(err).WithField("container", m.ID[:12]).Warn("stop a container of the pod before its VM's container")
			}
			done <- struct{}{}
		}()
	}
	for range ms {
		<-done
	}
}

// checkNoMembers refuses to remove host while containers run in its VM.
func (d *Daemon) checkNoMembers(host *Container) error {
	ms := d.members(host)
	if len(ms) == 0 {
		return nil
	}
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		names = append(names, strings.TrimPrefix(m.Name, "/"))
	}
	return errdefs.Conflict(fmt.Errorf("cannot remove container %s: container %s runs in its VM (--network container:%s); stop it first", strings.TrimPrefix(host.Name, "/"), strings.Join(names, ", "), strings.TrimPrefix(host.Name, "/")))
}

// Pod network files: a VM's /etc/hosts and /etc/resolv.conf as its main
// container got them, kept in the container's directory so that members
// started later (after a daemon restart too) see the same.
func podFilePath(c *Container, name string) string { return filepath.Join(c.Dir, name) }

// They are written on every start (the hot path), so without the fsyncs
// of a record (internal/atomicfile): they are made again at the next
// start, and only a member started after a host crash could find one
// torn, which a rename makes unlikely.
func writePodFiles(c *Container, hosts, resolv string) {
	for _, f := range [2][2]string{{"hosts", hosts}, {"resolv.conf", resolv}} {
		if err := writeUnsynced(podFilePath(c, f[0]), []byte(f[1])); err != nil {
			logrus.WithError(err).WithField("container", c.ID[:12]).Warnf("save /etc/%s for the containers that may join its VM", f[0])
		}
	}
}

// writeUnsynced replaces path by a temporary file and a rename, without
// fsync.
func writeUnsynced(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// maxPodFile bounds what is read back (the daemon wrote it).
const maxPodFile = 1 << 20

func readPodFile(c *Container, name string) string {
	f, err := os.Open(podFilePath(c, name))
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxPodFile))
	return string(b)
}

// readoptJoined re-attaches a member after a daemon restart, once its
// host's VM was re-adopted: the agent's Hello listed it. Callers hold
// c.mu.
func (d *Daemon) readoptJoined(ctx context.Context, c *Container) {
	log := d.log.WithField("container", c.ID[:12])
	host, err := d.podHost(c)
	var hr *runtime
	if err == nil {
		host.mu.Lock()
		hr = host.run
		host.mu.Unlock()
	}
	if hr == nil {
		log.Warn("the VM this container ran in is gone; marking it exited")
		d.markExited(c, 137, "the VM of the container it ran in stopped while jevmd was down")
		return
	}
	attacher, _ := hr.machine.(vmbackend.DiskAttacher)
	member := hr.agent.For(c.ID)
	logw, err := openContainerLog(c)
	if err != nil {
		d.markExited(c, 255, fmt.Sprintf("could not reopen the container's log after a daemon restart: %v", err))
		return
	}
	hub := c.hub()
	hub.beginRun(logw)
	proc, ok := member.ReattachJoined(c.ID, agentclient.ProcessIO{Stdout: hub.writer("stdout"), Stderr: hub.writer("stderr")})
	if !ok {
		hub.endRun()
		logw.Close()
		d.markExited(c, 255, "the container was no longer running in its VM after a daemon restart")
		return
	}
	m := &joinedMachine{id: c.ID, host: hr.machine, agent: member, proc: proc, disk: c.diskPath(), attacher: attacher}
	r := &runtime{machine: m, agent: member, proc: proc, logw: logw, podHost: host.ID, detachCh: make(chan struct{}), finished: make(chan struct{})}
	c.run = r
	c.State.Pid = m.Pid()
	_ = c.save()
	d.monitorRun(c, r)
	log.Info("re-adopted running container in the VM of another")
}

// joinedStatus is how a member's run ended when its process reported no
// exit: its VM went.
func joinedStatus(r *runtime) (agentproto.ExitStatus, string) {
	select {
	case <-r.machine.Done():
		return agentproto.ExitStatus{Code: 137}, "the VM it ran in stopped"
	default:
	}
	return agentproto.ExitStatus{Code: 137}, ""
}
