package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Templates no container can use are removed when jevmd starts: one of a
// shape nothing has (or made by another agent or kernel: its key differs
// the same way), and a build a killed daemon left. The templates in use
// stay: the default shape's at least.
func TestUnusedTemplatesCollected(t *testing.T) {
	root := filepath.Join(env.root, "data", "templates")
	before, err := os.ReadDir(root)
	if err != nil || len(before) == 0 {
		t.Fatalf("templates before: %v %v", before, err)
	}
	stale := filepath.Join(root, "0000000000000000stale")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "meta.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "mem"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// A build of a process that is gone (pid 0x7ffffff0 is never alive).
	build := filepath.Join(root, "0000000000000000stale.tmp-2147483632-1")
	if err := os.MkdirAll(build, 0o755); err != nil {
		t.Fatal(err)
	}
	restartDaemon(t)
	for _, p := range []string{stale, build} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after the daemon's start: %v", p, err)
		}
	}
	// The default shape's stays (others' may go with the containers
	// that had them, removed by earlier tests).
	kept := 0
	for _, e := range before {
		if _, err := os.Stat(filepath.Join(root, e.Name(), "meta.json")); err == nil {
			kept++
		}
	}
	if kept == 0 {
		t.Errorf("every template was removed: before %v", before)
	}
	mustDocker(t, "run", "--rm", "busybox", "true")
}

// A template damaged on disk (its device state changed, same size: the
// size check of every start does not see it): the
// start that fails on it finds it changed, removes it, and starts again
// on a template built anew; the user sees a (slower) start that works.
func TestCorruptTemplateRebuilt(t *testing.T) {
	root := filepath.Join(env.root, "data", "templates")
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var dir string
	var created string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(root, e.Name(), "meta.json"))
		if err != nil {
			continue
		}
		var m struct {
			Created string `json:"created"`
			Inputs  struct {
				Shape struct {
					MemoryMiB int `json:"memoryMiB"`
					VCPUs     int `json:"vcpus"`
				} `json:"shape"`
			} `json:"inputs"`
			StateSHA256 string `json:"stateSha256"`
		}
		if json.Unmarshal(b, &m) == nil && m.Inputs.Shape.MemoryMiB == 256 && m.Inputs.Shape.VCPUs == 1 && m.StateSHA256 != "" {
			dir, created = filepath.Join(root, e.Name()), m.Created
		}
	}
	if dir == "" {
		t.Fatalf("no default-shape template with digests in %s", root)
	}
	// The warm pool's blanks were cloned from it: the change drains the
	// pool (daemon/pool.go).
	pool := waitPoolFull(t)
	idle := idleBlankPids(t)
	state := filepath.Join(dir, "state")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	// The stream's header: QEMU refuses it at once. (What damage a
	// restore does not notice shows in the guest: no agent answers; the
	// same check follows a failed connect.)
	for i := 0; i < 16; i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(state, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustDocker(t, "run", "--rm", "busybox", "echo", "still-works"); out != "still-works\n" {
		t.Fatalf("run on a corrupt template: %q", out)
	}
	mb, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil || strings.Contains(string(mb), created) {
		t.Fatalf("the template was not built again: %v\n%s", err, mb)
	}
	for _, pid := range idle {
		if !processGone(pid) {
			t.Fatalf("blank %s of the old template still runs", pid)
		}
	}
	if st := readPoolStatus(t); st.discarded < pool.discarded+len(idle) {
		t.Fatalf("pool after the template changed: %q (before: %q)", st.line, pool.line)
	}
	// And fills again, from the new template.
	waitPoolFull(t)
}
