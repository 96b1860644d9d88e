//go:build linux

package guestagent

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot, chown)")
	}
}

// mkTree builds a small container-like tree under root.
func mkTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin", "etc", "tmp", "src/sub"} {
		must(os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(os.WriteFile(filepath.Join(root, "bin/busybox"), []byte("#!busybox\n"), 0o755))
	must(os.Symlink("/bin/busybox", filepath.Join(root, "bin/sh")))
	must(os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nu:x:1234:4321::/home/u:/bin/sh\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\ng:x:4321:\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "src/secret"), []byte("s3cret"), 0o700))
	must(os.Chmod(filepath.Join(root, "src/secret"), 0o700))
	must(os.WriteFile(filepath.Join(root, "src/owned"), []byte("owned"), 0o644))
	must(os.Lchown(filepath.Join(root, "src/owned"), 1234, 4321))
	must(os.Symlink("../etc/passwd", filepath.Join(root, "src/link")))
	must(os.Link(filepath.Join(root, "src/owned"), filepath.Join(root, "src/sub/hard")))
	must(os.Symlink("/src", filepath.Join(root, "srclink")))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(filepath.Join(root, "src/secret"), old, old))
}

type entry struct {
	typ      byte
	mode     int64
	uid, gid int
	link     string
	body     string
	mtime    time.Time
}

func readTar(t *testing.T, r io.Reader) ([]string, map[string]entry) {
	t.Helper()
	tr := tar.NewReader(r)
	var names []string
	m := map[string]entry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		m[h.Name] = entry{h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, string(b), h.ModTime}
	}
	return names, m
}

func TestContainerAbsPath(t *testing.T) {
	for in, want := range map[string]string{
		"etc/passwd": "/etc/passwd", "/etc/": "/etc/", "/etc/.": "/etc/.", "/": "/", "": "/",
		"/a/../b": "/b", "a//b/": "/a/b/",
		// The root's contents, as dockerd's PreserveTrailingDotOrSeparator.
		".": "/.", "./": "/./", "/.": "/.", "/./": "/./", "bar/quux/.": "/bar/quux/.",
	} {
		if got := containerAbsPath(in); got != want {
			t.Errorf("containerAbsPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStatPathInRoot(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	mkTree(t, root)
	var st, lst *agentproto.PathStat
	var missErr error
	err := runInRoot(root, func() error {
		var err error
		if st, err = statPath("/src/secret"); err != nil {
			return err
		}
		if lst, err = statPath("srclink"); err != nil {
			return err
		}
		_, missErr = statPath("/nope/x")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "secret" || st.Size != 6 || fs.FileMode(st.Mode) != 0o700 || st.LinkTarget != "" {
		t.Errorf("stat secret = %+v", st)
	}
	if !st.Mtime.Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("mtime %v", st.Mtime)
	}
	// The link target resolves inside the root, not on the host.
	if lst.Name != "srclink" || fs.FileMode(lst.Mode)&fs.ModeSymlink == 0 || lst.LinkTarget != "/src" {
		t.Errorf("stat srclink = %+v", lst)
	}
	if !errors.Is(missErr, fs.ErrNotExist) || fileErrCode(missErr) != agentproto.FileErrNotFound {
		t.Errorf("missing path: %v", missErr)
	}
}

func TestArchivePathDirectory(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	mkTree(t, root)
	var buf bytes.Buffer
	if err := runInRoot(root, func() error { return archivePath(containerAbsPath("/src"), &buf) }); err != nil {
		t.Fatal(err)
	}
	names, m := readTar(t, &buf)
	want := []string{"src/", "src/link", "src/owned", "src/secret", "src/sub/", "src/sub/hard"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("names %q, want %q", names, want)
	}
	if e := m["src/secret"]; e.mode != 0o700 || e.body != "s3cret" || !e.mtime.Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("secret %+v", e)
	}
	if e := m["src/owned"]; e.uid != 1234 || e.gid != 4321 || e.typ != tar.TypeReg {
		t.Errorf("owned %+v", e)
	}
	if e := m["src/link"]; e.typ != tar.TypeSymlink || e.link != "../etc/passwd" {
		t.Errorf("link %+v", e)
	}
	if e := m["src/sub/hard"]; e.typ != tar.TypeLink || e.link != "src/owned" {
		t.Errorf("hard link %+v", e)
	}

	// "/src/." archives the contents: names start with "./".
	buf.Reset()
	if err := runInRoot(root, func() error { return archivePath(containerAbsPath("/src/."), &buf) }); err != nil {
		t.Fatal(err)
	}
	names, _ = readTar(t, &buf)
	if names[0] != "./" || names[1] != "./link" {
		t.Fatalf("names of /src/.: %q", names)
	}

	// A file is one entry under its base name; a symlink is the link.
	buf.Reset()
	if err := runInRoot(root, func() error { return archivePath(containerAbsPath("/bin/sh"), &buf) }); err != nil {
		t.Fatal(err)
	}
	names, m = readTar(t, &buf)
	if len(names) != 1 || m["sh"].typ != tar.TypeSymlink || m["sh"].link != "/bin/busybox" {
		t.Fatalf("archive of symlink: %q %+v", names, m)
	}
}

func TestExportRoot(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	mkTree(t, root)
	os.Mkdir(filepath.Join(root, "lost+found"), 0o700)
	var buf bytes.Buffer
	if err := runInRoot(root, func() error { return exportRoot(&buf) }); err != nil {
		t.Fatal(err)
	}
	names, _ := readTar(t, &buf)
	joined := strings.Join(names, " ")
	for _, n := range []string{"bin/", "bin/busybox", "etc/passwd", "src/sub/hard"} {
		if !strings.Contains(" "+joined+" ", " "+n+" ") {
			t.Errorf("export lacks %s: %s", n, joined)
		}
	}
	if strings.Contains(joined, "lost+found") || strings.HasPrefix(names[0], "/") || strings.HasPrefix(names[0], "./") {
		t.Errorf("export names: %s", joined)
	}
}

func TestExtractArchiveRoundTrip(t *testing.T) {
	needRoot(t)
	src := t.TempDir()
	mkTree(t, src)
	var buf bytes.Buffer
	if err := runInRoot(src, func() error { return archivePath("/src", &buf) }); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	mkTree(t, dst)
	os.MkdirAll(filepath.Join(dst, "target"), 0o755)
	err := runInRoot(dst, func() error {
		d, err := resolveExtractDir("target")
		if err != nil {
			return err
		}
		return extractArchive(bytes.NewReader(buf.Bytes()), d, extractOptions{})
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dst, "target/src/secret"))
	if err != nil || fi.Mode().Perm() != 0o700 || !fi.ModTime().Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("secret: %v %v", fi, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 {
		t.Errorf("secret uid %d", st.Uid)
	}
	fi, _ = os.Lstat(filepath.Join(dst, "target/src/owned"))
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1234 || st.Gid != 4321 || st.Nlink != 2 {
		t.Errorf("owned: uid %d gid %d nlink %d", st.Uid, st.Gid, st.Nlink)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "target/src/link")); l != "../etc/passwd" {
		t.Errorf("link -> %q", l)
	}

	// Extracting through a symlink to a directory lands in the directory;
	// a file is not an extraction point; a missing one is not found.
	err = runInRoot(dst, func() error {
		if _, err := resolveExtractDir("/etc/passwd"); fileErrCode(err) != agentproto.FileErrInvalid {
			t.Errorf("file as extraction point: %v", err)
		}
		if _, err := resolveExtractDir("/nope"); fileErrCode(err) != agentproto.FileErrNotFound {
			t.Errorf("missing extraction point: %v", err)
		}
		d, err := resolveExtractDir("/srclink")
		if err != nil || d != "/src" {
			t.Errorf("srclink resolves to %q, %v", d, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func tarOf(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Linkname))
			body := h.Linkname
			h.Linkname = ""
			tw.WriteHeader(h)
			tw.Write([]byte(body))
			continue
		}
		tw.WriteHeader(h)
	}
	tw.Close()
	return buf.Bytes()
}

func TestExtractArchiveRules(t *testing.T) {
	needRoot(t)
	dst := t.TempDir()
	os.MkdirAll(filepath.Join(dst, "d/dir"), 0o755)
	os.WriteFile(filepath.Join(dst, "d/file"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(dst, "d/dir/keep"), []byte("keep"), 0o644)

	// noOverwriteDirNonDir: a file over a directory, and the reverse.
	fileOverDir := tarOf(t, &tar.Header{Name: "dir", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "x"})
	if err := extractArchive(bytes.NewReader(fileOverDir), filepath.Join(dst, "d"), extractOptions{NoOverwriteDirNonDir: true}); err == nil || !strings.Contains(err.Error(), "cannot overwrite directory") {
		t.Errorf("file over dir: %v", err)
	}
	dirOverFile := tarOf(t, &tar.Header{Name: "file/", Typeflag: tar.TypeDir, Mode: 0o755})
	if err := extractArchive(bytes.NewReader(dirOverFile), filepath.Join(dst, "d"), extractOptions{NoOverwriteDirNonDir: true}); err == nil || !strings.Contains(err.Error(), "cannot overwrite non-directory") {
		t.Errorf("dir over file: %v", err)
	}

	// Without the option a file replaces; a directory merges; "." leaves
	// the destination alone; missing parents appear; Chown overrides.
	os.Chmod(filepath.Join(dst, "d"), 0o711)
	tb := tarOf(t,
		&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o700},
		&tar.Header{Name: "file", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 7, Gid: 8, Linkname: "new"},
		&tar.Header{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o750},
		&tar.Header{Name: "dir/added", Typeflag: tar.TypeReg, Mode: 0o4755, Linkname: "suid"},
		&tar.Header{Name: "deep/er/f", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "deep"},
	)
	if err := extractArchive(bytes.NewReader(tb), filepath.Join(dst, "d"), extractOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "d/file")); string(b) != "new" {
		t.Errorf("file = %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "d")); fi.Mode().Perm() != 0o711 {
		t.Errorf(`"." changed the destination: %v`, fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(dst, "d/dir/keep")); err != nil {
		t.Errorf("directory not merged: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "d/dir/added")); fi.Mode()&fs.ModeSetuid == 0 {
		t.Errorf("setuid lost: %v", fi.Mode())
	}
	if fi, _ := os.Lstat(filepath.Join(dst, "d/file")); fi.Sys().(*syscall.Stat_t).Uid != 7 {
		t.Errorf("tar owner not kept")
	}
	if _, err := os.Stat(filepath.Join(dst, "d/deep/er/f")); err != nil {
		t.Errorf("parents not created: %v", err)
	}
	chown := tarOf(t, &tar.Header{Name: "c", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 7, Gid: 8, Linkname: "c"})
	if err := extractArchive(bytes.NewReader(chown), filepath.Join(dst, "d"), extractOptions{Chown: &[2]int{33, 44}}); err != nil {
		t.Fatal(err)
	}
	if st := mustLstat(t, filepath.Join(dst, "d/c")); st.Uid != 33 || st.Gid != 44 {
		t.Errorf("chown: %d:%d", st.Uid, st.Gid)
	}
	// Entries may not leave the destination.
	evil := tarOf(t, &tar.Header{Name: "../../evil", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "x"})
	if err := extractArchive(bytes.NewReader(evil), filepath.Join(dst, "d"), extractOptions{}); err == nil {
		t.Errorf("breakout accepted")
	}
}

func mustLstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

// copyTree copies a tree keeping owners, modes and times (cp -a).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
}

func TestDiffTreesAndLayer(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	mkTree(t, base)
	os.MkdirAll(filepath.Join(base, "gone/sub"), 0o755)
	os.WriteFile(filepath.Join(base, "gone/sub/f"), []byte("f"), 0o644)
	cur := t.TempDir()
	copyTree(t, base, cur)

	// What the agent does at every start: mount points and bind targets.
	for _, d := range []string{"proc", "sys", "dev"} {
		os.Mkdir(filepath.Join(cur, d), 0o755)
	}
	os.WriteFile(filepath.Join(cur, "etc/hostname"), nil, 0o644)
	// What the container does.
	os.WriteFile(filepath.Join(cur, "new"), []byte("x\n"), 0o644)
	os.Remove(filepath.Join(cur, "etc/group"))
	f, _ := os.OpenFile(filepath.Join(cur, "etc/passwd"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("y\n")
	f.Close()
	os.RemoveAll(filepath.Join(cur, "gone"))
	os.MkdirAll(filepath.Join(cur, "tmp/a/b"), 0o755)
	os.WriteFile(filepath.Join(cur, "tmp/a/b/c"), []byte("c"), 0o600)
	os.Chmod(filepath.Join(cur, "bin/busybox"), 0o700)
	os.Remove(filepath.Join(cur, "bin/sh"))
	os.Symlink("/bin/other", filepath.Join(cur, "bin/sh"))

	changes, err := diffTrees(base, cur)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, "CAD"[c.Kind:c.Kind+1]+" "+c.Path)
	}
	want := []string{
		"C /bin", "C /bin/busybox", "C /bin/sh",
		"C /etc", "D /etc/group", "C /etc/passwd",
		"D /gone",
		"A /new",
		"C /tmp", "A /tmp/a", "A /tmp/a/b", "A /tmp/a/b/c",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("changes:\n got %q\nwant %q", got, want)
	}

	var buf bytes.Buffer
	if err := writeLayer(cur, changes, &buf); err != nil {
		t.Fatal(err)
	}
	names, m := readTar(t, &buf)
	wantNames := []string{"bin/", "bin/busybox", "bin/sh", "etc/", "etc/.wh.group", "etc/passwd", ".wh.gone", "new", "tmp/", "tmp/a/", "tmp/a/b/", "tmp/a/b/c"}
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("layer names:\n got %q\nwant %q", names, wantNames)
	}
	if m["new"].body != "x\n" || m["bin/sh"].link != "/bin/other" || m["bin/busybox"].mode != 0o700 || m["tmp/a/b/c"].mode != 0o600 {
		t.Errorf("layer entries: %+v", m)
	}
	if !strings.HasSuffix(m["etc/passwd"].body, "y\n") {
		t.Errorf("passwd %q", m["etc/passwd"].body)
	}

	// No changes: nothing at all, not even "/" or the hidden entries.
	same := t.TempDir()
	copyTree(t, base, same)
	os.WriteFile(filepath.Join(same, "etc/hosts"), nil, 0o644)
	os.Mkdir(filepath.Join(same, "proc"), 0o755)
	if changes, err := diffTrees(base, same); err != nil || len(changes) != 0 {
		t.Fatalf("unchanged tree: %v %v", changes, err)
	}
}

func TestWhiteoutName(t *testing.T) {
	for in, want := range map[string]string{"/x": ".wh.x", "/etc/group": "etc/.wh.group", "/a/b/c": "a/b/.wh.c"} {
		if got := whiteoutName(in); got != want {
			t.Errorf("whiteoutName(%q) = %q, want %q", in, got, want)
		}
	}
}
