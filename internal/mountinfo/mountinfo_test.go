package mountinfo

import (
	"os"
	"strings"
	"testing"
)

const sample = `22 1 8:1 / / rw - ext4 /dev/vda rw
30 22 0:5 / /mnt/root rw - ext4 /dev/vdb rw
31 30 0:6 / /mnt/root/proc rw - proc proc rw
32 30 0:7 / /mnt/root/my\040dir rw - tmpfs tmpfs rw
33 30 0:8 / /mnt/root/proc rw - tmpfs tmpfs rw
34 22 0:9 / /mnt/rootfs rw - tmpfs tmpfs rw
`

func TestParseAndUnder(t *testing.T) {
	mps, err := read(strings.NewReader(sample))
	if err != nil || len(mps) != 6 || mps[3] != "/mnt/root/my dir" {
		t.Fatalf("parse = %q", mps)
	}
	got := strings.Join(under(mps, "/mnt/root"), ",")
	// Children first; of the two mounts on /mnt/root/proc the later first;
	// /mnt/rootfs is not below /mnt/root.
	if want := "/mnt/root/proc,/mnt/root/my dir,/mnt/root/proc,/mnt/root"; got != want {
		t.Fatalf("under = %q, want %q", got, want)
	}
}

func TestIsMountPoint(t *testing.T) {
	if ok, err := IsMountPoint("/"); err != nil || !ok {
		t.Errorf("IsMountPoint(/) = %v, %v", ok, err)
	}
}

// An open mountinfo file reads the current list again each time.
func TestMountPointsOf(t *testing.T) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	want, err := MountPoints()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		got, err := MountPointsOf(f)
		if err != nil || len(got) != len(want) || got[0] != want[0] {
			t.Fatalf("read %d: %v %v, want %v", i, got, err, want)
		}
	}
}
