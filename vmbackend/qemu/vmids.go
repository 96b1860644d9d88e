package qemu

// Each QEMU runs with a user and group id of its own, as Firecracker's
// jailer runs each microVM: taken from the VM user's subordinate ids
// (/etc/subuid and /etc/subgid, as dockerd's --userns-remap takes
// dockremap's), one per running VM. A QEMU taken over by its guest then
// cannot signal, trace or read the memory of another VM's QEMU (another
// uid, no CAP_KILL, no CAP_SYS_PTRACE) and does not even see it in its
// jail's /proc (hidepid=invisible: jail.go). The VM user's own uid owns
// the range and runs nothing.
//
// An id is taken when QEMU is spawned and given back when it exited; a
// restarted daemon takes back the ids of the VMs it adopts (from
// /proc/PID/status).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

const (
	subUIDFile = "/etc/subuid"
	subGIDFile = "/etc/subgid"
	// A range jevmd adds for a VM user without one: the size useradd
	// gives, at or above subIDFloor, where useradd starts users' ranges.
	subIDCount = 65536
	subIDFloor = 100000
)

// vmIdentity is the uid and gid one QEMU runs as.
type vmIdentity struct{ uid, gid uint32 }

// idRange is a subordinate id range.
type idRange struct{ start, count uint32 }

// vmIDs hands out per-VM ids from the VM user's subordinate ranges.
type vmIDs struct {
	uids, gids idRange
	mu         sync.Mutex
	used       map[uint32]bool // offsets into the ranges
}

// take returns a free identity, the lowest.
func (a *vmIDs) take() (vmIdentity, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := min(a.uids.count, a.gids.count)
	for off := uint32(0); off < n; off++ {
		if !a.used[off] {
			a.used[off] = true
			return vmIdentity{uid: a.uids.start + off, gid: a.gids.start + off}, nil
		}
	}
	return vmIdentity{}, fmt.Errorf("qemu: all %d VM ids of the VM user's subordinate ranges are in use", n)
}

// give returns id (taken, or marked by hold).
func (a *vmIDs) give(id vmIdentity) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.used, id.uid-a.uids.start)
}

// hold marks uid, an adopted QEMU's, as in use; it returns false for a
// uid outside the range (a QEMU an older daemon started).
func (a *vmIDs) hold(uid uint32) (vmIdentity, bool) {
	if uid < a.uids.start || uid-a.uids.start >= min(a.uids.count, a.gids.count) {
		return vmIdentity{}, false
	}
	off := uid - a.uids.start
	a.mu.Lock()
	defer a.mu.Unlock()
	a.used[off] = true
	return vmIdentity{uid: uid, gid: a.gids.start + off}, true
}

// loadVMIDs reads name's subordinate ranges, adding them with usermod
// when the user has none.
func loadVMIDs(name string) (*vmIDs, error) {
	uids, okU, err := readSubIDs(subUIDFile, name)
	if err != nil {
		return nil, err
	}
	gids, okG, err := readSubIDs(subGIDFile, name)
	if err != nil {
		return nil, err
	}
	if !okU || !okG {
		start, err := freeSubIDStart()
		if err != nil {
			return nil, err
		}
		r := fmt.Sprintf("%d-%d", start, start+subIDCount-1)
		var args []string
		if !okU {
			args = append(args, "--add-subuids", r)
			uids = idRange{start, subIDCount}
		}
		if !okG {
			args = append(args, "--add-subgids", r)
			gids = idRange{start, subIDCount}
		}
		if out, err := exec.Command("usermod", append(args, name)...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("give the VM user %q subordinate ids (usermod %s): %v: %s; add a range to %s and %s", name, strings.Join(args, " "), err, out, subUIDFile, subGIDFile)
		}
	}
	return &vmIDs{uids: uids, gids: gids, used: map[uint32]bool{}}, nil
}

// subIDEntry is one line of /etc/subuid or /etc/subgid.
type subIDEntry struct {
	name string
	idRange
}

// readSubIDs returns name's first range in a subordinate id file.
func readSubIDs(file, name string) (idRange, bool, error) {
	entries, err := parseSubIDFile(file)
	if err != nil {
		return idRange{}, false, err
	}
	for _, e := range entries {
		if e.name == name {
			return e.idRange, true, nil
		}
	}
	return idRange{}, false, nil
}

// parseSubIDFile reads a subordinate id file; a missing file has none.
func parseSubIDFile(file string) ([]subIDEntry, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseSubIDs(string(b)), nil
}

// parseSubIDs parses "name:start:count" lines, skipping malformed ones.
func parseSubIDs(text string) []subIDEntry {
	var out []subIDEntry
	for _, line := range strings.Split(text, "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32-1 {
			continue
		}
		out = append(out, subIDEntry{f[0], idRange{uint32(start), uint32(count)}})
	}
	return out
}

// freeSubIDStart finds where a new range may start in both files.
func freeSubIDStart() (uint32, error) {
	var taken []idRange
	for _, file := range []string{subUIDFile, subGIDFile} {
		entries, err := parseSubIDFile(file)
		if err != nil {
			return 0, err
		}
		for _, e := range entries {
			taken = append(taken, e.idRange)
		}
	}
	return firstFreeBlock(taken), nil
}

// firstFreeBlock is the lowest start at or above subIDFloor of a block of
// subIDCount ids that overlaps none of taken.
func firstFreeBlock(taken []idRange) uint32 {
	start := uint64(subIDFloor)
	for {
		clash := false
		for _, r := range taken {
			if uint64(r.start) < start+subIDCount && start < uint64(r.start)+uint64(r.count) {
				clash, start = true, uint64(r.start)+uint64(r.count)
				break
			}
		}
		if !clash {
			return uint32(start)
		}
	}
}

// procUID reads the real uid of pid from /proc/PID/status.
func procUID(pid int) (uint32, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				u, err := strconv.ParseUint(f[0], 10, 32)
				return uint32(u), err
			}
		}
	}
	return 0, fmt.Errorf("no Uid in /proc/%d/status", pid)
}
