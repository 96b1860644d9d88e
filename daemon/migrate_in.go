package daemon

// Live migration, the target's side (docs/MIGRATION.md). The source
// daemon offers a running container (POST /jevm/migrations), sends the
// base disk under its layer if this host has none of the same contents
// (PUT .../base), and opens the run stream (POST .../run): the VM's
// migration arrives in frames, the VM is loaded paused, this daemon says
// "ready", the source says "commit", the guest runs here and this daemon
// says "running". Until then the container is not in this daemon's
// list; its name is reserved and its directory has no record, so a
// crash here leaves nothing a restart keeps (restore removes such
// directories).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/api/types/migration"
	"github.com/jevm/jevm/internal/migwire"
	"github.com/jevm/jevm/network/controller"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
	"github.com/jevm/jevm/volumes"
)

const (
	// incomingIdle drops an offered migration whose source went quiet.
	incomingIdle = 5 * time.Minute
	// commitTimeout bounds the wait for the source's commit once the VM
	// is loaded here.
	commitTimeout = time.Minute
	// migratedBaseName is the base disk a source sent, in the
	// container's directory (its layer's backing file).
	migratedBaseName = "base.raw"
)

var validContainerID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// incomingMigration is a container offered to this daemon.
type incomingMigration struct {
	offer    migration.Offer
	c        *Container
	needBase bool
	busy     bool
	timer    *time.Timer
	// createdVolumes are the volumes this offer made (their names),
	// removed again if the migration fails.
	createdVolumes []string
}

type incomingMigrations struct {
	mu sync.Mutex
	m  map[string]*incomingMigration
}

// MigrationOffer serves POST /jevm/migrations: it checks that this host
// can run the container and prepares its directory and disk.
func (d *Daemon) MigrationOffer(ctx context.Context, offer *migration.Offer) (resp migration.OfferResponse, retErr error) {
	mi, ok := d.vms.(vmbackend.IncomingMigrator)
	if !ok {
		return resp, errdefs.NotImplemented(errors.New("this host's VM backend cannot receive migrations"))
	}
	if !validContainerID.MatchString(offer.ID) {
		return resp, errdefs.InvalidParameter(fmt.Errorf("invalid container ID %q", offer.ID))
	}
	name := strings.TrimPrefix(offer.Name, "/")
	if !validName.MatchString(name) {
		return resp, errdefs.InvalidParameter(fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	if offer.Config == nil || offer.HostConfig == nil || offer.Path == "" {
		return resp, errdefs.InvalidParameter(errors.New("the offer has no configuration"))
	}
	if _, err := d.containers.get(offer.ID); err == nil {
		return resp, errdefs.Conflict(fmt.Errorf("container %s already exists on this host", offer.ID[:12]))
	}
	hc := offer.HostConfig
	if _, joins := joinsVM(hc); joins {
		return resp, errdefs.Conflict(errors.New("jevm cannot migrate a container that shares another container's VM"))
	}
	if err := validateHostConfig(hc); err != nil {
		return resp, err
	}
	imageID, _, err := d.images.ImageConfig(offer.ImageID)
	if err != nil {
		return resp, errdefs.NotFound(fmt.Errorf("image %s is not on this host: %w", offer.ImageID, err))
	}
	shape, _, err := d.shapeFor(hc)
	if err != nil {
		return resp, err
	}
	if shape != offer.Machine.Shape {
		return resp, errdefs.InvalidParameter(fmt.Errorf("this host gives the container a VM of %d MiB and %d vCPUs, the source's has %d MiB and %d",
			shape.MemoryMiB, shape.VCPUs, offer.Machine.Shape.MemoryMiB, offer.Machine.Shape.VCPUs))
	}
	if err := mi.CanReceive(offer.Machine); err != nil {
		return resp, errdefs.InvalidParameter(fmt.Errorf("this host cannot run the container's VM: %w", err))
	}
	if offer.Base.Size != d.vms.DiskSize() {
		return resp, errdefs.InvalidParameter(fmt.Errorf("the container's disk has %d bytes, this host's VMs %d", offer.Base.Size, d.vms.DiskSize()))
	}
	if _, err := checkCPUResources(&hc.Resources, d.vms.ResourceSupport(), false); err != nil {
		return resp, err
	}
	nc, err := d.prepareNetworking(hc, offer.Config, offer.NetConfig)
	if err != nil {
		return resp, err
	}
	if err := d.containers.reserve(name, offer.ID); err != nil {
		return resp, err
	}
	c := &Container{
		ID: offer.ID, Name: name, Created: offer.Created,
		ImageRef: offer.ImageRef, ImageID: imageID,
		Config: offer.Config, HostConfig: hc, NetConfig: nc,
		Path: offer.Path, Args: offer.Args, Shape: shape,
		RestartCount: offer.RestartCount, LinkEnv: offer.LinkEnv,
		State: ContainerState{Status: container.StateCreated},
		Dir:   d.containerDir(offer.ID),
	}
	if len(offer.Rlimits) > 0 {
		if err := json.Unmarshal(offer.Rlimits, &c.Rlimits); err != nil {
			d.containers.release(name)
			return resp, errdefs.InvalidParameter(fmt.Errorf("rlimits: %w", err))
		}
	}
	defer func() {
		if retErr != nil {
			d.containers.release(name)
			_ = os.RemoveAll(c.Dir)
		}
	}()
	if err := os.Mkdir(c.Dir, 0o700); err != nil {
		return resp, errdefs.Conflict(fmt.Errorf("container directory: %w", err))
	}
	createdVolumes, err := d.adoptMigratedMounts(c, offer)
	if err != nil {
		return resp, err
	}
	defer func() {
		if retErr != nil {
			d.dropMigratedMounts(c, createdVolumes)
		}
	}()
	own, err := d.images.BaseDisk(ctx, imageID)
	if err != nil {
		return resp, fmt.Errorf("image disk: %w", err)
	}
	_, digest, err := d.baseIdentity(ctx, own)
	if err != nil {
		return resp, err
	}
	im := &incomingMigration{offer: *offer, c: c, needBase: digest != offer.Base.Digest, createdVolumes: createdVolumes}
	if !im.needBase {
		if err := d.vms.CreateRootDisk(ctx, own, c.diskPath()); err != nil {
			return resp, errdefs.System(fmt.Errorf("create root disk: %w", err))
		}
	}
	d.migIn.mu.Lock()
	if d.migIn.m == nil {
		d.migIn.m = map[string]*incomingMigration{}
	}
	d.migIn.m[c.ID] = im
	im.timer = time.AfterFunc(incomingIdle, func() { d.expireIncoming(c.ID, im) })
	d.migIn.mu.Unlock()
	d.log.WithFields(logrus.Fields{"container": c.ID[:12], "name": name, "needBase": im.needBase}).Info("migration offered")
	return migration.OfferResponse{NeedBase: im.needBase}, nil
}

// takeIncoming marks migration id busy for one request; release ends it.
func (d *Daemon) takeIncoming(id string) (*incomingMigration, func(), error) {
	d.migIn.mu.Lock()
	defer d.migIn.mu.Unlock()
	im := d.migIn.m[id]
	if im == nil {
		return nil, nil, errdefs.NotFound(fmt.Errorf("no migration of container %s is offered here", id))
	}
	if im.busy {
		return nil, nil, errdefs.Conflict(fmt.Errorf("the migration of container %s is in progress", id))
	}
	im.busy = true
	im.timer.Stop()
	return im, func() {
		d.migIn.mu.Lock()
		defer d.migIn.mu.Unlock()
		im.busy = false
		if d.migIn.m[id] == im {
			im.timer.Reset(incomingIdle)
		}
	}, nil
}

// dropIncoming forgets migration im and removes what it made.
func (d *Daemon) dropIncoming(im *incomingMigration) {
	d.migIn.mu.Lock()
	if d.migIn.m[im.c.ID] == im {
		delete(d.migIn.m, im.c.ID)
	}
	im.timer.Stop()
	d.migIn.mu.Unlock()
	d.dropMigratedMounts(im.c, im.createdVolumes)
	_ = os.RemoveAll(im.c.Dir)
	_ = os.RemoveAll(d.vmStateDir(im.c.ID))
	d.containers.release(im.c.Name)
}

func (d *Daemon) expireIncoming(id string, im *incomingMigration) {
	d.migIn.mu.Lock()
	live := d.migIn.m[id] == im && !im.busy
	d.migIn.mu.Unlock()
	if live {
		d.log.WithField("container", id[:12]).Warn("migration offered but not run: dropped")
		d.dropIncoming(im)
	}
}

// MigrationAbort serves DELETE /jevm/migrations/{id}: the source gave up
// before the run.
func (d *Daemon) MigrationAbort(ctx context.Context, id string) error {
	im, _, err := d.takeIncoming(id)
	if err != nil {
		return err
	}
	d.dropIncoming(im)
	d.log.WithField("container", id[:12]).Info("migration aborted by the source")
	return nil
}

// MigrationBase serves PUT /jevm/migrations/{id}/base: the source's base
// disk, which the container's layer here goes over.
func (d *Daemon) MigrationBase(ctx context.Context, id string, r io.Reader) error {
	im, release, err := d.takeIncoming(id)
	if err != nil {
		return err
	}
	defer release()
	if !im.needBase {
		return errdefs.Conflict(errors.New("this host has the base disk already"))
	}
	path := filepath.Join(im.c.Dir, migratedBaseName)
	_ = os.Remove(path) // an earlier try's
	if err := migwire.ReceiveDisk(r, path, migwire.DiskIdentity{Size: im.offer.Base.Size, Digest: im.offer.Base.Digest}); err != nil {
		return errdefs.InvalidParameter(err)
	}
	if err := d.vms.CreateRootDisk(ctx, path, im.c.diskPath()); err != nil {
		os.Remove(path)
		return errdefs.System(fmt.Errorf("create root disk: %w", err))
	}
	im.needBase = false
	return nil
}

// MigrationRun serves POST /jevm/migrations/{id}/run: once the migration
// is found, hijack takes the connection (the API answers 101), and the
// VM's stream and the control messages go over it.
func (d *Daemon) MigrationRun(ctx context.Context, id string, hijack func() (net.Conn, *bufio.Reader, error)) error {
	im, release, err := d.takeIncoming(id)
	if err != nil {
		return err
	}
	if im.needBase {
		release()
		return errdefs.Conflict(errors.New("the base disk has not been sent"))
	}
	conn, br, err := hijack()
	if err != nil {
		release()
		return err
	}
	defer conn.Close()
	enc := json.NewEncoder(conn)
	if err := d.runIncoming(ctx, im, conn, br, enc); err != nil {
		_ = enc.Encode(migration.Status{Error: err.Error()})
		d.dropIncoming(im)
		d.log.WithError(err).WithField("container", id[:12]).Warn("incoming migration failed")
		return nil // said on the stream
	}
	return nil
}

// runIncoming starts the VM from the stream and, on the source's commit,
// runs it as the container's.
func (d *Daemon) runIncoming(ctx context.Context, im *incomingMigration, conn net.Conn, br *bufio.Reader, enc *json.Encoder) error {
	c := im.c
	mi := d.vms.(vmbackend.IncomingMigrator)
	log := d.log.WithFields(logrus.Fields{"container": c.ID[:12], "migration": "in"})
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &vmStart{d: d, c: c}
	var netAtt *controller.Attachment
	var proc *agentclient.Process
	readdress := false
	var tReady time.Time
	var resumedAfter time.Duration
	steps := []step{
		{"machine-spec", func(context.Context) error { s.spec = d.machineSpec(c); return nil }},
		s.stateDirStep(),
		// The addresses the guest has, if they are free here; else new
		// ones, which the agent gives the guest after the resume.
		{"attach-networks", func(ctx context.Context) (err error) {
			saved := c.NetConfig
			c.NetConfig = withCheckpointAddresses(saved, migratedEndpoints(im.offer.Endpoints))
			netAtt, err = d.attachNetworks(ctx, c, nil)
			c.NetConfig = saved
			if err != nil && len(im.offer.Endpoints) > 0 {
				log.WithError(err).Info("the guest's addresses are not free here: new ones")
				readdress = true
				netAtt, err = d.attachNetworks(ctx, c, nil)
			}
			if err != nil {
				return err
			}
			s.cs.push("detach-networks", func() { d.detachNetworks(c) })
			s.spec.NICs = netAtt.NICs
			return nil
		}},
		s.resumedMountsStep("migrate"),
		s.resumedMachineStep("incoming-machine", func(ctx context.Context) (vmbackend.Machine, error) {
			return mi.StartIncoming(ctx, s.spec, im.offer.Machine, migwire.NewFrameReader(br))
		}),
		{"commit", func(ctx context.Context) error {
			tReady = time.Now()
			if err := enc.Encode(migration.Status{Status: migration.StatusReady}); err != nil {
				return err
			}
			_ = conn.SetReadDeadline(time.Now().Add(commitTimeout))
			var st migration.Status
			// The commit carries the log's tail (base64 in JSON).
			if err := json.NewDecoder(io.LimitReader(br, maxMigratedLogTail*4/3+4096)).Decode(&st); err != nil {
				return fmt.Errorf("no commit from the source: %w", err)
			}
			_ = conn.SetReadDeadline(time.Time{})
			if st.Status != migration.StatusCommit {
				return fmt.Errorf("the source did not commit: %s", st.Error)
			}
			if err := appendLogTail(c, st.LogTail); err != nil {
				log.WithError(err).Warn("the log's last lines from the source are lost")
			}
			return nil
		}},
		{"resume", func(ctx context.Context) error {
			err := s.machine.Resume(ctx)
			resumedAfter = time.Since(tReady)
			if err == nil && d.net != nil && !readdress {
				d.net.Announce(c.ID)
			}
			return err
		}},
	}
	steps = append(steps, s.resumedGuestSteps("migrated", func(req *agentproto.RestoredRequest) {
		if readdress {
			req.Hosts, req.ResolvConf, req.Interfaces = netAtt.Hosts, netAtt.ResolvConf, netAtt.Interfaces
		}
	}, &proc)...)
	tr, err := runSteps(ctx, log, "migrate-in", &s.cs, steps)
	if err != nil {
		return err
	}
	r := s.beginRun(proc)
	r.keptHealth = migratedHealth(im.offer.Health)
	c.State = ContainerState{Status: container.StateRunning, Pid: s.machine.Pid(), StartedAt: im.offer.StartedAt}
	if err := c.save(); err != nil {
		log.WithError(err).Error("save container")
	}
	d.migIn.mu.Lock()
	delete(d.migIn.m, c.ID)
	im.timer.Stop()
	d.migIn.mu.Unlock()
	d.containers.add(c)
	d.containerEvent(c, events.ActionCreate, nil)
	d.containerEvent(c, events.ActionStart, nil)
	d.monitorRun(c, r)
	log.WithFields(logrus.Fields{"load": tr.duration("incoming-machine").String(), "readdressed": readdress}).Info("migrated container runs here")
	if err := enc.Encode(migration.Status{Status: migration.StatusRunning, ResumedAfter: resumedAfter}); err != nil {
		log.WithError(err).Warn("could not tell the source the container runs here")
	}
	return nil
}

// migratedEndpoints converts an offer's endpoints for
// withCheckpointAddresses.
func migratedEndpoints(eps map[string]migration.Endpoint) map[string]checkpointEndpoint {
	out := map[string]checkpointEndpoint{}
	for name, ep := range eps {
		out[name] = checkpointEndpoint{IP: ep.IP, IPv6: ep.IPv6, MAC: ep.MAC}
	}
	return out
}

// adoptMigratedMounts gives c the offer's mount points: tmpfs mounts and
// volumes its VM mounts itself. Each volume is this host's of that name,
// which must have the same driver and options (the same NFS export), or
// one made here with the source's options and labels; the names of those
// made are returned. c references every volume; on error nothing is
// left.
func (d *Daemon) adoptMigratedMounts(c *Container, offer *migration.Offer) (created []string, retErr error) {
	if len(offer.MountPoints) == 0 {
		return nil, nil
	}
	var mps []*volumes.MountPoint
	if err := json.Unmarshal(offer.MountPoints, &mps); err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("the offer's mounts: %w", err))
	}
	defs := map[string]migration.Volume{}
	for _, v := range offer.Volumes {
		defs[v.Name] = v
	}
	binds := map[string]string{}
	for _, b := range offer.Binds {
		binds[b.Source] = b.GuestMount
	}
	for _, mp := range mps {
		if mp == nil || !path.IsAbs(mp.Destination) {
			return nil, errdefs.InvalidParameter(errors.New("the offer has a mount without an absolute destination"))
		}
		switch def, ok := defs[mp.Name]; {
		case mp.Type == mount.TypeTmpfs:
		case mp.Type == mount.TypeBind:
			want, ok := binds[mp.Source]
			if !ok || c.HostConfig.NetworkMode.IsNone() {
				return nil, errHostShared("migrate", []string{mp.Destination})
			}
			gm, ok := d.volumes.SharedDirMount(mp.Source)
			if !ok {
				return nil, errdefs.InvalidParameter(fmt.Errorf("bind mount %s: the directory is not on shared storage on this host (an NFS mount, or jevmd --shared-storage)", mp.Source))
			}
			if gm.String() != want {
				return nil, errdefs.InvalidParameter(fmt.Errorf("bind mount %s: the directory is %s on this host, %s on the source: not the same shared storage", mp.Source, gm, want))
			}
		case mp.Type != mount.TypeVolume:
			return nil, errHostShared("migrate", []string{mp.Destination})
		case !ok:
			return nil, errdefs.InvalidParameter(fmt.Errorf("the offer has no definition of volume %q", mp.Name))
		case c.HostConfig.NetworkMode.IsNone():
			return nil, errHostShared("migrate", []string{mp.Destination})
		default:
			gm, ok := d.volumes.GuestMountFor(def.Options)
			if dir, bind := volumes.BindSource(def.Options); !ok && bind {
				return nil, errdefs.InvalidParameter(fmt.Errorf("volume %s: its directory %s is not on shared storage on this host (an NFS mount, or jevmd --shared-storage)", mp.Name, dir))
			}
			if !ok {
				return nil, errHostShared("migrate", []string{mp.Destination})
			}
			if def.GuestMount != "" && gm.String() != def.GuestMount {
				return nil, errdefs.InvalidParameter(fmt.Errorf("volume %s: its directory %s is %s on this host, %s on the source: not the same shared storage", mp.Name, def.Options["device"], gm, def.GuestMount))
			}
		}
	}
	var referenced []string
	defer func() {
		if retErr != nil {
			for _, name := range referenced {
				d.volumes.Release(name, c.ID)
			}
			for _, name := range created {
				_ = d.volumes.Remove(name)
			}
		}
	}()
	for _, mp := range mps {
		if mp.Type != mount.TypeVolume || slices.Contains(referenced, mp.Name) {
			continue
		}
		def := defs[mp.Name]
		if have, err := d.volumes.Get(mp.Name); err == nil {
			if have.Driver != def.Driver || !maps.Equal(have.Options, def.Options) {
				return nil, errdefs.Conflict(fmt.Errorf("volume %s exists on this host with other options (%v, the source's %v)", mp.Name, have.Options, def.Options))
			}
			if err := d.volumes.Reference(mp.Name, c.ID); err != nil {
				return nil, err
			}
		} else {
			if err := volumes.ValidateOptions(def.Options); err != nil {
				return nil, err
			}
			if _, _, err := d.volumes.Create(mp.Name, def.Driver, def.Options, def.Labels, c.ID); err != nil {
				return nil, err
			}
			created = append(created, mp.Name)
			d.volumeEvent("create", mp.Name, map[string]string{"driver": def.Driver})
		}
		referenced = append(referenced, mp.Name)
	}
	for _, mp := range mps {
		if mp.Type == mount.TypeVolume {
			v, err := d.volumes.Get(mp.Name)
			if err != nil {
				return nil, err
			}
			mp.Source = v.Mountpoint
		}
		mp.CopyData = false
	}
	c.MountPoints = mps
	return created, nil
}

// dropMigratedMounts undoes adoptMigratedMounts.
func (d *Daemon) dropMigratedMounts(c *Container, created []string) {
	for _, mp := range c.MountPoints {
		if mp.Type == mount.TypeVolume {
			d.volumes.Release(mp.Name, c.ID)
		}
	}
	for _, name := range created {
		if err := d.volumes.Remove(name); err != nil {
			d.log.WithError(err).WithField("volume", name).Warn("remove a volume made for a failed migration")
		}
	}
	c.MountPoints = nil
}

// migratedHealth is an offer's health state as this daemon keeps one
// (its status one of dockerd's, its log the last entries, bounded), nil
// for none or a status that is not a health check's.
func migratedHealth(h *container.Health) *container.Health {
	if h == nil {
		return nil
	}
	switch h.Status {
	case container.Starting, container.Healthy, container.Unhealthy:
	default:
		return nil
	}
	kept := &container.Health{Status: h.Status, FailingStreak: max(h.FailingStreak, 0)}
	for _, res := range h.Log[max(len(h.Log)-maxHealthLogEntries, 0):] {
		if res == nil {
			continue
		}
		r := *res
		if len(r.Output) > maxHealthOutput {
			r.Output = r.Output[:maxHealthOutput]
		}
		kept.Log = append(kept.Log, &r)
	}
	return kept
}
