package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// repoRoot finds the module root from the test's directory.
func repoRoot(t *testing.T) string {
	d, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			t.Fatal("no go.mod above the test directory")
		}
		d = p
	}
}

func modulesDir(t *testing.T) string {
	matches, _ := filepath.Glob(filepath.Join(repoRoot(t), "build/guest/lib/modules/*"))
	for _, m := range matches {
		if fi, err := os.Stat(filepath.Join(m, "kernel")); err == nil && fi.IsDir() {
			return m
		}
	}
	t.Skip("no guest kernel modules under build/guest/lib/modules (unpack linux-image-*-amd64 there)")
	return ""
}

func TestBuild(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linux only")
	}
	mods := modulesDir(t)
	tmp := t.TempDir()
	// Any static ELF will do as /init here; use a small Go binary.
	agent := filepath.Join(tmp, "agent")
	if err := BuildAgent(context.Background(), repoRoot(t), "", agent); err != nil {
		t.Fatal(err)
	}
	out1 := filepath.Join(tmp, "a.cpio.gz")
	res, err := Build(Options{AgentPath: agent, ModulesDir: mods, Output: out1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initramfs: %d bytes, sha256 %s, %d modules, missing optional %v", res.Size, res.SHA256, len(res.Modules), res.Missing)
	t.Logf("order:\n%s", strings.Join(res.Modules, "\n"))

	pos := map[string]int{}
	for i, p := range res.Modules {
		pos[strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")] = i
	}
	before := func(a, b string) {
		t.Helper()
		ia, oka := pos[a]
		ib, okb := pos[b]
		if !oka || !okb {
			t.Errorf("missing %s or %s in order", a, b)
			return
		}
		if ia >= ib {
			t.Errorf("%s (%d) must load before %s (%d)", a, ia, b, ib)
		}
	}
	before("virtio_ring", "virtio_pci")
	before("virtio", "virtio_pci")
	before("virtio", "virtio_blk")
	before("jbd2", "ext4")
	before("mbcache", "ext4")
	before("crc16", "ext4")
	before("crc32c_generic", "ext4")
	before("virtio_pci", "virtio_console")

	// Deterministic: a second build is byte-identical.
	out2 := filepath.Join(tmp, "b.cpio.gz")
	res2, err := Build(Options{AgentPath: agent, ModulesDir: mods, Output: out2})
	if err != nil {
		t.Fatal(err)
	}
	if res2.SHA256 != res.SHA256 {
		t.Fatalf("not deterministic: %s vs %s", res.SHA256, res2.SHA256)
	}

	// The archive holds /init, the modules and ORDER.
	f, err := os.Open(out1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(gz)
	seen := map[string]*cpio.Header{}
	var order []byte
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h
		if h.Name == "lib/modules/ORDER" {
			order, _ = io.ReadAll(r)
		}
	}
	if h := seen["init"]; h == nil || h.Mode.Perm() != 0o755 || !h.Mode.IsRegular() {
		t.Fatalf("bad /init entry %+v", h)
	}
	if !bytes.Equal(order, []byte(strings.Join(res.Modules, "\n")+"\n")) {
		t.Fatalf("ORDER file differs from Result.Modules")
	}
	for _, m := range res.Modules {
		if seen[strings.TrimPrefix(m, "/")] == nil {
			t.Errorf("module %s not in archive", m)
		}
	}
}

func TestMissingRequired(t *testing.T) {
	mods := modulesDir(t)
	tmp := t.TempDir()
	agent := filepath.Join(tmp, "agent")
	if err := BuildAgent(context.Background(), repoRoot(t), "", agent); err != nil {
		t.Fatal(err)
	}
	_, err := Build(Options{AgentPath: agent, ModulesDir: mods, Output: filepath.Join(tmp, "x"), Modules: []string{"no_such_module"}, OptionalModules: []string{}})
	if err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Fatalf("err %v", err)
	}
	res, err := Build(Options{AgentPath: agent, ModulesDir: mods, Output: filepath.Join(tmp, "y"), Modules: []string{}, OptionalModules: []string{"no_such_module"}})
	if err != nil || len(res.Missing) != 1 {
		t.Fatalf("optional: %v %+v", err, res.Missing)
	}
}

func TestRejectsDynamicAgent(t *testing.T) {
	if _, err := os.Stat("/bin/ls"); err != nil {
		t.Skip("no /bin/ls")
	}
	_, err := Build(Options{AgentPath: "/bin/ls", ModulesDir: t.TempDir(), Output: filepath.Join(t.TempDir(), "x")})
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("err %v", err)
	}
}
