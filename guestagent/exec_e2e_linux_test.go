//go:build linux

package guestagent_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

func execReq(args []string) *agentproto.ProcessRequest {
	return &agentproto.ProcessRequest{Args: args, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}
}

// TestE2EExecTopStats: execs (output, exit code, user, cwd, stdin, TTY),
// top and stats against a running container; then the main process's exit
// kills the exec'd processes, whose exits come before the main one's.
func TestE2EExecTopStats(t *testing.T) {
	env := setupE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm := bootVM(t, env, "")
	c, _ := vm.connect(t, ctx)
	defer c.Close()

	// Exec before anything runs is refused.
	if _, err := c.Exec(ctx, execReq([]string{"true"}), agentclient.ProcessIO{}); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("exec while idle: %v", err)
	}
	var mainOut buf
	mainReq := startReq([]string{"sh", "-c", "echo main-up; exec sleep 1000"}, "", false)
	mainReq.Process.Stdin = true
	main, err := c.Start(ctx, mainReq, agentclient.ProcessIO{Stdout: &mainOut, Stderr: &mainOut})
	if err != nil {
		t.Fatal(err)
	}

	run := func(req *agentproto.ProcessRequest, stdin string) (string, agentproto.ExitStatus) {
		t.Helper()
		var out buf
		p, err := c.Exec(ctx, req, agentclient.ProcessIO{Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("exec %q: %v", req.Args, err)
		}
		if req.Stdin {
			io.WriteString(p.Stdin(), stdin)
			p.Stdin().Close()
		}
		st := waitExited(t, ctx, p)
		return out.String(), st
	}

	t0 := time.Now()
	out, st := run(execReq([]string{"echo", "hi"}), "")
	t.Logf("exec echo: %v", time.Since(t0).Round(time.Millisecond))
	if out != "hi\n" || st.Code != 0 {
		t.Errorf("echo hi: %q %+v", out, st)
	}
	if _, st = run(execReq([]string{"sh", "-c", "exit 4"}), ""); st.Code != 4 {
		t.Errorf("exit 4: %+v", st)
	}
	r := execReq([]string{"sh", "-c", "id -u; pwd; echo $A"})
	r.User, r.Cwd = "nobody", "/tmp/newdir"
	r.Env = append(r.Env, "A=b")
	if out, _ = run(r, ""); out != "65534\n/tmp/newdir\nb\n" {
		t.Errorf("user/cwd/env: %q", out)
	}
	r = execReq([]string{"cat"})
	r.Stdin = true
	if out, _ = run(r, "some data"); out != "some data" {
		t.Errorf("stdin: %q", out)
	}
	r = execReq([]string{"sh", "-c", "tty; stty size"})
	r.TTY, r.Rows, r.Cols = true, 33, 99
	if out, _ = run(r, ""); !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "33 99") {
		t.Errorf("tty: %q", out)
	}
	if _, err := c.Exec(ctx, execReq([]string{"nosuchcmd"}), agentclient.ProcessIO{}); err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("exec nosuchcmd: %v", err)
	}
	// Parallel execs.
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out buf
			p, err := c.Exec(ctx, execReq([]string{"echo", "par"}), agentclient.ProcessIO{Stdout: &out})
			if err != nil {
				t.Errorf("parallel exec: %v", err)
				return
			}
			<-p.Exited()
			if out.String() != "par\n" {
				t.Errorf("parallel exec output %q", out.String())
			}
		}()
	}
	wg.Wait()

	// The main process is PID 1 of the container's PID namespace, which
	// execs join: ps sees the container's processes, /proc/self and
	// /dev/stdout resolve.
	out, st = run(execReq([]string{"ps", "-o", "pid,args"}), "")
	t.Logf("ps in the container:\n%s", out)
	if !strings.Contains("\n"+out, "\n    1 sleep 1000\n") && !strings.Contains(out, "\n1 sleep 1000\n") || st.Code != 0 {
		t.Errorf("ps in the container: %q %+v, want PID 1 sleep 1000", out, st)
	}
	out, st = run(execReq([]string{"sh", "-c", `read self rest < /proc/self/stat; echo $$ $self; echo x > /dev/stdout; cat /proc/1/cmdline | tr '\0' ' '`}), "")
	if f := strings.Fields(out); len(f) != 5 || f[0] != f[1] || f[0] == "1" || f[2] != "x" || f[3] != "sleep" || f[4] != "1000" || st.Code != 0 {
		t.Errorf("/proc/self, /dev/stdout, /proc/1 in an exec: %q %+v", out, st)
	}

	top, err := c.Top(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("top: %v %v", top.Titles, top.Processes)
	found := false
	for _, p := range top.Processes {
		if p[len(p)-1] == "sleep 1000" && p[0] == "root" && p[2] == "1" {
			found = true
		}
		if p[1] == "1" {
			t.Errorf("top lists the agent: %v", p)
		}
	}
	if !found {
		t.Errorf("top lacks the main process: %v", top.Processes)
	}
	if top, err = c.Top(ctx, "aux"); err != nil || len(top.Titles) != 11 {
		t.Errorf("top aux: %+v %v", top, err)
	}
	if _, err = c.Top(ctx, "-o pid"); err == nil {
		t.Errorf("top -o pid accepted")
	}
	s, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", *s)
	if s.CPUTotal == 0 || s.CPUBusy == 0 || s.OnlineCPUs < 1 || s.Memory["MemTotal"] < 100<<20 || s.Memory["MemAvailable"] == 0 ||
		len(s.Disks) != 1 || s.Disks[0].Name != "vda" || s.Disks[0].ReadBytes == 0 || s.Pids != 1 {
		t.Errorf("stats %+v", *s)
	}

	// A long exec dies with the main process, and is reported first.
	var order []string
	var omu sync.Mutex
	long, err := c.Exec(ctx, execReq([]string{"sleep", "500"}), agentclient.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	addExec := func() { // once, by whichever goroutine sees it first
		if len(order) == 0 || order[0] != "exec" {
			order = append(order, "exec")
		}
	}
	go func() { <-long.Exited(); omu.Lock(); addExec(); omu.Unlock() }()
	// The client closes Exited as each exit arrives, on its one reader
	// goroutine: when main's is closed, the exec's must already be if it
	// came first. (Two goroutines appending as they wake would race.)
	go func() {
		<-main.Exited()
		omu.Lock()
		select {
		case <-long.Exited():
			addExec()
		default:
		}
		order = append(order, "main")
		omu.Unlock()
	}()
	// As the namespace's init, sleep does not get a SIGTERM it has no
	// handler for (docker stop then ends with SIGKILL); SIGKILL ends it.
	if err := main.Signal(ctx, 15); err != nil {
		t.Fatal(err)
	}
	select {
	case <-main.Exited():
		st, _ := main.Status()
		t.Fatalf("SIGTERM ended the namespace's init: %+v", st)
	case <-time.After(2 * time.Second):
	}
	if err := main.Signal(ctx, 9); err != nil {
		t.Fatal(err)
	}
	st = waitExited(t, ctx, main)
	lst := waitExited(t, ctx, long)
	time.Sleep(50 * time.Millisecond)
	omu.Lock()
	t.Logf("main %+v exec %+v order %v", st, lst, order)
	if lst.Code != 137 || st.Code != 137 || len(order) != 2 || order[0] != "exec" {
		t.Errorf("main %+v exec %+v order %v", st, lst, order)
	}
	omu.Unlock()
	vm.waitExit(t, 30*time.Second)
}
