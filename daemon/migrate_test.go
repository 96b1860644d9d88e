package daemon

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/migration"
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
