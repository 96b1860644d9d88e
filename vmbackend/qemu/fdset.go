package qemu

// Disks opened after QEMU started reach it as descriptors, never by name:
// QEMU runs in a jail (jail.go) where the container's disk did not exist
// when it started (a pool blank is claimed later; pod members and
// docker cp's base disk are hot-plugged). jevmd opens every file of the
// disk's backing chain, hands each to QEMU in an fd set of its own (QMP
// add-fd, the descriptor travels with the command), and names them
// /dev/fdset/N in the block node, the backing file as a node of its own
// rather than by the name in the overlay's header.
//
// Fd set ids are fixed by what the disk is, so that a daemon restarted
// after a kill -9 finds them again (the set's opaque string is the file's
// path): the claimed root disk takes rootDiskFdsets.., hot-plugged disk n
// takes attachedDiskFdsets+n*maxBackingChain... QEMU keeps a set's
// descriptors while a node uses them; remove-fd after the node is deleted
// closes them.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
)

const (
	rootDiskFdsets     = 1
	attachedDiskFdsets = rootDiskFdsets + maxBackingChain
)

// fdsetPath is how QEMU names fd set id in a file name.
func fdsetPath(id int) string { return fmt.Sprintf("/dev/fdset/%d", id) }

// diskFdsets returns the first fd set id of hot-plugged disk n.
func diskFdsets(n int) int { return attachedDiskFdsets + n*maxBackingChain }

// openDiskNode hands QEMU the files of path's backing chain (fd sets
// first, first+1, ...) and returns the block node options of the whole
// chain: path's format node over its file, with its backing as an inline
// node of the same kind. Backing files are read-only; path is unless
// readOnly. On error, no fd set of the range is left.
func (m *machine) openDiskNode(ctx context.Context, path string, readOnly bool, first int) (_ map[string]any, err error) {
	chain, err := backingChain(path)
	if err != nil {
		return nil, err
	}
	if err := m.removeFdsets(ctx, first); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = m.removeFdsets(context.Background(), first)
		}
	}()
	var backing map[string]any
	for i := len(chain) - 1; i >= 0; i-- {
		ro := readOnly || i > 0
		flags := os.O_RDWR
		if ro {
			flags = os.O_RDONLY
		}
		f, err := os.OpenFile(chain[i], flags|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		_, isQcow2, err := readQcow2Header(f)
		if err == nil {
			err = m.mon.runFile(ctx, "add-fd", map[string]any{"fdset-id": first + i, "opaque": chain[i]}, nil, f)
		}
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("hand %s to QEMU: %w", chain[i], err)
		}
		node := map[string]any{
			"driver":    "raw",
			"read-only": ro,
			"file":      map[string]any{"driver": "file", "filename": fdsetPath(first + i), "read-only": ro},
		}
		if isQcow2 {
			node["driver"] = "qcow2"
			if backing != nil {
				node["backing"] = backing
			}
		}
		backing = node
	}
	return backing, nil
}

// fdsetInfo is one fd set as query-fdsets reports it.
type fdsetInfo struct {
	ID  int `json:"fdset-id"`
	Fds []struct {
		FD     int    `json:"fd"`
		Opaque string `json:"opaque"`
	} `json:"fds"`
}

// fdsets lists QEMU's fd sets by id.
func (m *machine) fdsets(ctx context.Context) (map[int]fdsetInfo, error) {
	var sets []fdsetInfo
	if err := m.mon.run(ctx, "query-fdsets", nil, &sets); err != nil {
		return nil, err
	}
	out := make(map[int]fdsetInfo, len(sets))
	for _, s := range sets {
		out[s.ID] = s
	}
	return out, nil
}

// removeFdsets removes the fd sets first..first+maxBackingChain-1 that
// exist (QEMU closes their descriptors once no node uses them).
func (m *machine) removeFdsets(ctx context.Context, first int) error {
	sets, err := m.fdsets(ctx)
	if err != nil {
		return err
	}
	for id := first; id < first+maxBackingChain; id++ {
		if _, ok := sets[id]; !ok {
			continue
		}
		if err := m.mon.run(ctx, "remove-fd", map[string]any{"fdset-id": id}, nil); err != nil && !strings.Contains(err.Error(), "not found") {
			return fmt.Errorf("remove fd set %d: %w", id, err)
		}
	}
	return nil
}
