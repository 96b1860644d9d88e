package guestagent

import (
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	line := "42 (my (odd) cmd) S 1 42 42 34816 42 4194560 100 0 0 0 250 50 0 0 20 5 3 0 1500 8388608 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
	p, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if p.pid != 42 || p.comm != "my (odd) cmd" || p.state != 'S' || p.ppid != 1 || p.sid != 42 || p.ttyNr != 34816 ||
		p.utime != 250 || p.stime != 50 || p.nice != 5 || p.threads != 3 || p.starttime != 1500 || p.vsize != 8388608 || p.rss != 300 {
		t.Fatalf("%+v", p)
	}
	if p.kernelThread() {
		t.Fatal("not a kernel thread")
	}
	kt, _ := parseProcStat([]byte("7 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 0 0 0 0 0 0"))
	if kt == nil || !kt.kernelThread() {
		t.Fatalf("kworker not a kernel thread: %+v", kt)
	}
	if _, err := parseProcStat([]byte("garbage")); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestTTYName(t *testing.T) {
	for nr, want := range map[int]string{0: "?", 34816: "pts/0", 34817: "pts/1", 1025: "tty1", 1088: "ttyS0", 1281: "console"} {
		if got := ttyName(nr); got != want {
			t.Errorf("ttyName(%d) = %q, want %q", nr, got, want)
		}
	}
}

func TestParsePsArgs(t *testing.T) {
	for args, want := range map[string]topFormat{"": topFull, "-ef": topFull, "-e -f": topFull, "-A": topFull, "aux": topUser, "-aux": topUser, "auxww": topUser, "ax": topBSD} {
		got, err := parsePsArgs(args)
		if err != nil || got != want {
			t.Errorf("parsePsArgs(%q) = %v, %v; want %v", args, got, err, want)
		}
	}
	for _, args := range []string{"-o pid", "--forest", "-ef aux", "l", "-p 1"} {
		if _, err := parsePsArgs(args); err == nil {
			t.Errorf("parsePsArgs(%q) accepted", args)
		}
	}
}

func TestTopTable(t *testing.T) {
	now := time.Date(2025, 3, 4, 10, 30, 0, 0, time.UTC)
	env := &topEnv{
		now: now, uptime: 100, bootTime: now.Add(-100 * time.Second), memTotal: 100 << 20, pageSize: 4096,
		userName: func(uid int) string {
			if uid == 0 {
				return "root"
			}
			return "65534"
		},
	}
	procs := []*procStat{
		{pid: 5, ppid: 1, sid: 5, pgrp: 5, state: 'S', utime: 1000, stime: 0, starttime: 0, vsize: 4 << 20, rss: 256, cmdline: []string{"sleep", "1000"}},
		{pid: 9, ppid: 5, sid: 9, pgrp: 9, tpgid: 9, ttyNr: 34816, state: 'R', euid: 65534, utime: 6100, starttime: 5000, comm: "x"},
	}
	r := topTable(topFull, procs, env)
	if strings.Join(r.Titles, " ") != "UID PID PPID C STIME TTY TIME CMD" || len(r.Processes) != 2 {
		t.Fatalf("%+v", r)
	}
	if got := strings.Join(r.Processes[0], "|"); got != "root|5|1|10|10:28|?|00:00:10|sleep 1000" {
		t.Errorf("row 0 = %s", got)
	}
	if got := strings.Join(r.Processes[1], "|"); got != "65534|9|5|122|10:29|pts/0|00:01:01|[x]" {
		t.Errorf("row 1 = %s", got)
	}
	r = topTable(topUser, procs, env)
	if strings.Join(r.Titles, " ") != "USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND" {
		t.Fatalf("%+v", r.Titles)
	}
	if got := strings.Join(r.Processes[0], "|"); got != "root|5|10.0|1.0|4096|1024|?|Ss|10:28|0:10|sleep 1000" {
		t.Errorf("aux row 0 = %s", got)
	}
	if got := strings.Join(r.Processes[1], "|"); got != "65534|9|122.0|0.0|0|0|pts/0|Rs+|10:29|1:01|[x]" {
		t.Errorf("aux row 1 = %s", got)
	}
}

func TestParseStatsFiles(t *testing.T) {
	stat := "cpu  100 10 50 1000 20 5 5 0 0 0\ncpu0 60 5 30 500 10 3 2 0 0 0\ncpu1 40 5 20 500 10 2 3 0 0 0\nintr 1 2\nbtime 1700000000\n"
	all, per, btime, err := parseProcStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if all.total != 1190 || all.busy != 170 || all.user != 110 || all.system != 60 || len(per) != 2 || per[0].busy != 100 || btime != 1700000000 {
		t.Fatalf("all %+v per %+v btime %d", all, per, btime)
	}
	mem := parseMeminfo([]byte("MemTotal:        1000 kB\nMemAvailable:     600 kB\nHugePages_Total:       0\n"))
	if mem["MemTotal"] != 1024000 || mem["MemAvailable"] != 614400 || len(mem) != 3 {
		t.Fatalf("meminfo %v", mem)
	}
	disks := parseDiskstats([]byte(" 254       0 vda 120 0 2048 10 30 0 800 40 0 50 50 0 0 0 0\n 254       1 vda1 1 0 8 0 0 0 0 0 0 0 0\n   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0\n"),
		func(n string) bool { return n == "vda" })
	if len(disks) != 1 || disks[0].ReadBytes != 2048*512 || disks[0].WriteBytes != 800*512 || disks[0].Reads != 120 || disks[0].Writes != 30 || disks[0].Major != 254 {
		t.Fatalf("disks %+v", disks)
	}
	nets := parseNetDev([]byte("Inter-|   Receive |  Transmit\n face |bytes packets\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 2000 20 1 2 0 0 0 0 3000 30 3 4 0 0 0 0\n"))
	if len(nets) != 1 || nets[0].Name != "eth0" || nets[0].RxBytes != 2000 || nets[0].TxBytes != 3000 || nets[0].RxDropped != 2 || nets[0].TxErrors != 3 {
		t.Fatalf("nets %+v", nets)
	}
}
