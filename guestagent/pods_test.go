package guestagent

import (
	"strings"
	"testing"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

func TestValidContainerName(t *testing.T) {
	for name, want := range map[string]bool{
		"web": true, "a": true, "f00d_1.2-x": true, strings.Repeat("a", 128): true,
		"": false, ".": false, "..": false, "a/b": false, "a b": false, "é": false,
		strings.Repeat("a", 129): false, "x\n": false,
	} {
		if got := validContainerName(name); got != want {
			t.Errorf("validContainerName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestPodOfCgroup(t *testing.T) {
	for _, c := range []struct{ file, pod string }{
		{"0::/\n", ""},
		{"0::/jevm-pod-web\n", "web"},
		{"0::/jevm-pod-web/inner\n", "web"},
		{"0::/other\n", ""},
		{"0::/jevm-podx\n", ""},
		{"1:name=systemd:/\n0::/jevm-pod-db\n", "db"},
		{"", ""},
	} {
		if got := podOfCgroup(procCgroupPath([]byte(c.file))); got != c.pod {
			t.Errorf("%q: pod %q, want %q", c.file, got, c.pod)
		}
	}
}

func TestParseFlatKeyed(t *testing.T) {
	m := parseFlatKeyed([]byte("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nbogus\nnr x\n"))
	if m["usage_usec"] != 1500 || m["user_usec"] != 1000 || m["system_usec"] != 500 || len(m) != 3 {
		t.Errorf("got %v", m)
	}
	st := &agentproto.GuestStats{CPUTotal: 9e9, CPUBusy: 5e9, PerCPUBusy: []uint64{1}}
	podCPU(st, m)
	if st.CPUBusy != 1500000 || st.CPUUser != 1000000 || st.CPUSystem != 500000 || st.CPUTotal != 9e9 || st.PerCPUBusy != nil {
		t.Errorf("podCPU: %+v", st)
	}
}

func TestPodMemoryInfo(t *testing.T) {
	stat := parseFlatKeyed([]byte("anon 4096\nfile 8192\ninactive_file 2048\nshmem 0\nfile_dirty 10\n"))
	// No limit: the guest's memory is the total.
	mem := podMemoryInfo(1<<20, cgroupMemory{current: 12288, stat: stat})
	if mem["MemTotal"] != 1<<20 || mem["MemTotal"]-mem["MemAvailable"] != 12288-2048 {
		t.Errorf("no limit: %v", mem)
	}
	if mem["AnonPages"] != 4096 || mem["Cached"] != 8192 || mem["Dirty"] != 10 || mem["Inactive(file)"] != 2048 {
		t.Errorf("fields: %v", mem)
	}
	// A limit below the guest's memory is the total.
	mem = podMemoryInfo(1<<20, cgroupMemory{current: 12288, max: 65536, stat: stat})
	if mem["MemTotal"] != 65536 || mem["MemAvailable"] != 65536-10240 {
		t.Errorf("limit: %v", mem)
	}
	// Usage never exceeds the total.
	mem = podMemoryInfo(4096, cgroupMemory{current: 1 << 20})
	if mem["MemAvailable"] != 0 {
		t.Errorf("over: %v", mem)
	}
}
