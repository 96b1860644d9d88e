package guestagent

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Pure helpers of the pods (pods_linux.go): containers that join a
// running VM. They take the files' contents so they can be tested
// anywhere.

// podCgroupPrefix names a joined container's guest cgroup: the cgroup2
// directory jevm-pod-<name> under the hierarchy's root.
const podCgroupPrefix = "jevm-pod-"

// validContainerName reports whether name may name a container of the VM
// (StartRequest.Container: 1 to 128 of [A-Za-z0-9_.-]). It excludes "."
// and "..", which would be path elements in the agent's directories.
func validContainerName(name string) bool {
	if len(name) == 0 || len(name) > 128 || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
		default:
			return false
		}
	}
	return true
}

// procCgroupPath is the cgroup2 path in a /proc/<pid>/cgroup file (the
// "0::" line), "" if there is none.
func procCgroupPath(b []byte) string {
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p
		}
	}
	return ""
}

// podOfCgroup is the joined container whose guest cgroup holds the
// cgroup path cg (its own, or one below it), "" if none: a process of
// the main container (or the agent).
func podOfCgroup(cg string) string {
	rest, ok := strings.CutPrefix(cg, "/"+podCgroupPrefix)
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// parseFlatKeyed parses a cgroup "flat keyed" file (cpu.stat,
// memory.stat, cgroup.events: "key value" lines).
func parseFlatKeyed(b []byte) map[string]uint64 {
	m := map[string]uint64{}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			m[f[0]] = v
		}
	}
	return m
}

// cgroupMemory is what a joined container's stats take from its cgroup.
type cgroupMemory struct {
	current uint64            // memory.current
	max     uint64            // memory.max; 0: "max", no limit
	stat    map[string]uint64 // memory.stat
}

// podMemoryInfo presents a joined container's cgroup memory as the
// /proc/meminfo fields the host reads from GuestStats.Memory (the host
// computes usage as MemTotal - MemAvailable): MemTotal is the cgroup's
// limit, or the guest's memory without one; the usage is memory.current
// less the inactive page cache, as docker's CLI shows a cgroup's.
func podMemoryInfo(guestTotal uint64, cm cgroupMemory) map[string]uint64 {
	total := guestTotal
	if cm.max > 0 && (total == 0 || cm.max < total) {
		total = cm.max
	}
	used := cm.current
	if inact := cm.stat["inactive_file"]; inact <= used {
		used -= inact
	}
	if used > total {
		used = total
	}
	mem := map[string]uint64{"MemTotal": total, "MemAvailable": total - used, "MemFree": total - used}
	for k, v := range map[string]string{
		"Cached": "file", "AnonPages": "anon", "Mapped": "file_mapped", "Shmem": "shmem",
		"Active(anon)": "active_anon", "Inactive(anon)": "inactive_anon",
		"Active(file)": "active_file", "Inactive(file)": "inactive_file",
		"Unevictable": "unevictable", "Dirty": "file_dirty", "Writeback": "file_writeback",
		"Slab": "slab", "KernelStack": "kernel_stack", "PageTables": "pagetables",
	} {
		if x, ok := cm.stat[v]; ok {
			mem[k] = x
		}
	}
	return mem
}

// podCPU sets a joined container's CPU times from its cgroup's cpu.stat
// (microseconds); the total stays the guest's, so that the host's
// busy/total ratio is the container's share of the VM. There is no
// per-CPU split in cgroup v2.
func podCPU(st *agentproto.GuestStats, cpuStat map[string]uint64) {
	st.CPUBusy = cpuStat["usage_usec"] * 1000
	st.CPUUser = cpuStat["user_usec"] * 1000
	st.CPUSystem = cpuStat["system_usec"] * 1000
	st.PerCPUBusy = nil
}
