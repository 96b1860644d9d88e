//go:build linux

package guestagent_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// TestE2ECheckpointHold: a checkpoint's hold (hold_linux.go). freeze with
// no container stops every process of the main container (its children
// too) and refuses execs; restored, once it has set the identity,
// releases them, as thaw does; the container never sees the hold's
// cgroup as its own, and none is left.
func TestE2ECheckpointHold(t *testing.T) {
	env := setupE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm := bootVM(t, env, "")
	c, _ := vm.connect(t, ctx)
	defer c.Close()
	var out buf
	// Two counters, children of the main process, which fork a sleep on
	// every round: one in the guest's root cgroup, one in a cgroup the
	// container made itself (it may write the hierarchy, as a privileged
	// one); and a cgroup the container froze itself, which must stay so.
	req := startReq([]string{"sh", "-c", `mkdir /sys/fs/cgroup/mine /sys/fs/cgroup/own-frozen && echo 1 > /sys/fs/cgroup/own-frozen/cgroup.freeze && ` +
		`(i=0; while :; do i=$((i+1)); echo r$i; sleep 0.05; done) & ` +
		`sh -c 'echo $$ > /sys/fs/cgroup/mine/cgroup.procs && i=0; while :; do i=$((i+1)); echo m$i; sleep 0.05; done' & wait`}, "", false)
	req.WritableCgroups = true
	p, err := c.Start(ctx, req, agentclient.ProcessIO{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	exec := func(args ...string) (string, error) {
		var eo buf
		ep, err := c.Exec(ctx, &agentproto.ProcessRequest{Args: args, Env: []string{"PATH=/bin"}}, agentclient.ProcessIO{Stdout: &eo, Stderr: &eo})
		if err != nil {
			return "", err
		}
		waitExited(t, ctx, ep)
		return eo.String(), nil
	}
	grows := func(what string) {
		t.Helper()
		n := len(out.String())
		deadline := time.Now().Add(30 * time.Second)
		for len(out.String()) == n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the counter stopped at %q", what, out.String()[max(0, n-20):])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stands := func(what string) {
		t.Helper()
		time.Sleep(200 * time.Millisecond) // output already in the pipe
		n := out.String()
		time.Sleep(time.Second)
		if got := out.String(); got != n {
			t.Fatalf("%s: the counter went on while held: %q -> %q", what, n[max(0, len(n)-20):], got[max(0, len(got)-20):])
		}
	}
	waitOutput(t, ctx, &out, "\nr3\n")
	waitOutput(t, ctx, &out, "\nm3\n")

	for _, release := range []string{"restored", "thaw"} {
		if err := c.Freeze(ctx); err != nil {
			t.Fatalf("hold: %v", err)
		}
		stands("held")
		if _, err := exec("true"); err == nil || !strings.Contains(err.Error(), "checkpointed") {
			t.Fatalf("an exec while held: %v, want it refused", err)
		}
		switch release {
		case "restored":
			err = c.Restored(ctx, agentproto.RestoredRequest{TimeUnixNano: time.Now().UnixNano(), Hostname: "forked", Entropy: bytes.Repeat([]byte{7}, 32)})
		case "thaw":
			err = c.Thaw(ctx)
		}
		if err != nil {
			t.Fatalf("%s: %v", release, err)
		}
		grows("after " + release)
		got, err := exec("sh", "-c", "cat /proc/1/cgroup /proc/self/cgroup /sys/fs/cgroup/mine/cgroup.freeze /sys/fs/cgroup/own-frozen/cgroup.freeze; ls /sys/fs/cgroup; hostname")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, "0::/\n0::/\n0\n1\n") || strings.Contains(got, "hold") || !strings.HasSuffix(got, "forked\n") {
			t.Fatalf("after %s: the container's cgroups, its own cgroups' freeze, the hierarchy's root and the hostname: %q", release, got)
		}
		for _, counter := range []string{"r", "m"} {
			n := strings.Count(out.String(), "\n"+counter)
			waitFor := time.Now().Add(30 * time.Second)
			for strings.Count(out.String(), "\n"+counter) == n {
				if time.Now().After(waitFor) {
					t.Fatalf("after %s: the %s counter does not go on", release, counter)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	// A thaw without a hold is a no-op.
	if err := c.Thaw(ctx); err != nil {
		t.Fatalf("thaw without a hold: %v", err)
	}
	grows("after a thaw without a hold")
	if err := p.Signal(ctx, 9); err != nil {
		t.Fatal(err)
	}
	waitExited(t, ctx, p)
	// The start's and restored's entropy went in and reseeded the
	// kernel's RNG (RNDADDENTROPY, RNDRESEEDCRNG): no complaint.
	vm.waitExit(t, 30*time.Second)
	if con, _ := os.ReadFile(vm.console); strings.Contains(string(con), "entropy") {
		t.Errorf("the agent's console:\n%s", con)
	}
}
