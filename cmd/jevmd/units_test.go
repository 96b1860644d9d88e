package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jevm/jevm/api"
)

// unitKeys reads the Key=Value lines of a systemd unit file.
func unitKeys(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "contrib", "systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	return keys
}

// The units are dockerd's pair: the service takes its socket from the
// socket unit (-H fd://, which jevmd accepts), tells systemd when it is
// ready, and stopping it must not kill the containers' VMs (live restore).
func TestSystemdUnits(t *testing.T) {
	svc := unitKeys(t, "jevm.service")
	if !strings.Contains(svc["ExecStart"], "@BINDIR@/jevmd") || !strings.Contains(svc["ExecStart"], "-H fd://") {
		t.Errorf("ExecStart = %q", svc["ExecStart"])
	}
	for k, want := range map[string]string{"Type": "notify", "KillMode": "process", "Requires": "jevm.socket", "Delegate": "yes"} {
		if svc[k] != want {
			t.Errorf("jevm.service %s = %q, want %q", k, svc[k], want)
		}
	}
	sock := unitKeys(t, "jevm.socket")
	if sock["ListenStream"] != api.DefaultUnixSocket {
		t.Errorf("jevm.socket ListenStream = %q, jevmd's default socket is %q", sock["ListenStream"], api.DefaultUnixSocket)
	}
	if sock["SocketMode"] != "0660" || sock["SocketGroup"] != defaultSocketGroup {
		t.Errorf("jevm.socket mode/group = %q/%q", sock["SocketMode"], sock["SocketGroup"])
	}
	if _, err := parseOptions(append([]string{"--config-file", "/dev/null"}, strings.Fields(strings.TrimPrefix(svc["ExecStart"], "@BINDIR@/jevmd"))...)); err != nil {
		t.Errorf("jevmd does not accept the unit's arguments: %v", err)
	}
}

// systemd-analyze verify, where systemd is installed (these machines have
// none; a user's has).
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	// verify checks that ExecStart's program exists and is executable.
	if err := os.WriteFile(filepath.Join(dir, "jevmd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"jevm.service", "jevm.socket"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "contrib", "systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		body := strings.ReplaceAll(string(b), "@BINDIR@", dir)
		if err := os.WriteFile(filepath.Join(dir, u), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "jevm.socket"), filepath.Join(dir, "jevm.service")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		// verify also prints what it ignores (unknown keys): a defect too.
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
