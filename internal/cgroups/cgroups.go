// Package cgroups places processes in cgroups of their own and bounds them,
// writing cgroupfs directly (what dockerd calls the "cgroupfs" driver). It
// knows both layouts: cgroup v1, one hierarchy per controller mounted under
// the root (/sys/fs/cgroup/cpu, /sys/fs/cgroup/memory, ...), and cgroup v2,
// one unified hierarchy at the root.
//
// jevm uses it to put each VM's QEMU process in a cgroup named after the
// container: the VM's vCPU threads are QEMU threads, so the CPU weight,
// quota and cpuset of that cgroup are what the container's processes get,
// and its memory and pids limits bound QEMU itself.
//
// Everything is relative to a root directory, so that the unit tests can
// lay out a fake cgroupfs in a temporary directory.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Controller names, as the kernel spells them.
const (
	CPU     = "cpu"
	CPUAcct = "cpuacct" // v1 only; v2's cpu controller has the usage
	Cpuset  = "cpuset"
	Memory  = "memory"
	Pids    = "pids"
)

// controllers are the ones this package manages, in the order they are
// created and written.
var controllers = []string{CPU, CPUAcct, Cpuset, Memory, Pids}

// probeFile is a control file that proves a v1 hierarchy carries the
// controller (the directory may exist without it, e.g. an empty mount
// point).
var probeFile = map[string]string{
	CPU:     "cpu.shares",
	CPUAcct: "cpuacct.usage",
	Cpuset:  "cpuset.cpus",
	Memory:  "memory.limit_in_bytes",
	Pids:    "pids.max",
}

// DefaultPeriod is the CFS period (µs) used when a quota is set without one,
// as dockerd does.
const DefaultPeriod = 100000

// Limits are what a cgroup enforces. The zero value of a field means "no
// limit" (or the kernel's default, for the weight).
type Limits struct {
	// CPUShares is the relative CPU weight in dockerd's units (v1
	// cpu.shares, 2..262144, default 1024); v2's cpu.weight is derived
	// from it as runc does. 0 is the default weight.
	CPUShares int64
	// CPUQuota is the CPU time (µs) the group may use per CPUPeriod,
	// summed over all its threads; <= 0 is unlimited.
	CPUQuota int64
	// CPUPeriod is the CFS period in µs; 0 is DefaultPeriod.
	CPUPeriod int64
	// CpusetCpus and CpusetMems restrict the group to CPUs and memory
	// nodes ("0-1,3"); empty is the parent's set.
	CpusetCpus string
	CpusetMems string
	// MemoryMax is the most memory (bytes) the group may use; 0 is
	// unlimited.
	MemoryMax int64
	// PidsMax is the most tasks (threads) the group may have; 0 is
	// unlimited.
	PidsMax int64
}

// Options say where the cgroups are.
type Options struct {
	// Root is where cgroupfs is mounted (default /sys/fs/cgroup).
	Root string
	// Parent is the directory under the daemon's own cgroup that holds
	// one cgroup per group made (default "jevm").
	Parent string
	// Self is the content of /proc/self/cgroup (default: read it); it
	// says where the daemon's own cgroup is in each hierarchy.
	Self string
}

// Host is the cgroup layout of this host with the parent directories
// made, ready to create groups.
type Host struct {
	version int
	// dirs maps each usable controller to its parent directory (v1: one
	// per hierarchy; v2: the same directory for all).
	dirs map[string]string
	// unusable says why a controller is missing (for logs and /info).
	unusable map[string]string
	// rmdir removes a cgroup directory; tests replace it, because a fake
	// cgroupfs directory holds real files that rmdir would refuse.
	rmdir func(string) error
}

// ErrUnavailable is wrapped by Detect when no controller can be used.
var ErrUnavailable = errors.New("cgroups unavailable")

// Detect finds the cgroup version and the controllers jevm can use, and
// makes the parent directories. It fails (wrapping ErrUnavailable) when
// none is usable; a host with only some of them gets a Host that lists
// the others in Unusable.
func Detect(opts Options) (*Host, error) {
	if opts.Root == "" {
		opts.Root = "/sys/fs/cgroup"
	}
	if opts.Parent == "" {
		opts.Parent = "jevm"
	}
	if opts.Self == "" {
		b, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		opts.Self = string(b)
	}
	self := parseSelf(opts.Self)
	h := &Host{dirs: map[string]string{}, unusable: map[string]string{}, rmdir: syscall.Rmdir}
	if _, err := os.Stat(filepath.Join(opts.Root, "cgroup.controllers")); err == nil {
		h.version = 2
		h.detectV2(opts.Root, self[""], opts.Parent)
	} else {
		h.version = 1
		h.detectV1(opts.Root, self, opts.Parent)
	}
	if len(h.dirs) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrUnavailable, h.UnusableReason())
	}
	return h, nil
}

// parseSelf maps each controller of /proc/self/cgroup to the daemon's
// cgroup path in its hierarchy; "" is the v2 (unified) path.
func parseSelf(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			m[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			m[c] = parts[2]
		}
	}
	return m
}

func (h *Host) detectV1(root string, self map[string]string, parent string) {
	for _, c := range controllers {
		mount := filepath.Join(root, c)
		// A hierarchy's root has cgroup.procs; the controller's own
		// files may be missing there (v1's root pids cgroup has no
		// pids.max), so they are looked for again in the parent made
		// below.
		if !exists(filepath.Join(mount, "cgroup.procs")) && !exists(filepath.Join(mount, probeFile[c])) {
			h.unusable[c] = "not mounted at " + mount
			continue
		}
		// Under the daemon's own cgroup, so that its VMs count against
		// whatever bounds the daemon was given (a systemd unit's, a CI
		// job's), as a delegated subtree is meant to be used.
		own := self[c]
		dir := filepath.Join(mount, filepath.Clean("/"+own), parent)
		if _, err := os.Stat(filepath.Dir(dir)); err != nil {
			// The daemon's cgroup is not visible in this mount (another
			// cgroup namespace): fall back to the mount's root.
			dir = filepath.Join(mount, parent)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			h.unusable[c] = err.Error()
			continue
		}
		if !exists(filepath.Join(dir, probeFile[c])) && !exists(filepath.Join(mount, probeFile[c])) {
			_ = syscall.Rmdir(dir)
			h.unusable[c] = "no " + probeFile[c] + " in " + mount
			continue
		}
		if c == Cpuset {
			// A v1 cpuset cgroup starts with no CPUs and no memory nodes
			// and refuses tasks until given some: inherit the parent's.
			if err := inheritCpuset(dir); err != nil {
				h.unusable[c] = err.Error()
				continue
			}
		}
		if err := probeWritable(dir); err != nil {
			h.unusable[c] = err.Error()
			continue
		}
		h.dirs[c] = dir
	}
}

func (h *Host) detectV2(root, own, parent string) {
	avail := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		for _, c := range strings.Fields(string(b)) {
			avail[c] = true
		}
	}
	var want []string
	for _, c := range controllers {
		switch {
		case c == CPUAcct:
			continue // v2's cpu.stat has the usage
		case !avail[c]:
			h.unusable[c] = "not enabled in the root cgroup"
		default:
			want = append(want, c)
		}
	}
	if len(want) == 0 {
		return
	}
	// v2 lets a cgroup have child cgroups with controllers only if it has
	// no processes of its own ("no internal processes"). Under the
	// daemon's own cgroup that works when it was delegated to us empty;
	// otherwise use the root's, as dockerd's cgroupfs driver does
	// (/sys/fs/cgroup/docker).
	candidates := []string{filepath.Join(root, filepath.Clean("/"+own), parent)}
	if filepath.Clean("/"+own) != "/" {
		candidates = append(candidates, filepath.Join(root, parent))
	}
	var lastErr error
	for _, dir := range candidates {
		got, err := enableV2(root, dir, want)
		if err != nil {
			lastErr = err
			continue
		}
		for _, c := range want {
			if got[c] {
				h.dirs[c] = dir
			} else {
				h.unusable[c] = "cannot be enabled for " + dir
			}
		}
		if err := probeWritable(dir); err != nil {
			lastErr = err
			h.dirs = map[string]string{}
			continue
		}
		return
	}
	for _, c := range want {
		h.unusable[c] = lastErr.Error()
	}
}

// enableV2 makes dir and enables the controllers in every cgroup from the
// root down to dir (their cgroup.subtree_control), so that dir's children
// get them. It reports the controllers enabled in dir's children.
func enableV2(root, dir string, want []string) (map[string]bool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return nil, err
	}
	cur := root
	levels := []string{cur}
	for _, p := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, p)
		levels = append(levels, cur)
	}
	for _, l := range levels {
		var add []string
		for _, c := range want {
			add = append(add, "+"+c)
		}
		if err := writeFile(filepath.Join(l, "cgroup.subtree_control"), strings.Join(add, " ")); err != nil {
			// One at a time, to learn which one the kernel refuses.
			ok := false
			for _, a := range add {
				if writeFile(filepath.Join(l, "cgroup.subtree_control"), a) == nil {
					ok = true
				}
			}
			if !ok {
				return nil, fmt.Errorf("enable controllers in %s: %w", l, err)
			}
		}
	}
	got := map[string]bool{}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return nil, err
	}
	for _, c := range strings.Fields(string(b)) {
		// The kernel lists names; a fake cgroupfs keeps what was written.
		got[strings.TrimPrefix(c, "+")] = true
	}
	return got, nil
}

// probeWritable checks that child cgroups can be made in dir (a read-only
// cgroupfs, or one we may not write, shows here rather than at a VM's
// start).
func probeWritable(dir string) error {
	p := filepath.Join(dir, ".probe-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := syscall.Rmdir(p); err != nil {
		os.RemoveAll(p) // a fake cgroupfs in tests
	}
	return nil
}

// inheritCpuset copies cpuset.cpus and cpuset.mems from dir's parent into
// dir where they are empty (v1).
func inheritCpuset(dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, _ := os.ReadFile(filepath.Join(dir, f))
		if strings.TrimSpace(string(cur)) != "" {
			continue
		}
		v, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, f), strings.TrimSpace(string(v))); err != nil {
			return err
		}
	}
	return nil
}

// Version is 1 or 2.
func (h *Host) Version() int { return h.version }

// Has reports whether controller c is usable.
func (h *Host) Has(c string) bool { _, ok := h.dirs[c]; return ok }

// Unusable maps each controller that cannot be used to the reason.
func (h *Host) Unusable() map[string]string {
	m := map[string]string{}
	for k, v := range h.unusable {
		m[k] = v
	}
	return m
}

// UnusableReason is Unusable in one line.
func (h *Host) UnusableReason() string {
	var parts []string
	for _, c := range controllers {
		if r, ok := h.unusable[c]; ok {
			parts = append(parts, c+": "+r)
		}
	}
	return strings.Join(parts, "; ")
}

// ParentDir is the directory holding the groups of controller c ("" if
// c is not usable).
func (h *Host) ParentDir(c string) string { return h.dirs[c] }

// Group is one cgroup (one directory per v1 hierarchy).
type Group struct {
	h    *Host
	name string
	// dirs maps each usable controller to the group's directory.
	dirs map[string]string
}

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("invalid cgroup name %q", name)
	}
	return nil
}

// Group returns the group called name, whether or not it exists.
func (h *Host) Group(name string) (*Group, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	g := &Group{h: h, name: name, dirs: map[string]string{}}
	for c, parent := range h.dirs {
		g.dirs[c] = filepath.Join(parent, name)
	}
	return g, nil
}

// Create makes the group (or takes the existing one) and sets its limits.
// On error, the directories it made are removed.
func (h *Host) Create(name string, l Limits) (*Group, error) {
	g, err := h.Group(name)
	if err != nil {
		return nil, err
	}
	var made []string
	for _, c := range controllers {
		dir, ok := g.dirs[c]
		if !ok {
			continue
		}
		if err := os.Mkdir(dir, 0o755); err == nil {
			made = append(made, dir)
		} else if !errors.Is(err, fs.ErrExist) {
			g.removeDirs(made)
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
		if c == Cpuset && h.version == 1 {
			if err := inheritCpuset(dir); err != nil {
				g.removeDirs(made)
				return nil, fmt.Errorf("create cgroup: %w", err)
			}
		}
	}
	if err := g.Set(l); err != nil {
		g.removeDirs(made)
		return nil, err
	}
	return g, nil
}

// Name is the group's name.
func (g *Group) Name() string { return g.name }

// Dir is the group's directory for controller c ("" if c is not usable).
func (g *Group) Dir(c string) string { return g.dirs[c] }

// Exists reports whether the group's directories are there.
func (g *Group) Exists() bool {
	for _, d := range g.dirs {
		if _, err := os.Stat(d); err != nil {
			return false
		}
	}
	return len(g.dirs) > 0
}

// Add moves the process pid (all its threads) into the group, in every
// hierarchy.
func (g *Group) Add(pid int) error {
	seen := map[string]bool{}
	for _, c := range controllers {
		dir, ok := g.dirs[c]
		if !ok || seen[dir] {
			continue
		}
		seen[dir] = true
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("add pid %d to cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

// Set writes every limit in l (a zero field resets the limit), so that the
// group enforces l and nothing left from before.
func (g *Group) Set(l Limits) error {
	var errs []error
	v2 := g.h.version == 2
	if dir, ok := g.dirs[CPU]; ok {
		period := l.CPUPeriod
		if period == 0 {
			period = DefaultPeriod
		}
		if v2 {
			errs = append(errs, writeFile(filepath.Join(dir, "cpu.weight"), strconv.FormatInt(SharesToWeight(l.CPUShares), 10)))
			q := "max"
			if l.CPUQuota > 0 {
				q = strconv.FormatInt(l.CPUQuota, 10)
			}
			errs = append(errs, writeFile(filepath.Join(dir, "cpu.max"), q+" "+strconv.FormatInt(period, 10)))
		} else {
			shares := l.CPUShares
			if shares == 0 {
				shares = 1024
			}
			errs = append(errs, writeFile(filepath.Join(dir, "cpu.shares"), strconv.FormatInt(shares, 10)))
			// Lift the quota first: the kernel checks quota against
			// period as each is written.
			errs = append(errs, writeFile(filepath.Join(dir, "cpu.cfs_quota_us"), "-1"))
			errs = append(errs, writeFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.FormatInt(period, 10)))
			if l.CPUQuota > 0 {
				errs = append(errs, writeFile(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(l.CPUQuota, 10)))
			}
		}
	}
	if dir, ok := g.dirs[Cpuset]; ok {
		cpus, mems := l.CpusetCpus, l.CpusetMems
		if !v2 {
			// v1 has no "inherit": empty means the parent's set.
			if cpus == "" {
				cpus = readTrim(filepath.Join(filepath.Dir(dir), "cpuset.cpus"))
			}
			if mems == "" {
				mems = readTrim(filepath.Join(filepath.Dir(dir), "cpuset.mems"))
			}
		}
		errs = append(errs, writeFile(filepath.Join(dir, "cpuset.cpus"), cpus))
		errs = append(errs, writeFile(filepath.Join(dir, "cpuset.mems"), mems))
	}
	if dir, ok := g.dirs[Memory]; ok {
		if v2 {
			errs = append(errs, writeFile(filepath.Join(dir, "memory.max"), maxOr(l.MemoryMax)))
		} else {
			v := "-1"
			if l.MemoryMax > 0 {
				v = strconv.FormatInt(l.MemoryMax, 10)
			}
			errs = append(errs, writeFile(filepath.Join(dir, "memory.limit_in_bytes"), v))
		}
	}
	if dir, ok := g.dirs[Pids]; ok {
		errs = append(errs, writeFile(filepath.Join(dir, "pids.max"), maxOr(l.PidsMax)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cgroup %s: %w", g.name, err)
	}
	return nil
}

func maxOr(v int64) string {
	if v <= 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// SharesToWeight converts dockerd's CPU shares (2..262144, default 1024)
// to cgroup v2's cpu.weight (1..10000, default 100), as runc does: a
// linear map of the one range onto the other. 0 is the default weight.
func SharesToWeight(shares int64) int64 {
	if shares == 0 {
		return 100
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

// Procs lists the processes in the group (of the first hierarchy that has
// it).
func (g *Group) Procs() ([]int, error) {
	for _, c := range controllers {
		dir, ok := g.dirs[c]
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return nil, err
		}
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
		return pids, nil
	}
	return nil, nil
}

// Remove deletes the group's directories. A cgroup can only be removed
// once its last task is gone, which lags the exit of the process the
// caller waited for by a little (its threads, and a child such as the
// migration helper, are reaped after it): Remove retries for up to
// timeout. A group already gone is no error.
func (g *Group) Remove(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		var lastErr error
		for _, d := range g.dirs {
			if err := g.h.rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				left = append(left, d)
				lastErr = err
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", g.name, lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *Group) removeDirs(dirs []string) {
	for _, d := range dirs {
		_ = g.h.rmdir(d)
	}
}

// Sweep removes the groups under the parent directories that have no
// process left and for which keep is false: the leftovers of VMs that
// ended while no daemon was watching. It returns the names removed.
func (h *Host) Sweep(keep func(name string) bool) []string {
	names := map[string]bool{}
	for _, dir := range h.dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() && validName(e.Name()) == nil {
				names[e.Name()] = true
			}
		}
	}
	var removed []string
	for name := range names {
		if keep != nil && keep(name) {
			continue
		}
		g, _ := h.Group(name)
		if pids, err := g.Procs(); err != nil || len(pids) > 0 {
			continue
		}
		// Only what is empty in every hierarchy: rmdir of a cgroup that
		// has tasks fails anyway, but a v1 hierarchy may be empty while
		// another still holds the process.
		busy := false
		for _, d := range g.dirs {
			if readTrim(filepath.Join(d, "cgroup.procs")) != "" {
				busy = true
			}
		}
		if busy {
			continue
		}
		if g.Remove(0) == nil {
			removed = append(removed, name)
		}
	}
	return removed
}

// CPUStats are the group's CPU counters.
type CPUStats struct {
	// Usage is the CPU time used by the group's tasks.
	Usage time.Duration
	// Periods is the number of CFS periods with a runnable task,
	// ThrottledPeriods those in which the quota ran out, and
	// ThrottledTime the time the tasks waited for the next period.
	Periods          uint64
	ThrottledPeriods uint64
	ThrottledTime    time.Duration
}

// CPUStats reads the group's CPU counters.
func (g *Group) CPUStats() (CPUStats, error) {
	var s CPUStats
	dir, ok := g.dirs[CPU]
	if !ok {
		return s, fmt.Errorf("cgroup %s: no cpu controller", g.name)
	}
	kv, err := readKV(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return s, err
	}
	s.Periods, s.ThrottledPeriods = kv["nr_periods"], kv["nr_throttled"]
	if g.h.version == 2 {
		s.Usage = time.Duration(kv["usage_usec"]) * time.Microsecond
		s.ThrottledTime = time.Duration(kv["throttled_usec"]) * time.Microsecond
		return s, nil
	}
	s.ThrottledTime = time.Duration(kv["throttled_time"])
	if acct, ok := g.dirs[CPUAcct]; ok {
		if v, err := strconv.ParseUint(readTrim(filepath.Join(acct, "cpuacct.usage")), 10, 64); err == nil {
			s.Usage = time.Duration(v)
		}
	}
	return s, nil
}

// MemoryUsage is the memory charged to the group now (bytes).
func (g *Group) MemoryUsage() (uint64, error) {
	dir, ok := g.dirs[Memory]
	if !ok {
		return 0, fmt.Errorf("cgroup %s: no memory controller", g.name)
	}
	f := "memory.usage_in_bytes"
	if g.h.version == 2 {
		f = "memory.current"
	}
	return strconv.ParseUint(readTrim(filepath.Join(dir, f)), 10, 64)
}

func readKV(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				m[f[0]] = v
			}
		}
	}
	return m, nil
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// writeFile writes a control file. cgroupfs files exist once the directory
// does; O_CREATE is there for the fake cgroupfs of the tests.
func writeFile(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(v); err != nil {
		f.Close()
		return fmt.Errorf("write %q to %s: %w", v, path, err)
	}
	return f.Close()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
