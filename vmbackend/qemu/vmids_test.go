package qemu

import (
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	got := parseSubIDs("alice:100000:65536\n# comment\nbad line\njevm-vm:165536:65536\njevm-vm:300000:10\nzero:5:0\n")
	if len(got) != 3 || got[1] != (subIDEntry{"jevm-vm", idRange{165536, 65536}}) || got[2].start != 300000 {
		t.Fatalf("parsed: %+v", got)
	}
}

func TestFirstFreeBlock(t *testing.T) {
	for _, c := range []struct {
		taken []idRange
		want  uint32
	}{
		{nil, subIDFloor},
		{[]idRange{{100000, 65536}}, 165536},
		{[]idRange{{165536, 65536}, {100000, 65536}}, 231072},
		{[]idRange{{100000, 10}, {200000, 65536}}, 100010},
		{[]idRange{{100000, 10}, {150000, 65536}}, 215536}, // 100010 + 65536 would overlap 150000
		{[]idRange{{0, 1000}, {400000, 10}}, subIDFloor},
	} {
		if got := firstFreeBlock(c.taken); got != c.want {
			t.Errorf("firstFreeBlock(%v) = %d, want %d", c.taken, got, c.want)
		}
	}
}

// Ids are handed out lowest first, never twice, come back, and an
// adopted QEMU's are held.
func TestVMIDs(t *testing.T) {
	a := &vmIDs{uids: idRange{200000, 3}, gids: idRange{300000, 5}, used: map[uint32]bool{}}
	first, err := a.take()
	if err != nil || first != (vmIdentity{200000, 300000}) {
		t.Fatalf("first: %+v %v", first, err)
	}
	if id, ok := a.hold(200002); !ok || id != (vmIdentity{200002, 300002}) {
		t.Fatalf("hold: %+v %v", id, ok)
	}
	if _, ok := a.hold(200003); ok {
		t.Fatal("held a uid beyond the range")
	}
	if _, ok := a.hold(1000); ok {
		t.Fatal("held a uid below the range")
	}
	second, _ := a.take()
	if second.uid != 200001 {
		t.Fatalf("second: %+v", second)
	}
	if _, err := a.take(); err == nil {
		t.Fatal("took a fourth id of three")
	}
	a.give(first)
	if again, err := a.take(); err != nil || again != first {
		t.Fatalf("after give: %+v %v", again, err)
	}
}
