package volumes

import (
	"reflect"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/mount"
)

func TestParseBind(t *testing.T) {
	tests := []struct {
		raw  string
		want MountPoint
		err  string
	}{
		{raw: "/host:/ctr", want: MountPoint{Type: mount.TypeBind, Source: "/host", Destination: "/ctr", RW: true, CreateSource: true, Propagation: mount.PropagationRPrivate}},
		{raw: "/host/../h//x/:/ctr/./d/", want: MountPoint{Type: mount.TypeBind, Source: "/h/x", Destination: "/ctr/d", RW: true, CreateSource: true, Propagation: mount.PropagationRPrivate}},
		{raw: "/host:/ctr:ro", want: MountPoint{Type: mount.TypeBind, Source: "/host", Destination: "/ctr", Mode: "ro", CreateSource: true, Propagation: mount.PropagationRPrivate}},
		{raw: "/host:/ctr:ro,rshared", want: MountPoint{Type: mount.TypeBind, Source: "/host", Destination: "/ctr", Mode: "ro,rshared", CreateSource: true, Propagation: mount.PropagationRShared}},
		{raw: "/host:/ctr:z,rw", want: MountPoint{Type: mount.TypeBind, Source: "/host", Destination: "/ctr", Mode: "z,rw", RW: true, CreateSource: true, Propagation: mount.PropagationRPrivate}},
		{raw: "/host:/ctr:cached", want: MountPoint{Type: mount.TypeBind, Source: "/host", Destination: "/ctr", Mode: "cached", RW: true, CreateSource: true, Propagation: mount.PropagationRPrivate}},
		{raw: "myvol:/data", want: MountPoint{Type: mount.TypeVolume, Name: "myvol", Named: true, Destination: "/data", Driver: "local", Mode: "z", RW: true, CopyData: true}},
		{raw: "myvol:/data:ro,nocopy", want: MountPoint{Type: mount.TypeVolume, Name: "myvol", Named: true, Destination: "/data", Driver: "local", Mode: "ro,nocopy"}},
		{raw: "/data", want: MountPoint{Type: mount.TypeVolume, Destination: "/data", Driver: "local", Mode: "z", RW: true, CopyData: true}},
		{raw: "", err: "invalid volume specification: ''"},
		{raw: "/foo:rw", err: "invalid volume specification: '/foo:rw'"},
		{raw: "/a:/b:c:d", err: "invalid volume specification: '/a:/b:c:d'"},
		{raw: "/a:/b:rw,ro", err: "invalid mode: rw,ro"},
		{raw: "/a:/b:bogus", err: "invalid mode: bogus"},
		{raw: "/a:relative", err: `invalid volume specification: '/a:relative': invalid mount config for type "bind": invalid mount path: 'relative' mount path must be absolute`},
		{raw: "/a:/", err: `invalid specification: destination can't be '/'`},
		{raw: "vv:/d:rshared", err: "field BindOptions must not be specified"},
		{raw: "/h:/d:nocopy", err: "field VolumeOptions must not be specified"},
		{raw: "a:/d", err: "volume name is too short"},
		{raw: "bad$name:/d", err: `"bad$name" includes invalid characters for a local volume name`},
	}
	for _, tt := range tests {
		got, err := ParseBind(tt.raw)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseBind(%q) error = %v, want %q", tt.raw, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseBind(%q): %v", tt.raw, err)
			continue
		}
		if !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("ParseBind(%q)\n got %+v\nwant %+v", tt.raw, *got, tt.want)
		}
	}
}

func TestParseMount(t *testing.T) {
	exists := func(p string) (bool, error) { return p == "/exists", nil }
	tests := []struct {
		name string
		m    mount.Mount
		want MountPoint
		err  string
	}{
		{name: "bind", m: mount.Mount{Type: mount.TypeBind, Source: "/exists", Target: "/t", ReadOnly: true},
			want: MountPoint{Type: mount.TypeBind, Source: "/exists", Destination: "/t", Propagation: mount.PropagationRPrivate}},
		{name: "bind delegated", m: mount.Mount{Type: mount.TypeBind, Source: "/exists", Target: "/t", Consistency: mount.ConsistencyDelegated},
			want: MountPoint{Type: mount.TypeBind, Source: "/exists", Destination: "/t", RW: true, Propagation: mount.PropagationRPrivate}},
		{name: "bind missing", m: mount.Mount{Type: mount.TypeBind, Source: "/x", Target: "/t"},
			err: `invalid mount config for type "bind": bind source path does not exist: /x`},
		{name: "bind create", m: mount.Mount{Type: mount.TypeBind, Source: "/x", Target: "/t", BindOptions: &mount.BindOptions{CreateMountpoint: true, Propagation: mount.PropagationSlave}},
			want: MountPoint{Type: mount.TypeBind, Source: "/x", Destination: "/t", RW: true, CreateSource: true, Propagation: mount.PropagationSlave}},
		{name: "bind relative", m: mount.Mount{Type: mount.TypeBind, Source: "rel", Target: "/t"},
			err: `invalid mount config for type "bind": invalid mount path: 'rel' mount path must be absolute`},
		{name: "bind no target", m: mount.Mount{Type: mount.TypeBind, Source: "/exists"},
			err: `invalid mount config for type "bind": field Target must not be empty`},
		{name: "bind with volume opts", m: mount.Mount{Type: mount.TypeBind, Source: "/exists", Target: "/t", VolumeOptions: &mount.VolumeOptions{}},
			err: "field VolumeOptions must not be specified"},
		{name: "named volume", m: mount.Mount{Type: mount.TypeVolume, Source: "data", Target: "/d", VolumeOptions: &mount.VolumeOptions{NoCopy: true, Labels: map[string]string{"a": "b"}, DriverConfig: &mount.Driver{Options: map[string]string{"type": "tmpfs"}}}},
			want: MountPoint{Type: mount.TypeVolume, Name: "data", Named: true, Destination: "/d", Driver: "local", Mode: "z", RW: true, VolumeLabels: map[string]string{"a": "b"}, VolumeDriverOpts: map[string]string{"type": "tmpfs"}}},
		{name: "anonymous volume", m: mount.Mount{Type: mount.TypeVolume, Target: "/d"},
			want: MountPoint{Type: mount.TypeVolume, Destination: "/d", Driver: "local", Mode: "z", RW: true, CopyData: true}},
		{name: "anonymous ro", m: mount.Mount{Type: mount.TypeVolume, Target: "/d", ReadOnly: true},
			err: "must not set ReadOnly mode when using anonymous volumes"},
		{name: "subpath", m: mount.Mount{Type: mount.TypeVolume, Source: "data", Target: "/d", VolumeOptions: &mount.VolumeOptions{Subpath: "a/b"}},
			want: MountPoint{Type: mount.TypeVolume, Name: "data", Named: true, Destination: "/d", Driver: "local", Mode: "z", RW: true, CopyData: true, Subpath: "a/b"}},
		{name: "subpath escapes", m: mount.Mount{Type: mount.TypeVolume, Source: "data", Target: "/d", VolumeOptions: &mount.VolumeOptions{Subpath: "../x"}},
			err: "subpath must be a relative path within the volume"},
		{name: "tmpfs", m: mount.Mount{Type: mount.TypeTmpfs, Target: "/t", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 2 << 20, Mode: 0o1770, Options: [][]string{{"exec"}}}},
			want: MountPoint{Type: mount.TypeTmpfs, Destination: "/t", RW: true, TmpfsOptions: []string{"mode=1770", "size=2m", "exec"}}},
		{name: "tmpfs source", m: mount.Mount{Type: mount.TypeTmpfs, Source: "x", Target: "/t"},
			err: "field Source must not be specified"},
		{name: "tmpfs bad option", m: mount.Mount{Type: mount.TypeTmpfs, Target: "/t", TmpfsOptions: &mount.TmpfsOptions{Options: [][]string{{"suid"}}}},
			err: "invalid option: suid"},
		{name: "root target", m: mount.Mount{Type: mount.TypeVolume, Target: "/"},
			err: "destination can't be '/'"},
		{name: "unknown type", m: mount.Mount{Type: "weird", Target: "/t"},
			err: `invalid mount config for type "weird": mount type unknown`},
	}
	for _, tt := range tests {
		got, err := ParseMount(tt.m, exists)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error = %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("%s\n got %+v\nwant %+v", tt.name, *got, tt.want)
		}
	}
}

func TestParseVolumesFrom(t *testing.T) {
	for _, tt := range []struct {
		spec, id string
		rw       bool
		err      bool
	}{
		{"c1", "c1", true, false},
		{"c1:ro", "c1", false, false},
		{"c1:rw", "c1", true, false},
		{"c1:rshared", "", false, true},
		{"c1:nocopy", "", false, true},
		{"c1:bad", "", false, true},
		{"", "", false, true},
	} {
		id, rw, err := ParseVolumesFrom(tt.spec)
		if (err != nil) != tt.err || id != tt.id || rw != tt.rw {
			t.Errorf("ParseVolumesFrom(%q) = %q %v %v", tt.spec, id, rw, err)
		}
	}
}

func TestMergeTmpfsOptions(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want []string
		err  bool
	}{
		{nil, []string{"noexec", "nosuid", "nodev"}, false},
		{[]string{"rw", "size=64m", "mode=1777"}, []string{"noexec", "nosuid", "nodev", "rw", "size=64m", "mode=1777"}, false},
		{[]string{"exec", "size=1m", "size=2m"}, []string{"exec", "nosuid", "nodev", "size=2m"}, false},
		{[]string{"ro", "rw", "rprivate"}, []string{"noexec", "nosuid", "nodev", "rw"}, false},
		{[]string{"uid=1000", "gid=1000", "nr_inodes=1k", "size=50%"}, []string{"noexec", "nosuid", "nodev", "uid=1000", "gid=1000", "nr_inodes=1k", "size=50%"}, false},
		{[]string{"mode=9z"}, nil, true},
		{[]string{"size=lots"}, nil, true},
		{[]string{"tmpcopyup"}, nil, true},
		{[]string{"bogus=1"}, nil, true},
	} {
		got, err := MergeTmpfsOptions(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("MergeTmpfsOptions(%q) error %v", tt.in, err)
			continue
		}
		if !tt.err && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("MergeTmpfsOptions(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSortByDestination(t *testing.T) {
	mps := []*MountPoint{{Destination: "/a/b/c"}, {Destination: "/z"}, {Destination: "/a/b"}, {Destination: "/a"}}
	SortByDestination(mps)
	var got []string
	for _, m := range mps {
		got = append(got, m.Destination)
	}
	if want := []string{"/a", "/z", "/a/b", "/a/b/c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}
