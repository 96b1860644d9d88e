package daemon

// The warm pool (Kata's VMCache idea): clones restored and resumed ahead
// of demand, so that a start skips QEMU's spawn, the restore and the
// agent's hello. A blank is a clone started without a container
// (vmbackend.Claimer): a placeholder root disk, a tap of its own
// connected to nothing, and one share, a pod share (podshare.go) of its
// own. A start that finds a blank of its shape claims it:
//   - the blank's pod share becomes the container's (a rename of its
//     directory), and every share of the container is bound on an entry
//     of it, as a pod member's are: the VM's 9p devices were fixed when
//     its QEMU started;
//   - the blank's tap takes the place of the tap the network attach made
//     (network.ReplaceTap);
//   - the provider swaps the container's disk in under the disk device,
//     moves the VM's state files to the container's state dir and gives
//     it the container's cgroup (vmbackend.Claimer);
//   - its console file becomes the container's console log.
// A blank is taken out of the pool under the pool's lock and the
// provider refuses a second claim, so none is handed out twice. One whose
// template has changed since it was cloned is refused by the provider;
// the pool then drops every blank of that shape. The pool is refilled in
// the background, one blank at a time, the blanks with the lowest CPU
// weight their cgroups allow. Blanks are not containers: Shutdown kills
// them, and a daemon's start kills those a killed daemon left.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	jnet "github.com/jevm/jevm/network"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// blankIDPrefix starts every blank's ID: container IDs are hex, so the
// two never meet in the state dirs and pod shares they share a root with.
const blankIDPrefix = "pool"

// blankCPUShares is a blank's CPU weight (dockerd's --cpu-shares units;
// the smallest the cgroup takes): filling the pool yields to containers.
const blankCPUShares = 2

// maxPoolShapes bounds how many shapes the pool keeps blanks of: the
// default one and those started most recently.
const maxPoolShapes = 3

// fillDelayMax bounds how long a refill waits for starts under way.
const fillDelayMax = 5 * time.Second

// poolRetry is how long the filler waits after a blank failed to start.
const poolRetry = 30 * time.Second

// blank is one pooled clone.
type blank struct {
	id       string
	shape    vmbackend.Shape
	machine  vmbackend.Machine
	agent    *agentclient.Client
	hello    *agentproto.Msg
	tap      string // "" without host networking
	tapOwner string
	share    podShare
	stateDir string
	console  string
}

// vmPool keeps Config.VMPoolSize blanks of each wanted shape.
type vmPool struct {
	d       *Daemon
	claimer vmbackend.Claimer
	size    int
	log     *logrus.Entry

	mu     sync.Mutex
	idle   map[vmbackend.Shape][]*blank
	wanted map[vmbackend.Shape]time.Time // last start of the shape
	starts map[vmbackend.Shape]int       // starts of shapes not (yet) wanted
	closed bool
	// Counters for `docker info`.
	claimed, discarded int
	// starting counts the starts that claimed a blank and have not
	// finished: the filler waits for them (fillDelayMax at most), so that
	// a refill's QEMU start does not take CPU from the start it is for.
	starting int

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// StartPool starts filling the warm pool (Config.VMPoolSize blanks of the
// default shape, and of the shapes containers start with). It does
// nothing when the size is 0 or the provider cannot claim blanks.
// Blanks a killed daemon left are removed first.
func (d *Daemon) StartPool() {
	claimer, ok := d.vms.(vmbackend.Claimer)
	if !ok || d.cfg.VMPoolSize <= 0 {
		d.sweepBlanks()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &vmPool{
		d: d, claimer: claimer, size: d.cfg.VMPoolSize, log: d.log.WithField("component", "pool"),
		idle:   map[vmbackend.Shape][]*blank{},
		wanted: map[vmbackend.Shape]time.Time{d.cfg.DefaultShape: time.Now()},
		starts: map[vmbackend.Shape]int{},
		kick:   make(chan struct{}, 1), cancel: cancel, done: make(chan struct{}),
	}
	d.sweepBlanks()
	d.pool = p
	go p.fill(ctx)
	p.poke()
}

// poke wakes the filler.
func (p *vmPool) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// take hands out a blank of shape, or nil. A start of a shape makes the
// pool keep blanks of it from then on.
func (p *vmPool) take(shape vmbackend.Shape) *blank {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.want(shape)
	defer p.poke()
	for {
		list := p.idle[shape]
		if len(list) == 0 {
			return nil
		}
		b := list[0]
		p.idle[shape] = list[1:]
		select {
		case <-b.machine.Done():
			// Died in the pool (killed from outside): clean up and try
			// the next.
			p.discarded++
			go b.discard(p.d)
			continue
		default:
		}
		p.starting++
		return b
	}
}

// claimed counts a blank a start took: it became the container's (ok),
// or was discarded.
func (p *vmPool) counted(ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		p.claimed++
	} else {
		p.discarded++
	}
}

// started is called when a start that took a blank has finished.
func (p *vmPool) started() {
	p.mu.Lock()
	p.starting--
	p.mu.Unlock()
	p.poke()
}

// quiet waits until no start that claimed a blank is under way, or
// fillDelayMax has passed.
func (p *vmPool) quiet(ctx context.Context) {
	deadline := time.Now().Add(fillDelayMax)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		n := p.starting
		p.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// want records a start of shape; callers hold p.mu. A shape other than
// the default is kept from its second start on (a one-off `-m` leaves no
// blanks behind); the least recently started shapes beyond maxPoolShapes
// are dropped (never the default).
func (p *vmPool) want(shape vmbackend.Shape) {
	if _, ok := p.wanted[shape]; !ok && shape != p.d.cfg.DefaultShape {
		p.starts[shape]++
		if p.starts[shape] < 2 {
			return
		}
		delete(p.starts, shape)
	}
	p.wanted[shape] = time.Now()
	if len(p.wanted) <= maxPoolShapes {
		return
	}
	var oldest vmbackend.Shape
	var at time.Time
	for s, t := range p.wanted {
		if s != p.d.cfg.DefaultShape && (at.IsZero() || t.Before(at)) {
			oldest, at = s, t
		}
	}
	delete(p.wanted, oldest)
	for _, b := range p.idle[oldest] {
		p.discarded++
		go b.discard(p.d)
	}
	delete(p.idle, oldest)
}

// drain discards every idle blank of shape: its template changed.
func (p *vmPool) drain(shape vmbackend.Shape) {
	if p == nil {
		return
	}
	p.mu.Lock()
	list := p.idle[shape]
	delete(p.idle, shape)
	p.discarded += len(list)
	p.mu.Unlock()
	if len(list) > 0 {
		p.log.WithField("blanks", len(list)).Info("template changed: pool drained")
	}
	for _, b := range list {
		go b.discard(p.d)
	}
	p.poke()
}

// need is the next shape short of blanks (the default first), if any.
func (p *vmPool) need() (vmbackend.Shape, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return vmbackend.Shape{}, false
	}
	shapes := make([]vmbackend.Shape, 0, len(p.wanted))
	for s := range p.wanted {
		shapes = append(shapes, s)
	}
	def := p.d.cfg.DefaultShape
	sort.Slice(shapes, func(i, j int) bool {
		if (shapes[i] == def) != (shapes[j] == def) {
			return shapes[i] == def
		}
		return p.wanted[shapes[i]].After(p.wanted[shapes[j]])
	})
	for _, s := range shapes {
		if len(p.idle[s]) < p.size {
			return s, true
		}
	}
	return vmbackend.Shape{}, false
}

// fill makes blanks while a wanted shape is short of them.
func (p *vmPool) fill(ctx context.Context) {
	defer close(p.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
		for {
			p.quiet(ctx)
			shape, ok := p.need()
			if !ok {
				break
			}
			b, err := p.d.makeBlank(ctx, shape)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// A damaged template is removed and built again by the
				// next try (templates.go), at once.
				if p.d.templateCorrupt(ctx, shape) {
					continue
				}
				p.log.WithError(err).WithField("retryIn", poolRetry.String()).Warn("cannot make a blank VM for the pool")
				select {
				case <-ctx.Done():
					return
				case <-time.After(poolRetry):
				}
				continue
			}
			p.mu.Lock()
			keep := !p.closed
			if _, wanted := p.wanted[shape]; keep && wanted {
				p.idle[shape] = append(p.idle[shape], b)
			} else {
				keep = false
			}
			p.mu.Unlock()
			if !keep {
				b.discard(p.d)
			}
		}
	}
}

// close stops the filler and kills the idle blanks.
func (p *vmPool) close() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
	p.mu.Lock()
	p.closed = true
	var all []*blank
	for s, list := range p.idle {
		all = append(all, list...)
		delete(p.idle, s)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, b := range all {
		wg.Add(1)
		go func(b *blank) { defer wg.Done(); b.discard(p.d) }(b)
	}
	wg.Wait()
}

// poolStatus is what `docker info` shows of the pool.
func (p *vmPool) status() string {
	if p == nil {
		return "off"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var shapes []string
	for s := range p.wanted {
		shapes = append(shapes, fmt.Sprintf("%d MiB %d CPU: %d", s.MemoryMiB, s.VCPUs, len(p.idle[s])))
	}
	sort.Strings(shapes)
	return fmt.Sprintf("%d per shape; idle %s; %d claimed, %d discarded", p.size, strings.Join(shapes, ", "), p.claimed, p.discarded)
}

// blankTapOwner marks the taps of this daemon's blanks (daemonID: one per
// data root, so private daemons on one host keep apart).
func (d *Daemon) blankTapOwner(id string) string {
	return jnet.OwnerPrefix + "pool:" + d.daemonID()[:12] + ":" + id
}

func (d *Daemon) blankConsole(id string) string {
	return filepath.Join(d.cfg.DataRoot, "pool", id+".console")
}

// blankTap is the name of a blank's tap (15 bytes at most).
func blankTap(id string) string { return "jvp" + strings.TrimPrefix(id, blankIDPrefix) }

// makeBlank starts one blank of shape and waits for its agent's hello.
func (d *Daemon) makeBlank(ctx context.Context, shape vmbackend.Shape) (_ *blank, err error) {
	rnd := make([]byte, 4)
	if _, err := rand.Read(rnd); err != nil {
		return nil, err
	}
	id := blankIDPrefix + hex.EncodeToString(rnd) // 12 bytes: its state dir's name
	b := &blank{id: id, shape: shape, share: d.podShareOf(id), stateDir: d.vmStateDir(id), console: d.blankConsole(id)}
	defer func() {
		if err != nil {
			b.discard(d)
		}
	}()
	if err := os.MkdirAll(filepath.Dir(b.console), 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(b.stateDir, 0o700); err != nil {
		return nil, err // an ID taken: the caller tries again later
	}
	if err := b.share.create(); err != nil {
		return nil, fmt.Errorf("pod share: %w", err)
	}
	spec := vmbackend.MachineSpec{
		ID: id, Shape: shape, StateDir: b.stateDir, ConsoleLog: b.console,
		Shares:    []vmbackend.ShareSpec{{Tag: vmbackend.ShareTag(0), HostPath: b.share.share()}},
		Resources: vmbackend.Resources{CPUShares: blankCPUShares},
	}
	if d.net != nil {
		b.tap, b.tapOwner = blankTap(id), d.blankTapOwner(id)
		if err := jnet.CreateTap(b.tap, b.tapOwner, "", 0); err != nil {
			b.tap = ""
			return nil, err
		}
		spec.NICs = []vmbackend.NICSpec{{TapName: b.tap, MAC: jnet.RandomMAC()}}
	}
	t0 := time.Now()
	if b.machine, err = d.vms.Start(ctx, spec); err != nil {
		return nil, err
	}
	if b.agent, b.hello, err = agentclient.Connect(ctx, b.machine.Agent()); err != nil {
		return nil, fmt.Errorf("connect to the blank's agent: %w", err)
	}
	d.log.WithFields(logrus.Fields{"blank": id, "took": time.Since(t0).Round(time.Millisecond).String()}).Debug("blank VM ready")
	return b, nil
}

// discard kills a blank (if it runs) and removes what it has under its
// own names; what a claim moved to a container's names is the
// container's start's to undo.
func (b *blank) discard(d *Daemon) {
	if b.agent != nil {
		b.agent.Close()
	}
	if b.machine != nil {
		if err := b.machine.Kill(context.Background()); err != nil {
			d.log.WithError(err).WithField("blank", b.id).Warn("kill blank VM")
		}
	}
	d.removeBlankFiles(b.id)
}

// removeBlankFiles removes a blank's tap, pod share, state dir and console
// (those still under the blank's names).
func (d *Daemon) removeBlankFiles(id string) {
	warn := d.log.WithField("blank", id).Warn
	if err := jnet.DeleteLink(blankTap(id), d.blankTapOwner(id)); err != nil {
		warn(fmt.Sprintf("remove tap: %v", err))
	}
	d.podShareOf(id).remove(warn)
	if err := os.RemoveAll(d.vmStateDir(id)); err != nil {
		warn(fmt.Sprintf("remove state dir: %v", err))
	}
	if err := os.Remove(d.blankConsole(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		warn(fmt.Sprintf("remove console: %v", err))
	}
}

// sweepBlanks kills the blanks a previous daemon left (killed before its
// Shutdown could) and removes their files.
func (d *Daemon) sweepBlanks() {
	ids := map[string]bool{}
	for _, pattern := range []string{
		filepath.Join(d.cfg.vmStateRoot(), blankIDPrefix+"*"),
		filepath.Join(d.cfg.ExecRoot, "pods", blankIDPrefix+"*"),
	} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			ids[filepath.Base(m)] = true
		}
	}
	consoles, _ := filepath.Glob(filepath.Join(d.cfg.DataRoot, "pool", blankIDPrefix+"*.console"))
	for _, c := range consoles {
		ids[strings.TrimSuffix(filepath.Base(c), ".console")] = true
	}
	for id := range ids {
		if len(id) != 12 {
			continue
		}
		spec := vmbackend.MachineSpec{ID: id, Shape: d.cfg.DefaultShape, StateDir: d.vmStateDir(id), ConsoleLog: d.blankConsole(id)}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if m, err := d.vms.Adopt(ctx, spec); err == nil {
			_ = m.Kill(ctx)
		}
		cancel()
		d.removeBlankFiles(id)
		d.log.WithField("blank", id).Info("removed a blank VM a previous daemon left")
	}
}

// claimBlank makes the blank b the machine of the start s: the tap, the
// disk, the state dir, the console. The pod share was moved and the
// shares bound by prepare-mounts (claimShare). On failure the blank is
// killed; what was moved to the container's names is undone by the
// start's own cleanups.
func (s *vmStart) claimBlank(ctx context.Context, b *blank) error {
	d := s.d
	if b.tap != "" {
		var err error
		if len(s.spec.NICs) > 0 {
			err = jnet.ReplaceTap(s.spec.NICs[0].TapName, b.tap, b.tapOwner)
		} else {
			// --network none: the NIC stays, connected to nothing.
			err = jnet.DeleteLink(b.tap, b.tapOwner)
		}
		if err != nil {
			return err
		}
	}
	if err := d.pool.claimer.Claim(ctx, b.machine, s.spec); err != nil {
		if errors.Is(err, vmbackend.ErrTemplateChanged) {
			d.pool.drain(b.shape)
		}
		return err
	}
	if err := os.Rename(b.console, s.spec.ConsoleLog); err != nil {
		// The VM is the container's now; its console keeps going to
		// the blank's file, which the next start's sweep removes.
		d.log.WithError(err).WithField("container", s.c.ID[:12]).Warn("console log stays with the blank's file")
	}
	s.machine, s.agent, s.hello = b.machine, b.agent, b.hello
	d.pool.counted(true)
	return nil
}

// claimShare makes the blank's pod share the container's (renamed to its
// ID), binds the container's shares on entries of it and returns the
// VM's shares (the one pod share) and its tag.
func (d *Daemon) claimShare(c *Container, b *blank, ms *mountSession) ([]vmbackend.ShareSpec, string, error) {
	own := d.podShareOf(c.ID)
	own.remove(d.log.WithField("container", c.ID[:12]).Warn) // what a killed daemon left
	if err := os.MkdirAll(filepath.Dir(own.base), 0o700); err != nil {
		return nil, "", err
	}
	if err := os.Rename(b.share.base, own.base); err != nil {
		return nil, "", fmt.Errorf("take the blank's pod share: %w", err)
	}
	tag := vmbackend.ShareTag(0)
	if err := d.bindPodMounts(c, tag, c, ms); err != nil {
		return nil, "", err
	}
	return []vmbackend.ShareSpec{{Tag: tag, HostPath: own.share()}}, tag, nil
}
