package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/checkpoint"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/volumes"
)

// Bad checkpoint requests get clear errors and leave nothing behind; the
// container runs on.
func TestCheckpointBadInput(t *testing.T) {
	d, vms, _ := fakeDaemon(t, nil)
	c := fakeContainer(t, d, "web")
	ctx := context.Background()
	create := func(id string) error {
		return d.CheckpointCreate(ctx, "web", checkpoint.CreateOptions{CheckpointID: id, Exit: true})
	}
	if err := create("c1"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "is not running") {
		t.Fatalf("a stopped container: %v", err)
	}
	if err := d.CheckpointCreate(ctx, "nosuch", checkpoint.CreateOptions{CheckpointID: "c1"}); !errdefs.IsNotFound(err) {
		t.Fatalf("no such container: %v", err)
	}
	if err := d.ContainerStart(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "-x", "a/b", "../x", "x"} {
		if err := create(bad); !errdefs.IsInvalidParameter(err) {
			t.Errorf("checkpoint ID %q: %v", bad, err)
		}
	}
	if err := d.CheckpointCreate(ctx, "web", checkpoint.CreateOptions{CheckpointID: "c1", CheckpointDir: "rel/dir"}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("a relative checkpoint dir: %v", err)
	}
	// The VM fails to checkpoint: no directory left, the container runs
	// on, its processes released.
	m := vms.Machine(c.ID)
	m.SetCheckpointErr(errors.New("boom"))
	if err := create("c1"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("a VM that fails its checkpoint: %v", err)
	}
	if _, err := os.Stat(c.checkpointsDir() + "/c1"); !os.IsNotExist(err) {
		t.Fatalf("a failed checkpoint left its directory: %v", err)
	}
	if held := m.CheckpointsHeld(); !slices.Equal(held, []bool{true}) || m.Guest.MainHeld() {
		t.Fatalf("the failed checkpoint: held while made %v, held after %v", held, m.Guest.MainHeld())
	}
	m.SetCheckpointErr(nil)
	if err := d.ContainerPause(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := create("c1"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "paused") {
		t.Fatalf("a paused container: %v", err)
	}
	if err := d.ContainerUnpause(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerRestore(ctx, "web", "c1", ""); !errdefs.IsConflict(err) {
		t.Fatalf("a restore into a running container: %v", err)
	}
	c.mu.Lock()
	running := c.running()
	c.mu.Unlock()
	if !running {
		t.Fatal("the container stopped")
	}
	if err := d.ContainerStop(ctx, "web", container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerRestore(ctx, "web", "c1", ""); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "checkpoint c1 does not exist") {
		t.Fatalf("a missing checkpoint: %v", err)
	}
	if list, err := d.CheckpointList(ctx, "web", checkpoint.ListOptions{}); err != nil || len(list) != 0 {
		t.Fatalf("list: %v %v", list, err)
	}
	if err := d.CheckpointDelete(ctx, "web", checkpoint.DeleteOptions{CheckpointID: "c1"}); !errdefs.IsNotFound(err) {
		t.Fatalf("delete a missing checkpoint: %v", err)
	}
}

// The container's processes are held still while the VM is saved
// (hold_linux.go in the agent): released after a --leave-running
// checkpoint, not after one that stops the container (its VM is killed).
func TestCheckpointHoldsTheProcesses(t *testing.T) {
	d, vms, hook := fakeDaemon(t, nil)
	c := fakeContainer(t, d, "web")
	ctx := context.Background()
	if err := d.ContainerStart(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	m := vms.Machine(c.ID)
	if err := d.CheckpointCreate(ctx, "web", checkpoint.CreateOptions{CheckpointID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if held := m.CheckpointsHeld(); !slices.Equal(held, []bool{true}) || m.Guest.MainHeld() || m.Paused() {
		t.Fatalf("--leave-running: held while made %v, held after %v, paused %v", held, m.Guest.MainHeld(), m.Paused())
	}
	if e := hook.LastEntry(); e == nil || e.Message != "checkpoint created" || e.Data["held"] != true {
		t.Fatalf("the checkpoint's log line: %+v", e)
	}
	if err := d.CheckpointCreate(ctx, "web", checkpoint.CreateOptions{CheckpointID: "c2", Exit: true}); err != nil {
		t.Fatal(err)
	}
	if held := m.CheckpointsHeld(); !slices.Equal(held, []bool{true, true}) || !m.Killed() {
		t.Fatalf("a checkpoint that stops the container: held while made %v, VM killed %v", held, m.Killed())
	}
	waitFor(t, c, "exited", func() bool { return c.State.Status == container.StateExited })
	if list, err := d.CheckpointList(ctx, "web", checkpoint.ListOptions{}); err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
}

// A restore interrupted by a daemon crash: the next start of the daemon
// gives a stopped container its own disk back, and drops the set-aside
// copy of one that runs.
func TestRecoverRestoreDisk(t *testing.T) {
	d := testDaemon(t)
	c := testContainer(t, d, "web")
	disk := c.diskPath()
	os.WriteFile(disk, []byte("checkpoint's"), 0o600)
	os.WriteFile(disk+".before-restore", []byte("own"), 0o600)
	recoverRestoreDisk(d.log, c)
	if b, _ := os.ReadFile(disk); string(b) != "own" {
		t.Fatalf("disk after recovery: %q", b)
	}
	if _, err := os.Stat(disk + ".before-restore"); !os.IsNotExist(err) {
		t.Fatalf("the set-aside disk is still there: %v", err)
	}
	os.WriteFile(disk+".before-restore", []byte("old"), 0o600)
	c.State.Status = container.StateRunning
	recoverRestoreDisk(d.log, c)
	if b, _ := os.ReadFile(disk); string(b) != "own" {
		t.Fatalf("a running container's disk changed: %q", b)
	}
	if _, err := os.Stat(disk + ".before-restore"); !os.IsNotExist(err) {
		t.Fatalf("a running container's set-aside disk is still there: %v", err)
	}
}

// A bind-mounted directory on shared storage is the guest's own NFS mount
// of the export, not a 9p share, so its container can be checkpointed;
// one on the host's own disk is shared and refuses it. So is a local
// volume whose data is on shared storage.
func TestSharedStorageMounts(t *testing.T) {
	d, vms, _ := fakeDaemon(t, nil)
	shared, local := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(shared, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	d.volumes.SetSharedStorage([]volumes.SharedStorage{{Dir: shared, FSType: "nfs", Server: "127.0.0.1", Export: "/export", Options: []string{"vers=3"}}})
	ctx := context.Background()

	c := fakeContainer(t, d, "db")
	c.MountPoints = []*volumes.MountPoint{{Type: mount.TypeBind, Source: filepath.Join(shared, "db"), Destination: "/var/lib/db", RW: true}}
	if err := d.ContainerStart(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	// Each VM has its pod share (for containers that may join it) besides
	// the shares of its mounts.
	mountShares := func(c *Container) []vmbackend.ShareSpec {
		var out []vmbackend.ShareSpec
		for _, sh := range vms.Machine(c.ID).Spec.Shares {
			if sh.Tag != c.State.PodShare {
				out = append(out, sh)
			}
		}
		return out
	}
	m := vms.Machine(c.ID)
	req := m.Guest.StartRequest()
	if len(mountShares(c)) != 0 || len(req.Mounts) != 1 || req.Mounts[0].Type != "nfs" || req.Mounts[0].Source != "127.0.0.1:/export/db" ||
		!slices.Equal(req.Mounts[0].Options, []string{"vers=3", "addr=127.0.0.1"}) || req.Mounts[0].Target != "/var/lib/db" || req.Mounts[0].ReadOnly {
		t.Fatalf("shares %+v, mounts %+v", m.Spec.Shares, req.Mounts)
	}
	if err := d.CheckpointCreate(ctx, "db", checkpoint.CreateOptions{CheckpointID: "c1"}); err != nil {
		t.Fatalf("checkpoint with a bind mount on shared storage: %v", err)
	}

	c2 := fakeContainer(t, d, "loc")
	c2.MountPoints = []*volumes.MountPoint{{Type: mount.TypeBind, Source: local, Destination: "/data", RW: true}}
	if err := d.ContainerStart(ctx, "loc"); err != nil {
		t.Fatal(err)
	}
	if sh := mountShares(c2); len(sh) != 1 || sh[0].HostPath != local {
		t.Fatalf("a bind mount on the host's disk: shares %+v", sh)
	}
	if err := d.CheckpointCreate(ctx, "loc", checkpoint.CreateOptions{CheckpointID: "c1"}); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "9p share") {
		t.Fatalf("checkpoint with a bind mount on the host's disk: %v", err)
	}

	// A plain local volume whose data is on shared storage (the host
	// serves its volumes directory over NFS): the guest mounts its _data
	// and fills it from the image; it can be checkpointed, but its data is
	// this host's, so it does not migrate.
	d.volumes.SetSharedStorage([]volumes.SharedStorage{
		{Dir: shared, FSType: "nfs", Server: "127.0.0.1", Export: "/export", Options: []string{"vers=3"}},
		{Dir: d.volumes.Root(), FSType: "nfs", Server: "127.0.0.1", Export: "/vols", Options: []string{"vers=3"}},
	})
	c3 := fakeContainer(t, d, "pg")
	if _, _, err := d.volumes.Create("pgdata", "", nil, nil, c3.ID); err != nil {
		t.Fatal(err)
	}
	c3.MountPoints = []*volumes.MountPoint{{Type: mount.TypeVolume, Name: "pgdata", Driver: "local", Destination: "/var/lib/postgresql/data", RW: true, CopyData: true}}
	if err := d.ContainerStart(ctx, "pg"); err != nil {
		t.Fatal(err)
	}
	req = vms.Machine(c3.ID).Guest.StartRequest()
	if len(mountShares(c3)) != 0 || len(req.Mounts) != 1 || req.Mounts[0].Type != "nfs" || req.Mounts[0].Source != "127.0.0.1:/vols/pgdata/_data" || !req.Mounts[0].CopyUp {
		t.Fatalf("a local volume on shared storage: shares %+v, mounts %+v", mountShares(c3), req.Mounts)
	}
	if err := d.CheckpointCreate(ctx, "pg", checkpoint.CreateOptions{CheckpointID: "c1"}); err != nil {
		t.Fatalf("checkpoint with a local volume on shared storage: %v", err)
	}
	c3.mu.Lock()
	_, _, err := d.migratedMounts(c3)
	c3.mu.Unlock()
	if !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "volume pgdata is a local volume") {
		t.Fatalf("migration of a local volume: %v", err)
	}
}
