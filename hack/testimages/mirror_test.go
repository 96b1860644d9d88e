package testimages

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func aptDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestMirrorFromDeb822Sources(t *testing.T) {
	t.Setenv(MirrorEnv, "")
	dir := aptDir(t, map[string]string{"sources.list.d/debian.sources": "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"})
	m, s, err := mirrorsFrom("", dir)
	if err != nil || m != "http://mirror.example/debian" || s != "http://mirror.example/debian-security" {
		t.Fatalf("mirrorsFrom = %q %q %v", m, s, err)
	}
}

func TestMirrorFromOneLineList(t *testing.T) {
	t.Setenv(MirrorEnv, "")
	dir := aptDir(t, map[string]string{"sources.list": "# comment\ndeb [arch=amd64] https://proxy.example:3142/debian bookworm main\n"})
	m, s, err := mirrorsFrom("", dir)
	if err != nil || m != "https://proxy.example:3142/debian" || s != "" {
		t.Fatalf("mirrorsFrom = %q %q %v", m, s, err)
	}
}

func TestMirrorExplicitSettingWins(t *testing.T) {
	dir := aptDir(t, map[string]string{"sources.list": "deb http://other.example/debian bookworm main\n"})
	t.Setenv(MirrorEnv, "http://env.example/debian/")
	if m, s, err := mirrorsFrom("", dir); err != nil || m != "http://env.example/debian" || s != "http://env.example/debian-security" {
		t.Fatalf("from %s: %q %q %v", MirrorEnv, m, s, err)
	}
	if m, _, err := mirrorsFrom("http://flag.example/debian", dir); err != nil || m != "http://flag.example/debian" {
		t.Fatalf("from --mirror: %q %v", m, err)
	}
}

// No mirror host is built in: without a setting and without apt sources
// the build fails and says which setting to give.
func TestMirrorMissingSaysWhatToSet(t *testing.T) {
	t.Setenv(MirrorEnv, "")
	_, _, err := mirrorsFrom("", aptDir(t, map[string]string{"sources.list": "deb cdrom:[Debian]/ bookworm main\n"}))
	if err == nil || !strings.Contains(err.Error(), MirrorEnv) || !strings.Contains(err.Error(), "--mirror") {
		t.Fatalf("err = %v", err)
	}
}
