package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/internal/atomicfile"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// TemplateKeyInputs is everything a template depends on; its hash is the
// template key and directory name. Anything that changes the guest's RAM or
// device state at snapshot time must be in here.
type TemplateKeyInputs struct {
	QEMU          string          `json:"qemu"`
	KernelSHA256  string          `json:"kernelSha256"`
	InitrdSHA256  string          `json:"initrdSha256"`
	Accel         string          `json:"accel"`
	Shape         vmbackend.Shape `json:"shape"`
	DiskSize      int64           `json:"diskSize"`
	KernelCmdline string          `json:"kernelCmdline"`
	DeviceLayout  int             `json:"deviceLayout"`
	AgentProto    int             `json:"agentProto"`
}

// Key hashes the inputs into a template key (24 hex digits).
func (in TemplateKeyInputs) Key() string {
	b, err := json.Marshal(in)
	if err != nil {
		panic(err) // plain struct of strings and ints
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:24]
}

// templateMeta is meta.json in a template directory.
type templateMeta struct {
	Key          string            `json:"key"`
	Inputs       TemplateKeyInputs `json:"inputs"`
	Created      time.Time         `json:"created"`
	BootTime     string            `json:"bootTime"`     // QEMU start to agent hello
	SnapshotTime string            `json:"snapshotTime"` // stop + save device state
	StateBytes   int64             `json:"stateBytes"`
	Agent        string            `json:"agent,omitempty"`
	GuestKernel  string            `json:"guestKernel,omitempty"`
	// Digests of the files a clone restores from (CheckTemplate): a
	// template whose files changed on disk is removed and built again.
	// Absent in templates of older builds (then not checked).
	StateSHA256  string `json:"stateSha256,omitempty"`
	MemorySHA256 string `json:"memorySha256,omitempty"`
}

// template is a ready template on disk.
type template struct {
	key  string
	dir  string
	meta templateMeta
}

func (t *template) memPath() string   { return filepath.Join(t.dir, tplMemoryName) }
func (t *template) statePath() string { return filepath.Join(t.dir, tplStateName) }

// keyInputs returns the template key inputs for shape as things are now.
func (p *Provider) keyInputs(shape vmbackend.Shape) (TemplateKeyInputs, error) {
	kh, ih, err := p.hashes()
	if err != nil {
		return TemplateKeyInputs{}, err
	}
	return TemplateKeyInputs{
		QEMU:          p.qemuVersion,
		KernelSHA256:  kh,
		InitrdSHA256:  ih,
		Accel:         p.accel,
		Shape:         shape,
		DiskSize:      p.opts.DiskSize,
		KernelCmdline: kernelCmdline(p.opts.KernelArgs),
		DeviceLayout:  DeviceLayoutVersion,
		AgentProto:    agentproto.Version,
	}, nil
}

// TemplateKey is the key of the template for shape, given the current
// kernel, initramfs, QEMU and accelerator. Pass the keys still in use to GC.
func (p *Provider) TemplateKey(shape vmbackend.Shape) (string, error) {
	in, err := p.keyInputs(shape)
	if err != nil {
		return "", fmt.Errorf("qemu: template key: %w", err)
	}
	return in.Key(), nil
}

func checkShape(s vmbackend.Shape) error {
	if s.MemoryMiB < 64 || s.MemoryMiB > 1<<20 {
		return fmt.Errorf("memory %d MiB out of range (64 MiB .. 1 TiB)", s.MemoryMiB)
	}
	if s.VCPUs < 1 || s.VCPUs > 255 {
		return fmt.Errorf("%d vcpus out of range (1..255)", s.VCPUs)
	}
	return nil
}

// EnsureTemplate implements vmbackend.Provider.
func (p *Provider) EnsureTemplate(ctx context.Context, shape vmbackend.Shape) error {
	_, err := p.ensureTemplate(ctx, shape)
	return err
}

// buildCall is one in-flight template build that concurrent callers for
// the same key wait on.
type buildCall struct {
	done chan struct{}
	tpl  *template
	err  error
}

func (p *Provider) ensureTemplate(ctx context.Context, shape vmbackend.Shape) (*template, error) {
	if err := checkShape(shape); err != nil {
		return nil, fmt.Errorf("qemu: template: %w", err)
	}
	in, err := p.keyInputs(shape)
	if err != nil {
		return nil, fmt.Errorf("qemu: template: %w", err)
	}
	key := in.Key()
	if t, err := p.loadTemplate(key); err == nil {
		return t, nil
	}
	p.buildMu.Lock()
	c, ok := p.building[key]
	if !ok {
		// A build may have finished between the check above and the
		// lock.
		if t, err := p.loadTemplate(key); err == nil {
			p.buildMu.Unlock()
			return t, nil
		}
		if p.ctx.Err() != nil {
			p.buildMu.Unlock()
			return nil, errors.New("qemu: provider closed")
		}
		// The build runs on its own (bounded by the provider's
		// lifetime and TemplateBootTimeout), not in the first caller's
		// context: other callers may be waiting for it.
		c = &buildCall{done: make(chan struct{})}
		p.building[key] = c
		p.buildWG.Add(1)
		go func() {
			defer p.buildWG.Done()
			c.tpl, c.err = p.buildTemplate(p.ctx, key, in)
			p.buildMu.Lock()
			delete(p.building, key)
			p.buildMu.Unlock()
			close(c.done)
		}()
	}
	p.buildMu.Unlock()
	select {
	case <-c.done:
		return c.tpl, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("qemu: wait for template %s: %w", key, ctx.Err())
	}
}

// loadTemplate returns the template for key if it is complete on disk.
func (p *Provider) loadTemplate(key string) (*template, error) {
	dir := filepath.Join(p.opts.Root, key)
	b, err := os.ReadFile(filepath.Join(dir, tplMetaName))
	if err != nil {
		return nil, err
	}
	var m templateMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("template %s: meta.json: %w", key, err)
	}
	if m.Key != key || m.Inputs.Key() != key {
		return nil, fmt.Errorf("template %s: meta.json is for key %s", key, m.Key)
	}
	want := map[string]int64{
		tplMemoryName: guestRAMBytes(m.Inputs.Shape),
		tplDiskName:   m.Inputs.DiskSize,
		tplStateName:  -1,
	}
	for name, size := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", key, err)
		}
		if (size >= 0 && st.Size() != size) || st.Size() == 0 {
			return nil, fmt.Errorf("template %s: %s has %d bytes, want %d", key, name, st.Size(), size)
		}
	}
	return &template{key: key, dir: dir, meta: m}, nil
}

// buildTemplate cold-boots a template VM, waits for its agent, snapshots it
// and moves it into place.
func (p *Provider) buildTemplate(ctx context.Context, key string, in TemplateKeyInputs) (tpl *template, err error) {
	log := p.log.WithFields(logrus.Fields{"template": key, "memoryMiB": in.Shape.MemoryMiB, "vcpus": in.Shape.VCPUs, "accel": in.Accel})
	log.WithField("build", p.builds.Add(1)).Info("building template")
	ctx, cancel := context.WithTimeout(ctx, p.opts.TemplateBootTimeout)
	defer cancel()
	defer func() {
		if err != nil {
			err = fmt.Errorf("qemu: build template %s: %w", key, err)
			log.WithError(err).Error("template build failed")
		}
	}()

	tmp, err := os.MkdirTemp(p.opts.Root, key+".tmp-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}()
	// Sockets live in a short directory: Root may be too deep for the
	// 107-byte unix socket path limit.
	sockDir, err := os.MkdirTemp("", "jevm-t")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(sockDir)

	disk, err := os.Create(filepath.Join(tmp, tplDiskName))
	if err != nil {
		return nil, err
	}
	err = disk.Truncate(in.DiskSize)
	disk.Close()
	if err != nil {
		return nil, fmt.Errorf("placeholder disk: %w", err)
	}

	// The backend of the template's 9p shares (shares.go).
	if err := ensureSharePlaceholder(tmp); err != nil {
		return nil, err
	}
	cfg := vmConfig{
		Name:       "jevm-template-" + key,
		Accel:      in.Accel,
		Shape:      in.Shape,
		TBSizeMiB:  p.tbSizeMiB(),
		Kernel:     p.opts.Kernel,
		Initrd:     p.opts.Initrd,
		Append:     in.KernelCmdline,
		MemPath:    filepath.Join(tmp, tplMemoryName),
		MemShared:  true,
		Disk:       filepath.Join(tmp, tplDiskName),
		DiskFormat: "raw",
		VMGenID:    uuid.NewString(),
		QMPSock:    filepath.Join(sockDir, qmpSockName),
		AgentSock:  filepath.Join(sockDir, agentSockName),
		Console:    filepath.Join(tmp, tplConsoleName),
	}
	start := time.Now()
	proc, err := p.spawn(cfg, filepath.Join(tmp, qemuLogName), false)
	if err != nil {
		return nil, err
	}
	defer proc.kill() // no-op once QEMU has quit

	mon, err := dialQMP(ctx, cfg.QMPSock, proc.exited)
	if err != nil {
		return nil, proc.explain(err)
	}
	defer mon.close()
	conn, err := dialAgent(ctx, cfg.AgentSock, proc.exited)
	if err != nil {
		return nil, proc.explain(err)
	}
	defer conn.Close()
	client, hello, err := agentclient.Connect(ctx, conn)
	if err != nil {
		return nil, proc.explain(fmt.Errorf("agent did not answer: %w (console: %s)", err, fileTail(cfg.Console, 800)))
	}
	defer client.Close()
	bootTime := time.Since(start)
	log.WithFields(logrus.Fields{"boot": bootTime.Round(time.Millisecond), "agent": hello.Agent, "guestKernel": hello.Kernel, "phase": hello.Phase}).Info("template booted")
	if hello.Phase != "" && hello.Phase != "idle" {
		return nil, fmt.Errorf("template agent is %q, want idle", hello.Phase)
	}

	snapStart := time.Now()
	if err := mon.run(ctx, "stop", nil, nil); err != nil {
		return nil, proc.explain(err)
	}
	if err := mon.setIgnoreShared(ctx); err != nil {
		return nil, proc.explain(err)
	}
	stateTmp := filepath.Join(tmp, tplStateName+".tmp")
	if err := mon.saveTo(ctx, stateTmp); err != nil {
		return nil, proc.explain(err)
	}
	if err := mon.waitMigration(ctx, proc.exited); err != nil {
		return nil, proc.explain(err)
	}
	snapTime := time.Since(snapStart)
	_ = mon.run(ctx, "quit", nil, nil) // QEMU may close the socket before answering
	if err := proc.wait(ctx, 10*time.Second); err != nil {
		return nil, err
	}

	st, err := os.Stat(stateTmp)
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(stateTmp, filepath.Join(tmp, tplStateName)); err != nil {
		return nil, err
	}
	meta := templateMeta{
		Key: key, Inputs: in, Created: time.Now().UTC(),
		BootTime: bootTime.Round(time.Millisecond).String(), SnapshotTime: snapTime.Round(time.Millisecond).String(),
		StateBytes: st.Size(), Agent: hello.Agent, GuestKernel: hello.Kernel,
	}
	if meta.StateSHA256, err = fileSHA256(filepath.Join(tmp, tplStateName)); err != nil {
		return nil, err
	}
	if meta.MemorySHA256, err = fileSHA256(filepath.Join(tmp, tplMemoryName)); err != nil {
		return nil, err
	}
	mb, _ := json.MarshalIndent(meta, "", "  ")
	// The memory file is the clones' RAM: make it durable before the
	// template becomes visible.
	for _, name := range []string{tplMemoryName, tplStateName} {
		if err := syncFile(filepath.Join(tmp, name)); err != nil {
			return nil, err
		}
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, tplMetaName), append(mb, '\n'), 0o644); err != nil {
		return nil, err
	}

	final := filepath.Join(p.opts.Root, key)
	if err := os.Rename(tmp, final); err != nil {
		if t, lerr := p.loadTemplate(key); lerr == nil {
			return t, nil // another process built it meanwhile
		}
		// A stale or broken template of the same key: replace it.
		// Running clones keep their mapping of the old memory file.
		if rerr := os.RemoveAll(final); rerr != nil {
			return nil, fmt.Errorf("remove broken template: %w", rerr)
		}
		if err := os.Rename(tmp, final); err != nil {
			return nil, err
		}
	}
	tmp = ""
	syncDir(p.opts.Root)
	log.WithFields(logrus.Fields{"boot": bootTime.Round(time.Millisecond), "snapshot": snapTime.Round(time.Millisecond), "stateBytes": st.Size()}).Info("template ready")
	return p.loadTemplate(key)
}

// CollectTemplates implements vmbackend.TemplateCollector: GC with the
// current keys of the shapes in keep.
func (p *Provider) CollectTemplates(keep []vmbackend.Shape) error {
	keys := make([]string, 0, len(keep))
	for _, s := range keep {
		k, err := p.TemplateKey(s)
		if err != nil {
			return fmt.Errorf("qemu: template gc: %w", err)
		}
		keys = append(keys, k)
	}
	return p.GC(keys)
}

// fileSHA256 is the hex SHA-256 of a file's content.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CheckTemplate implements vmbackend.TemplateChecker: after a clone of
// shape failed to start, it compares the template's files with the
// digests taken when it was built, and removes a template whose files
// changed (the next start builds it again). A template being built, or
// one of an older build without digests, is left alone.
func (p *Provider) CheckTemplate(ctx context.Context, shape vmbackend.Shape) (bool, error) {
	key, err := p.TemplateKey(shape)
	if err != nil {
		return false, err
	}
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	if p.building[key] != nil {
		return false, nil
	}
	dir := filepath.Join(p.opts.Root, key)
	reason := ""
	t, err := p.loadTemplate(key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil // nothing there: the next start builds it
	case err != nil:
		reason = err.Error()
	case t.meta.StateSHA256 == "" || t.meta.MemorySHA256 == "":
		return false, nil
	default:
		for name, want := range map[string]string{tplStateName: t.meta.StateSHA256, tplMemoryName: t.meta.MemorySHA256} {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			got, err := fileSHA256(filepath.Join(dir, name))
			if err != nil {
				reason = err.Error()
			} else if got != want {
				reason = fmt.Sprintf("%s changed on disk (sha256 %s, built with %s)", name, got[:12], want[:12])
			}
			if reason != "" {
				break
			}
		}
	}
	if reason == "" {
		return false, nil
	}
	p.log.WithFields(logrus.Fields{"template": key, "reason": reason}).Warn("removing a corrupt template; the next start builds it again")
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("qemu: remove corrupt template %s: %w", key, err)
	}
	return true, nil
}

// GC removes template directories whose key is not in keep (and leftovers
// of interrupted builds). Running clones are not affected: they map the
// template's memory file, which stays alive while mapped; only starting new
// clones of a removed template would fail. Call it with the keys
// (TemplateKey) of the shapes still in use.
func (p *Provider) GC(keep []string) error {
	keepSet := map[string]bool{}
	for _, k := range keep {
		keepSet[k] = true
	}
	entries, err := os.ReadDir(p.opts.Root)
	if err != nil {
		return fmt.Errorf("qemu: template gc: %w", err)
	}
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || keepSet[name] || p.building[name] != nil || strings.Contains(name, ".tmp-") {
			continue
		}
		if _, err := os.Stat(filepath.Join(p.opts.Root, name, tplMetaName)); err != nil {
			continue // not a template
		}
		p.log.WithField("template", name).Info("removing unused template")
		if err := os.RemoveAll(filepath.Join(p.opts.Root, name)); err != nil {
			errs = append(errs, err)
		}
	}
	p.removeStaleBuilds()
	return errors.Join(errs...)
}

// removeStaleBuilds removes Root/<key>.tmp-<pid>-* directories of builds
// whose process is gone.
func (p *Provider) removeStaleBuilds() {
	entries, _ := os.ReadDir(p.opts.Root)
	for _, e := range entries {
		_, rest, ok := strings.Cut(e.Name(), ".tmp-")
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err == nil && pid != os.Getpid() && processAlive(pid) {
			continue
		}
		if err == nil && pid == os.Getpid() {
			continue // ours, in progress
		}
		os.RemoveAll(filepath.Join(p.opts.Root, e.Name()))
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// dialAgent connects to the agent's virtio-serial socket, waiting for QEMU
// to create it.
func dialAgent(ctx context.Context, path string, exited <-chan struct{}) (net.Conn, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		if !retryableDial(err) {
			return nil, fmt.Errorf("connect agent socket: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect agent socket %s: %w", path, ctx.Err())
		case <-exited:
			return nil, errors.New("connect agent socket: qemu exited")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
