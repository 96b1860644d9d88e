package volumes

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestParseSharedStorage(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SharedStorage
		bad  string
	}{
		{in: "/srv/shared=nfs://10.0.0.5/export", want: SharedStorage{Dir: "/srv/shared", FSType: "nfs", Server: "10.0.0.5", Export: "/export"}},
		{in: "/srv/shared/=nfs4://files.example:2049/?vers=4.1&hard", want: SharedStorage{Dir: "/srv/shared", FSType: "nfs4", Server: "files.example", Export: "/", Options: []string{"port=2049", "vers=4.1", "hard"}}},
		{in: "/mnt/x=nfs://[fd00::5]:3000?vers=3&mountport=3000&nolock", want: SharedStorage{Dir: "/mnt/x", FSType: "nfs", Server: "fd00::5", Export: "/", Options: []string{"port=3000", "vers=3", "mountport=3000", "nolock"}}},
		{in: "/mnt/nfs/scratch/=none", want: SharedStorage{Dir: "/mnt/nfs/scratch", FSType: "none"}},
		{in: "relative=nfs://h/x", bad: "not an absolute path"},
		{in: "/x", bad: "want DIR="},
		{in: "/x=smb://h/x", bad: "scheme must be nfs"},
		{in: "/x=nfs:///x", bad: "want nfs://SERVER"},
		{in: "/x=nfs://h/x?addr=1.2.3.4", bad: "not addr="},
		{in: "/x=nfs://h/x?a%2Cb", bad: "comma"},
	} {
		got, err := ParseSharedStorage(tc.in)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%s: want an error with %q, got %v (%+v)", tc.in, tc.bad, err, got)
			}
			continue
		}
		if err != nil || got.Dir != tc.want.Dir || got.FSType != tc.want.FSType || got.Server != tc.want.Server ||
			got.Export != tc.want.Export || !slices.Equal(got.Options, tc.want.Options) {
			t.Errorf("%s: got %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		// It renders back to what reads the same.
		again, err := ParseSharedStorage(got.String())
		if err != nil || again.Dir != got.Dir || again.Server != got.Server || again.Export != got.Export || !slices.Equal(again.Options, got.Options) {
			t.Errorf("%s: rendered %s, read back %+v, %v", tc.in, got.String(), again, err)
		}
	}
}

// sharedMount: the declared storage with the longest directory wins; a
// directory on the host's NFS mount is mounted by the guest from the same
// export with the host's connection options (not its own address or the
// kernel's reports); a bind mount from inside an NFS mount and a local
// file system are not shared.
func TestSharedMount(t *testing.T) {
	declared := []SharedStorage{
		{Dir: "/srv/shared", FSType: "nfs", Server: "10.0.0.5", Export: "/export", Options: []string{"vers=3"}},
		{Dir: "/srv/shared/fast", FSType: "nfs4", Server: "fd00::7", Export: "/", Options: []string{"vers=4.2"}},
		{Dir: "/", FSType: "nfs", Server: "root.example", Export: "/all"},
		{Dir: "/mnt/nfs/scratch", FSType: "none"},
	}
	mounts := []*mountinfo.Info{
		{Mountpoint: "/", FSType: "ext4", Source: "/dev/sda1", Root: "/"},
		{Mountpoint: "/mnt/nfs", FSType: "nfs", Source: "files:/vol/a", Root: "/",
			VFSOptions: "rw,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,mountaddr=10.1.1.1,mountvers=3,mountport=20048,mountproto=udp,local_lock=none,addr=10.1.1.1"},
		{Mountpoint: "/mnt/nfs4", FSType: "nfs4", Source: "[fd00::9]:/", Root: "/",
			VFSOptions: "rw,vers=4.2,rsize=524288,wsize=524288,namlen=255,hard,proto=tcp6,timeo=600,retrans=2,sec=sys,clientaddr=fd00::10,local_lock=none,addr=fd00::9"},
		{Mountpoint: "/mnt/nfs/inner", FSType: "tmpfs", Source: "tmpfs", Root: "/"},
		{Mountpoint: "/mnt/bound", FSType: "nfs", Source: "files:/vol/a", Root: "/sub"},
		{Mountpoint: "/mnt/krb", FSType: "nfs4", Source: "files:/k", Root: "/", VFSOptions: "rw,vers=4.2,sec=krb5p,proto=tcp,addr=10.1.1.1"},
		{Mountpoint: "/mnt/rdma", FSType: "nfs", Source: "files:/r", Root: "/", VFSOptions: "rw,vers=3,sec=sys,proto=rdma,addr=10.1.1.1"},
	}
	list := func(dir string) ([]*mountinfo.Info, error) {
		var out []*mountinfo.Info
		for _, m := range mounts {
			if within(dir, m.Mountpoint) {
				out = append(out, m)
			}
		}
		return out, nil
	}
	for _, tc := range []struct {
		dir      string
		declared bool
		want     GuestMount // FSType "" is not shared
	}{
		{"/srv/shared", true, GuestMount{"nfs", "10.0.0.5:/export", []string{"vers=3"}}},
		{"/srv/shared/db/data", true, GuestMount{"nfs", "10.0.0.5:/export/db/data", []string{"vers=3"}}},
		{"/srv/sharedx", true, GuestMount{"nfs", "root.example:/all/srv/sharedx", nil}},
		{"/srv/shared/fast/x", true, GuestMount{"nfs4", "[fd00::7]:/x", []string{"vers=4.2"}}},
		{"/mnt/nfs/scratch/x", true, GuestMount{}},
		{"/mnt/nfs/app", false, GuestMount{"nfs", "files:/vol/a/app", []string{"vers=3", "rsize=1048576", "wsize=1048576", "hard", "proto=tcp", "timeo=600", "retrans=2", "sec=sys", "mountaddr=10.1.1.1", "mountvers=3", "mountport=20048", "mountproto=udp", "local_lock=none", "addr=10.1.1.1"}}},
		{"/mnt/nfs4", false, GuestMount{"nfs4", "[fd00::9]:/", []string{"vers=4.2", "rsize=524288", "wsize=524288", "hard", "proto=tcp6", "timeo=600", "retrans=2", "sec=sys", "local_lock=none", "addr=fd00::9"}}},
		{"/mnt/nfs/inner/x", false, GuestMount{}},
		{"/mnt/bound", false, GuestMount{}},
		{"/mnt/krb/x", false, GuestMount{}},
		{"/mnt/rdma", false, GuestMount{}},
		{"/var/lib/x", false, GuestMount{}},
		{"/mnt/nfsx", false, GuestMount{}},
	} {
		var decl []SharedStorage
		if tc.declared {
			decl = declared
		}
		got, err := sharedMount(tc.dir, decl, list)
		if tc.want.FSType == "" {
			if err != errNotShared {
				t.Errorf("%s: want not shared, got %+v, %v", tc.dir, got, err)
			}
			continue
		}
		if err != nil || got.FSType != tc.want.FSType || got.Device != tc.want.Device || !slices.Equal(got.Options, tc.want.Options) {
			t.Errorf("%s: got %+v, %v; want %+v", tc.dir, got, err, tc.want)
		}
	}
}

// A bind-source volume on declared shared storage is mounted by its VMs
// from the export (its server's name resolved on the host); one elsewhere,
// or whose directory is missing, is the host's to share (9p), as before.
func TestBindVolumeOnSharedStorage(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.listMounts = func(string) ([]*mountinfo.Info, error) { return nil, nil }
	shared, local := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(shared, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Through a symbolic link too: what counts is where the files are.
	link := filepath.Join(local, "link")
	if err := os.Symlink(filepath.Join(shared, "db"), link); err != nil {
		t.Fatal(err)
	}
	ss, err := ParseSharedStorage(shared + "=nfs://localhost:2050/export?vers=3&nolock")
	if err != nil {
		t.Fatal(err)
	}
	s.SetSharedStorage([]SharedStorage{ss})
	bind := func(dev string) map[string]string {
		return map[string]string{"type": "none", "o": "bind", "device": dev}
	}
	for name, dev := range map[string]string{"db": filepath.Join(shared, "db"), "viaLink": link, "local": local, "missing": filepath.Join(shared, "nope")} {
		if _, _, err := s.Create(name, "", bind(dev), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, name := range []string{"db", "viaLink"} {
		if !s.GuestMountable(name) {
			t.Fatalf("%s: not mounted by the guest", name)
		}
		if gm, ok := s.GuestMountFor(bind(filepath.Join(shared, "db"))); !ok || gm.Device != "localhost:/export/db" {
			t.Fatalf("an offered volume of %s: %+v %v", name, gm, ok)
		}
		gm, err := s.MountInGuest(ctx, name, "c1")
		if err != nil || gm.FSType != "nfs" || gm.Device != "localhost:/export/db" || !slices.Equal(gm.Options, []string{"port=2050", "vers=3", "nolock", "addr=127.0.0.1"}) {
			t.Fatalf("%s: %+v, %v", name, gm, err)
		}
		if was, err := s.Unmount(name, "c1"); !was || err != nil {
			t.Fatalf("%s: unmount: %v %v", name, was, err)
		}
	}
	for _, name := range []string{"local", "missing"} {
		if s.GuestMountable(name) {
			t.Fatalf("%s: mounted by the guest", name)
		}
		if _, err := s.MountInGuest(ctx, name, "c1"); err == nil {
			t.Fatalf("%s: mounted in the guest", name)
		}
	}
	if _, ok := s.GuestMountFor(bind(local)); ok {
		t.Fatal("an offered volume on this host's own disk is mounted by the guest")
	}
	// The host shares the others as before.
	if p, err := s.Mount("local", "c1"); err != nil || p != local {
		t.Fatalf("host mount of a local bind volume: %q %v", p, err)
	}
	if _, err := s.Mount("missing", "c1"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("host mount of a missing directory: %v", err)
	}
}

// The cost a start pays per bind-mounted directory (and bind-source
// volume) to learn whether it is on shared storage: the host's
// mountinfo, read and filtered.
func BenchmarkSharedDirMount(b *testing.B) {
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for b.Loop() {
		if _, ok := s.SharedDirMount(dir); ok {
			b.Fatal("a temporary directory on shared storage")
		}
	}
}

// A plain local volume is mounted by its VMs when the store's directory
// is on shared storage (its _data, from the export); an offered volume
// without options is not (its data would be another host's).
func TestLocalVolumeOnSharedStorage(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.listMounts = func(string) ([]*mountinfo.Info, error) { return nil, nil }
	if _, _, err := s.Create("pg", "", nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	if s.GuestMountable("pg") {
		t.Fatal("a local volume on this host's disk mounted by the guest")
	}
	root, err := filepath.EvalSymlinks(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	s.SetSharedStorage([]SharedStorage{{Dir: root, FSType: "nfs", Server: "10.0.0.5", Export: "/vols"}})
	gm, err := s.MountInGuest(context.Background(), "pg", "c1")
	if err != nil || gm.Device != "10.0.0.5:/vols/pg/_data" || !slices.Equal(gm.Options, []string{"addr=10.0.0.5"}) {
		t.Fatalf("a local volume on shared storage: %+v %v", gm, err)
	}
	if _, ok := s.GuestMountFor(map[string]string{}); ok {
		t.Fatal("an offered local volume is mounted by the guest")
	}
}
