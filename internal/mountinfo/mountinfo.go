// Package mountinfo lists the mount points of /proc/self/mountinfo and
// orders those under a directory for unmounting. The daemon (volumes,
// staged bind mounts), the guest agent (unmount at power off) and the
// test-image builder (chroot clean-up) all need it; the parsing is
// github.com/moby/sys/mountinfo's.
package mountinfo

import (
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	mobymountinfo "github.com/moby/sys/mountinfo"
)

// MountPoints returns the mount points of this process's mount namespace,
// in mountinfo order (parents before the mounts made on top of them).
func MountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(f)
}

// MountPointsOf reads the mount points again from f, an open
// /proc/self/mountinfo (the kernel makes the list anew on every read from
// the start): for a reader that may detach /proc itself.
func MountPointsOf(f *os.File) ([]string, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return read(f)
}

// read parses mountinfo with github.com/moby/sys/mountinfo (which undoes
// its octal escapes) and keeps the mount points.
func read(r io.Reader) ([]string, error) {
	infos, err := mobymountinfo.GetMountsFromReader(r, nil)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(infos))
	for i, m := range infos {
		out[i] = m.Mountpoint
	}
	return out, nil
}

// IsMountPoint reports whether p is a mount point.
func IsMountPoint(p string) (bool, error) {
	mps, err := MountPoints()
	if err != nil {
		return false, err
	}
	for _, mp := range mps {
		if mp == p {
			return true, nil
		}
	}
	return false, nil
}

// Under returns the mount points at or below dir, in the order to unmount
// them: children before their parents, later mounts on one path first.
func Under(dir string) ([]string, error) {
	mps, err := MountPoints()
	if err != nil {
		return nil, err
	}
	return under(mps, dir), nil
}

func under(mps []string, dir string) []string {
	var out []string
	for i := len(mps) - 1; i >= 0; i-- { // latest first
		if mp := mps[i]; mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(filepath.Clean(out[i]), "/") > strings.Count(filepath.Clean(out[j]), "/")
	})
	return out
}
