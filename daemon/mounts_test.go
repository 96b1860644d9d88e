package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/vmbackend"
)

func newMountsDaemon(t *testing.T) *Daemon {
	t.Helper()
	d := &Daemon{
		cfg:        Config{DataRoot: t.TempDir(), ExecRoot: t.TempDir()},
		log:        logrus.NewEntry(logrus.New()),
		containers: newContainerStore(),
		events:     newEventBus(),
	}
	if err := d.openVolumes(); err != nil {
		t.Fatal(err)
	}
	return d
}

func mountsContainer(id string, cfg *container.Config, hc *container.HostConfig) *Container {
	if cfg == nil {
		cfg = &container.Config{}
	}
	return &Container{ID: id + strings.Repeat("0", 64-len(id)), Config: cfg, HostConfig: hc}
}

func TestRegisterMounts(t *testing.T) {
	d := newMountsDaemon(t)
	host := t.TempDir()
	c := mountsContainer("c1", &container.Config{Volumes: map[string]struct{}{"/anon": {}, "/named": {}}}, &container.HostConfig{
		Binds:  []string{host + ":/a/b", "named:/named:ro"},
		Mounts: []mount.Mount{{Type: mount.TypeTmpfs, Target: "/t", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20}}},
		Tmpfs:  map[string]string{"/run": "size=1m"},
	})
	if err := d.registerMounts(c); err != nil {
		t.Fatal(err)
	}
	var dests []string
	for _, mp := range c.MountPoints {
		dests = append(dests, mp.Destination)
	}
	if got := strings.Join(dests, " "); got != "/anon /named /t /a/b" {
		t.Fatalf("mount points %q", got)
	}
	anon, named := c.MountPoints[0], c.MountPoints[1]
	if anon.Type != mount.TypeVolume || len(anon.Name) != 64 || anon.Named || !anon.CopyData || !strings.HasSuffix(anon.Source, "/_data") {
		t.Fatalf("anonymous = %+v", anon)
	}
	if named.Name != "named" || !named.Named || named.RW || named.Mode != "ro" {
		t.Fatalf("named = %+v (the -v bind wins over the image's VOLUME)", named)
	}
	if refs := d.volumes.Refs("named"); len(refs) != 1 || refs[0] != c.ID {
		t.Fatalf("refs %v", refs)
	}

	// Start: shares in order, tmpfs and mounts sorted parents first.
	ms, err := d.prepareMounts(context.Background(), c, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms.shares) != 3 {
		t.Fatalf("shares %+v", ms.shares)
	}
	for i, sh := range ms.shares {
		if sh.Tag != vmbackend.ShareTag(i) {
			t.Errorf("share %d tag %s", i, sh.Tag)
		}
	}
	// The read-only named volume still gets copied into on its first
	// start: exported read-write, mounted read-only by the agent.
	if ms.shares[1].ReadOnly || ms.shares[2].HostPath != host {
		t.Fatalf("shares %+v", ms.shares)
	}
	var order []string
	for _, r := range ms.requests {
		order = append(order, r.Type+":"+r.Target)
	}
	if got := strings.Join(order, " "); got != "9p:/anon 9p:/named tmpfs:/run tmpfs:/t 9p:/a/b" {
		t.Fatalf("requests %q", got)
	}
	if r := ms.requests[1]; !r.ReadOnly || !r.CopyUp {
		t.Fatalf("named request %+v", r)
	}
	if r := ms.requests[2]; strings.Join(r.Options, ",") != "noexec,nosuid,nodev,size=1m" {
		t.Fatalf("tmpfs options %v", r.Options)
	}
	d.mountsStarted(c)
	if c.MountPoints[0].CopyData {
		t.Fatal("copy-up flag not cleared after the first start")
	}
	d.releaseMounts(c)

	// --volumes-from, read-only.
	c2 := mountsContainer("c2", nil, &container.HostConfig{VolumesFrom: []string{c.ID + ":ro"}})
	d.containers.add(c)
	if err := d.registerMounts(c2); err != nil {
		t.Fatal(err)
	}
	if len(c2.MountPoints) != 4 {
		t.Fatalf("volumes-from mounts %+v", c2.MountPoints)
	}
	for _, mp := range c2.MountPoints {
		if mp.RW || mp.CopyData {
			t.Fatalf("volumes-from :ro mount %+v", mp)
		}
	}

	// rm -v of c: its anonymous volume is still used by c2, the named one
	// is kept anyway.
	d.removeMounts(c, true)
	if _, err := d.volumes.Get(anon.Name); err != nil {
		t.Fatal("anonymous volume used by c2 was removed")
	}
	d.removeMounts(c2, true)
	if _, err := d.volumes.Get(anon.Name); !errdefs.IsNotFound(err) {
		t.Fatalf("anonymous volume left: %v", err)
	}
	if _, err := d.volumes.Get("named"); err != nil || d.volumes.InUse("named") {
		t.Fatalf("named volume: %v in use %v", err, d.volumes.InUse("named"))
	}
}

func TestRegisterMountsErrorsLeaveNothing(t *testing.T) {
	d := newMountsDaemon(t)
	for _, hc := range []*container.HostConfig{
		{Binds: []string{"/x:/a", "/y:/a"}},
		{Binds: []string{"/x:/a"}, Tmpfs: map[string]string{"/a": ""}},
		{Binds: []string{"v1:/a"}, Mounts: []mount.Mount{{Type: mount.TypeVolume, Target: "/a"}}},
		{Mounts: []mount.Mount{{Type: mount.TypeBind, Source: "/no/such/dir", Target: "/a"}}},
		{VolumesFrom: []string{"nosuchcontainer"}},
		{Tmpfs: map[string]string{"rel": ""}},
	} {
		c := mountsContainer("c1", &container.Config{Volumes: map[string]struct{}{"/anon": {}}}, hc)
		err := d.registerMounts(c)
		if !errdefs.IsInvalidParameter(err) {
			t.Errorf("%+v: error %v, want InvalidParameter", hc, err)
		}
	}
	for _, v := range d.volumes.List() {
		if d.volumes.InUse(v.Name) || v.Anonymous() {
			t.Errorf("left behind: volume %s (refs %v)", v.Name, d.volumes.Refs(v.Name))
		}
	}
	c := mountsContainer("c1", nil, &container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeBind, Source: "/no/such/dir", Target: "/a"}}})
	err := d.registerMounts(c)
	if err == nil || err.Error() != `invalid mount config for type "bind": bind source path does not exist: /no/such/dir` {
		t.Fatalf("missing --mount source: %v", err)
	}
}

func TestStageFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind-mount")
	}
	d := newMountsDaemon(t)
	f := filepath.Join(t.TempDir(), "app.conf")
	os.WriteFile(f, []byte("v1\n"), 0o644)
	c := mountsContainer("c1", nil, &container.HostConfig{Binds: []string{f + ":/etc/app.conf:ro"}})
	if err := d.registerMounts(c); err != nil {
		t.Fatal(err)
	}
	ms, err := d.prepareMounts(context.Background(), c, true)
	if err != nil {
		t.Fatal(err)
	}
	sh, req := ms.shares[0], ms.requests[0]
	if !req.IsFile || req.SubPath != "app.conf" || !sh.ReadOnly || !strings.HasPrefix(sh.HostPath, d.mountStagingDir(c.ID)) {
		t.Fatalf("share %+v request %+v", sh, req)
	}
	ents, _ := os.ReadDir(sh.HostPath)
	if len(ents) != 1 {
		t.Fatalf("the exported directory holds %d entries, want only the file", len(ents))
	}
	if b, err := os.ReadFile(filepath.Join(sh.HostPath, "app.conf")); err != nil || string(b) != "v1\n" {
		t.Fatalf("staged file: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(sh.HostPath, "app.conf"), []byte("x"), 0o644); err == nil {
		t.Fatal("read-only staged file is writable")
	}
	d.releaseMounts(c)
	if _, err := os.Stat(d.mountStagingDir(c.ID)); !os.IsNotExist(err) {
		t.Fatalf("staging left: %v", err)
	}
	if b, _ := os.ReadFile(f); string(b) != "v1\n" {
		t.Fatal("the host file was touched")
	}
}
