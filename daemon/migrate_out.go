package daemon

// Live migration, the source's side (docs/MIGRATION.md): POST
// /containers/{id}/jevm/migrate moves a running container to another
// jevmd while it runs. This daemon is then the target's API client, over
// TLS with its own certificate (Config.MigrationTLS).

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/api/types/migration"
	"github.com/jevm/jevm/internal/migwire"
	"github.com/jevm/jevm/vmbackend"
)

// errMigrationNeedsTLS is the answer of a daemon without TLS settings.
var errMigrationNeedsTLS = errdefs.InvalidParameter(errors.New("live migration goes over TLS between daemons: start jevmd with --tlsverify, --tlscacert, --tlscert and --tlskey (a certificate that allows client authentication, signed by the CA the target trusts)"))

// ContainerMigrate serves POST /containers/{name}/jevm/migrate: progress
// goes to out as JSON messages (as a pull's); an error before anything
// was written is the request's.
func (d *Daemon) ContainerMigrate(ctx context.Context, ref string, req migration.Request, out io.Writer) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	addr, host, err := parseMigrationTarget(req.Target)
	if err != nil {
		return err
	}
	if d.cfg.MigrationTLS == nil {
		return errMigrationNeedsTLS
	}
	members := len(d.members(c)) // before c.mu: it takes the others'
	c.mu.Lock()
	locked := true
	defer func() {
		if locked {
			c.mu.Unlock()
		}
	}()
	switch {
	case c.State.Status == container.StatePaused:
		return errdefs.Conflict(fmt.Errorf("Container %s is paused. Unpause the container before migrating it", c.ID))
	case !c.running() || c.run == nil:
		return errdefs.Conflict(fmt.Errorf("Container %s is not running", c.ID))
	case members > 0:
		return errdefs.Conflict(errors.New("jevm cannot migrate a container that shares its VM with others (pods) yet"))
	case c.Config.Labels["com.docker.swarm.task.id"] != "":
		return errdefs.Conflict(errors.New("a swarm task is moved by its service (docker node update --availability drain), not migrated"))
	}
	if dests := d.hostShared(c); len(dests) > 0 {
		return errHostShared("migrate", dests)
	}
	if _, joins := joinsVM(c.HostConfig); joins {
		return errdefs.Conflict(errors.New("jevm cannot migrate a container that shares another container's VM"))
	}
	r := c.run
	mig, ok := r.machine.(vmbackend.Migrator)
	if !ok {
		return errdefs.NotImplemented(errors.New("this VM backend cannot migrate containers"))
	}
	info, err := mig.MigrationInfo(ctx)
	if err != nil {
		return errdefs.InvalidParameter(err)
	}
	base, err := d.baseDisk(c)
	if err != nil {
		return err
	}
	size, digest, err := d.baseIdentity(ctx, base)
	if err != nil {
		return err
	}
	rlimits, _ := json.Marshal(c.Rlimits)
	offer := migration.Offer{
		ID: c.ID, Name: c.Name, Created: c.Created, StartedAt: c.State.StartedAt,
		ImageRef: c.ImageRef, ImageID: c.ImageID,
		Config: c.Config, HostConfig: c.HostConfig, NetConfig: c.NetConfig,
		Path: c.Path, Args: c.Args, RestartCount: c.RestartCount, Rlimits: rlimits, LinkEnv: c.LinkEnv,
		Endpoints: map[string]migration.Endpoint{},
		Machine:   info,
		Base:      migration.DiskIdentity{Size: size, Digest: digest},
	}
	for name, ep := range d.endpointsOf(c) {
		offer.Endpoints[name] = migration.Endpoint{IP: ep.IP, IPv6: ep.IPv6, MAC: ep.MAC}
	}
	// Marshalled below while c.mu is held, as the health monitor's
	// updates are: no copy needed.
	offer.Health = c.State.Health
	if offer.MountPoints, offer.Volumes, err = d.migratedMounts(c); err != nil {
		return err
	}
	offer.Binds = d.migratedBinds(c)
	log := d.log.WithFields(logrus.Fields{"container": c.ID[:12], "migration": "out", "target": req.Target})
	pg := &migrateProgress{enc: json.NewEncoder(out)}
	t0 := time.Now()
	tc := &targetClient{addr: addr, tls: d.cfg.MigrationTLS.Clone()}
	tc.tls.ServerName = host
	tc.http = &http.Client{Transport: &http.Transport{TLSClientConfig: tc.tls, DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}}
	defer tc.http.CloseIdleConnections()
	if err := tc.do(ctx, http.MethodGet, "/_ping", nil, nil); err != nil {
		return fmt.Errorf("target %s: %w", req.Target, err)
	}
	pg.status("Migrating %s to %s", c.Name, req.Target)

	// The image, unless the target has it.
	if err := tc.do(ctx, http.MethodGet, "/images/"+c.ImageID+"/json", nil, nil); errdefs.IsNotFound(err) {
		pg.status("Sending image %s", shortID(c.ImageID))
		if err := d.sendImage(ctx, c, tc); err != nil {
			return fmt.Errorf("send the image to %s: %w", req.Target, err)
		}
	} else if err != nil {
		return fmt.Errorf("target %s: %w", req.Target, err)
	}
	var resp migration.OfferResponse
	if err := tc.do(ctx, http.MethodPost, "/jevm/migrations", offer, &resp); err != nil {
		return fmt.Errorf("target %s: %w", req.Target, err)
	}
	committed := false
	defer func() {
		if !committed {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := tc.do(actx, http.MethodDelete, "/jevm/migrations/"+c.ID, nil, nil); err != nil && !errdefs.IsNotFound(err) {
				log.WithError(err).Warn("could not abort the migration on the target")
			}
		}
	}()
	if resp.NeedBase {
		pg.status("Sending the image's disk (%d MiB of data)", allocatedBytes(base)>>20)
		if err := tc.sendBase(ctx, c.ID, base); err != nil {
			return fmt.Errorf("send the image's disk to %s: %w", req.Target, err)
		}
	}
	sentLog, err := d.sendLog(ctx, c, tc, pg, log)
	if err != nil {
		return fmt.Errorf("send the container's log to %s: %w", req.Target, err)
	}
	conn, br, err := tc.hijack(ctx, "/jevm/migrations/"+c.ID+"/run")
	if err != nil {
		return fmt.Errorf("target %s: %w", req.Target, err)
	}
	defer conn.Close()
	// targetSays reads the target's next control message.
	targetSays := func(timeout time.Duration) (migration.Status, error) {
		var st migration.Status
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
		err := json.NewDecoder(io.LimitReader(br, 64<<10)).Decode(&st)
		return st, err
	}
	// From here the guest may be sent away: a daemon that dies before the
	// handover finds the record saying so (readopt resumes the VM).
	c.MigratingOut = &outgoingMigration{Target: req.Target}
	if err := c.save(); err != nil {
		c.MigratingOut = nil
		return err
	}
	defer func() {
		if c.MigratingOut != nil && locked { // still ours: the migration failed
			c.MigratingOut = nil
			if err := c.save(); err != nil {
				log.WithError(err).Warn("save container")
			}
		}
	}()
	bw := bufio.NewWriterSize(conn, 256<<10)
	fw := migwire.NewFrameWriter(bw)
	flushing := flushWriter{fw: fw, bw: bw}
	tCopy := time.Now()
	stats, err := mig.MigrateTo(ctx, flushing, func(p vmbackend.MigrationProgress) {
		pg.progress("memory and disk", p.Sent, p.Total)
	})
	tCopied := time.Now()
	if err == nil {
		if err = fw.Close(); err == nil {
			err = bw.Flush()
		}
		if err != nil {
			_ = r.machine.Resume(context.WithoutCancel(ctx))
		}
	}
	if err != nil {
		// The target may have said why it stopped reading.
		if st, serr := targetSays(2 * time.Second); serr == nil && st.Error != "" {
			err = fmt.Errorf("%w (target: %s)", err, st.Error)
		}
		return fmt.Errorf("the migration to %s failed, %s runs on here: %w", req.Target, c.Name, err)
	}
	// The guest is paused here and loaded there: the handover.
	st, err := targetSays(2 * time.Minute)
	tReady := time.Now()
	if err != nil || st.Status != migration.StatusReady {
		if rerr := r.machine.Resume(context.WithoutCancel(ctx)); rerr != nil {
			log.WithError(rerr).Error("could not resume the VM after a failed handover")
		}
		if err == nil {
			err = errors.New(st.Error)
		}
		return fmt.Errorf("the target did not take the container, %s runs on here: %w", c.Name, err)
	}
	// Recorded before the target is told: after that, the guest may run
	// there, and a daemon that died here must not resume it too.
	c.MigratingOut.Committed = true
	if err := c.save(); err != nil {
		c.MigratingOut.Committed = false
		if rerr := r.machine.Resume(context.WithoutCancel(ctx)); rerr != nil {
			log.WithError(rerr).Error("could not resume the VM after a failed handover")
		}
		return fmt.Errorf("the handover was not recorded, %s runs on here: %w", c.Name, err)
	}
	committed = true
	_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	commit := migration.Status{Status: migration.StatusCommit}
	if sentLog != nil {
		commit.LogTail = sentLog.tail(log)
	}
	err = json.NewEncoder(conn).Encode(commit)
	if err == nil {
		st, err = targetSays(2 * time.Minute)
	}
	if err != nil || st.Status != migration.StatusRunning {
		runs := false
		if err != nil {
			// Lost the connection after the commit: ask the target.
			runs = tc.runs(context.WithoutCancel(ctx), c.ID)
		}
		if !runs {
			if rerr := r.machine.Resume(context.WithoutCancel(ctx)); rerr != nil {
				log.WithError(rerr).Error("could not resume the VM after a failed handover")
			}
			if err == nil {
				err = errors.New(st.Error)
			}
			return fmt.Errorf("the target could not run the container, %s runs on here: %w", c.Name, err)
		}
	}
	// It runs there: this host's copy goes, as `docker rm -f` would. The
	// guest's pause went on until the target resumed it: until the
	// target was ready, then its commit and resume.
	handover := time.Since(tCopied)
	pause := (stats.Downtime + tReady.Sub(tCopied) + st.ResumedAfter).Round(time.Millisecond)
	if st.ResumedAfter == 0 {
		pause = (stats.Downtime + handover).Round(time.Millisecond) // the target did not say
	}
	c.HasBeenManuallyStopped = true
	c.lc.autoStart = false
	c.removeVolumes = true // its anonymous volumes went with it
	_ = c.save()
	locked = false
	c.mu.Unlock()
	if err := d.removeContainer(context.WithoutCancel(ctx), c, true); err != nil {
		log.WithError(err).Error("remove the migrated container here")
	}
	total := time.Since(t0)
	log.WithFields(logrus.Fields{"total": total.Round(time.Millisecond), "prepare": tCopy.Sub(t0).Round(time.Millisecond), "copy": stats.Total,
		"handover": handover.Round(time.Millisecond), "removed": time.Since(tCopied.Add(handover)).Round(time.Millisecond),
		"pause": pause, "ram": stats.RAMBytes, "passes": stats.Passes}).Info("container migrated")
	pg.status("Migrated %s to %s in %s (copy %s, paused %s; %d MiB of memory sent in %d passes)",
		c.Name, req.Target, total.Round(time.Millisecond), stats.Total.Round(time.Millisecond), pause, stats.RAMBytes>>20, stats.Passes)
	return nil
}

// outgoingMigration is the record of a live migration that may have sent
// the guest (Container.MigratingOut).
type outgoingMigration struct {
	// Target is the target daemon's address.
	Target string `json:"target"`
	// Committed: the target was (or was about to be) told to run the
	// container.
	Committed bool `json:"committed,omitempty"`
}

// parseMigrationTarget checks a target address: tcp://HOST:PORT.
func parseMigrationTarget(target string) (addr, host string, err error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "tcp" || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		return "", "", errdefs.InvalidParameter(fmt.Errorf("invalid migration target %q: want tcp://HOST:PORT, the target daemon's TLS API address", target))
	}
	return u.Host, u.Hostname(), nil
}

// sendImage loads c's image into the target: docker save here, docker
// load there (with the name c was created from, if it still names it).
func (d *Daemon) sendImage(ctx context.Context, c *Container, tc *targetClient) error {
	names := []string{c.ImageID}
	if id, _, err := d.images.ImageConfig(c.ImageRef); err == nil && id == c.ImageID && c.ImageRef != c.ImageID {
		names = []string{c.ImageRef}
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(d.ImageSave(ctx, names, nil, pw)) }()
	defer pr.Close()
	var msgs strings.Builder
	err := tc.stream(ctx, http.MethodPost, "/images/load?quiet=1", "application/x-tar", pr, &msgs)
	if err != nil {
		return err
	}
	// A load's errors come in the stream.
	dec := json.NewDecoder(strings.NewReader(msgs.String()))
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			break
		}
		if m.Error != nil {
			return m.Error
		}
	}
	return nil
}

// targetClient talks to the target daemon's API.
type targetClient struct {
	addr string
	tls  *tls.Config
	http *http.Client
}

func (tc *targetClient) url(path string) string {
	return "https://" + tc.addr + path // jevm's own routes are not versioned
}

// do sends body (JSON, if any) and decodes the answer into out (if any);
// an error status becomes the errdefs error of its code.
func (tc *targetClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	var sb strings.Builder
	if err := tc.stream(ctx, method, path, "application/json", rd, &sb); err != nil {
		return err
	}
	if out != nil {
		return json.Unmarshal([]byte(sb.String()), out)
	}
	return nil
}

// stream sends body and copies the answer (bounded) into w.
func (tc *targetClient) stream(ctx context.Context, method, path, ctype string, body io.Reader, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, method, tc.url(path), body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := tc.http.Do(req)
	if err != nil {
		return errdefs.Unavailable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return statusError(resp)
	}
	_, err = io.Copy(w, io.LimitReader(resp.Body, 16<<20))
	return err
}

// statusError turns an error answer into the errdefs error of its code
// (as the docker client does), with the target's message.
func statusError(resp *http.Response) error {
	var m struct {
		Message string `json:"message"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &m) != nil || m.Message == "" {
		m.Message = strings.TrimSpace(string(b))
	}
	return errdefs.FromStatusCode(errors.New(m.Message), resp.StatusCode)
}

// sendBase streams the base disk at path to the target.
func (tc *targetClient) sendBase(ctx context.Context, id, path string) error {
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 1<<20)
		err := migwire.SendDisk(ctx, path, bw)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	return tc.stream(ctx, http.MethodPut, "/jevm/migrations/"+id+"/base", "application/octet-stream", pr, io.Discard)
}

// hijack opens path as an upgraded connection (as docker attach does).
func (tc *targetClient) hijack(ctx context.Context, path string) (net.Conn, *bufio.Reader, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tc.tls}
	conn, err := d.DialContext(ctx, "tcp", tc.addr)
	if err != nil {
		return nil, nil, errdefs.Unavailable(err)
	}
	req, _ := http.NewRequest(http.MethodPost, tc.url(path), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		return nil, nil, statusError(resp)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br, nil
}

// runs says whether the container runs on the target.
func (tc *targetClient) runs(ctx context.Context, id string) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var st struct {
		State struct {
			Running bool `json:"Running"`
		} `json:"State"`
	}
	return tc.do(ctx, http.MethodGet, "/containers/"+id+"/json", nil, &st) == nil && st.State.Running
}

// flushWriter writes frames through a buffer, flushed after each write
// (QEMU writes in large pieces; the buffer joins each frame's header and
// payload into one TLS record).
type flushWriter struct {
	fw *migwire.FrameWriter
	bw *bufio.Writer
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.fw.Write(p)
	if err == nil {
		err = f.bw.Flush()
	}
	return n, err
}

// migrateProgress writes a migration's progress as JSON messages.
type migrateProgress struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (p *migrateProgress) status(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.enc.Encode(jsonmessage.JSONMessage{Status: fmt.Sprintf(format, args...)})
}

func (p *migrateProgress) progress(what string, current, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.enc.Encode(jsonmessage.JSONMessage{ID: what, Status: "Copying", Progress: &jsonmessage.JSONProgress{Current: current, Total: total}})
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// baseIDEntry caches a base disk's identity while the file is unchanged.
type baseIDEntry struct {
	size   int64
	mtime  time.Time
	ino    uint64
	digest string
}

// baseIdentity returns the size and content digest of a base disk
// (migwire.Identity), computed once per file version.
func (d *Daemon) baseIdentity(ctx context.Context, path string) (int64, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, "", err
	}
	var ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	d.baseIDs.Lock()
	e, ok := d.baseIDs.m[path]
	d.baseIDs.Unlock()
	if ok && e.size == st.Size() && e.mtime.Equal(st.ModTime()) && e.ino == ino {
		return e.size, e.digest, nil
	}
	t0 := time.Now()
	size, digest, err := migwire.Identity(ctx, path)
	if err != nil {
		return 0, "", err
	}
	d.baseIDs.Lock()
	if d.baseIDs.m == nil {
		d.baseIDs.m = map[string]baseIDEntry{}
	}
	d.baseIDs.m[path] = baseIDEntry{size: size, mtime: st.ModTime(), ino: ino, digest: digest}
	d.baseIDs.Unlock()
	d.log.WithFields(logrus.Fields{"disk": path, "digest": digest, "took": time.Since(t0).Round(time.Millisecond)}).Debug("base disk digest")
	return size, digest, nil
}

// allocatedBytes is how much of the file at path is allocated (a sparse
// disk's data), 0 if unknown.
func allocatedBytes(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// migratedBinds are the container's bind-mounted directories on shared
// storage with what its guest mounted for each (hostShared refused any
// other bind mount).
func (d *Daemon) migratedBinds(c *Container) []migration.Bind {
	var binds []migration.Bind
	for _, mp := range c.MountPoints {
		if mp.Type != mount.TypeBind {
			continue
		}
		if gm, ok := d.volumes.SharedDirMount(mp.Source); ok {
			binds = append(binds, migration.Bind{Source: mp.Source, GuestMount: gm.String()})
		}
	}
	return binds
}

// migratedMounts are the offer's mount points and the volumes they use
// (hostShared refused any other kind).
func (d *Daemon) migratedMounts(c *Container) (json.RawMessage, []migration.Volume, error) {
	if len(c.MountPoints) == 0 {
		return nil, nil, nil
	}
	raw, err := json.Marshal(c.MountPoints)
	if err != nil {
		return nil, nil, err
	}
	var vols []migration.Volume
	seen := map[string]bool{}
	for _, mp := range c.MountPoints {
		if mp.Type != mount.TypeVolume || seen[mp.Name] {
			continue
		}
		seen[mp.Name] = true
		v, err := d.volumes.Get(mp.Name)
		if err != nil {
			return nil, nil, err
		}
		if len(v.Options) == 0 {
			// Even on shared storage, its data is under this host's data
			// root, which no other host uses.
			return nil, nil, errdefs.InvalidParameter(fmt.Errorf("volume %s is a local volume, whose data stays on this host: only NFS volumes and directories on shared storage (bind-source volumes, -v binds) move with a container", v.Name))
		}
		mv := migration.Volume{Name: v.Name, Driver: v.Driver, Options: v.Options, Labels: v.Labels}
		if gm, ok := d.volumes.GuestMountFor(v.Options); ok {
			mv.GuestMount = gm.String()
		}
		vols = append(vols, mv)
	}
	return raw, vols, nil
}
