package integration

import (
	"os"
	"path/filepath"
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
