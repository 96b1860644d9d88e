package integration

import (
	"strings"
	"testing"
)

// moby's test harness and SDK clean-up code list plugins first: the CLI's
// plugin commands answer as with a dockerd that has none.
func TestPluginListEmpty(t *testing.T) {
	if out := mustDocker(t, "plugin", "ls", "--format", "{{.Name}}"); strings.TrimSpace(out) != "" {
		t.Fatalf("docker plugin ls = %q", out)
	}
	r := docker(t, "plugin", "inspect", "vieux/sshfs")
	if r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("docker plugin inspect of a missing plugin:\n%s", r)
	}
}
