package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/migration"
	"github.com/jevm/jevm/volumes"
)

// Bad migration requests get clear errors before anything is sent, and
// the container runs on.
func TestMigrateBadInput(t *testing.T) {
	d, _, _ := fakeDaemon(t, nil)
	fakeContainer(t, d, "web")
	ctx := context.Background()
	migrate := func(ref, target string) error {
		var out strings.Builder
		err := d.ContainerMigrate(ctx, ref, migration.Request{Target: target}, &out)
		if err != nil && out.Len() > 0 {
			t.Errorf("%s: progress written before the error: %q", ref, out.String())
		}
		return err
	}
	if err := migrate("nosuch", "tcp://h2:2376"); !errdefs.IsNotFound(err) {
		t.Fatalf("no such container: %v", err)
	}
	for _, bad := range []string{"", "h2:2376", "unix:///run/x.sock", "tcp://h2", "tcp://h2:2376/path", "https://h2:2376"} {
		if err := migrate("web", bad); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "invalid migration target") {
			t.Errorf("target %q: %v", bad, err)
		}
	}
	if err := migrate("web", "tcp://h2:2376"); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("a daemon without TLS: %v", err)
	}
	d.cfg.MigrationTLS = &tls.Config{}
	if err := migrate("web", "tcp://h2:2376"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "is not running") {
		t.Fatalf("a stopped container: %v", err)
	}
	if err := d.ContainerStart(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerPause(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := migrate("web", "tcp://h2:2376"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "paused") {
		t.Fatalf("a paused container: %v", err)
	}
	if err := d.ContainerUnpause(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	// The fake VM cannot migrate.
	if err := migrate("web", "tcp://h2:2376"); !errdefs.IsNotImplemented(err) {
		t.Fatalf("a VM that cannot migrate: %v", err)
	}
	c, _ := d.containers.get("web")
	c.mu.Lock()
	running := c.running()
	c.mu.Unlock()
	if !running {
		t.Fatal("the container stopped")
	}
	// The target's side: this VM backend receives nothing; unknown
	// migrations are 404.
	if _, err := d.MigrationOffer(ctx, &migration.Offer{ID: strings.Repeat("a", 64), Name: "x"}); !errdefs.IsNotImplemented(err) {
		t.Fatalf("offer to a backend that cannot receive: %v", err)
	}
	if err := d.MigrationAbort(ctx, "nosuch"); !errdefs.IsNotFound(err) {
		t.Fatalf("abort of an unknown migration: %v", err)
	}
	if err := d.MigrationBase(ctx, "nosuch", strings.NewReader("")); !errdefs.IsNotFound(err) {
		t.Fatalf("base of an unknown migration: %v", err)
	}
}

// An offered migration is one request at a time, and is dropped with its
// directory and name when the source goes quiet.
func TestIncomingMigrationLifecycle(t *testing.T) {
	d, _, _ := fakeDaemon(t, nil)
	id := strings.Repeat("b", 64)
	c := &Container{ID: id, Name: "moving", Dir: t.TempDir() + "/c"}
	if err := d.containers.reserve(c.Name, id); err != nil {
		t.Fatal(err)
	}
	im := &incomingMigration{c: c}
	d.migIn.m = map[string]*incomingMigration{id: im}
	im.timer = time.AfterFunc(time.Hour, func() {})
	_, release, err := d.takeIncoming(id)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.takeIncoming(id); !errdefs.IsConflict(err) {
		t.Fatalf("a second request at once: %v", err)
	}
	d.expireIncoming(id, im) // busy: kept
	if d.migIn.m[id] == nil {
		t.Fatal("a busy migration expired")
	}
	release()
	d.expireIncoming(id, im)
	if d.migIn.m[id] != nil {
		t.Fatal("an idle migration did not expire")
	}
	if err := d.containers.reserve(c.Name, strings.Repeat("c", 64)); err != nil {
		t.Fatalf("the name is still reserved: %v", err)
	}
}

// An offer's NFS volumes are made here with the source's options (and
// removed when the migration fails), or must match a volume of that name
// here; mounts shared from a host cannot come.
func TestAdoptMigratedMounts(t *testing.T) {
	d, _, _ := fakeDaemon(t, nil)
	nfs := map[string]string{"type": "nfs", "o": "addr=10.0.0.1,vers=3", "device": ":/export"}
	offer := func(mps ...*volumes.MountPoint) *migration.Offer {
		raw, err := json.Marshal(mps)
		if err != nil {
			t.Fatal(err)
		}
		return &migration.Offer{MountPoints: raw, Volumes: []migration.Volume{
			{Name: "shared", Driver: "local", Options: nfs},
			{Name: "ondisk", Driver: "local"},
		}}
	}
	newC := func() *Container {
		return &Container{ID: strings.Repeat("d", 64), HostConfig: &container.HostConfig{}}
	}
	vol := func(name, dst string) *volumes.MountPoint {
		return &volumes.MountPoint{Type: mount.TypeVolume, Name: name, Destination: dst, Driver: "local", RW: true, CopyData: true}
	}

	c := newC()
	created, err := d.adoptMigratedMounts(c, offer(vol("shared", "/data"), &volumes.MountPoint{Type: mount.TypeTmpfs, Destination: "/tmp"}))
	if err != nil || len(created) != 1 || created[0] != "shared" {
		t.Fatalf("an NFS volume: %v %v", created, err)
	}
	v, err := d.volumes.Get("shared")
	if err != nil || !maps.Equal(v.Options, nfs) {
		t.Fatalf("the volume made here: %+v %v", v, err)
	}
	if len(c.MountPoints) != 2 || c.MountPoints[0].Source != v.Mountpoint || c.MountPoints[0].CopyData {
		t.Fatalf("mount points: %+v", c.MountPoints[0])
	}
	if refs := d.volumes.Refs("shared"); len(refs) != 1 || refs[0] != c.ID {
		t.Fatalf("refs: %v", refs)
	}
	d.dropMigratedMounts(c, created)
	if _, err := d.volumes.Get("shared"); !errdefs.IsNotFound(err) {
		t.Fatalf("a failed migration left its volume: %v", err)
	}

	// One of the same name here: kept, and must have the same options.
	if _, _, err := d.volumes.Create("shared", "local", nfs, nil, ""); err != nil {
		t.Fatal(err)
	}
	c = newC()
	if created, err = d.adoptMigratedMounts(c, offer(vol("shared", "/data"))); err != nil || len(created) != 0 {
		t.Fatalf("an NFS volume this host has: %v %v", created, err)
	}
	d.dropMigratedMounts(c, created)
	if _, err := d.volumes.Get("shared"); err != nil {
		t.Fatalf("this host's volume went with a failed migration: %v", err)
	}
	if _, _, err := d.volumes.Create("other", "local", map[string]string{"type": "tmpfs", "device": "tmpfs"}, nil, ""); err != nil {
		t.Fatal(err)
	}
	o := offer(vol("other", "/data"))
	o.Volumes = append(o.Volumes, migration.Volume{Name: "other", Driver: "local", Options: nfs})
	if _, err := d.adoptMigratedMounts(newC(), o); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "other options") {
		t.Fatalf("a volume of the name with other options: %v", err)
	}

	// Refused, leaving nothing: a volume on the host's disk, a bind
	// mount, an NFS volume of a container without a network.
	for _, tc := range []struct {
		what string
		mps  []*volumes.MountPoint
		none bool
	}{
		{"a local volume", []*volumes.MountPoint{vol("shared", "/a"), vol("ondisk", "/b")}, false},
		{"a bind mount", []*volumes.MountPoint{vol("shared", "/a"), {Type: mount.TypeBind, Source: "/srv", Destination: "/b"}}, false},
		{"no network", []*volumes.MountPoint{vol("shared", "/a")}, true},
	} {
		c := newC()
		if tc.none {
			c.HostConfig.NetworkMode = "none"
		}
		if _, err := d.adoptMigratedMounts(c, offer(tc.mps...)); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "host's disk") {
			t.Fatalf("%s: %v", tc.what, err)
		}
		if refs := d.volumes.Refs("shared"); len(refs) != 0 {
			t.Fatalf("%s: refs left: %v", tc.what, refs)
		}
		if _, err := d.volumes.Get("ondisk"); !errdefs.IsNotFound(err) {
			t.Fatalf("%s: a volume was made: %v", tc.what, err)
		}
	}
}

// Directories on shared storage come when they are the same export here
// as on the source: a bind-source volume (made here with the source's
// options) and a -v bind mount; one that is another export here, or on
// this host's own disk, is refused and nothing is made.
func TestAdoptMigratedSharedDirs(t *testing.T) {
	d, _, _ := fakeDaemon(t, nil)
	shared := t.TempDir()
	for _, sub := range []string{"db", "direct"} {
		if err := os.Mkdir(filepath.Join(shared, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d.volumes.SetSharedStorage([]volumes.SharedStorage{{Dir: shared, FSType: "nfs", Server: "10.0.0.5", Export: "/export"}})
	bindVol := map[string]string{"type": "none", "o": "bind", "device": filepath.Join(shared, "db")}
	offer := func(volMount, bindMount string) *migration.Offer {
		mps := []*volumes.MountPoint{
			{Type: mount.TypeVolume, Name: "app", Destination: "/app", Driver: "local", RW: true},
			{Type: mount.TypeBind, Source: filepath.Join(shared, "direct"), Destination: "/direct", RW: true},
		}
		raw, err := json.Marshal(mps)
		if err != nil {
			t.Fatal(err)
		}
		o := &migration.Offer{MountPoints: raw, Volumes: []migration.Volume{{Name: "app", Driver: "local", Options: bindVol, GuestMount: volMount}}}
		if bindMount != "" {
			o.Binds = []migration.Bind{{Source: filepath.Join(shared, "direct"), GuestMount: bindMount}}
		}
		return o
	}
	newC := func() *Container {
		return &Container{ID: strings.Repeat("e", 64), HostConfig: &container.HostConfig{}}
	}

	c := newC()
	created, err := d.adoptMigratedMounts(c, offer("nfs 10.0.0.5:/export/db", "nfs 10.0.0.5:/export/direct"))
	if err != nil || len(created) != 1 || created[0] != "app" {
		t.Fatalf("the same exports: %v %v", created, err)
	}
	if v, err := d.volumes.Get("app"); err != nil || !maps.Equal(v.Options, bindVol) {
		t.Fatalf("the volume made here: %+v %v", v, err)
	}
	d.dropMigratedMounts(c, created)

	for _, tc := range []struct{ what, volMount, bindMount, want string }{
		{"a volume of another export", "nfs 10.0.0.6:/export/db", "nfs 10.0.0.5:/export/direct", "is nfs 10.0.0.5:/export/db on this host, nfs 10.0.0.6:/export/db on the source"},
		{"a bind mount of another export", "nfs 10.0.0.5:/export/db", "nfs 10.0.0.5:/other/direct", "is nfs 10.0.0.5:/export/direct on this host, nfs 10.0.0.5:/other/direct on the source"},
		{"a bind mount the source shared over 9p", "nfs 10.0.0.5:/export/db", "", "host's disk"},
	} {
		if _, err := d.adoptMigratedMounts(newC(), offer(tc.volMount, tc.bindMount)); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v", tc.what, err)
		}
		if _, err := d.volumes.Get("app"); !errdefs.IsNotFound(err) {
			t.Fatalf("%s: a volume was made: %v", tc.what, err)
		}
	}
	// A directory on this host's own disk.
	d.volumes.SetSharedStorage(nil)
	if _, err := d.adoptMigratedMounts(newC(), offer("nfs 10.0.0.5:/export/db", "nfs 10.0.0.5:/export/direct")); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "is not on shared storage on this host") {
		t.Fatalf("directories not shared here: %v", err)
	}
}

// A migrated container's health goes on from the source's state: a
// dockerd status, its last log entries, bounded.
func TestMigratedHealth(t *testing.T) {
	if migratedHealth(nil) != nil || migratedHealth(&container.Health{Status: "bogus"}) != nil || migratedHealth(&container.Health{Status: container.NoHealthcheck}) != nil {
		t.Fatal("a health state that is not a health check's was kept")
	}
	var log []*container.HealthcheckResult
	for i := 0; i < 8; i++ {
		log = append(log, &container.HealthcheckResult{ExitCode: i, Output: strings.Repeat("x", 10000)})
	}
	log = append(log, nil)
	h := migratedHealth(&container.Health{Status: container.Unhealthy, FailingStreak: 3, Log: log})
	if h.Status != container.Unhealthy || h.FailingStreak != 3 || len(h.Log) != maxHealthLogEntries-1 || h.Log[0].ExitCode != 4 {
		t.Fatalf("kept: %+v", h)
	}
	for _, r := range h.Log {
		if len(r.Output) > maxHealthOutput {
			t.Fatalf("an output of %d bytes kept", len(r.Output))
		}
	}
	if len(log[7].Output) != 10000 {
		t.Fatal("the offer's log was changed")
	}
}

// A daemon that dies during a live migration: its next start resumes a
// guest that was sent but never handed over (the target was not told to
// run it), and leaves stopped, saying where it went, one whose handover
// had begun.
func TestReadoptAfterMigrationOut(t *testing.T) {
	d, vms, _ := fakeDaemon(t, nil)
	ctx := context.Background()
	sent := fakeContainer(t, d, "sent")
	handed := fakeContainer(t, d, "handed")
	for _, c := range []*Container{sent, handed} {
		if err := d.ContainerStart(ctx, c.Name); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		c.MigratingOut = &outgoingMigration{Target: "tcp://10.0.0.2:2376", Committed: c == handed}
		if err := c.save(); err != nil {
			t.Fatal(err)
		}
		c.mu.Unlock()
		vms.Machine(c.ID).SetMigratedOut()
	}

	// The next daemon, with the VMs the first one left.
	d2 := &Daemon{cfg: d.cfg, log: d.log, vms: vms, containers: newContainerStore(), events: newEventBus(), execs: newExecStore(), stopping: make(chan struct{})}
	t.Cleanup(func() { close(d2.stopping) })
	if err := d2.openVolumes(); err != nil {
		t.Fatal(err)
	}
	// As restore does with each record (the test's are not under the
	// data root).
	for _, c := range []*Container{sent, handed} {
		loaded, err := loadContainer(c.Dir)
		if err != nil {
			t.Fatal(err)
		}
		d2.containers.add(loaded)
		d2.readopt(ctx, loaded)
	}
	got := func(id string) *Container {
		c, err := d2.containers.get(id)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	s := got(sent.ID)
	s.mu.Lock()
	status, out := s.State.Status, s.MigratingOut
	s.mu.Unlock()
	if m := vms.Machine(sent.ID); status != container.StateRunning || out != nil || m.Exited() || m.Paused() {
		t.Fatalf("sent, not handed over: status %s, record %+v, VM exited %v, paused %v", status, out, m.Exited(), m.Paused())
	}
	if saved, err := loadContainer(sent.Dir); err != nil || saved.MigratingOut != nil {
		t.Fatalf("the saved record still says it is migrating: %+v %v", saved.MigratingOut, err)
	}
	h := got(handed.ID)
	h.mu.Lock()
	status, reason, out := h.State.Status, h.State.Error, h.MigratingOut
	h.mu.Unlock()
	if status != container.StateExited || !strings.Contains(reason, "handing the container over to tcp://10.0.0.2:2376") || out != nil || !vms.Machine(handed.ID).Exited() {
		t.Fatalf("handed over: status %s, error %q, record %+v, VM exited %v", status, reason, out, vms.Machine(handed.ID).Exited())
	}
}
