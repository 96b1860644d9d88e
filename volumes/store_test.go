package volumes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/errdefs"
	"golang.org/x/sys/unix"
)

func TestStoreCreateGetRemove(t *testing.T) {
	root := t.TempDir()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	v, created, err := s.Create("data", "", nil, map[string]string{"a": "b"}, "")
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if v.Driver != "local" || v.Mountpoint != filepath.Join(root, "data", "_data") || v.Labels["a"] != "b" || v.Anonymous() {
		t.Fatalf("volume = %+v", v)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || !fi.IsDir() {
		t.Fatalf("_data: %v", err)
	}
	// Creating again returns the existing volume (labels unchanged).
	v2, created, err := s.Create("data", "local", nil, map[string]string{"x": "y"}, "")
	if err != nil || created || v2.Labels["a"] != "b" {
		t.Fatalf("second create: %+v %v %v", v2, created, err)
	}
	anon, created, err := s.Create("", "", nil, nil, "ctr1")
	if err != nil || !created || len(anon.Name) != 64 || !anon.Anonymous() {
		t.Fatalf("anonymous: %+v %v", anon, err)
	}
	if _, _, err := s.Create("x", "", nil, nil, ""); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("short name: %v", err)
	}
	if _, _, err := s.Create("vol", "nfsplugin", nil, nil, ""); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown driver: %v", err)
	}

	// In use: 409 with the containers listed.
	if err := s.Reference("data", "c2"); err != nil {
		t.Fatal(err)
	}
	s.Reference("data", "c1")
	err = s.Remove("data")
	if !errdefs.IsConflict(err) || err.Error() != "remove data: volume is in use - [c1, c2]" {
		t.Fatalf("remove in use: %v", err)
	}
	s.Release("data", "c1")
	s.Release("data", "c2")
	if err := s.Remove("data"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "data")); !os.IsNotExist(err) {
		t.Fatalf("volume directory left: %v", err)
	}
	if _, err := s.Get("data"); !errdefs.IsNotFound(err) || err.Error() != "get data: no such volume" {
		t.Fatalf("get removed: %v", err)
	}

	// Reopened: the anonymous volume and its metadata are back.
	os.WriteFile(filepath.Join(anon.Mountpoint, "f"), []byte("12345"), 0o644)
	s2, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get(anon.Name)
	if err != nil || !got.Anonymous() || got.CreatedAt.IsZero() {
		t.Fatalf("reloaded: %+v %v", got, err)
	}
	if size, err := s2.Size(anon.Name); err != nil || size != 5 {
		t.Fatalf("size = %d %v", size, err)
	}
	// References are the daemon's to restore: a fresh store has none.
	if s2.InUse(anon.Name) {
		t.Fatal("fresh store has references")
	}
}

func TestStoreOptions(t *testing.T) {
	for _, tt := range []struct {
		opts map[string]string
		err  string
	}{
		{map[string]string{"foo": "bar"}, `invalid option: "foo"`},
		{map[string]string{"size": "1g"}, "quota size requested but no quota support"},
		{map[string]string{"type": "tmpfs"}, `missing required option: "device"`},
		{map[string]string{"o": "size=1m", "type": "tmpfs"}, `missing required option: "device"`},
		{map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}, ""},
	} {
		err := ValidateOptions(tt.opts)
		if tt.err == "" {
			if err != nil {
				t.Errorf("%v: %v", tt.opts, err)
			}
			continue
		}
		if err == nil || err.Error() != tt.err || !errdefs.IsInvalidParameter(err) {
			t.Errorf("%v: error %v, want %q", tt.opts, err, tt.err)
		}
	}
}

func TestStoreTmpfsVolumeMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := s.Create("tv", "", map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000,noexec"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Mount("tv", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if p != v.Mountpoint {
		t.Fatalf("mount path %s", p)
	}
	if _, err := s.Mount("tv", "c2"); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil || st.Type != unix.TMPFS_MAGIC || st.Flags&unix.ST_NOEXEC == 0 {
		t.Fatalf("not a noexec tmpfs: %+v %v", st, err)
	}
	var fst unix.Stat_t
	unix.Stat(p, &fst)
	if fst.Uid != 1000 {
		t.Fatalf("uid %d", fst.Uid)
	}
	if err := s.Remove("tv"); !errdefs.IsConflict(err) {
		t.Fatalf("remove while mounted: %v", err)
	}
	s.Unmount("tv", "c1")
	if mounted, _ := isMountPoint(p); !mounted {
		t.Fatal("unmounted while c2 uses it")
	}
	s.Unmount("tv", "c2")
	if mounted, _ := isMountPoint(p); mounted {
		t.Fatal("still mounted after the last user")
	}
	if err := s.Remove("tv"); err != nil {
		t.Fatal(err)
	}
}

func TestStoreBindVolume(t *testing.T) {
	dev := t.TempDir()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create("bv", "", map[string]string{"type": "none", "o": "bind", "device": dev}, nil, ""); err != nil {
		t.Fatal(err)
	}
	p, err := s.Mount("bv", "c1")
	if err != nil || p != dev {
		t.Fatalf("bind volume exports %q, %v", p, err)
	}
	s.Unmount("bv", "c1")
	if _, _, err := s.Create("bv2", "", map[string]string{"type": "none", "o": "bind", "device": "/no/such/dir"}, nil, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mount("bv2", "c1"); err == nil || !strings.Contains(err.Error(), "failed to mount local volume") {
		t.Fatalf("missing device: %v", err)
	}
}

func TestStorePrune(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	named, _, _ := s.Create("named", "", nil, nil, "")
	anonUsed, _, _ := s.Create("", "", nil, nil, "c1")
	anonFree, _, _ := s.Create("", "", nil, nil, "")
	os.WriteFile(filepath.Join(anonFree.Mountpoint, "f"), make([]byte, 1000), 0o644)
	s.Create("withopts", "", map[string]string{"type": "tmpfs", "device": "tmpfs"}, nil, "")

	deleted, reclaimed, err := s.Prune(func(v *Volume) bool { return v.Anonymous() })
	if err != nil || len(deleted) != 1 || deleted[0] != anonFree.Name || reclaimed != 1000 {
		t.Fatalf("prune anonymous: %v %d %v", deleted, reclaimed, err)
	}
	deleted, _, _ = s.Prune(nil)
	if len(deleted) != 1 || deleted[0] != named.Name {
		t.Fatalf("prune all: %v (used %s must stay, with options skipped)", deleted, anonUsed.Name)
	}
	if _, err := s.Get("withopts"); err != nil {
		t.Fatal("prune removed a volume with options")
	}
}

// An NFS volume is mounted by its VMs: the server's name in addr= or
// device is resolved on the host (the guest kernel takes addresses only),
// and the host mounts nothing.
func TestMountInGuest(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		opts map[string]string
		want []string
		bad  string
	}{
		{map[string]string{"type": "nfs", "o": "addr=10.0.0.1,vers=3,nolock", "device": ":/export"}, []string{"addr=10.0.0.1", "vers=3", "nolock"}, ""},
		{map[string]string{"type": "nfs", "o": "addr=localhost,ro", "device": ":/export"}, []string{"addr=127.0.0.1", "ro"}, ""},
		{map[string]string{"type": "nfs4", "o": "vers=4.1", "device": "127.0.0.2:/"}, []string{"vers=4.1", "addr=127.0.0.2"}, ""},
		{map[string]string{"type": "nfs", "o": "vers=3", "device": ":/export"}, nil, "address is missing"},
		{map[string]string{"type": "nfs", "o": "addr=no-such-host.invalid", "device": ":/export"}, nil, "look up NFS server"},
	} {
		name := "n" + strings.NewReplacer(",", "", "=", "", ".", "", ":", "", "/", "").Replace(tc.opts["o"]+tc.opts["device"])
		if _, _, err := s.Create(name, "", tc.opts, nil, ""); err != nil {
			t.Fatal(err)
		}
		if !s.GuestMountable(name) {
			t.Fatalf("%v: not mounted by the guest", tc.opts)
		}
		gm, err := s.MountInGuest(ctx, name, "c1")
		if tc.bad != "" {
			if !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), tc.bad) {
				t.Fatalf("%v: %v", tc.opts, err)
			}
			if was, _ := s.Unmount(name, "c1"); was {
				t.Fatalf("%v: in use after a failed mount", tc.opts)
			}
			// The host's mount (a VM without a network) fails alike,
			// before it tries to mount.
			if _, err := s.Mount(name, "c1"); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), tc.bad) {
				t.Fatalf("%v: the host's mount: %v", tc.opts, err)
			}
			if was, _ := s.Unmount(name, "c1"); was {
				t.Fatalf("%v: in use after a failed host mount", tc.opts)
			}
			continue
		}
		if err != nil || gm.FSType != tc.opts["type"] || gm.Device != tc.opts["device"] || !slices.Equal(gm.Options, tc.want) {
			t.Fatalf("%v: %+v %v", tc.opts, gm, err)
		}
		if mounted, _ := isMountPoint(filepath.Join(s.Root(), name, "_data")); mounted {
			t.Fatalf("%v: the host mounted it", tc.opts)
		}
		if was, err := s.Unmount(name, "c1"); !was || err != nil {
			t.Fatalf("%v: unmount (in use: %v): %v", tc.opts, was, err)
		}
	}
	if _, _, err := s.Create("plain", "", nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	if s.GuestMountable("plain") || func() bool { _, ok := s.GuestMountFor(map[string]string{"type": "tmpfs"}); return ok }() {
		t.Fatal("a local volume mounted by the guest")
	}
	if _, err := s.MountInGuest(ctx, "plain", "c1"); !errdefs.IsInvalidParameter(err) || !errors.Is(err, ErrMountedByHost) {
		t.Fatalf("a local volume in the guest: %v", err)
	}
}
