package guestagent

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// The process started with a bounding set has exactly it (CapBnd, and as
// root CapEff), and the agent's own thread set is untouched.
func TestStartOnThreadCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	before, _ := os.ReadFile("/proc/self/status")
	keep := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	want := uint64(1<<0 | 1<<5 | 1<<10)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startOnThread(func() (*os.Process, error) {
		return os.StartProcess(sh, []string{"sh", "-c", "grep -E '^Cap(Bnd|Eff|Inh|Amb):' /proc/self/status"},
			&os.ProcAttr{Files: []*os.File{nil, w, w}})
	}, dropCapabilitiesPrep(keep))
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	out.ReadFrom(r)
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		k, v, _ := strings.Cut(line, ":")
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		got[k] = n
	}
	if got["CapBnd"] != want || got["CapEff"] != want || got["CapInh"] != 0 || got["CapAmb"] != 0 {
		t.Fatalf("child's capabilities %x, want bounding and effective %x", got, want)
	}
	// The reduced thread is never used again: a process started after it
	// has the agent's full set. (The thread may have been the main one,
	// which the runtime parks instead of ending, so /proc/self/status is
	// not the place to look.)
	out2, err := exec.Command(sh, "-c", "grep '^CapBnd:' /proc/self/status").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out2)) != strings.TrimSpace(capLine(before, "CapBnd")) {
		t.Fatalf("a later process's bounding set is %q, the agent's was %q", out2, capLine(before, "CapBnd"))
	}
	if _, err := startOnThread(func() (*os.Process, error) { return nil, nil }, dropCapabilitiesPrep([]string{"CAP_NOPE"})); err == nil {
		t.Fatal("an unknown capability was accepted")
	}
}

func capLine(status []byte, key string) string {
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, key+":") {
			return line
		}
	}
	return ""
}

func TestPrivateDevices(t *testing.T) {
	for rel, private := range map[string]bool{
		"vport0p1": true, "virtio-ports/org.jevm.agent.0": true, "console": true, "ttyS0": true, "hvc0": true,
		"vda": false, "net/tun": false, "loop0": false, "fuse": false, "kmsg": false,
	} {
		if privateDevice(rel) != private {
			t.Errorf("privateDevice(%q) = %v", rel, !private)
		}
	}
}
