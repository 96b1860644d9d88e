package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileKeys(t *testing.T) {
	p := writeConfig(t, `{"hosts":["tcp://127.0.0.1:2375"],"data-root":"/srv/jevm","registry-mirrors":["http://127.0.0.1:5000"],
		"insecure-registries":["10.0.0.1:5000"],"debug":true,"accelerator":"tcg","vm-memory":"512M","vm-cpus":2,"kernel":"/k"}`)
	o, err := parseOptions([]string{"--config-file", p, "--log-level", "warn"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.hosts, ",") != "tcp://127.0.0.1:2375" || o.logLevel != "warn" || o.dataRoot != "/srv/jevm" || !o.debug ||
		o.accel != "tcg" || o.vmMemory != "512M" || o.vmCPUs != 2 || o.kernel != "/k" ||
		len(o.registryMirrors) != 1 || len(o.insecureRegistries) != 1 {
		t.Fatalf("options = %+v", o)
	}
}

func TestConfigConflictWithFlag(t *testing.T) {
	// dockerd refuses a setting given both ways, hosts included.
	h := writeConfig(t, `{"hosts":["tcp://127.0.0.1:2375"]}`)
	if _, err := parseOptions([]string{"--config-file", h, "-H", "unix:///tmp/x.sock"}); err == nil {
		t.Fatal("-H with hosts in the file accepted")
	}
	p := writeConfig(t, `{"data-root":"/a","accelerator":"kvm"}`)
	_, err := parseOptions([]string{"--config-file", p, "--data-root", "/b"})
	if err == nil || !strings.Contains(err.Error(), "specified both as a flag and in the configuration file") || !strings.Contains(err.Error(), "data-root") {
		t.Fatalf("err = %v", err)
	}
}

func TestConfigUnknownKeyAndMissingFile(t *testing.T) {
	p := writeConfig(t, `{"no-such-key":1}`)
	if _, err := parseOptions([]string{"--config-file", p}); err == nil {
		t.Fatal("unknown key accepted")
	}
	if _, err := parseOptions([]string{"--config-file", "/nonexistent/daemon.json"}); err == nil {
		t.Fatal("an explicitly named missing config file was accepted")
	}
	o, err := parseOptions([]string{"--config-file", "/dev/null"})
	if err != nil || o.dataRoot != "/var/lib/jevm" || o.accel != "auto" {
		t.Fatalf("empty file: %+v %v", o, err)
	}
}
