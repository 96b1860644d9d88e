package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend"
)

// Live migration (docs/MIGRATION.md). The source's QEMU migrates into a
// socket whose other end jevmd relays to the target host; the target's
// QEMU, started from the same template as a restore is (checkpoint.go),
// takes the stream from a socket its jevmd feeds. QEMU does the pre-copy
// itself: memory is sent while the guest runs, pages the guest dirtied
// are sent again, and once what is left fits the downtime limit the
// guest pauses for the rest and the device state. The root disk's qcow2
// layer travels in the same stream (QEMU's block migration, incremental:
// only what the layer holds, and blocks written during the copy again);
// the target's disk is a new layer over a base of the same contents.
//
// Under TCG this needs the VM's RAM padded (cmdline.go, ramPad): QEMU
// 7.2 otherwise loses writes of a guest that dirties memory during the
// copy (a guest copying 32 MiB in a loop had its kernel panic on a
// corrupted stack after a migration or two: the migrate-busy-hops test).

// migrateFDName is the socket a migration is sent into.
const migrateFDName = "jevm-migrate"

// Tuning of an outgoing migration.
const (
	// migrateDowntimeLimit is the pause QEMU aims for (its default,
	// said explicitly).
	migrateDowntimeLimit = 300 * time.Millisecond
	// migrateMaxBandwidth lifts QEMU's default cap of 32 MiB/s: the
	// stream goes through jevmd to a host on the network.
	migrateMaxBandwidth = 8 << 30
	// migratePoll is how often progress is asked for.
	migratePoll = 100 * time.Millisecond
)

// MigrationInfo implements vmbackend.Migrator.
func (m *machine) MigrationInfo(ctx context.Context) (vmbackend.MigrationInfo, error) {
	hot, err := m.movable(ctx, "migrate")
	if err != nil {
		return vmbackend.MigrationInfo{}, err
	}
	info := vmbackend.MigrationInfo{Template: m.tplKey, Shape: m.spec.Shape, NICs: min(len(m.spec.NICs), 1) + len(hot)}
	for _, h := range hot {
		info.HotNICs = append(info.HotNICs, vmbackend.HotNIC{Slot: h.Slot, MAC: h.MAC})
	}
	return info, nil
}

// queryMigrate is query-migrate's answer, as far as it is used.
type queryMigrate struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
	TotalTime int64  `json:"total-time"` // ms
	Downtime  int64  `json:"downtime"`   // ms
	RAM       *struct {
		Transferred    int64 `json:"transferred"`
		Remaining      int64 `json:"remaining"`
		Total          int64 `json:"total"`
		DirtySyncCount int   `json:"dirty-sync-count"`
	} `json:"ram"`
	Disk *struct {
		Transferred int64 `json:"transferred"`
		Remaining   int64 `json:"remaining"`
		Total       int64 `json:"total"`
	} `json:"disk"`
}

func (q queryMigrate) progress() vmbackend.MigrationProgress {
	var p vmbackend.MigrationProgress
	if q.RAM != nil {
		p.Sent, p.Remaining, p.Total, p.Passes = q.RAM.Transferred, q.RAM.Remaining, q.RAM.Total, q.RAM.DirtySyncCount
	}
	if q.Disk != nil {
		p.Sent += q.Disk.Transferred
		p.Remaining += q.Disk.Remaining
		p.Total += q.Disk.Total
	}
	return p
}

// setMigrationCaps turns on (or off again, so that a later checkpoint's
// file holds no disk) block migration and auto-converge: QEMU slows the
// vCPUs of a guest that dirties memory faster than it is sent.
func (m *machine) setMigrationCaps(ctx context.Context, on bool) error {
	return m.mon.run(ctx, "migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{
		{"capability": "block", "state": on},
		{"capability": "auto-converge", "state": on},
	}}, nil)
}

// MigrateTo implements vmbackend.Migrator.
func (m *machine) MigrateTo(ctx context.Context, w io.Writer, progress func(vmbackend.MigrationProgress)) (st vmbackend.MigrationStats, err error) {
	if _, err := m.movable(ctx, "migrate"); err != nil {
		return st, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("qemu: migrate %s: %w", m.id, err)
		}
	}()
	if err := m.setMigrationCaps(ctx, true); err != nil {
		return st, err
	}
	defer func() {
		if err := m.setMigrationCaps(context.WithoutCancel(ctx), false); err != nil {
			m.log.WithError(err).Warn("migration: capabilities not reset")
		}
	}()
	if err := m.mon.run(ctx, "migrate-set-parameters", map[string]any{
		"block-incremental": true,
		"downtime-limit":    migrateDowntimeLimit.Milliseconds(),
		"max-bandwidth":     migrateMaxBandwidth,
	}, nil); err != nil {
		return st, err
	}
	theirs, ours, err := socketPair()
	if err != nil {
		return st, err
	}
	defer ours.Close()
	err = m.mon.passFile(ctx, migrateFDName, theirs)
	theirs.Close()
	if err != nil {
		return st, err
	}
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, ours)
		copied <- err
	}()
	t0 := time.Now()
	if err := m.mon.run(ctx, "migrate", map[string]any{"uri": "fd:" + migrateFDName}, nil); err != nil {
		ours.Close()
		<-copied
		return st, explainMigrationBlocker(err)
	}
	// cancel stops the migration; QEMU resumes the guest if it had
	// paused it for the last pass.
	cancel := func(why error) error {
		bg := context.WithoutCancel(ctx)
		if err := m.mon.run(bg, "migrate_cancel", nil, nil); err != nil {
			m.log.WithError(err).Warn("migrate_cancel")
		}
		ours.Close()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			var q queryMigrate
			if err := m.mon.run(bg, "query-migrate", nil, &q); err != nil || (q.Status != "active" && q.Status != "cancelling" && q.Status != "device" && q.Status != "pre-switchover" && q.Status != "setup") {
				break
			}
		}
		return why
	}
	var q queryMigrate
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return st, cancel(ctx.Err())
		case err := <-copied:
			// The stream ended before QEMU said it completed: the
			// target went away, or QEMU failed and closed it.
			if err == nil {
				err = errors.New("the stream ended early")
			}
			var last queryMigrate
			if qerr := m.mon.run(context.WithoutCancel(ctx), "query-migrate", nil, &last); qerr == nil {
				if last.Status == "completed" {
					q, done = last, true
					copied <- nil
					continue
				}
				if last.ErrorDesc != "" {
					err = fmt.Errorf("%s (%w)", last.ErrorDesc, err)
				}
			}
			return st, cancel(fmt.Errorf("send the migration: %w", err))
		case <-m.exited:
			return st, errors.New("qemu exited during the migration")
		case <-time.After(migratePoll):
		}
		if err := m.mon.run(ctx, "query-migrate", nil, &q); err != nil {
			return st, cancel(err)
		}
		if progress != nil && q.RAM != nil {
			progress(q.progress())
		}
		switch q.Status {
		case "completed":
			done = true
		case "failed", "cancelled":
			ours.Close()
			<-copied
			if q.ErrorDesc != "" {
				return st, explainMigrationBlocker(fmt.Errorf("migration %s: %s", q.Status, q.ErrorDesc))
			}
			return st, fmt.Errorf("migration %s", q.Status)
		}
	}
	// QEMU closed its end: the relay has the rest, or soon.
	select {
	case err := <-copied:
		if err != nil {
			// The target may not have it all: the guest runs here again.
			_ = m.Resume(context.WithoutCancel(ctx))
			return st, fmt.Errorf("send the migration's end: %w", err)
		}
	case <-time.After(30 * time.Second):
		_ = m.Resume(context.WithoutCancel(ctx))
		return st, errors.New("the migration's end was not taken within 30 s")
	}
	st = vmbackend.MigrationStats{
		Total:    time.Duration(q.TotalTime) * time.Millisecond,
		Downtime: time.Duration(q.Downtime) * time.Millisecond,
	}
	if st.Total == 0 {
		st.Total = time.Since(t0)
	}
	if q.RAM != nil {
		st.RAMBytes, st.Passes = q.RAM.Transferred, q.RAM.DirtySyncCount
	}
	m.log.WithFields(map[string]any{"total": st.Total, "downtime": st.Downtime, "ram": st.RAMBytes, "passes": st.Passes}).Info("migration sent")
	return st, nil
}

// CanReceive implements vmbackend.IncomingMigrator: the machine's
// template must be the one this host would clone for its shape (the same
// QEMU, guest kernel, agent and device layout).
func (p *Provider) CanReceive(info vmbackend.MigrationInfo) error {
	key, err := p.TemplateKey(info.Shape)
	if err != nil {
		return err
	}
	if key != info.Template {
		return fmt.Errorf("the VM's template is %s, this host's for %d MiB and %d vCPUs is %s (another QEMU, guest kernel or agent): %w",
			info.Template, info.Shape.MemoryMiB, info.Shape.VCPUs, key, vmbackend.ErrCheckpointIncompatible)
	}
	return nil
}

// StartIncoming implements vmbackend.IncomingMigrator.
func (p *Provider) StartIncoming(ctx context.Context, spec vmbackend.MachineSpec, info vmbackend.MigrationInfo, r io.Reader) (vmbackend.Machine, error) {
	if info.Shape != spec.Shape {
		return nil, fmt.Errorf("qemu: incoming %s: the VM has %d MiB and %d vCPUs, the container here %d MiB and %d: %w",
			spec.ID, info.Shape.MemoryMiB, info.Shape.VCPUs, spec.Shape.MemoryMiB, spec.Shape.VCPUs, vmbackend.ErrCheckpointIncompatible)
	}
	if len(spec.NICs) != info.NICs || len(info.HotNICs) != max(info.NICs-1, 0) {
		return nil, fmt.Errorf("qemu: incoming %s: the VM has %d network interfaces, the container here %d", spec.ID, info.NICs, len(spec.NICs))
	}
	if len(spec.Shares) > 0 {
		return nil, fmt.Errorf("qemu: incoming %s: a migrated VM takes no shares", spec.ID)
	}
	key, err := p.TemplateKey(spec.Shape)
	if err != nil {
		return nil, fmt.Errorf("qemu: incoming %s: %w", spec.ID, err)
	}
	if key != info.Template {
		return nil, fmt.Errorf("qemu: incoming %s: %w", spec.ID, vmbackend.ErrCheckpointIncompatible)
	}
	var hot []hotNIC
	for _, h := range info.HotNICs {
		hot = append(hot, hotNIC{Slot: h.Slot, MAC: h.MAC})
	}
	theirs, ours, err := socketPair()
	if err != nil {
		return nil, fmt.Errorf("qemu: incoming %s: %w", spec.ID, err)
	}
	defer theirs.Close()
	relayed := make(chan error, 1)
	// The relay owns ours. It ends at the stream's end, when r fails (the
	// caller closes its connection after a failure), or at its next write
	// once QEMU is gone.
	go func() {
		_, err := io.Copy(ours, r)
		// QEMU reads the stream to its end marker; the shutdown tells
		// it there is no more if the source stopped short.
		_ = unix.Shutdown(int(ours.Fd()), unix.SHUT_WR)
		ours.Close()
		relayed <- err
	}()
	m, err := p.start(ctx, spec, &restoreSource{stream: theirs, tplKey: key, nics: slotNICs(spec, hot), paused: true})
	if err != nil {
		return nil, err
	}
	// QEMU has loaded the VM, but the relay may still be reading r (the
	// stream's end follows QEMU's last byte), which the caller reads
	// next on the same connection (the commit): two readers of one
	// connection would take each other's bytes. Return once r ended.
	timer := time.NewTimer(streamEndWait)
	defer timer.Stop()
	select {
	case err = <-relayed:
	case <-timer.C:
		err = fmt.Errorf("the stream did not end within %s of the VM's state", streamEndWait)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = m.Kill(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("qemu: incoming %s: %w", spec.ID, err)
	}
	return m, nil
}

// streamEndWait bounds how long StartIncoming waits, once QEMU loaded
// the VM, for the stream's end (the source sends it right after QEMU's
// last byte).
const streamEndWait = 30 * time.Second

// socketPair makes a connected pair of unix stream sockets: QEMU's end
// and jevmd's.
func socketPair() (theirs, ours *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "migration-qemu"), os.NewFile(uintptr(fds[1]), "migration"), nil
}
