package daemon

import (
	"reflect"
	"testing"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/fakevm"
)

// collectingVMs records what the daemon asks to keep.
type collectingVMs struct {
	*fakevm.Provider
	kept []vmbackend.Shape
}

func (c *collectingVMs) CollectTemplates(keep []vmbackend.Shape) error {
	c.kept = keep
	return nil
}

// Templates kept: the default shape's, and each container's current and
// next (after an update) shape, once each.
func TestCollectTemplatesKeepsShapesInUse(t *testing.T) {
	d, vms, _ := fakeDaemon(t, nil)
	cv := &collectingVMs{Provider: vms}
	d.vms = cv
	a := fakeContainer(t, d, "a")
	a.Shape = shapeOf(512, 2)
	a.HostConfig.Memory = 512 << 20
	a.HostConfig.NanoCPUs = 2e9
	b := fakeContainer(t, d, "b")
	b.Shape = d.cfg.DefaultShape
	b.HostConfig.Memory = 1024 << 20 // updated: the next start takes 1 GiB
	if err := d.CollectTemplates(); err != nil {
		t.Fatal(err)
	}
	next, _, err := d.shapeFor(b.HostConfig)
	if err != nil {
		t.Fatal(err)
	}
	want := []vmbackend.Shape{d.cfg.DefaultShape, a.Shape, next}
	got := map[vmbackend.Shape]int{}
	for _, s := range cv.kept {
		got[s]++
	}
	wantSet := map[vmbackend.Shape]int{}
	for _, s := range want {
		wantSet[s]++
	}
	if !reflect.DeepEqual(got, wantSet) {
		t.Fatalf("kept %v, want %v", cv.kept, want)
	}
}
