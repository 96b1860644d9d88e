package imagestore

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
)

// TestBuildSupport covers what the builder uses: lazy commits with a
// parent, the file queries that read layers, and dockerd's treatment of
// intermediate images (hidden from the list, never dangling, deleted with
// their last child).
func TestBuildSupport(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t, "")
	base := makeLayer(t, dir("etc/", 0o755), file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), dir("gone/", 0o755), file("gone/f", "x"), dir("opq/", 0o755), file("opq/old", "o"))
	parent := recordImage(t, s, makeImage(t, []string{"sh"}, nil, base), "base:1")

	step := func(parentID string, layer []byte) *Image {
		t.Helper()
		opts := CommitOptions{Parent: parentID, Config: &container.Config{Cmd: []string{"sh"}}, CreatedBy: "step", LazyDisk: true}
		var img *Image
		var err error
		if layer == nil {
			opts.EmptyLayer = true
			img, err = s.Commit(ctx, nil, opts)
		} else {
			img, err = s.Commit(ctx, bytes.NewReader(layer), opts)
		}
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	mid := step(parent.ID.String(), rawTar(t, dir("app/", 0o750), file("app/x", "12345"), file(".wh.gone", ""), dir("opq/", 0o755), file("opq/.wh..wh..opq", ""), file("opq/new", "n")))
	top := step(mid.ID.String(), nil)
	if mid.Parent != parent.ID || top.Parent != mid.ID {
		t.Fatalf("parents: %s %s", mid.Parent, top.Parent)
	}
	if _, err := os.Stat(s.diskPath(mid.ID)); err == nil {
		t.Error("a lazy commit built a disk")
	}
	if mid.Size != parent.Size+6 || top.Size != mid.Size {
		t.Errorf("sizes: parent %d, mid %d, top %d", parent.Size, mid.Size, top.Size)
	}

	modes, err := s.StatPaths(ctx, top.ID.String(), []string{"/app", "/app/x", "/etc", "/etc/passwd", "/gone", "/gone/f", "/opq/old", "/opq/new", "/nope", "/"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]fs.FileMode{"/app": fs.ModeDir | 0o750, "/app/x": 0o644, "/etc": fs.ModeDir | 0o755, "/etc/passwd": 0o644, "/opq/new": 0o644, "/": fs.ModeDir | 0o755}
	if len(modes) != len(want) {
		t.Errorf("StatPaths = %v, want %v", modes, want)
	}
	for p, m := range want {
		if modes[p] != m {
			t.Errorf("StatPaths[%s] = %v, want %v", p, modes[p], m)
		}
	}
	b, ok, err := s.ReadFile(ctx, top.ID.String(), "/etc/passwd", 1<<20)
	if err != nil || !ok || string(b) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("ReadFile: %q %v %v", b, ok, err)
	}
	if _, ok, _ := s.ReadFile(ctx, top.ID.String(), "/gone/f", 1<<20); ok {
		t.Error("ReadFile found a whited-out file")
	}
	if _, _, err := s.ReadFile(ctx, top.ID.String(), "/etc/passwd", 4); err == nil {
		t.Error("ReadFile read past its bound")
	}

	dir := t.TempDir()
	if err := s.Unpack(ctx, top.ID.String(), dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "app/x")); err != nil || string(b) != "12345" {
		t.Errorf("unpacked app/x: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "gone")); err == nil {
		t.Error("unpack kept a whited-out directory")
	}

	// The base disk is made on demand.
	if _, err := s.BaseDisk(ctx, top.ID.String()); err != nil {
		t.Fatal(err)
	}

	// mid is an intermediate image: listed with -a only, never dangling,
	// and a child keeps it from deletion.
	if err := s.Tag(top.ID.String(), "built", "1"); err != nil {
		t.Fatal(err)
	}
	listed := func(all bool, f filters.Args) map[string]bool {
		l, err := s.List(image.ListOptions{All: all, Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, i := range l {
			out[i.ID] = true
		}
		return out
	}
	if listed(false, filters.NewArgs())[mid.ID.String()] || !listed(true, filters.NewArgs())[mid.ID.String()] ||
		listed(false, filters.NewArgs(filters.Arg("dangling", "true")))[mid.ID.String()] {
		t.Error("intermediate image listing")
	}
	if _, err := s.Delete(mid.ID.String(), false, true, nil); err == nil {
		t.Error("deleted an image with a child")
	}
	rep, err := s.Prune(filters.NewArgs(), nil)
	if err != nil || len(rep.ImagesDeleted) != 0 {
		t.Errorf("prune removed an intermediate image: %+v %v", rep, err)
	}
	// Deleting the tagged child deletes the chain up to the tagged base.
	recs, err := s.Delete("built:1", false, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, r := range recs {
		if r.Deleted != "" {
			deleted = append(deleted, r.Deleted)
		}
	}
	if _, err := s.Resolve(mid.ID.String()); err == nil {
		t.Errorf("intermediate image survived its child (deleted %v)", deleted)
	}
	if _, err := s.Resolve("base:1"); err != nil {
		t.Errorf("the tagged base went too: %v", err)
	}
}
