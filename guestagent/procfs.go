package guestagent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Parsers for the guest's /proc, used by top and stats. They take the
// files' contents so they can be tested anywhere.

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on every
// architecture the guest runs on).
const clockTicks = 100

// pfKthread is the PF_KTHREAD bit of /proc/<pid>/stat's flags field.
const pfKthread = 0x00200000

// procStat is what top needs of one process.
type procStat struct {
	pid, ppid, pgrp, sid int
	ttyNr, tpgid         int
	state                byte
	flags                uint64
	utime, stime         uint64 // clock ticks
	nice                 int
	threads              int
	starttime            uint64 // clock ticks after boot
	vsize                uint64 // bytes
	rss                  int64  // pages
	comm                 string

	euid    int
	cmdline []string
}

// kernelThread tells kernel threads (and kthreadd) apart from processes.
func (p *procStat) kernelThread() bool { return p.flags&pfKthread != 0 || p.pid == 2 }

// parseProcStat parses /proc/<pid>/stat. The command name is in
// parentheses and may itself contain spaces and parentheses.
func parseProcStat(b []byte) (*procStat, error) {
	s := string(bytes.TrimSpace(b))
	open := strings.IndexByte(s, '(')
	end := strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return nil, errors.New("malformed stat")
	}
	p := &procStat{comm: s[open+1 : end]}
	var err error
	if p.pid, err = strconv.Atoi(strings.TrimSpace(s[:open])); err != nil {
		return nil, fmt.Errorf("malformed stat pid: %w", err)
	}
	f := strings.Fields(s[end+1:])
	// f[i] is field i+3 of proc(5).
	if len(f) < 22 {
		return nil, errors.New("short stat")
	}
	num := func(i int) int64 {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return v
	}
	unum := func(i int) uint64 {
		v, _ := strconv.ParseUint(f[i], 10, 64)
		return v
	}
	if len(f[0]) > 0 {
		p.state = f[0][0]
	}
	p.ppid = int(num(1))
	p.pgrp = int(num(2))
	p.sid = int(num(3))
	p.ttyNr = int(num(4))
	p.tpgid = int(num(5))
	p.flags = unum(6)
	p.utime = unum(11)
	p.stime = unum(12)
	p.nice = int(num(16))
	p.threads = int(num(17))
	p.starttime = unum(19)
	p.vsize = unum(20)
	p.rss = num(21)
	return p, nil
}

// parseStatusEUID returns the effective UID from /proc/<pid>/status.
func parseStatusEUID(b []byte) (int, bool) {
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) >= 2 {
				if uid, err := strconv.Atoi(f[1]); err == nil {
					return uid, true
				}
			}
		}
	}
	return 0, false
}

// parseCmdline splits /proc/<pid>/cmdline.
func parseCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// ttyName names a tty_nr as ps does ("pts/0", "tty1", "ttyS0", "?").
func ttyName(nr int) string {
	if nr == 0 {
		return "?"
	}
	major := (nr >> 8) & 0xfff
	minor := (nr & 0xff) | ((nr >> 12) & 0xfff00)
	switch {
	case major >= 136 && major <= 143:
		return fmt.Sprintf("pts/%d", (major-136)*256+minor)
	case major == 4 && minor < 64:
		return fmt.Sprintf("tty%d", minor)
	case major == 4:
		return fmt.Sprintf("ttyS%d", minor-64)
	case major == 5 && minor == 1:
		return "console"
	}
	return "?"
}

// topFormat is a ps output format top supports.
type topFormat int

const (
	topFull topFormat = iota // ps -ef: UID PID PPID C STIME TTY TIME CMD
	topUser                  // ps aux: USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND
	topBSD                   // ps ax: PID TTY STAT TIME COMMAND
)

// parsePsArgs maps ps arguments to a format. Selection options (which
// processes) make no difference: top lists every process of the container.
func parsePsArgs(args string) (topFormat, error) {
	fields := strings.Fields(args)
	if len(fields) == 0 {
		return topFull, nil
	}
	unsupported := fmt.Errorf("unsupported ps arguments %q: the guest agent supports -ef (the default), aux and ax", args)
	format := topFull
	seenBSD, seenUnix := false, false
	for _, f := range fields {
		switch {
		case strings.HasPrefix(f, "--"):
			return 0, unsupported
		case strings.HasPrefix(f, "-") && strings.Trim(f[1:], "efAa") == "" && len(f) > 1:
			// UNIX options: -e/-A (every process), -f (full format), -a.
			seenUnix = true
		case strings.Trim(strings.TrimPrefix(f, "-"), "auxw") == "" && strings.TrimPrefix(f, "-") != "":
			// BSD options (procps also takes "-aux" as "aux").
			seenBSD = true
			if strings.Contains(f, "u") {
				format = topUser
			} else if format != topUser {
				format = topBSD
			}
		default:
			return 0, unsupported
		}
	}
	if seenBSD && seenUnix {
		return 0, unsupported
	}
	return format, nil
}

// topEnv is what formatting a process row needs besides the process.
type topEnv struct {
	now      time.Time
	uptime   float64 // seconds
	bootTime time.Time
	memTotal uint64 // bytes
	pageSize int64
	userName func(uid int) string
}

func (e *topEnv) startTime(p *procStat) time.Time {
	return e.bootTime.Add(time.Duration(p.starttime) * time.Second / clockTicks)
}

// cpuPercent is the process's CPU use over its lifetime, as ps computes it.
func (e *topEnv) cpuPercent(p *procStat) float64 {
	elapsed := e.uptime - float64(p.starttime)/clockTicks
	if elapsed <= 0 {
		return 0
	}
	return float64(p.utime+p.stime) / clockTicks / elapsed * 100
}

// cumulativeTime formats CPU time as ps -f does: [DD-]HH:MM:SS.
func cumulativeTime(ticks uint64) string {
	s := ticks / clockTicks
	d, h, m, sec := s/86400, s/3600%24, s/60%60, s%60
	if d > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, sec)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
}

// bsdTime formats CPU time as ps u does: M:SS.
func bsdTime(ticks uint64) string {
	s := ticks / clockTicks
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// stime formats a start time as ps -f does.
func stime(t, now time.Time) string {
	switch {
	case t.Year() == now.Year() && t.YearDay() == now.YearDay():
		return t.Format("15:04")
	case t.Year() == now.Year():
		return t.Format("Jan02")
	}
	return t.Format("2006")
}

// bsdStart formats a start time as ps u does.
func bsdStart(t, now time.Time) string {
	switch {
	case now.Sub(t) < 24*time.Hour:
		return t.Format("15:04")
	case t.Year() == now.Year():
		return t.Format("Jan02")
	}
	return t.Format("2006")
}

func bsdState(p *procStat) string {
	s := string([]byte{p.state})
	switch {
	case p.nice < 0:
		s += "<"
	case p.nice > 0:
		s += "N"
	}
	if p.sid == p.pid {
		s += "s"
	}
	if p.threads > 1 {
		s += "l"
	}
	if p.ttyNr != 0 && p.tpgid == p.pgrp {
		s += "+"
	}
	return s
}

func command(p *procStat) string {
	if len(p.cmdline) == 0 {
		return "[" + p.comm + "]"
	}
	return strings.Join(p.cmdline, " ")
}

// topTable formats processes (sorted by PID by the caller).
func topTable(format topFormat, procs []*procStat, e *topEnv) *agentproto.TopResult {
	r := &agentproto.TopResult{Processes: [][]string{}}
	switch format {
	case topUser:
		r.Titles = []string{"USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME", "COMMAND"}
	case topBSD:
		r.Titles = []string{"PID", "TTY", "STAT", "TIME", "COMMAND"}
	default:
		r.Titles = []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}
	}
	for _, p := range procs {
		var row []string
		switch format {
		case topUser:
			rssBytes := uint64(max(p.rss, 0)) * uint64(e.pageSize)
			mem := 0.0
			if e.memTotal > 0 {
				mem = float64(rssBytes) / float64(e.memTotal) * 100
			}
			row = []string{
				e.userName(p.euid), strconv.Itoa(p.pid),
				fmt.Sprintf("%.1f", e.cpuPercent(p)), fmt.Sprintf("%.1f", mem),
				strconv.FormatUint(p.vsize/1024, 10), strconv.FormatUint(rssBytes/1024, 10),
				ttyName(p.ttyNr), bsdState(p), bsdStart(e.startTime(p), e.now),
				bsdTime(p.utime + p.stime), command(p),
			}
		case topBSD:
			row = []string{strconv.Itoa(p.pid), ttyName(p.ttyNr), bsdState(p), bsdTime(p.utime + p.stime), command(p)}
		default:
			row = []string{
				e.userName(p.euid), strconv.Itoa(p.pid), strconv.Itoa(p.ppid),
				strconv.Itoa(int(e.cpuPercent(p))), stime(e.startTime(p), e.now),
				ttyName(p.ttyNr), cumulativeTime(p.utime + p.stime), command(p),
			}
		}
		r.Processes = append(r.Processes, row)
	}
	return r
}

// cpuTimes is one "cpu" line of /proc/stat, in clock ticks.
type cpuTimes struct {
	total, busy, user, system uint64
}

// parseProcStatCPU parses /proc/stat's aggregate and per-CPU lines, and
// btime (boot time, unix seconds).
func parseProcStatCPU(b []byte) (all cpuTimes, per []cpuTimes, btime int64, err error) {
	found := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "btime" && len(f) > 1 {
			btime, _ = strconv.ParseInt(f[1], 10, 64)
			continue
		}
		if !strings.HasPrefix(f[0], "cpu") || len(f) < 5 {
			continue
		}
		var v [8]uint64 // user nice system idle iowait irq softirq steal
		for i := 0; i < len(v) && i+1 < len(f); i++ {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
		var t cpuTimes
		for _, x := range v {
			t.total += x
		}
		t.busy = t.total - v[3] - v[4]
		t.user = v[0] + v[1]
		t.system = v[2] + v[5] + v[6]
		if f[0] == "cpu" {
			all, found = t, true
		} else {
			per = append(per, t)
		}
	}
	if !found {
		return all, nil, 0, errors.New("no cpu line in /proc/stat")
	}
	return all, per, btime, nil
}

// parseMeminfo returns /proc/meminfo in bytes ("kB" values are scaled).
func parseMeminfo(b []byte) map[string]uint64 {
	m := map[string]uint64{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		m[strings.TrimSpace(k)] = n
	}
	return m
}

// parseDiskstats returns the counters of the disks for which isDisk holds.
func parseDiskstats(b []byte, isDisk func(name string) bool) []agentproto.DiskStats {
	var out []agentproto.DiskStats
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 10 || !isDisk(f[2]) {
			continue
		}
		u := func(i int) uint64 {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			return v
		}
		out = append(out, agentproto.DiskStats{
			Name: f[2], Major: u(0), Minor: u(1),
			Reads: u(3), ReadBytes: u(5) * 512,
			Writes: u(7), WriteBytes: u(9) * 512,
		})
	}
	return out
}

// parseNetDev returns /proc/net/dev's interfaces but lo.
func parseNetDev(b []byte) []agentproto.NetStats {
	var out []agentproto.NetStats
	for _, l := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "" || name == "lo" || len(f) < 12 {
			continue
		}
		u := func(i int) uint64 {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			return v
		}
		out = append(out, agentproto.NetStats{
			Name:    name,
			RxBytes: u(0), RxPackets: u(1), RxErrors: u(2), RxDropped: u(3),
			TxBytes: u(8), TxPackets: u(9), TxErrors: u(10), TxDropped: u(11),
		})
	}
	return out
}
