//go:build linux

package guestagent

// File-system work behind docker cp, export, diff and commit. These
// functions know nothing about the agent protocol (files_linux.go wires
// them up) and are tested on the host (fsops_linux_test.go).
//
// Paths are resolved the way dockerd resolves them: inside the container's
// root, as if it were "/". runInRoot gives a function a thread whose root
// directory is the container's (unshare(CLONE_FS) + chroot), so absolute
// symlinks in the image resolve inside it and nothing can lead out of it.

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// runInRoot runs fn on a new OS thread whose root and working directory are
// root. The thread is never handed back to the Go scheduler (it exits with
// the goroutine), so no other goroutine ever runs with that root. fn must
// do its file-system work on its own goroutine.
func runInRoot(root string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread's file-system context is changed.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs: %w", err)
			return
		}
		if err := unix.Chroot(root); err != nil {
			errc <- fmt.Errorf("chroot %s: %w", root, err)
			return
		}
		if err := unix.Chdir("/"); err != nil {
			errc <- fmt.Errorf("chdir /: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// invalidError marks errors the daemon reports as invalid parameters.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

// fileErrCode classifies an error for FileOp.ErrCode.
func fileErrCode(err error) string {
	var inv *invalidError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &inv):
		return agentproto.FileErrInvalid
	case errors.Is(err, fs.ErrNotExist):
		return agentproto.FileErrNotFound
	}
	return ""
}

// containerAbsPath is dockerd's archive.PreserveTrailingDotOrSeparator(
// filepath.Join("/", p), p): the cleaned absolute path, keeping a trailing
// "/." or "/" of the request (they make a difference to cp).
func containerAbsPath(p string) string {
	clean := filepath.Join("/", p)
	if p != "" && filepath.Base(clean) != "." && filepath.Base(p) == "." {
		// "x/.", ".", "./", "/.": the directory's contents ("/." for the
		// root itself).
		if !strings.HasSuffix(clean, "/") {
			clean += "/"
		}
		clean += "."
	}
	if !strings.HasSuffix(clean, "/") && strings.HasSuffix(p, "/") {
		clean += "/"
	}
	return clean
}

// statPath is dockerd's container path stat; it runs inside the root.
func statPath(p string) (*agentproto.PathStat, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	st := &agentproto.PathStat{
		Name:  filepath.Base(p),
		Size:  fi.Size(),
		Mode:  uint32(fi.Mode()),
		Mtime: fi.ModTime(),
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		// The fully evaluated target, as far as it exists.
		st.LinkTarget, err = resolveInRoot("", p)
		if err != nil {
			return nil, err
		}
		if st.LinkTarget == "" {
			st.LinkTarget = "/"
		}
	}
	return st, nil
}

// tarAppender writes file-system entries as tar headers and contents:
// numeric owners only, modes with setuid/setgid/sticky, symlinks, device
// nodes, fifos, hard links (the second name of an inode becomes a link to
// the first), the security.capability xattr, mtimes in whole seconds.
// Sockets are skipped, as dockerd skips them.
type tarAppender struct {
	tw    *tar.Writer
	links map[[2]uint64]string
	buf   []byte
}

func newTarAppender(w io.Writer) *tarAppender {
	return &tarAppender{tw: tar.NewWriter(w), links: map[[2]uint64]string{}, buf: make([]byte, 128<<10)}
}

func (ta *tarAppender) close() error { return ta.tw.Close() }

// add appends the file at hostPath under name (a directory's name gets a
// trailing "/"). It returns the file's Lstat result.
func (ta *tarAppender) add(hostPath, name string) (os.FileInfo, error) {
	fi, err := os.Lstat(hostPath)
	if err != nil {
		return nil, err
	}
	return fi, ta.addInfo(hostPath, name, fi)
}

func (ta *tarAppender) addInfo(hostPath, name string, fi os.FileInfo) error {
	hdr, err := tarHeader(hostPath, name, fi)
	if err != nil || hdr == nil {
		return err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if hdr.Typeflag == tar.TypeReg && st != nil && st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := ta.links[key]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			return ta.tw.WriteHeader(hdr)
		}
		ta.links[key] = hdr.Name
	}
	if err := ta.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	return ta.copyContent(hostPath, hdr.Size)
}

// copyContent writes exactly size bytes of the file: a file that shrank
// since it was stat'ed (a running container writes on) is padded with
// zeros, one that grew is cut, so the archive stays well-formed.
func (ta *tarAppender) copyContent(hostPath string, size int64) error {
	var n int64
	f, err := os.OpenFile(hostPath, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		f, err = os.OpenFile(hostPath, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	}
	if err == nil {
		n, err = io.CopyBuffer(ta.tw, io.LimitReader(f, size), ta.buf)
		f.Close()
		if err != nil && errors.Is(err, tar.ErrWriteTooLong) {
			return err
		}
	}
	for n < size {
		clear(ta.buf)
		k := int64(len(ta.buf))
		if k > size-n {
			k = size - n
		}
		w, err := ta.tw.Write(ta.buf[:k])
		if err != nil {
			return err
		}
		n += int64(w)
	}
	return nil
}

// tarHeader builds the header of one file (nil for a socket).
func tarHeader(hostPath, name string, fi os.FileInfo) (*tar.Header, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%s: no stat information", hostPath)
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)).Truncate(time.Second),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		if !strings.HasSuffix(hdr.Name, "/") {
			hdr.Name += "/"
		}
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		target, err := os.Readlink(hostPath)
		if err != nil {
			return nil, err
		}
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil, nil // sockets cannot be archived
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if capab, err := lgetxattr(hostPath, "security.capability"); err == nil && len(capab) > 0 {
			hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(capab)}
		}
	}
	return hdr, nil
}

func lgetxattr(p, attr string) ([]byte, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(p, attr, buf)
		if errors.Is(err, unix.ERANGE) && len(buf) < 64<<10 {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// walk appends the tree under hostDir (which add already wrote as prefix)
// with names prefix+relative path, in sorted order. skip, if set, leaves
// out an entry (by its name) and everything under it.
func (ta *tarAppender) walk(hostDir, prefix string, skip func(name string) bool) error {
	entries, err := os.ReadDir(hostDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		hp := hostDir + "/" + e.Name()
		if hostDir == "/" {
			hp = "/" + e.Name()
		}
		name := prefix + e.Name()
		if skip != nil && skip(name) {
			continue
		}
		fi, err := os.Lstat(hp)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile (a running container)
		}
		if err != nil {
			return err
		}
		if err := ta.addInfo(hp, name, fi); err != nil {
			return err
		}
		if fi.IsDir() {
			if err := ta.walk(hp, name+"/", skip); err != nil {
				return err
			}
		}
	}
	return nil
}

// archivePath writes the tar dockerd's GET /containers/{id}/archive gives
// for absPath (see containerAbsPath): the top entry is the base name of the
// path; a directory is archived with everything under it; a symlink is
// archived as the link. It runs inside the root.
func archivePath(absPath string, w io.Writer) error {
	fi, err := os.Lstat(absPath)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	ta := newTarAppender(bw)
	base := filepath.Base(absPath)
	if !fi.IsDir() {
		if err := ta.addInfo(absPath, base, fi); err != nil {
			return err
		}
	} else {
		prefix := base
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		if err := ta.addInfo(absPath, prefix, fi); err != nil {
			return err
		}
		dir := strings.TrimSuffix(strings.TrimSuffix(absPath, "/."), "/")
		if dir == "" {
			dir = "/"
		}
		if err := ta.walk(dir, prefix, nil); err != nil {
			return err
		}
	}
	if err := ta.close(); err != nil {
		return err
	}
	return bw.Flush()
}

// exportRoot writes the whole root file system as a tar with names relative
// to "/" (no entry for "/" itself), as docker export does. The root is the
// container's disk alone (the agent's API mounts and bind-mounted files are
// not in it), so /proc, /sys and /dev are the empty mount points. The
// lost+found directory mke2fs made is not part of the container's files.
func exportRoot(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	ta := newTarAppender(bw)
	skip := func(name string) bool { return name == "lost+found" }
	if err := ta.walk("/", "", skip); err != nil {
		return err
	}
	if err := ta.close(); err != nil {
		return err
	}
	return bw.Flush()
}

// extractOptions are the PUT archive options.
type extractOptions struct {
	// NoOverwriteDirNonDir refuses to replace a directory with a
	// non-directory and the other way round.
	NoOverwriteDirNonDir bool
	// Chown, if set, owns everything extracted instead of the tar's owners.
	Chown *[2]int
}

// resolveExtractDir is the destination dockerd extracts into: the path with
// every symlink followed (the last component too); it must exist and be a
// directory. It runs inside the root.
func resolveExtractDir(p string) (string, error) {
	abs, err := filepath.EvalSymlinks(filepath.Join("/", p))
	if err != nil {
		return "", err
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", &invalidError{"extraction point is not a directory"}
	}
	return abs, nil
}

// extractArchive unpacks the tar from r into dest the way dockerd's
// archive.Untar does for docker cp: entries replace what exists (a
// directory is merged into an existing directory), missing parents are
// created (root-owned, 0755), owners, modes, xattrs and times are applied,
// directory times last. It runs inside the root.
func extractArchive(r io.Reader, dest string, opts extractOptions) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		path  string
		atime time.Time
		mtime time.Time
	}
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := filepath.Clean(hdr.Name)
		p := filepath.Join(dest, name)
		rel, err := filepath.Rel(dest, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("invalid archive path %q: outside of %q", hdr.Name, dest)
		}
		if name != "." {
			parent := filepath.Dir(p)
			if _, err := os.Lstat(parent); errors.Is(err, fs.ErrNotExist) {
				if err := mkdirAllOwned(parent, 0o755, 0, 0); err != nil {
					return err
				}
			}
		}
		if fi, err := os.Lstat(p); err == nil {
			isDir := hdr.Typeflag == tar.TypeDir
			if opts.NoOverwriteDirNonDir && fi.IsDir() && !isDir {
				return fmt.Errorf("cannot overwrite directory %q with non-directory %q", p, dest)
			}
			if opts.NoOverwriteDirNonDir && !fi.IsDir() && isDir {
				return fmt.Errorf("cannot overwrite non-directory %q with directory %q", p, dest)
			}
			if fi.IsDir() && name == "." {
				continue
			}
			if !(fi.IsDir() && isDir) {
				if err := os.RemoveAll(p); err != nil {
					return err
				}
			}
		}
		if err := createFromTar(p, dest, hdr, tr, opts.Chown); err != nil {
			return err
		}
		atime := hdr.AccessTime
		if atime.IsZero() || atime.Before(hdr.ModTime) {
			atime = hdr.ModTime
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{p, atime, hdr.ModTime})
			continue
		}
		if hdr.Typeflag != tar.TypeLink {
			if err := setTimes(p, atime, hdr.ModTime); err != nil {
				return err
			}
		}
	}
	for _, d := range dirs {
		if err := setTimes(d.path, d.atime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

func setTimes(p string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if mtime.IsZero() {
		return nil
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOSYS) {
		return &fs.PathError{Op: "utimes", Path: p, Err: err}
	}
	return nil
}

func mkdirAllOwned(p string, mode os.FileMode, uid, gid int) error {
	fi, err := os.Lstat(p)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: p, Err: unix.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if parent := filepath.Dir(p); parent != p {
		if err := mkdirAllOwned(parent, mode, uid, gid); err != nil {
			return err
		}
	}
	if err := os.Mkdir(p, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Lchown(p, uid, gid)
}

// createFromTar creates one entry at p.
func createFromTar(p, dest string, hdr *tar.Header, r io.Reader, chown *[2]int) error {
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
			if err := os.Mkdir(p, os.FileMode(mode&0o777)); err != nil {
				return err
			}
		}
	case tar.TypeReg, tar.TypeRegA:
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|unix.O_NOFOLLOW, os.FileMode(mode&0o777))
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeLink:
		target := filepath.Join(dest, filepath.Clean("/"+hdr.Linkname))
		if err := os.Link(target, p); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, p); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		m := mode
		switch hdr.Typeflag {
		case tar.TypeChar:
			m |= unix.S_IFCHR
		case tar.TypeBlock:
			m |= unix.S_IFBLK
		default:
			m |= unix.S_IFIFO
		}
		if err := unix.Mknod(p, m, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return &fs.PathError{Op: "mknod", Path: p, Err: err}
		}
	default:
		return fmt.Errorf("unhandled tar header type %d for %q", hdr.Typeflag, hdr.Name)
	}
	uid, gid := hdr.Uid, hdr.Gid
	if chown != nil {
		uid, gid = chown[0], chown[1]
	}
	if err := os.Lchown(p, uid, gid); err != nil {
		return err
	}
	for k, v := range hdr.PAXRecords {
		if attr, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if err := unix.Lsetxattr(p, attr, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
				return &fs.PathError{Op: "lsetxattr " + attr, Path: p, Err: err}
			}
		}
	}
	if hdr.Typeflag != tar.TypeSymlink && hdr.Typeflag != tar.TypeLink {
		// After chown, which clears setuid/setgid.
		if err := unix.Chmod(p, mode); err != nil {
			return &fs.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	return nil
}

// hiddenChange is what the changes walk never reports (and a commit never
// records): the API file systems' mount points, and the files the agent
// bind-mounts over the container's, as dockerd's init layer hides them.
func hiddenChange(p string) bool {
	switch p {
	case "/proc", "/sys", "/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf":
		return true
	}
	return false
}

// diffTrees compares the container's root (cur) with the image's (base)
// and returns the changes in walk order: sorted siblings, a directory before
// what is under it. As dockerd's: an added directory is followed by
// everything under it (all added), a deleted one is reported alone, a
// directory with changes under it is reported modified, "/" never.
// Files compare by type, mode, owner, device number, size, mtime and
// symlink target. A directory compares by mode and owner; its mtime counts
// only when its set of entries changed (so mount points and bind targets
// the agent creates do not make "/" or "/etc" look modified).
func diffTrees(base, cur string) ([]agentproto.Change, error) {
	var out []agentproto.Change
	_, err := diffDir(base, cur, "", true, &out)
	return out, err
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// diffDir compares cur+rel with base+rel (baseExists false: added) and
// reports whether their entry sets (hidden entries aside) differ.
func diffDir(base, cur, rel string, baseExists bool, out *[]agentproto.Change) (bool, error) {
	curNames, err := readNames(cur + rel)
	if err != nil {
		return false, err
	}
	var baseNames []string
	if baseExists {
		if baseNames, err = readNames(base + rel); err != nil {
			return false, err
		}
	}
	namesDiffer := false
	i, j := 0, 0
	for i < len(curNames) || j < len(baseNames) {
		var name string
		inCur, inBase := false, false
		switch {
		case j >= len(baseNames) || (i < len(curNames) && curNames[i] < baseNames[j]):
			name, inCur = curNames[i], true
			i++
		case i >= len(curNames) || baseNames[j] < curNames[i]:
			name, inBase = baseNames[j], true
			j++
		default:
			name, inCur, inBase = curNames[i], true, true
			i++
			j++
		}
		p := rel + "/" + name
		if hiddenChange(p) {
			continue
		}
		if !inCur {
			namesDiffer = true
			*out = append(*out, agentproto.Change{Path: p, Kind: agentproto.ChangeDelete})
			continue
		}
		ci, err := os.Lstat(cur + p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return false, err
		}
		if !inBase {
			namesDiffer = true
			*out = append(*out, agentproto.Change{Path: p, Kind: agentproto.ChangeAdd})
			if ci.IsDir() {
				if _, err := diffDir(base, cur, p, false, out); err != nil {
					return false, err
				}
			}
			continue
		}
		bi, err := os.Lstat(base + p)
		if err != nil {
			return false, err
		}
		if !ci.IsDir() {
			if fileChanged(base+p, cur+p, bi, ci) {
				*out = append(*out, agentproto.Change{Path: p, Kind: agentproto.ChangeModify})
			}
			continue
		}
		mark := len(*out)
		changed := metaChanged(bi, ci)
		if bi.IsDir() {
			differ, err := diffDir(base, cur, p, true, out)
			if err != nil {
				return false, err
			}
			if differ && !bi.ModTime().Equal(ci.ModTime()) {
				changed = true
			}
		} else if _, err := diffDir(base, cur, p, false, out); err != nil {
			// A non-directory became a directory: all under it is new.
			return false, err
		}
		if changed || len(*out) > mark {
			*out = append(*out, agentproto.Change{})
			copy((*out)[mark+1:], (*out)[mark:])
			(*out)[mark] = agentproto.Change{Path: p, Kind: agentproto.ChangeModify}
		}
	}
	return namesDiffer, nil
}

// metaChanged compares what matters for any kind of entry.
func metaChanged(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return a.Mode() != b.Mode()
	}
	return sa.Mode != sb.Mode || sa.Uid != sb.Uid || sa.Gid != sb.Gid || sa.Rdev != sb.Rdev
}

func fileChanged(basePath, curPath string, a, b os.FileInfo) bool {
	if metaChanged(a, b) || a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime()) {
		return true
	}
	if a.Mode()&fs.ModeSymlink != 0 {
		ta, err1 := os.Readlink(basePath)
		tb, err2 := os.Readlink(curPath)
		return err1 != nil || err2 != nil || ta != tb
	}
	return false
}

// whiteoutName is the OCI whiteout entry for a deleted path.
func whiteoutName(p string) string {
	dir, base := path.Split(strings.TrimPrefix(p, "/"))
	return dir + ".wh." + base
}

// writeLayer writes an OCI layer tar of changes, reading added and
// modified files under cur: each such path is one entry (a directory's
// entry is its header alone: what changed under it is in the list too), a
// deleted path is a ".wh." whiteout.
func writeLayer(cur string, changes []agentproto.Change, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	ta := newTarAppender(bw)
	now := time.Now().Truncate(time.Second)
	for _, ch := range changes {
		name := strings.TrimPrefix(ch.Path, "/")
		if name == "" {
			continue
		}
		if ch.Kind == agentproto.ChangeDelete {
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: whiteoutName(ch.Path), ModTime: now, Format: tar.FormatPAX}
			if err := ta.tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		if _, err := ta.add(cur+ch.Path, name); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			return err
		}
	}
	if err := ta.close(); err != nil {
		return err
	}
	return bw.Flush()
}
