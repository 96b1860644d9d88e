package guestagent

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

func mkroot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "etc", "home/u", "data"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.Symlink("usr/bin", filepath.Join(root, "bin")) // relative
	os.WriteFile(filepath.Join(root, "usr/bin/busybox"), nil, 0o755)
	os.Symlink("/usr/bin/busybox", filepath.Join(root, "usr/bin/sh")) // absolute: inside root
	os.WriteFile(filepath.Join(root, "usr/bin/noexec"), nil, 0o644)
	os.Symlink("/../../../../etc/shadow", filepath.Join(root, "escape"))
	os.Symlink("loop", filepath.Join(root, "loop"))
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(
		"root:x:0:0:root:/root:/bin/sh\n"+
			"daemon:x:1:1::/usr/sbin:/bin/false\n"+
			"u:x:1000:1000:U:/home/u:/bin/sh\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte(
		"root:x:0:\n"+
			"daemon:x:1:u\n"+
			"u:x:1000:\n"+
			"wheel:x:10:root,u\n"+
			"nogroup:x:65534:\n"), 0o644)
	return root
}

func TestResolveInRoot(t *testing.T) {
	root := mkroot(t)
	cases := map[string]string{
		"/bin/sh":          "/usr/bin/busybox",
		"bin/sh":           "/usr/bin/busybox",
		"/escape":          "/etc/shadow", // clamped inside root
		"/../../usr/bin":   "/usr/bin",
		"/bin/missing/x":   "/usr/bin/missing/x",
		"/":                "",
		"/data/../bin/../": "/usr",
	}
	for in, want := range cases {
		got, err := resolveInRoot(root, in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got != root+want {
			t.Errorf("resolve %s = %s, want %s", in, strings.TrimPrefix(got, root), want)
		}
	}
	if _, err := resolveInRoot(root, "/loop"); err == nil {
		t.Error("symlink loop resolved")
	}
}

func TestMkdirAllInRoot(t *testing.T) {
	root := mkroot(t)
	if err := mkdirAllInRoot(root, "/bin/new/dir", 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, "usr/bin/new/dir")); err != nil || !fi.IsDir() {
		t.Fatalf("dir not created through the symlink: %v", err)
	}
	if err := mkdirAllInRoot(root, "/usr/bin/busybox/x", 0o755); err == nil {
		t.Fatal("mkdir under a file succeeded")
	}
}

func TestLookPath(t *testing.T) {
	root := mkroot(t)
	const p = "/usr/local/bin:/usr/bin:/bin"
	ok := map[string]string{"sh": "/usr/bin/sh", "busybox": "/usr/bin/busybox", "/bin/sh": "/bin/sh", "./sh": "./sh"}
	for in, want := range ok {
		cwd := "/"
		if in == "./sh" {
			cwd = "/usr/bin"
		}
		got, err := lookPath(root, in, p, cwd)
		if err != nil || got != want {
			t.Errorf("lookPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]struct{ msg, code string }{
		"nosuchcmd":   {`exec: "nosuchcmd": executable file not found in $PATH`, agentproto.ErrCommandNotFound},
		"noexec":      {`exec: "noexec": executable file not found in $PATH`, agentproto.ErrCommandNotFound},
		"/nosuch":     {`exec: "/nosuch": stat /nosuch: no such file or directory`, agentproto.ErrCommandNotFound},
		"/bin/noexec": {`exec: "/bin/noexec": permission denied`, agentproto.ErrCommandNotExecutable},
		"/data":       {`exec: "/data": is a directory`, ""},
	}
	for in, want := range bad {
		_, err := lookPath(root, in, p, "/")
		if err == nil || err.Error() != want.msg || processErrCode(err) != want.code {
			t.Errorf("lookPath(%q) error %v (code %q), want %s (%q)", in, err, processErrCode(err), want.msg, want.code)
		}
	}
	if c := processErrCode(errors.New("mount: no such file or directory")); c != "" {
		t.Errorf("a set-up error has code %q", c)
	}
}

func TestResolveUser(t *testing.T) {
	root := mkroot(t)
	cases := []struct {
		spec string
		want execUser
		err  string
	}{
		{"", execUser{0, 0, []int{10}, "/root"}, ""},
		{"root", execUser{0, 0, []int{10}, "/root"}, ""},
		{"u", execUser{1000, 1000, []int{1, 10}, "/home/u"}, ""},
		{"1000", execUser{1000, 1000, []int{1, 10}, "/home/u"}, ""},
		{"u:wheel", execUser{1000, 10, nil, "/home/u"}, ""},
		{"u:65534", execUser{1000, 65534, nil, "/home/u"}, ""},
		{"4242", execUser{4242, 0, nil, "/"}, ""},
		{"4242:4343", execUser{4242, 4343, nil, "/"}, ""},
		{"nobody", execUser{65534, 65534, nil, "/nonexistent"}, ""},
		{"ghost", execUser{}, "unable to find user ghost: no matching entries in passwd file"},
		{"u:ghosts", execUser{}, "unable to find group ghosts: no matching entries in group file"},
	}
	for _, c := range cases {
		got, err := resolveUser(root, c.spec)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%q: error %v, want %s", c.spec, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.spec, err)
			continue
		}
		if !reflect.DeepEqual(*got, c.want) {
			t.Errorf("%q: %+v, want %+v", c.spec, *got, c.want)
		}
	}
	// No /etc/passwd at all (a scratch image): numeric users work, names
	// do not.
	empty := t.TempDir()
	if u, err := resolveUser(empty, "123:456"); err != nil || u.Uid != 123 || u.Gid != 456 {
		t.Errorf("scratch numeric: %+v %v", u, err)
	}
	if _, err := resolveUser(empty, "u"); err == nil {
		t.Error("scratch name resolved")
	}
}

// --group-add: names come from the container's /etc/group, numbers are
// taken as they are, an unknown name is refused with runc's message.
func TestAdditionalGroups(t *testing.T) {
	root := mkroot(t)
	got, err := additionalGroups(root, []string{"wheel", "4321"})
	if err != nil || !reflect.DeepEqual(got, []int{10, 4321}) {
		t.Fatalf("additionalGroups = %v, %v", got, err)
	}
	if _, err := additionalGroups(root, []string{"ghosts"}); err == nil || !strings.Contains(err.Error(), "Unable to find group ghosts") {
		t.Fatalf("unknown group: %v", err)
	}
	if got, err := additionalGroups(t.TempDir(), []string{"77"}); err != nil || !reflect.DeepEqual(got, []int{77}) {
		t.Fatalf("scratch numeric: %v, %v", got, err)
	}
	if got, err := additionalGroups(root, nil); err != nil || got != nil {
		t.Fatalf("none: %v, %v", got, err)
	}
}
