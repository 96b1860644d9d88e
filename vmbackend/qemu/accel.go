package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jevm/jevm/internal/atomicfile"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// ProbeMarker is what the guest agent prints on the serial console when it
// was booted with jevm.probe=1, before powering off.
const ProbeMarker = agentproto.ConsoleProbeOK

// probeCacheName is the accelerator verdict cache file in Options.Root.
const probeCacheName = "accel-probe.json"

// kvmGetAPIVersion is KVM_GET_API_VERSION, _IO(KVMIO, 0x00).
const kvmGetAPIVersion = 0xAE00

// kvmAPIVersion is the only KVM API version there has ever been.
const kvmAPIVersion = 12

// probeVerdict is the cached outcome of a KVM probe.
type probeVerdict struct {
	Key     string    `json:"key"`
	Usable  bool      `json:"usable"`
	Reason  string    `json:"reason,omitempty"`
	Elapsed string    `json:"elapsed"`
	When    time.Time `json:"when"`
}

// chooseAccel resolves Options.Accel to AccelKVM or AccelTCG.
func (p *Provider) chooseAccel(ctx context.Context) (string, error) {
	switch p.opts.Accel {
	case vmbackend.AccelTCG:
		return vmbackend.AccelTCG, nil
	case vmbackend.AccelKVM, "auto":
	default:
		return "", fmt.Errorf("unknown accelerator %q (want auto, kvm or tcg)", p.opts.Accel)
	}
	forced := p.opts.Accel == vmbackend.AccelKVM
	if err := kvmDeviceUsable(); err != nil {
		if forced {
			return "", fmt.Errorf("accelerator kvm: %w", err)
		}
		p.log.WithError(err).Info("kvm not available, using tcg")
		return vmbackend.AccelTCG, nil
	}
	v, err := p.probeKVMCached(ctx)
	if err != nil {
		return "", err
	}
	if !v.Usable {
		if forced {
			return "", fmt.Errorf("accelerator kvm: test boot failed: %s", v.Reason)
		}
		p.log.WithField("reason", v.Reason).Warn("kvm test boot failed, using tcg (software emulation)")
		return vmbackend.AccelTCG, nil
	}
	return vmbackend.AccelKVM, nil
}

// kvmDeviceUsable checks that /dev/kvm opens and answers
// KVM_GET_API_VERSION.
func kvmDeviceUsable() error {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/kvm: %w", err)
	}
	defer unix.Close(fd)
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmGetAPIVersion, 0)
	if errno != 0 {
		return fmt.Errorf("KVM_GET_API_VERSION: %w", errno)
	}
	if v != kvmAPIVersion {
		return fmt.Errorf("KVM API version %d, want %d", v, kvmAPIVersion)
	}
	return nil
}

// probeKey identifies the conditions a probe verdict holds for.
func (p *Provider) probeKey() string {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	h := sha256.New()
	fmt.Fprintf(h, "host-kernel=%s\nqemu=%s\nkernel=%s\ninitrd=%s\n",
		unix.ByteSliceToString(uts.Release[:]), p.qemuVersion, p.kernelHash, p.initrdHash)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

var probeFileMu sync.Mutex

// probeKVMCached returns the cached verdict for the current probe key, or
// probes and caches.
func (p *Provider) probeKVMCached(ctx context.Context) (probeVerdict, error) {
	key := p.probeKey()
	path := filepath.Join(p.opts.Root, probeCacheName)
	probeFileMu.Lock()
	defer probeFileMu.Unlock()
	if b, err := os.ReadFile(path); err == nil {
		var v probeVerdict
		if json.Unmarshal(b, &v) == nil && v.Key == key {
			p.log.WithFields(map[string]any{"usable": v.Usable, "reason": v.Reason}).Debug("kvm probe verdict from cache")
			return v, nil
		}
	}
	start := time.Now()
	perr := p.probeKVM(ctx)
	if perr != nil && ctx.Err() != nil {
		// Our caller gave up; that says nothing about KVM.
		return probeVerdict{}, fmt.Errorf("kvm probe: %w", ctx.Err())
	}
	v := probeVerdict{Key: key, Usable: perr == nil, Elapsed: time.Since(start).Round(time.Millisecond).String(), When: time.Now().UTC()}
	if perr != nil {
		v.Reason = perr.Error()
	}
	p.log.WithFields(map[string]any{"usable": v.Usable, "reason": v.Reason, "elapsed": v.Elapsed}).Info("kvm probe")
	b, _ := json.MarshalIndent(v, "", "  ")
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		p.log.WithError(err).Warn("cannot cache kvm probe verdict")
	}
	return v, nil
}

// probeKVM boots the guest kernel and agent under KVM with jevm.probe=1 and
// waits for ProbeMarker on the serial console. A broken KVM (nested,
// paravirtual, missing CPU features) fails here quickly: QEMU exits with an
// error, the guest crashes, or it is too slow to finish in time.
func (p *Provider) probeKVM(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.ProbeTimeout)
	defer cancel()
	args := []string{
		"-name", "jevm-kvm-probe",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-M", "pc",
	}
	args = append(args, accelArgs(vmbackend.AccelKVM, 0)...)
	args = append(args,
		"-m", "256", "-smp", "1",
		"-kernel", p.opts.Kernel, "-initrd", p.opts.Initrd,
		"-append", kernelCmdline(p.opts.KernelArgs+" jevm.probe=1"),
		"-serial", "stdio",
	)
	cmd := exec.Command(p.opts.QEMUPath, args...)
	out := &markerWriter{marker: []byte(ProbeMarker), found: make(chan struct{})}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if p.user != nil {
		p.user.apply(cmd.SysProcAttr, p.user.own()) // /dev/kvm as the VMs will open it
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	select {
	case <-out.found:
		kill()
		return nil
	case err := <-exited:
		select {
		case <-out.found:
			return nil
		default:
		}
		return fmt.Errorf("qemu exited before the guest answered (%v): %s", err, out.tail())
	case <-ctx.Done():
		kill()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no %s within %s (guest too slow or stuck): %s", ProbeMarker, p.opts.ProbeTimeout, out.tail())
		}
		return ctx.Err()
	}
}

// markerWriter collects output (the last few KiB) and signals when marker
// appears.
type markerWriter struct {
	marker []byte
	found  chan struct{}

	mu   sync.Mutex
	buf  []byte
	seen bool
}

func (w *markerWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	if !w.seen && bytes.Contains(w.buf, w.marker) {
		w.seen = true
		close(w.found)
	}
	if len(w.buf) > 8192 {
		w.buf = append([]byte(nil), w.buf[len(w.buf)-4096:]...)
	}
	return len(b), nil
}

func (w *markerWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.TrimSpace(string(w.buf))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	return s
}
