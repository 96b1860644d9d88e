//go:build linux

package guestagent

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// The zygote, forked ahead, runs a program as a fresh helper would: with
// the stdio it is handed, the spec's environment, as PID 1 of its own PID
// namespace; a program that cannot run is the helper's exec error.
func TestZygote(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("a PID namespace needs root")
	}
	run := func(args ...string) (string, error) {
		z, err := forkZygote(testHelper(t))
		if err != nil {
			t.Fatal(err)
		}
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer devnull.Close()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		pid, ok, err := z.start(execHelperSpec{Path: args[0], Dir: "/"}, args, []string{"PATH=/usr/bin:/bin", "X=y"}, []*os.File{devnull, w, w}, false)
		w.Close()
		if !ok || pid <= 0 {
			t.Fatalf("the zygote did not take the request (ok %v) or its pid is %d", ok, pid)
		}
		defer func() {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
		}()
		if err != nil {
			return "", err
		}
		return readAll(r)
	}
	out, err := run("/bin/sh", "-c", `echo "X=$X pid=$$"`)
	if err != nil || strings.TrimSpace(out) != "X=y pid=1" {
		t.Fatalf("through the zygote: %q, %v", out, err)
	}
	_, err = run("/nonexistent/prog")
	var he *helperError
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a missing program: %v", err)
	}
	if ok := asHelperError(err, &he); !ok || !he.exec || he.errno != syscall.ENOENT {
		t.Fatalf("a missing program: %#v", err)
	}
}

func asHelperError(err error, he **helperError) bool {
	e, ok := err.(*helperError)
	*he = e
	return ok
}
