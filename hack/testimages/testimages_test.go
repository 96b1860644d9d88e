package testimages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func layerMembers(t *testing.T, lay *layout, l builtLayer) []*tar.Header {
	t.Helper()
	f, err := os.Open(lay.blobPath(l.Desc.Digest))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var hs []*tar.Header
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs
		}
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
}

func TestMemLayerDeterministicAndWhiteouts(t *testing.T) {
	build := func() (builtLayer, *layout) {
		lay, err := newLayout(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		l := newMemLayer()
		l.file("b/z", 0o600, 7, 8, []byte("z"))
		l.file("a/file", 0o644, 0, 0, []byte("hello"))
		l.whiteout("b/gone")
		l.opaque("c")
		l.symlink("bin/sh", "/bin/busybox")
		l.dir("tmp", 0o1777, 0, 0)
		bl, err := writeLayer(lay, l.list())
		if err != nil {
			t.Fatal(err)
		}
		return bl, lay
	}
	l1, lay := build()
	l2, _ := build()
	if l1.Desc.Digest != l2.Desc.Digest || l1.DiffID != l2.DiffID || l1.Desc.Size != l2.Desc.Size {
		t.Fatalf("rebuild differs: %+v vs %+v", l1, l2)
	}
	var names []string
	for _, h := range layerMembers(t, lay, l1) {
		names = append(names, h.Name)
		if !h.ModTime.Equal(Epoch) {
			t.Errorf("%s: mtime %v", h.Name, h.ModTime)
		}
		switch h.Name {
		case "b/z":
			if h.Uid != 7 || h.Gid != 8 || h.Mode != 0o600 {
				t.Errorf("b/z: uid %d gid %d mode %o", h.Uid, h.Gid, h.Mode)
			}
		case "tmp/":
			if h.Mode != 0o1777 {
				t.Errorf("tmp: mode %o", h.Mode)
			}
		}
	}
	want := []string{"a/", "a/file", "b/", "b/.wh.gone", "b/z", "bin/", "bin/sh", "c/", "c/.wh..wh..opq", "tmp/"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("members %q, want %q", names, want)
	}
}

// TestDiffEntries checks that base + diff layer, applied with containerd's
// archive.Apply, reproduces the upper tree: additions, changes, deletions
// (whiteouts), a directory replaced by a file, hard links.
func TestDiffEntries(t *testing.T) {
	base, upper := t.TempDir(), t.TempDir()
	write := func(root, p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, root := range []string{base, upper} {
		write(root, "same/file", "same")
		write(root, "etc/changed", "v1")
		write(root, "etc/mode", "m")
	}
	write(base, "gone/deep/file", "x")
	write(base, "etc/removed", "r")
	write(base, "swap/child", "c")
	write(upper, "etc/changed", "v2")
	os.Chmod(filepath.Join(upper, "etc/mode"), 0o600)
	write(upper, "new/dir/file", "n")
	write(upper, "swap", "now a file")
	write(upper, "links/a", "linked")
	if err := os.Link(filepath.Join(upper, "links/a"), filepath.Join(upper, "links/b")); err != nil {
		t.Fatal(err)
	}

	lower, err := scanTree(base, scanOptions{hash: true})
	if err != nil {
		t.Fatal(err)
	}
	up, err := scanTree(upper, scanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := diffEntries(lower, up)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.name)
	}
	want := []string{"etc", "etc/.wh.removed", "etc/changed", "etc/mode", ".wh.gone", "links", "links/a", "links/b", "new", "new/dir", "new/dir/file", "swap"}
	sort.Strings(want)
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("diff %q\nwant %q", names, want)
	}

	lay, err := newLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	full, err := writeLayer(lay, treeEntries(lower))
	if err != nil {
		t.Fatal(err)
	}
	diff, err := writeLayer(lay, entries)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range layerMembers(t, lay, diff) {
		if h.Name == "links/b" && h.Typeflag != tar.TypeLink {
			t.Errorf("links/b should be a hard link, type %c", h.Typeflag)
		}
	}
	out := t.TempDir()
	for _, l := range []builtLayer{full, diff} {
		if err := applyLayer(context.Background(), out, lay.blobPath(l.Desc.Digest)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := scanTree(out, scanOptions{hash: true})
	if err != nil {
		t.Fatal(err)
	}
	exp, err := scanTree(upper, scanOptions{hash: true})
	if err != nil {
		t.Fatal(err)
	}
	describe := func(ns []*fsNode) string {
		var b strings.Builder
		for _, n := range ns {
			fmt.Fprintf(&b, "%s %c %o %x\n", n.name, n.typ, n.mode, n.hash)
		}
		return b.String()
	}
	if describe(got) != describe(exp) {
		t.Errorf("base+diff:\n%s\nupper:\n%s", describe(got), describe(exp))
	}
}

func needApt(t *testing.T) {
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not available: %v", tool, err)
		}
	}
}

// TestReproducibleAndConcurrent builds the busybox-based images twice, in
// two fresh caches and by two concurrent callers on the same cache: every
// build must give the same digests, and a warm call must be fast.
func TestReproducibleAndConcurrent(t *testing.T) {
	needApt(t)
	names := []string{Busybox, Web, Layers}
	ctx := context.Background()
	shared := t.TempDir()
	results := make([]*Images, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range results {
		dir := shared
		if i == 2 {
			dir = t.TempDir()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Ensure(ctx, Options{CacheDir: dir, Names: names, Logf: t.Logf})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, set := range results[1:] {
		for i, img := range set.List {
			if img.Manifest.Digest != results[0].List[i].Manifest.Digest {
				t.Errorf("%s: %s vs %s", img.Name, img.Manifest.Digest, results[0].List[i].Manifest.Digest)
			}
		}
	}
	tar1, _ := os.ReadFile(results[0].BusyboxTar)
	tar2, _ := os.ReadFile(results[2].BusyboxTar)
	if len(tar1) == 0 || !bytes.Equal(tar1, tar2) {
		t.Errorf("busybox.tar differs between builds (%d, %d bytes)", len(tar1), len(tar2))
	}
	start := time.Now()
	if _, err := Ensure(ctx, Options{CacheDir: shared, Names: names}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("warm Ensure took %s", d)
	}
	ents, _ := os.ReadDir(shared)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".build-") {
			t.Errorf("leftover %s", e.Name())
		}
	}
}

func TestRegistryStartStop(t *testing.T) {
	if _, err := os.Stat(RegistryBinary); err != nil {
		t.Skipf("%s not installed", RegistryBinary)
	}
	dir := t.TempDir()
	reg, err := StartRegistry(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Stop()
	resp, err := http.Get(reg.URL("/v2/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}
	// A second registry on the same address must fail, not hang.
	if r2, err := StartRegistry(context.Background(), t.TempDir(), reg.Addr); err == nil {
		r2.Stop()
		t.Errorf("second registry on %s started", reg.Addr)
	}
	pid := reg.Pid()
	reg.Stop()
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("pid %d alive after Stop: %v", pid, err)
	}
}
