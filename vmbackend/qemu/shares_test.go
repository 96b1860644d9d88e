package qemu

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jevm/jevm/vmbackend"
)

func TestShareArgsTemplateVsClone(t *testing.T) {
	tpl := testConfig()
	tpl.MemShared = true
	clone := testConfig()
	clone.Incoming = true
	dirs := t.TempDir()
	for i := 0; i < prePluggedShares+2; i++ {
		clone.Shares = append(clone.Shares, vmbackend.ShareSpec{Tag: vmbackend.ShareTag(i), HostPath: fmt.Sprintf("%s/d%d,x", dirs, i), ReadOnly: i == 1})
	}
	td, cd := devices(tpl), devices(clone)
	if len(td) != len(cd) {
		t.Fatalf("device lists differ in length:\n%v\n%v", td, cd)
	}
	// Only the 9p backends' paths and read-only flags differ.
	fsdevs := 0
	for i := range td {
		a, b := td[i], cd[i]
		if !strings.HasPrefix(a, "local,id=jfs") {
			if a != b && !strings.HasPrefix(a, "file=") {
				t.Errorf("device arg %d differs: %q vs %q", i, a, b)
			}
			continue
		}
		n := fsdevs
		fsdevs++
		if want := fmt.Sprintf("local,id=jfs%d,path=/t/%s,security_model=passthrough,multidevs=remap,readonly=on", n, sharePlaceholderName); a != want {
			t.Errorf("template fsdev %d = %q, want %q", n, a, want)
		}
		want := fmt.Sprintf("local,id=jfs%d,path=%s/d%d,,x,security_model=passthrough,multidevs=remap", n, dirs, n)
		if n == 1 {
			want += ",readonly=on"
		}
		if b != want {
			t.Errorf("clone fsdev %d = %q, want %q", n, b, want)
		}
	}
	if fsdevs != prePluggedShares {
		t.Fatalf("%d pre-plugged fsdevs, want %d", fsdevs, prePluggedShares)
	}
	joined := strings.Join(td, " ")
	for i := 0; i < prePluggedShares; i++ {
		want := fmt.Sprintf("virtio-9p-pci,id=jshare%d,fsdev=jfs%d,mount_tag=jv%d,addr=0x%x", i, i, i, 0x1f-i)
		if !strings.Contains(joined, want) {
			t.Errorf("template lacks %q", want)
		}
	}
	// The shares beyond them: backends on the clone's command line only.
	ta, ca := strings.Join(machineArgs(tpl), " "), strings.Join(machineArgs(clone), " ")
	for _, id := range []string{fmt.Sprintf("jfs%d,", prePluggedShares), fmt.Sprintf("jfs%d,", prePluggedShares+1)} {
		if strings.Contains(ta, id) || !strings.Contains(ca, "local,id="+id) {
			t.Errorf("hot-plugged backend %s: template %v clone %v", id, strings.Contains(ta, id), strings.Contains(ca, id))
		}
	}
	if strings.Contains(ca, fmt.Sprintf("jshare%d", prePluggedShares)) {
		t.Error("device of a hot-plugged share on the command line")
	}
}

func TestCheckShares(t *testing.T) {
	dir := t.TempDir()
	ok := []vmbackend.ShareSpec{{Tag: "jv0", HostPath: dir}, {Tag: "jv1", HostPath: dir}}
	if err := checkShares(ok); err != nil {
		t.Fatal(err)
	}
	if err := checkShares([]vmbackend.ShareSpec{{Tag: "jv1", HostPath: dir}}); err == nil {
		t.Error("wrong tag accepted")
	}
	if err := checkShares([]vmbackend.ShareSpec{{Tag: "jv0", HostPath: dir + "/missing"}}); err == nil {
		t.Error("missing directory accepted")
	}
	many := make([]vmbackend.ShareSpec, MaxShares+1)
	for i := range many {
		many[i] = vmbackend.ShareSpec{Tag: vmbackend.ShareTag(i), HostPath: dir}
	}
	if err := checkShares(many); err == nil {
		t.Error("too many shares accepted")
	}
}
