// Package fuzzjail is for fuzz targets of code that writes files from
// untrusted archives (image layers, build contexts): each input gets a
// directory holding root/, where the code under test writes, and a
// sentinel/ beside it that must never change; the code runs on a thread
// chrooted to that directory, so that an escape from root/ stops there
// and shows in Check instead of reaching the host's files.
package fuzzjail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoChroot is returned (wrapped) by InChroot when the thread could not
// be jailed; callers skip rather than run unjailed.
var ErrNoChroot = errors.New("cannot chroot")

// InChroot runs fn on a new OS thread whose root directory is dir; the
// thread exits with the goroutine (never unlocked), as in guestagent's
// runInRoot.
func InChroot(dir string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("%w: unshare: %v", ErrNoChroot, err)
			return
		}
		if err := unix.Chroot(dir); err != nil {
			errc <- fmt.Errorf("%w: %v", ErrNoChroot, err)
			return
		}
		if err := unix.Chdir("/"); err != nil {
			errc <- fmt.Errorf("%w: chdir: %v", ErrNoChroot, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Sandbox is one fuzz input's directory: Root (Dir/root, "/root" inside
// the chroot) and sentinel/ beside it, with a file and a directory that
// must never be touched.
type Sandbox struct {
	Dir, Root string
	before    map[string]string
	outside   map[[2]uint64]string // (dev, inode) of everything outside Root
}

// New makes a sandbox in a test temporary directory; it skips the test
// unless it runs as root (chroot).
func New(t testing.TB) *Sandbox {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot)")
	}
	dir := t.TempDir()
	sb := &Sandbox{Dir: dir, Root: filepath.Join(dir, "root")}
	for _, d := range []string{"root", "sentinel", "sentinel/dir"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "sentinel/victim"), []byte("must not change\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range []string{"sentinel/victim", "sentinel/dir", "sentinel", "."} {
		if err := os.Chtimes(filepath.Join(dir, p), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	sb.before, sb.outside = sb.snapshotOutside(t)
	return sb
}

// Run runs fn jailed in the sandbox (its root is Dir, so the code under
// test writes to "/root"); it skips the test if the thread cannot be
// jailed.
func (sb *Sandbox) Run(t testing.TB, fn func() error) error {
	t.Helper()
	err := InChroot(sb.Dir, fn)
	if errors.Is(err, ErrNoChroot) {
		t.Skip(err)
	}
	return err
}

// snapshotOutside describes everything under Dir except Root: type,
// mode, owner, size, link count, inode, mtime, content or link target.
func (sb *Sandbox) snapshotOutside(t testing.TB) (map[string]string, map[[2]uint64]string) {
	t.Helper()
	snap := map[string]string{}
	inodes := map[[2]uint64]string{}
	err := filepath.WalkDir(sb.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == sb.Root {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d size=%d nlink=%d ino=%d mtime=%d", fi.Mode(), st.Uid, st.Gid, fi.Size(), st.Nlink, st.Ino, fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" content=%q", b)
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		}
		snap[p] = desc
		inodes[[2]uint64{uint64(st.Dev), st.Ino}] = p
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", sb.Dir, err)
	}
	return snap, inodes
}

// Check fails the test if anything outside Root was created, removed or
// changed, or if anything in Root shares an inode with a file outside it
// (a hard link out); each entry in Root is also passed to each (if not
// nil) for the caller's own rules.
func (sb *Sandbox) Check(t testing.TB, each func(p string, fi fs.FileInfo)) {
	t.Helper()
	after, _ := sb.snapshotOutside(t)
	for p, want := range sb.before {
		if got, ok := after[p]; !ok {
			t.Fatalf("outside the root: %s was removed (was %s)", p, want)
		} else if got != want {
			t.Fatalf("outside the root: %s changed:\n was %s\n now %s", p, want, got)
		}
	}
	for p, got := range after {
		if _, ok := sb.before[p]; !ok {
			t.Fatalf("outside the root: %s was created (%s)", p, got)
		}
	}
	err := filepath.WalkDir(sb.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if out, ok := sb.outside[[2]uint64{uint64(st.Dev), st.Ino}]; ok {
			t.Fatalf("%s is %s (a link out of the root)", p, out)
		}
		if each != nil {
			each(p, fi)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking the root: %v", err)
	}
}
