// Package qemu implements vmbackend.Provider with QEMU: every machine is an
// instant clone of a booted, snapshotted template VM of the same shape.
//
// A template is booted once per key (QEMU version, guest kernel, initramfs
// with the agent, accelerator, shape, disk size, device layout, agent
// protocol version) with its RAM in a shared memory-backend-file, then
// paused and its device state saved with migration capability
// x-ignore-shared (so the RAM is not copied: the memory file is the RAM).
// A clone starts QEMU with the same devices, maps the template's memory file
// privately (copy-on-write) and loads the device state over QMP
// (-incoming defer + migrate-incoming), then continues. See
// docs/VMBACKEND.md.
package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/internal/cgroups"
	"github.com/jevm/jevm/vmbackend"
)

// Options configure a Provider.
type Options struct {
	// QEMUPath is the system emulator (default /usr/bin/qemu-system-x86_64).
	QEMUPath string
	// QEMUImgPath is qemu-img (default /usr/bin/qemu-img), used by
	// CreateRootDisk.
	QEMUImgPath string
	// Kernel is the guest kernel (bzImage) and Initrd the initramfs with
	// the agent as /init. Both are required.
	Kernel string
	Initrd string
	// Root is the directory that holds the templates (one subdirectory per
	// template key) and the accelerator probe cache, e.g.
	// DATA_ROOT/templates. Created if missing.
	Root string
	// Accel is "auto" (default: probe KVM, fall back to TCG), "kvm" (fail
	// if KVM is unusable) or "tcg".
	Accel string
	// DiskSize is the virtual size of every root disk in bytes (default
	// 8 GiB).
	DiskSize int64
	// KernelArgs are appended to the guest kernel command line.
	KernelArgs string
	// TCGTBSizeMiB is the size of TCG's translated-code buffer per VM
	// (QEMU's -accel tcg,tb-size): 0 is DefaultTCGTBSizeMiB, -1 QEMU's
	// own default (1 GiB, of which a clone touches 32 MiB: the buffer
	// is split into regions, each grown in 2 MiB huge pages). Unused
	// with KVM. Not part of the template key: it is not guest state.
	TCGTBSizeMiB int
	// User is the user QEMU runs as, with only the capabilities its 9p
	// server needs (user.go): "" is DefaultUser (created if missing),
	// "root" keeps jevmd's privileges.
	User string
	// ProbeTimeout bounds the KVM test boot (default 10s).
	ProbeTimeout time.Duration
	// TemplateBootTimeout bounds a template's cold boot up to the agent's
	// hello (default 3 minutes; TCG on a loaded host is slow).
	TemplateBootTimeout time.Duration
	// Logger receives the provider's logs (default: the standard logger).
	Logger *logrus.Entry
	// CgroupRoot is where cgroupfs is mounted (default /sys/fs/cgroup),
	// CgroupParent the directory under jevmd's own cgroup that holds one
	// cgroup per VM (default "jevm"), CgroupSelf the content of
	// /proc/self/cgroup (default: read it; tests set it). NoCgroups runs
	// VMs without cgroups (cgroup.go).
	CgroupRoot   string
	CgroupParent string
	CgroupSelf   string
	NoCgroups    bool
}

// DefaultTCGTBSizeMiB is the translated-code buffer of a TCG VM unless
// Options say otherwise: an idle clone's PSS is 19 MiB smaller than with
// QEMU's default (measured 2026-12-05: 90.9 against 71.8 MiB per idle
// busybox clone), and a container's start fits in it (docs/BENCHMARKS.md).
const DefaultTCGTBSizeMiB = 16

// DefaultDiskSize is the root disk size when Options.DiskSize is 0.
const DefaultDiskSize int64 = 8 << 30

// Provider is the QEMU vmbackend.Provider.
type Provider struct {
	opts        Options
	log         *logrus.Entry
	qemuVersion string // first line of `qemu --version`
	accel       string
	user        *vmUser // whom QEMU runs as (user.go); nil: root

	hashMu     sync.Mutex
	kernelHash string
	initrdHash string
	kernelStat fileID
	initrdStat fileID

	ctx      context.Context // cancelled by Close: stops template builds
	cancel   context.CancelFunc
	buildMu  sync.Mutex
	building map[string]*buildCall
	buildWG  sync.WaitGroup
	builds   atomic.Int64 // template builds started (for tests and logs)

	machinesMu sync.Mutex
	machines   map[string]*machine // live machines by ID

	// cg is the host's cgroups for VMs, nil without (cgroup.go);
	// cgroupErr says what is missing.
	cg        *cgroups.Host
	cgroupErr string
}

var _ vmbackend.Provider = (*Provider)(nil)

// New checks the options, hashes the guest kernel and initramfs, and picks
// the accelerator (probing KVM, with the verdict cached in Root). It does
// not build templates; EnsureTemplate or Start does.
func New(ctx context.Context, opts Options) (*Provider, error) {
	if opts.QEMUPath == "" {
		opts.QEMUPath = "/usr/bin/qemu-system-x86_64"
	}
	if opts.QEMUImgPath == "" {
		opts.QEMUImgPath = "/usr/bin/qemu-img"
	}
	if opts.Accel == "" {
		opts.Accel = "auto"
	}
	if opts.DiskSize == 0 {
		opts.DiskSize = DefaultDiskSize
	}
	if opts.DiskSize < 0 || opts.DiskSize%512 != 0 {
		return nil, fmt.Errorf("qemu: disk size %d is not a positive multiple of 512", opts.DiskSize)
	}
	if opts.User == "" {
		opts.User = DefaultUser
	}
	if opts.ProbeTimeout == 0 {
		opts.ProbeTimeout = 10 * time.Second
	}
	if opts.TemplateBootTimeout == 0 {
		opts.TemplateBootTimeout = 3 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = logrus.NewEntry(logrus.StandardLogger())
	}
	if opts.Kernel == "" || opts.Initrd == "" {
		return nil, errors.New("qemu: Kernel and Initrd are required")
	}
	if opts.Root == "" {
		return nil, errors.New("qemu: Root (template directory) is required")
	}
	if err := os.MkdirAll(opts.Root, 0o755); err != nil {
		return nil, fmt.Errorf("qemu: create template root: %w", err)
	}
	p := &Provider{
		opts:     opts,
		log:      opts.Logger.WithField("vmm", "qemu"),
		building: map[string]*buildCall{},
	}
	v, err := qemuVersion(ctx, opts.QEMUPath)
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	p.qemuVersion = v
	if _, _, err := p.hashes(); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	if p.user, err = resolveUser(opts.User); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	p.removeStaleBuilds()
	p.initCgroups()
	accel, err := p.chooseAccel(ctx)
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	p.accel = accel
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.log.WithFields(logrus.Fields{"accel": accel, "qemu": v, "root": opts.Root, "user": p.userName()}).Info("qemu provider ready")
	return p, nil
}

// Name implements vmbackend.Provider.
func (p *Provider) Name() string { return "qemu" }

// Accelerator implements vmbackend.Provider.
func (p *Provider) Accelerator() string { return p.accel }

// DiskSize implements vmbackend.Provider.
func (p *Provider) DiskSize() int64 { return p.opts.DiskSize }

// userName is whom QEMU runs as, for the log.
func (p *Provider) userName() string {
	if p.user == nil {
		return "root"
	}
	return p.user.name
}

// QEMUVersion is the emulator's version line.
func (p *Provider) QEMUVersion() string { return p.qemuVersion }

// Close implements vmbackend.Provider: it stops template builds in
// progress (killing their QEMU) and waits for them. Running machines keep
// running.
func (p *Provider) Close() error {
	if p.cancel != nil {
		p.cancel()
	}
	p.buildWG.Wait()
	return nil
}

// CreateRootDisk creates a qcow2 overlay at path backed by the raw disk
// base (whose size must be DiskSize), for use as MachineSpec.RootDisk. A
// failed create leaves no file behind.
func (p *Provider) CreateRootDisk(ctx context.Context, base, path string) error {
	st, err := os.Stat(base)
	if err != nil {
		return fmt.Errorf("qemu: root disk base: %w", err)
	}
	if st.Size() != p.opts.DiskSize {
		return fmt.Errorf("qemu: base disk %s is %d bytes, want %d", base, st.Size(), p.opts.DiskSize)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("qemu: root disk %s: %w", path, os.ErrExist)
	}
	out, err := exec.CommandContext(ctx, p.opts.QEMUImgPath, "create", "-q", "-f", "qcow2",
		"-F", "raw", "-b", base, path).CombinedOutput()
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("qemu-img create %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// RootDiskBase returns the base disk a root disk made by CreateRootDisk
// is layered on (the qcow2 overlay's backing file, made absolute).
func (p *Provider) RootDiskBase(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h, ok, err := readQcow2Header(f)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", fmt.Errorf("%s is not a qcow2 disk", path)
	case h.backingFile == "":
		return "", fmt.Errorf("%s has no backing file", path)
	}
	if !filepath.IsAbs(h.backingFile) {
		return filepath.Join(filepath.Dir(path), h.backingFile), nil
	}
	return h.backingFile, nil
}

// GuestRootDevice is the root disk as the guest sees it: the first
// virtio-blk device of the template's device layout (cmdline.go).
func (p *Provider) GuestRootDevice() string { return "/dev/vda" }

// qemuVersion returns the first line of `qemu --version`, e.g.
// "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)".
func qemuVersion(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "QEMU emulator version") {
		return "", fmt.Errorf("%s --version: unexpected output %q", path, line)
	}
	return line, nil
}

// fileID detects a changed file without rehashing it.
type fileID struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// hashes returns the SHA-256 of the kernel and initrd, rehashing a file
// only when its size, mtime or inode changed (the daemon may rebuild the
// initramfs while running; the template key then changes).
func (p *Provider) hashes() (kernel, initrd string, err error) {
	p.hashMu.Lock()
	defer p.hashMu.Unlock()
	if p.kernelHash, p.kernelStat, err = rehash(p.opts.Kernel, p.kernelHash, p.kernelStat); err != nil {
		return "", "", err
	}
	if p.initrdHash, p.initrdStat, err = rehash(p.opts.Initrd, p.initrdHash, p.initrdStat); err != nil {
		return "", "", err
	}
	return p.kernelHash, p.initrdHash, nil
}

func rehash(path, old string, oldID fileID) (string, fileID, error) {
	id, err := statFileID(path)
	if err != nil {
		return "", fileID{}, err
	}
	if old != "" && id == oldID {
		return old, id, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fileID{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fileID{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), id, nil
}

// tbSizeMiB is the tb-size to give QEMU (0: its own default).
func (p *Provider) tbSizeMiB() int {
	switch n := p.opts.TCGTBSizeMiB; {
	case n == 0:
		return DefaultTCGTBSizeMiB
	case n < 0:
		return 0
	default:
		return n
	}
}
