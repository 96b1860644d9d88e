// Package mountinfo reads the mount points of /proc/self/mountinfo. The
// daemon (volumes, staged bind mounts), the guest agent (unmount at power
// off) and the test-image builder (chroot clean-up) all need it.
package mountinfo

import (
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// MountPoints returns the mount points of this process's mount namespace,
// in mountinfo order (parents before the mounts made on top of them).
func MountPoints() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parse(string(b)), nil
}

// MountPointsOf reads the mount points again from f, an open
// /proc/self/mountinfo (the kernel makes the list anew on every read from
// the start): for a reader that may detach /proc itself.
func MountPointsOf(f *os.File) ([]string, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return parse(string(b)), nil
}

func parse(data string) []string {
	var out []string
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			out = append(out, Unescape(f[4]))
		}
	}
	return out
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

// Unescape undoes mountinfo's octal escapes ("\040" for a space).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
