package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/errdefs"
)

func TestVolumeSubpath(t *testing.T) {
	base := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(base, "subdir"), 0o755))
	must(os.WriteFile(filepath.Join(base, "subdir", "hello.txt"), []byte("hi"), 0o644))
	must(os.MkdirAll(filepath.Join(base, "hack"), 0o755))
	must(os.Symlink("../subdir", filepath.Join(base, "hack", "good")))
	must(os.Symlink("/", filepath.Join(base, "hack", "root")))
	must(os.Symlink("root", filepath.Join(base, "hack", "bad")))
	realBase, _ := filepath.EvalSymlinks(base)

	for sub, want := range map[string]string{
		"subdir":           filepath.Join(realBase, "subdir"),
		"hack/good":        filepath.Join(realBase, "subdir"),
		"subdir/hello.txt": filepath.Join(realBase, "subdir", "hello.txt"),
	} {
		got, err := volumeSubpath(base, sub)
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", sub, got, err, want)
		}
	}
	for _, sub := range []string{"hack/root", "hack/bad"} {
		_, err := volumeSubpath(base, sub)
		if err == nil || !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "path concatenation escapes the base directory") {
			t.Errorf("%s: %v", sub, err)
		}
	}
	if _, err := volumeSubpath(base, "not-existing-path"); err == nil || !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "cannot access path") {
		t.Errorf("missing: %v", err)
	}
}
