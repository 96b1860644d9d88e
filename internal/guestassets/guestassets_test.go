package guestassets

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func writeAssets(t *testing.T, dir, release string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "lib", "modules", release, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{KernelFile: "kernel", ReleaseFile: release + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadReadsTheRelease(t *testing.T) {
	dir := t.TempDir()
	writeAssets(t, dir, "9.9.9-1-test")
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Release != "9.9.9-1-test" || a.Modules != filepath.Join(dir, "lib/modules/9.9.9-1-test") || a.Kernel != filepath.Join(dir, "vmlinuz") || a.Agent != filepath.Join(dir, "jevm-agent") {
		t.Fatalf("unexpected assets %+v", a)
	}
}

func TestLoadRefusesIncompleteDirectories(t *testing.T) {
	for name, mutate := range map[string]func(dir string){
		"no release":     func(dir string) { os.Remove(filepath.Join(dir, ReleaseFile)) },
		"no kernel":      func(dir string) { os.Remove(filepath.Join(dir, KernelFile)) },
		"other modules":  func(dir string) { os.WriteFile(filepath.Join(dir, ReleaseFile), []byte("1.0-other"), 0o644) },
		"path traversal": func(dir string) { os.WriteFile(filepath.Join(dir, ReleaseFile), []byte("../x"), 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeAssets(t, dir, "9.9.9-1-test")
			mutate(dir)
			if _, err := Load(dir); err == nil {
				t.Fatal("Load accepted an incomplete directory")
			}
		})
	}
}

func TestCandidatesStartNextToTheBinary(t *testing.T) {
	got := Candidates("/opt/x/bin/jevmd")
	want := []string{"/opt/x/lib/jevm", "/usr/local/lib/jevm", "/usr/lib/jevm"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Candidates = %v, want %v", got, want)
	}
}

func TestFindTakesTheFirstCompleteDirectory(t *testing.T) {
	empty, full := t.TempDir(), t.TempDir()
	writeAssets(t, full, "9.9.9-2-test")
	a, err := Find([]string{empty, full})
	if err != nil || a.Dir != full {
		t.Fatalf("Find = %+v, %v", a, err)
	}
	if _, err := Find([]string{empty}); err == nil || !strings.Contains(err.Error(), "--guest-dir") {
		t.Fatalf("Find in an empty dir: %v", err)
	}
}

// TestNoSourcePinsAGuestKernelRelease: the Makefile picks the newest guest
// kernel package on the day it runs, so nothing else may name a concrete
// release; code reads DIR/release instead. Markdown files may record the
// release a measurement was taken with.
func TestNoSourcePinsAGuestKernelRelease(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("git ls-files: %v", err)
	}
	// A Debian kernel release: VERSION-ABI-FLAVOUR, e.g. 6.1.0-NN-amd64.
	release := regexp.MustCompile(`\b\d+\.\d+\.\d+-\d+-(amd64|arm64|cloud-amd64|rt-amd64)\b`)
	var pinned []string
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f == "" || f == "Makefile" || strings.HasSuffix(f, ".md") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue // deleted in the work tree
		}
		for i, line := range strings.Split(string(b), "\n") {
			if release.MatchString(line) {
				pinned = append(pinned, f+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(line))
			}
		}
	}
	if len(pinned) > 0 {
		t.Fatalf("these lines name a concrete guest kernel release; read build/guest/release (internal/guestassets) instead:\n%s", strings.Join(pinned, "\n"))
	}
}
