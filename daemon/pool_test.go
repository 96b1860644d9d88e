package daemon

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend"
)

// testPool is a pool of d with n idle fake blanks of shape (no filler).
func testPool(t *testing.T, d *Daemon, shape vmbackend.Shape, n int) *vmPool {
	t.Helper()
	d.cfg.ExecRoot, d.cfg.DataRoot = t.TempDir(), t.TempDir()
	p := &vmPool{
		d: d, size: 2, log: d.log,
		idle:   map[vmbackend.Shape][]*blank{},
		wanted: map[vmbackend.Shape]time.Time{d.cfg.DefaultShape: time.Now()},
		starts: map[vmbackend.Shape]int{},
		kick:   make(chan struct{}, 1),
	}
	for i := 0; i < n; i++ {
		id := "pool0000000" + string(rune('a'+i))
		m, err := d.vms.Start(context.Background(), vmbackend.MachineSpec{ID: id, Shape: shape})
		if err != nil {
			t.Fatal(err)
		}
		p.idle[shape] = append(p.idle[shape], &blank{id: id, shape: shape, machine: m, share: d.podShareOf(id)})
	}
	d.pool = p
	return p
}

// Eight starts at once over two blanks: two get one each, never the same.
func TestPoolHandsOutEachBlankOnce(t *testing.T) {
	d := testDaemon(t)
	p := testPool(t, d, d.cfg.DefaultShape, 2)
	var mu sync.Mutex
	got := map[*blank]int{}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b := p.take(d.cfg.DefaultShape); b != nil {
				mu.Lock()
				got[b]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != 2 {
		t.Fatalf("%d blanks handed out, want 2", len(got))
	}
	for b, n := range got {
		if n != 1 {
			t.Fatalf("blank %s handed out %d times", b.id, n)
		}
	}
	if p.starting != 2 {
		t.Fatalf("starting %d, want 2", p.starting)
	}
}

// A blank that died in the pool is not handed out.
func TestPoolSkipsDeadBlanks(t *testing.T) {
	d := testDaemon(t)
	p := testPool(t, d, d.cfg.DefaultShape, 2)
	dead := p.idle[d.cfg.DefaultShape][0]
	if err := dead.machine.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := p.take(d.cfg.DefaultShape); b == nil || b == dead {
		t.Fatalf("took %v, want the live blank", b)
	}
	if b := p.take(d.cfg.DefaultShape); b != nil {
		t.Fatalf("took %s from an empty pool", b.id)
	}
	if p.discarded != 1 {
		t.Fatalf("discarded %d, want 1", p.discarded)
	}
}

// Shapes: the default always; another from its second start; at most
// maxPoolShapes, the least recently started other one dropped.
func TestPoolWantedShapes(t *testing.T) {
	d := testDaemon(t)
	p := testPool(t, d, d.cfg.DefaultShape, 0)
	big := shapeOf(512, 1)
	p.take(big)
	if _, ok := p.wanted[big]; ok {
		t.Fatal("a shape is kept after its first start")
	}
	p.take(big)
	if _, ok := p.wanted[big]; !ok {
		t.Fatal("a shape is not kept after its second start")
	}
	for _, s := range []vmbackend.Shape{shapeOf(768, 1), shapeOf(1024, 1)} {
		p.take(s)
		p.take(s)
	}
	if len(p.wanted) != maxPoolShapes {
		t.Fatalf("%d shapes kept, want %d", len(p.wanted), maxPoolShapes)
	}
	if _, ok := p.wanted[d.cfg.DefaultShape]; !ok {
		t.Fatal("the default shape was dropped")
	}
	if _, ok := p.wanted[big]; ok {
		t.Fatal("the least recently started shape was kept")
	}
	if s, ok := p.need(); !ok || s != d.cfg.DefaultShape {
		t.Fatalf("the filler would make %+v first, want the default shape", s)
	}
}

// A drained shape loses its idle blanks; they are killed.
func TestPoolDrain(t *testing.T) {
	d := testDaemon(t)
	p := testPool(t, d, d.cfg.DefaultShape, 2)
	list := append([]*blank(nil), p.idle[d.cfg.DefaultShape]...)
	p.drain(d.cfg.DefaultShape)
	if b := p.take(d.cfg.DefaultShape); b != nil {
		t.Fatalf("took %s after a drain", b.id)
	}
	for _, b := range list {
		<-b.machine.Done()
	}
	if p.discarded != 2 {
		t.Fatalf("discarded %d, want 2", p.discarded)
	}
}
