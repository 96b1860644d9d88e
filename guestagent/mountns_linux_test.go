//go:build linux

package guestagent

import (
	"reflect"
	"testing"
)

// Only the topmost mount of each subtree to go is detached (it takes the
// rest with it); the root, what is under it and its parents stay.
func TestDetachTops(t *testing.T) {
	mps := []string{"/", "/proc", "/sys", "/sys/fs/cgroup", "/dev", "/dev/pts", "/mnt", "/mnt/root", "/mnt/root/proc",
		"/mnt/root/dev", "/mnt/pods/db/root", "/mnt/pods/db/root/proc", "/run/jevm/podshare/jv0", "/mnt/pods/web/root", "/mnt/pods/web/root/data"}
	got := detachTops(mps, "/mnt/pods/web/root")
	want := []string{"/dev", "/mnt/pods/db/root", "/mnt/root", "/proc", "/run/jevm/podshare/jv0", "/sys"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("detachTops = %v, want %v", got, want)
	}
	if got := detachTops([]string{"/", "/mnt", "/mnt/root"}, "/mnt/root"); len(got) != 0 {
		t.Fatalf("nothing to detach: %v", got)
	}
}
