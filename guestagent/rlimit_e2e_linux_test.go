//go:build linux

package guestagent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// TestE2ERlimits: `docker run --ulimit` in a real guest. A limit the guest
// kernel refuses fails the start (and leaves the agent idle); the main
// process and an exec get their limits, set as root before the switch to
// the user (a raised hard limit); a process without limits gets the
// kernel's defaults for PID 1 (1024:4096), not the Go runtime's raised
// soft limit.
func TestE2ERlimits(t *testing.T) {
	env := setupE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm := bootVM(t, env, "")
	c, _ := vm.connect(t, ctx)
	defer c.Close()

	// nofile above fs.nr_open (1048576 by default).
	bad := startReq([]string{"true"}, "", false)
	bad.Process.Rlimits = []agentproto.Rlimit{{Name: "nofile", Soft: 1024, Hard: 1 << 21}}
	_, err := c.Start(ctx, bad, agentclient.ProcessIO{})
	if err == nil || !strings.HasPrefix(err.Error(), "error setting rlimit type 7 (nofile=1024:2097152): operation not permitted (the kernel allows at most ") {
		t.Fatalf("start with nofile above nr_open: %v", err)
	}
	t.Logf("refused: %v", err)

	rl := []agentproto.Rlimit{
		{Name: "nofile", Soft: 5000, Hard: 10000}, // above the agent's hard 4096
		{Name: "nproc", Soft: 300, Hard: 400},
		{Name: "core", Soft: agentproto.RlimitInfinity, Hard: agentproto.RlimitInfinity},
	}
	var mainOut buf
	req := startReq([]string{"sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u; ulimit -c; id -u; echo main-up; exec sleep 1000"}, "nobody", false)
	req.Process.Rlimits = rl
	main, err := c.Start(ctx, req, agentclient.ProcessIO{Stdout: &mainOut, Stderr: &mainOut})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(mainOut.String(), "main-up") {
		if time.Now().After(deadline) {
			t.Fatalf("main output %q", mainOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if want := "5000\n10000\n300\nunlimited\n65534\nmain-up\n"; mainOut.String() != want {
		t.Errorf("main process: %q, want %q", mainOut.String(), want)
	}

	exec := func(rls []agentproto.Rlimit) string {
		t.Helper()
		var out buf
		r := execReq([]string{"sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u"})
		r.Rlimits = rls
		p, err := c.Exec(ctx, r, agentclient.ProcessIO{Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		if st := waitExited(t, ctx, p); st.Code != 0 {
			t.Errorf("exec: %+v %q", st, out.String())
		}
		return out.String()
	}
	if out := exec(rl); out != "5000\n10000\n300\n" {
		t.Errorf("exec with the container's rlimits: %q", out)
	}
	if out := exec(nil); !strings.HasPrefix(out, "1024\n4096\n") {
		t.Errorf("exec without rlimits: %q, want nofile 1024:4096", out)
	}
	bad.Process.Rlimits[0].Name = "bogus"
	if _, err := c.Exec(ctx, &agentproto.ProcessRequest{Args: []string{"true"}, Rlimits: bad.Process.Rlimits}, agentclient.ProcessIO{}); err == nil ||
		err.Error() != `unknown rlimit type "bogus"` {
		t.Errorf("exec with an unknown rlimit: %v", err)
	}

	if err := main.Signal(ctx, 9); err != nil {
		t.Fatal(err)
	}
	if st := waitExited(t, ctx, main); st.Code != 137 {
		t.Errorf("main status %+v", st)
	}
	vm.waitExit(t, 30*time.Second)
}
