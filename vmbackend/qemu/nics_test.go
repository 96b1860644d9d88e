package qemu

import (
	"strings"
	"testing"

	"github.com/jevm/jevm/vmbackend"
)

func TestNICArgs(t *testing.T) {
	tpl := testConfig()
	clone := testConfig()
	clone.NICTap, clone.NICMAC = "tapabc", "02:42:ac:11:00:02"
	ta, ca := strings.Join(devices(tpl), " "), strings.Join(devices(clone), " ")
	// Same device (slot 5, same ids) on a placeholder hub port in the
	// template and on the container's tap in the clone.
	for _, want := range []string{"-netdev hubport,id=net0,hubid=0", "virtio-net-pci,netdev=net0,id=nic0,mac=" + templateMAC + ",addr=0x5,romfile="} {
		if !strings.Contains(ta, want) {
			t.Errorf("template lacks %q:\n%s", want, ta)
		}
	}
	for _, want := range []string{"-netdev tap,id=net0,ifname=tapabc,script=no,downscript=no", "virtio-net-pci,netdev=net0,id=nic0,mac=02:42:ac:11:00:02,addr=0x5,romfile="} {
		if !strings.Contains(ca, want) {
			t.Errorf("clone lacks %q:\n%s", want, ca)
		}
	}
	// --network none: a clone without a tap is on a lone hub port.
	none := testConfig()
	if !strings.Contains(strings.Join(devices(none), " "), "-netdev hubport,id=net0,hubid=0") {
		t.Error("a clone without NICs is not on a hub port")
	}

	ok := []vmbackend.NICSpec{{TapName: "tap1", MAC: "02:42:ac:11:00:02"}, {TapName: "tap2", MAC: "02:42:ac:12:00:02"}}
	if err := checkNICs(ok); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]vmbackend.NICSpec{
		{{TapName: "tap1,x=y", MAC: "02:42:ac:11:00:02"}},
		{{TapName: "tap1", MAC: "02:42:ac:11:00"}},
		{{TapName: "tap-name-far-too-long", MAC: "02:42:ac:11:00:02"}},
		{ok[0], {TapName: "tap3", MAC: "02:42:AC:11:00:02"}},
		make([]vmbackend.NICSpec, 8),
	} {
		if err := checkNICs(bad); err == nil {
			t.Errorf("checkNICs(%v) passed", bad)
		}
	}
}
