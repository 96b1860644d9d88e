//go:build linux

package guestagent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Holding the main container's processes still for a checkpoint.
//
// A checkpoint's guest may come back as a fork: another container with
// the same memory, which must not run any of its code under the
// original's identity (hostname, addresses) or with the original's clock.
// The host therefore has the agent freeze the container's processes
// before it saves the VM (`freeze` with no container) and thaw them after
// (`thaw`, the original with --leave-running); a restored guest is thawed
// by `restored`, after its clock and identity are set.
//
// The main container's processes run in the guest's root cgroup, which
// cannot be frozen, so the agent moves them into a cgroup of their own,
// holdCgroup, frozen before they enter it: a process moved into a frozen
// cgroup stops. Processes forked meanwhile are caught by scanning the
// root cgroup again until it holds only the agent and the kernel's
// threads. A thaw moves them back while the cgroup is still frozen (a
// process moved out of it runs again), so no process of the container
// ever runs with the hold cgroup as its own. A container allowed to write
// the hierarchy (--privileged: systemd, docker-in-docker) may have moved
// processes into cgroups of its own: the hold freezes each such cgroup
// under the root that was not frozen already, and thaws those again.
// While held, execs into the main container are refused: an exec's spawn
// runs on the agent's read loop and waits for its helper, which the hold
// would freeze.

// holdCgroup is the hold's cgroup2 directory under the hierarchy's root
// (not a valid pod name's: those start with podCgroupPrefix).
const holdCgroup = "jevm-checkpoint-hold"

// handleFreezeMsg dispatches MsgFreeze and MsgThaw: a joined container's
// freeze its cgroup (freezePod), the main container's are a checkpoint's
// hold. It runs on the read loop, so that a hold refuses the execs of
// the very next messages.
func (a *agent) handleFreezeMsg(stream uint32, m *agentproto.Msg) {
	freeze := m.Type == agentproto.MsgFreeze
	a.mu.Lock()
	mainCtr := m.Container == "" || m.Container == a.mainName
	if mainCtr && freeze {
		a.mainHeld = true
	}
	a.mu.Unlock()
	if !mainCtr {
		go a.handleFreeze(stream, m, freeze)
		return
	}
	go func() {
		var err error
		if freeze {
			err = a.holdMain()
		} else {
			err = a.releaseMain()
		}
		a.reply(stream, m, err)
	}()
}

// holdMain moves the main container's processes into the frozen hold
// cgroup and waits until the kernel reports them frozen. On failure they
// are released again.
func (a *agent) holdMain() (err error) {
	a.holdMu.Lock()
	defer a.holdMu.Unlock()
	defer func() {
		if err != nil {
			if rerr := a.releaseMainLocked(); rerr != nil {
				a.logf("release the checkpoint hold: %v", rerr)
			}
		}
	}()
	if err := a.cgroupRoot(); err != nil {
		return fmt.Errorf("the guest has no cgroup2 to hold the container's processes in: %w", err)
	}
	dir := filepath.Join(cgroupDir, holdCgroup)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("hold cgroup: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("1"), 0); err != nil {
		return fmt.Errorf("freeze the hold cgroup: %w", err)
	}
	deadline := time.Now().Add(freezeTimeout)
	self := os.Getpid()
	for {
		frozen, err := a.freezeContainerCgroups()
		if err != nil {
			return fmt.Errorf("hold the container's processes: %w", err)
		}
		moved, err := moveCgroupProcs(cgroupDir, dir, func(pid int) bool { return pid != self && !isKernelThread(pid) })
		if err != nil {
			return fmt.Errorf("hold the container's processes: %w", err)
		}
		if moved == 0 && frozen == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the container's processes kept forking: not all held after %v", freezeTimeout)
		}
	}
	for _, d := range append([]string{dir}, a.heldCgroups...) {
		if err := waitCgroupFrozen(d, true, deadline); err != nil {
			return fmt.Errorf("hold the container's processes: %w", err)
		}
	}
	return nil
}

// freezeContainerCgroups freezes the cgroups under the root that the main
// container made (any but the hold's and the pods'), unless frozen
// already, and remembers them (a.heldCgroups) for the release. It returns
// how many it froze now.
func (a *agent) freezeContainerCgroups() (int, error) {
	entries, err := os.ReadDir(cgroupDir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == holdCgroup || strings.HasPrefix(name, podCgroupPrefix) {
			continue
		}
		d := filepath.Join(cgroupDir, name)
		if slices.Contains(a.heldCgroups, d) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "cgroup.freeze"))
		if err != nil || strings.TrimSpace(string(b)) != "0" {
			continue // gone, or frozen by the container itself: left as it is
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.freeze"), []byte("1"), 0); err != nil {
			return n, fmt.Errorf("freeze cgroup %s: %w", name, err)
		}
		a.heldCgroups = append(a.heldCgroups, d)
		n++
	}
	return n, nil
}

// releaseMain undoes holdMain (nothing if there is no hold).
func (a *agent) releaseMain() error {
	a.holdMu.Lock()
	defer a.holdMu.Unlock()
	return a.releaseMainLocked()
}

func (a *agent) releaseMainLocked() error {
	defer func() {
		a.mu.Lock()
		a.mainHeld = false
		a.mu.Unlock()
	}()
	dir := filepath.Join(cgroupDir, holdCgroup)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	deadline := time.Now().Add(freezeTimeout)
	for {
		moved, err := moveCgroupProcs(dir, cgroupDir, func(int) bool { return true })
		if err != nil {
			return fmt.Errorf("release the container's processes: %w", err)
		}
		if moved == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the container's processes are not all released after %v", freezeTimeout)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0"), 0); err != nil {
		a.logf("thaw the hold cgroup: %v", err)
	}
	if err := unix.Rmdir(dir); err != nil {
		a.logf("remove the hold cgroup: %v", err)
	}
	for _, d := range a.heldCgroups {
		if err := os.WriteFile(filepath.Join(d, "cgroup.freeze"), []byte("0"), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.logf("thaw cgroup %s: %v", filepath.Base(d), err)
		}
	}
	a.heldCgroups = nil
	return nil
}

// moveCgroupProcs moves the processes of cgroup directory from that take
// accepts into cgroup directory to, and returns how many it moved (a
// process that exited meanwhile is not counted).
func moveCgroupProcs(from, to string, take func(pid int) bool) (int, error) {
	b, err := os.ReadFile(filepath.Join(from, "cgroup.procs"))
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(filepath.Join(to, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	moved := 0
	for _, field := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(field)
		if err != nil || !take(pid) {
			continue
		}
		// One pid per write(2): the kernel takes one per call.
		if _, err := f.WriteString(field); err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue // exited
			}
			return moved, fmt.Errorf("move process %d: %w", pid, err)
		}
		moved++
	}
	return moved, nil
}

// waitCgroupFrozen waits until cgroup directory dir reports itself
// frozen (or thawed), until deadline.
func waitCgroupFrozen(dir string, frozen bool, deadline time.Time) error {
	want := uint64(0)
	if frozen {
		want = 1
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil {
			return err
		}
		if parseFlatKeyed(b)["frozen"] == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s not frozen=%d in time", filepath.Base(dir), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// isKernelThread reports whether pid is one of the kernel's threads
// (which stay in the root cgroup); a process that is gone is not.
func isKernelThread(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	st, err := parseProcStat(b)
	return err == nil && st.kernelThread()
}
