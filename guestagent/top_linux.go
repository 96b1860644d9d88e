//go:build linux

package guestagent

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// handleTop answers MsgTop with a ps-like table of the container's
// processes, read from /proc (docker top).
func (a *agent) handleTop(stream uint32, m *agentproto.Msg) {
	format, err := parsePsArgs(m.PsArgs)
	if err != nil {
		a.reply(stream, m, err)
		return
	}
	a.mu.Lock()
	running := a.phase == phaseRunning
	c, err := a.lookupContainer(m.Container)
	a.mu.Unlock()
	if err != nil {
		a.reply(stream, m, err)
		return
	}
	if !running {
		a.reply(stream, m, errors.New("container is not running"))
		return
	}
	root := containerRoot
	if c != nil {
		root = c.root
	}
	procs := containerProcesses(true, ofContainer(c))
	env := &topEnv{now: time.Now(), pageSize: int64(os.Getpagesize())}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			env.uptime, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		if _, _, btime, err := parseProcStatCPU(b); err == nil && btime > 0 {
			env.bootTime = time.Unix(btime, 0)
		}
	}
	if env.bootTime.IsZero() {
		env.bootTime = env.now.Add(-time.Duration(env.uptime * float64(time.Second)))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		env.memTotal = parseMeminfo(b)["MemTotal"]
	}
	env.userName = containerUserNames(root)
	a.send(stream, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID, Top: topTable(format, procs, env)})
}

// ofContainer selects, by the cgroup path of a process, those of the
// joined container c, or with c nil those of the main container: all but
// the joined containers' (pods_linux.go).
func ofContainer(c *podCtr) func(cgroup string) bool {
	if c == nil {
		return func(cg string) bool { return podOfCgroup(cg) == "" }
	}
	return func(cg string) bool { return podOfCgroup(cg) == c.name }
}

// containerProcesses lists the guest's processes but the agent (PID 1)
// and kernel threads, sorted by PID, those whose cgroup path keep
// accepts. With details, each one's effective UID and command line are
// read too.
func containerProcesses(details bool, keep func(cgroup string) bool) []*procStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []*procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		b, err := os.ReadFile(dir + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		p, err := parseProcStat(b)
		if err != nil || p.kernelThread() {
			continue
		}
		if keep != nil {
			b, err := os.ReadFile(dir + "/cgroup")
			if err != nil || !keep(procCgroupPath(b)) {
				continue
			}
		}
		if details {
			if b, err := os.ReadFile(dir + "/status"); err == nil {
				p.euid, _ = parseStatusEUID(b)
			}
			if b, err := os.ReadFile(dir + "/cmdline"); err == nil {
				p.cmdline = parseCmdline(b)
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

// containerUserNames maps UIDs to names with the container's /etc/passwd
// (a UID without a name is shown as a number, as ps does).
func containerUserNames(root string) func(int) string {
	names := map[int]string{}
	if hp, err := resolveInRoot(root, "/etc/passwd"); err == nil {
		if entries, err := parsePasswd(hp); err == nil {
			for _, e := range entries {
				if _, dup := names[e.uid]; !dup {
					names[e.uid] = e.name
				}
			}
		}
	}
	return func(uid int) string {
		if n, ok := names[uid]; ok {
			return n
		}
		return strconv.Itoa(uid)
	}
}

// handleStats answers MsgStats with the guest's resource usage.
// For a joined container, CPU, memory and processes are its cgroup's;
// network and disks are the VM's, which it shares.
func (a *agent) handleStats(stream uint32, m *agentproto.Msg) {
	c, err := a.containerOf(m)
	if err != nil {
		a.reply(stream, m, err)
		return
	}
	st, err := sampleStats(ofContainer(c))
	if err != nil {
		a.reply(stream, m, err)
		return
	}
	if c != nil {
		podStats(c, st)
	}
	a.send(stream, &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID, Stats: st})
}

const nsPerTick = uint64(time.Second) / clockTicks

func sampleStats(keep func(cgroup string) bool) (*agentproto.GuestStats, error) {
	st := &agentproto.GuestStats{TimeUnixNano: time.Now().UnixNano()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	all, per, _, err := parseProcStatCPU(b)
	if err != nil {
		return nil, err
	}
	st.CPUTotal = all.total * nsPerTick
	st.CPUBusy = all.busy * nsPerTick
	st.CPUUser = all.user * nsPerTick
	st.CPUSystem = all.system * nsPerTick
	for _, c := range per {
		st.PerCPUBusy = append(st.PerCPUBusy, c.busy*nsPerTick)
	}
	st.OnlineCPUs = len(per)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		st.Memory = parseMeminfo(b)
	}
	if b, err := os.ReadFile("/proc/diskstats"); err == nil {
		st.Disks = parseDiskstats(b, isWholeDisk)
	}
	if b, err := os.ReadFile("/proc/net/dev"); err == nil {
		st.Networks = parseNetDev(b)
	}
	st.Pids = len(containerProcesses(false, keep))
	return st, nil
}

// isWholeDisk tells real disks from partitions and virtual block devices.
func isWholeDisk(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "dm-", "md", "nbd"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	_, err := os.Stat(filepath.Join("/sys/block", strings.ReplaceAll(name, "/", "!")))
	return err == nil
}
