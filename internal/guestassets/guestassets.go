// Package guestassets finds what a jeVM boots: the guest kernel, its
// modules and the guest agent. They live in one directory laid out the same
// way wherever it is:
//
//	DIR/vmlinuz               the guest kernel
//	DIR/release               its release (e.g. what `uname -r` says in the guest)
//	DIR/lib/modules/RELEASE/  its modules, as the kernel package ships them
//	DIR/jevm-agent            the static guest agent (optional here)
//
// `make guest` builds build/guest (the agent stays in bin/), and `make
// install` installs PREFIX/lib/jevm. The release is read from DIR/release,
// never assumed: Debian replaces its kernel package every few weeks, and the
// Makefile unpacks whichever is newest on the day.
package guestassets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// File names inside an assets directory.
const (
	KernelFile  = "vmlinuz"
	ReleaseFile = "release"
	AgentFile   = "jevm-agent"
	modulesDir  = "lib/modules"
)

// Assets are the paths of one assets directory.
type Assets struct {
	Dir     string
	Release string
	Kernel  string
	// Modules is DIR/lib/modules/RELEASE.
	Modules string
	// Agent is DIR/jevm-agent; it may not exist (build/guest has none).
	Agent string
}

// Load reads dir's release file and checks that the kernel and its modules
// are there.
func Load(dir string) (Assets, error) {
	b, err := os.ReadFile(filepath.Join(dir, ReleaseFile))
	if err != nil {
		return Assets{}, fmt.Errorf("guest assets in %s: %w", dir, err)
	}
	rel := strings.TrimSpace(string(b))
	if rel == "" || strings.ContainsAny(rel, "/\n") || rel == "." || rel == ".." {
		return Assets{}, fmt.Errorf("guest assets in %s: bad release %q", dir, rel)
	}
	a := Assets{
		Dir:     dir,
		Release: rel,
		Kernel:  filepath.Join(dir, KernelFile),
		Modules: filepath.Join(dir, modulesDir, rel),
		Agent:   filepath.Join(dir, AgentFile),
	}
	for _, p := range []string{a.Kernel, a.Modules} {
		if _, err := os.Stat(p); err != nil {
			return Assets{}, fmt.Errorf("guest assets in %s: %w", dir, err)
		}
	}
	return a, nil
}

// Candidates are the directories jevmd looks in, in order, when it is not
// told where its guest is: next to its own binary (BINDIR/../lib/jevm, so an
// install under any PREFIX or DESTDIR works without flags), then the
// conventional prefixes.
func Candidates(executable string) []string {
	var out []string
	if executable != "" {
		if p, err := filepath.EvalSymlinks(executable); err == nil {
			executable = p
		}
		out = append(out, filepath.Join(filepath.Dir(filepath.Dir(executable)), "lib", "jevm"))
	}
	for _, d := range []string{"/usr/local/lib/jevm", "/usr/lib/jevm"} {
		if len(out) == 0 || out[0] != d {
			out = append(out, d)
		}
	}
	return out
}

// ErrNotFound is returned by Find when no candidate holds the assets.
var ErrNotFound = errors.New("no guest kernel found")

// Find returns the first candidate directory that Load accepts.
func Find(candidates []string) (Assets, error) {
	var tried []string
	for _, dir := range candidates {
		a, err := Load(dir)
		if err == nil {
			return a, nil
		}
		tried = append(tried, dir)
	}
	return Assets{}, fmt.Errorf("%w in %s: install jevm (`make install`) or pass --guest-dir (or --kernel, --kernel-modules and --agent)", ErrNotFound, strings.Join(tried, ", "))
}
