//go:build linux

package guestagent

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCopyUpIfEmpty(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	src := t.TempDir()
	os.Chmod(src, 0o750)
	os.Chown(src, 65534, 65534)
	os.WriteFile(filepath.Join(src, "seed"), []byte("seed\n"), 0o640)
	os.Chown(filepath.Join(src, "seed"), 65534, 100)
	os.Mkdir(filepath.Join(src, "sub"), 0o1777)
	unix.Chmod(filepath.Join(src, "sub"), 0o1777)
	os.WriteFile(filepath.Join(src, "sub", "f"), []byte("f"), 0o4755)
	unix.Chmod(filepath.Join(src, "sub", "f"), 0o4755)
	os.Link(filepath.Join(src, "seed"), filepath.Join(src, "hard"))
	os.Symlink("seed", filepath.Join(src, "link"))
	unix.Mkfifo(filepath.Join(src, "fifo"), 0o600)

	// Empty destination: everything is copied, with owners and modes,
	// and the destination takes the source directory's owner and mode.
	dst := t.TempDir()
	n, err := copyUpIfEmpty(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("copied %d entries, want 6", n)
	}
	check := func(rel string, mode os.FileMode, uid, gid uint32) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dst, rel), &st); err != nil {
			t.Fatal(err)
		}
		if got := os.FileMode(st.Mode & 0o7777); rel != "link" && got != mode {
			t.Errorf("%s: mode %o, want %o", rel, got, mode)
		}
		if st.Uid != uid || st.Gid != gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, st.Uid, st.Gid, uid, gid)
		}
	}
	check(".", 0o750, 65534, 65534)
	check("seed", 0o640, 65534, 100)
	check("sub", 0o1777, 0, 0)
	check("sub/f", 0o4755, 0, 0)
	check("fifo", 0o600, 0, 0)
	if b, _ := os.ReadFile(filepath.Join(dst, "hard")); string(b) != "seed\n" {
		t.Errorf("hard link content %q", b)
	}
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(dst, "seed"), &a)
	unix.Stat(filepath.Join(dst, "hard"), &b)
	if a.Ino != b.Ino {
		t.Error("hard link copied as two files")
	}
	if l, _ := os.Readlink(filepath.Join(dst, "link")); l != "seed" {
		t.Errorf("symlink -> %q", l)
	}

	// A volume with data is left alone.
	dst2 := t.TempDir()
	os.WriteFile(filepath.Join(dst2, "mine"), nil, 0o644)
	if n, err := copyUpIfEmpty(src, dst2); err != nil || n != 0 {
		t.Fatalf("non-empty destination: %d %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dst2, "seed")); err == nil {
		t.Fatal("copied into a non-empty volume")
	}
	// Nothing at the target in the image: nothing to copy.
	if n, err := copyUpIfEmpty(filepath.Join(src, "missing"), t.TempDir()); err != nil || n != 0 {
		t.Fatalf("missing source: %d %v", n, err)
	}
}

func TestTmpfsOptions(t *testing.T) {
	flags, data := mountOptions([]string{"noexec", "nosuid", "nodev", "exec", "size=64m", "mode=1777", "ro"})
	if flags != unix.MS_NOSUID|unix.MS_NODEV|unix.MS_RDONLY || data != "size=64m,mode=1777" {
		t.Fatalf("flags %#x data %q", flags, data)
	}
}

func TestShmOptions(t *testing.T) {
	for size, want := range map[int64]string{0: "mode=1777,size=65536k", 128 << 20: "mode=1777,size=131072k", 1000: "mode=1777,size=1k"} {
		if got := shmOptions(size); got != want {
			t.Errorf("shmOptions(%d) = %q, want %q", size, got, want)
		}
	}
}
