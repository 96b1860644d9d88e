package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
)

func rawTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

func TestCommit(t *testing.T) {
	findToolT(t, "mke2fs")
	findToolT(t, "debugfs")
	s := newTestStore(t, "")
	base := makeLayer(t, dir("etc/", 0o755), file("etc/passwd", "root\n"), file("etc/group", "root\n"))
	parent := recordImage(t, s, makeImage(t, []string{"sh"}, map[string]string{"a": "1"}, base), "base:1")

	// The container's changes: a new file, a modified one, a deletion.
	layer := rawTar(t,
		dir("etc/", 0o755),
		file("etc/.wh.group", ""),
		file("etc/passwd", "root\nu\n"),
		file("new", "x\n"),
	)
	cfg := &container.Config{
		Cmd:          []string{"cat", "/new"},
		Env:          []string{"PATH=/bin", "FOO=bar"},
		WorkingDir:   "/srv",
		Labels:       map[string]string{"a": "1", "b": "2"},
		ExposedPorts: nat.PortSet{"80/tcp": {}},
	}
	img, err := s.Commit(context.Background(), bytes.NewReader(layer), CommitOptions{
		Parent: parent.ID.String(), Config: cfg, Author: "me", Comment: "snap",
		CreatedBy: "sh -c echo", Repo: "newimg", Tag: "1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.RepoTags) != 1 || img.RepoTags[0] != "newimg:1" {
		t.Errorf("tags %v", img.RepoTags)
	}
	if n := len(img.Config.RootFS.DiffIDs); n != 2 || len(img.Layers) != 2 {
		t.Fatalf("%d diff IDs, %d layers", n, len(img.Layers))
	}
	if img.Layers[0].Digest != parent.Layers[0].Digest {
		t.Errorf("parent layer not reused")
	}
	h := img.Config.History[len(img.Config.History)-1]
	if h.Author != "me" || h.Comment != "snap" || h.CreatedBy != "sh -c echo" || h.EmptyLayer {
		t.Errorf("history %+v", h)
	}
	cc := img.ContainerConfig()
	if strings.Join(cc.Cmd, " ") != "cat /new" || cc.WorkingDir != "/srv" || cc.Labels["b"] != "2" || len(cc.ExposedPorts) != 1 || cc.Env[1] != "FOO=bar" {
		t.Errorf("config %+v", cc)
	}
	if img.Config.Author != "me" {
		t.Errorf("author %q", img.Config.Author)
	}
	// The image's disk has the container's files.
	disk, err := s.BaseDisk(context.Background(), "newimg:1")
	if err != nil {
		t.Fatal(err)
	}
	if out := debugfs(t, disk, "cat /new"); !strings.HasSuffix(out, ")\nx\n") {
		t.Errorf("/new = %q", out)
	}
	if out := debugfs(t, disk, "cat /etc/passwd"); !strings.HasSuffix(out, ")\nroot\nu\n") {
		t.Errorf("/etc/passwd = %q", out)
	}
	if out := debugfs(t, disk, "stat /etc/group"); !strings.Contains(out, "not found") {
		t.Errorf("/etc/group still there: %s", out)
	}
	if ii, err := s.Inspect("newimg:1"); err != nil || ii.Comment != "snap" || ii.Author != "me" {
		t.Errorf("inspect: %+v %v", ii, err)
	}

	// No changes: no new layer, an empty_layer history entry; untagged.
	empty := rawTar(t)
	img2, err := s.Commit(context.Background(), bytes.NewReader(empty), CommitOptions{Parent: img.ID.String(), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if len(img2.Layers) != 2 || !img2.Config.History[len(img2.Config.History)-1].EmptyLayer || len(img2.RepoTags) != 0 {
		t.Errorf("empty commit: %d layers, history %+v, tags %v", len(img2.Layers), img2.Config.History, img2.RepoTags)
	}

	// A bad repository name is refused before anything is stored.
	if _, err := s.Commit(context.Background(), bytes.NewReader(empty), CommitOptions{Parent: img.ID.String(), Config: cfg, Repo: "Bad Name"}); err == nil {
		t.Errorf("bad repo accepted")
	}
}
