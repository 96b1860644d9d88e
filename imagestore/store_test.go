package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// recordImage puts img's blobs in the store and records it under refs (the
// first one as if pulled, with its digest reference; the rest as tags).
func recordImage(t *testing.T, s *Store, img *testImage, refs ...string) *Image {
	t.Helper()
	putBlobs(t, s, img)
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(img.config, &cfg); err != nil {
		t.Fatal(err)
	}
	var rec *Image
	if len(refs) == 0 {
		s.mu.Lock()
		s.images[img.configDesc.Digest] = &Image{
			ID: img.configDesc.Digest, Target: img.manifestDesc, Manifest: img.manifestDesc,
			ConfigDescriptor: img.configDesc, Layers: layerDescs(img), Config: cfg, Pulled: time.Now(),
		}
		if err := s.saveLocked(); err != nil {
			t.Fatal(err)
		}
		rec = s.copyLocked(s.images[img.configDesc.Digest])
		s.mu.Unlock()
		return rec
	}
	named, err := ParseReference(refs[0])
	if err != nil {
		t.Fatal(err)
	}
	manifest := manifestOf(t, img)
	rec, _, err = s.commitPull(named, img.configDesc.Digest, img.manifestDesc, img.manifestDesc, manifest, cfg, 1234)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs[1:] {
		n, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			t.Fatal(err)
		}
		n = reference.TagNameOnly(n)
		if err := s.Tag(img.configDesc.Digest.String(), reference.FamiliarName(n), n.(reference.Tagged).Tag()); err != nil {
			t.Fatal(err)
		}
	}
	return rec
}

func manifestOf(t *testing.T, img *testImage) *ocispec.Manifest {
	var m ocispec.Manifest
	if err := json.Unmarshal(img.manifest, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

func layerDescs(img *testImage) (out []ocispec.Descriptor) {
	for _, l := range img.layers {
		out = append(out, l.desc)
	}
	return out
}

func simpleImage(t *testing.T, name string) *testImage {
	l := makeLayer(t, dir("etc/", 0o755), file("etc/name", name))
	return makeImage(t, []string{"/bin/sh", "-c", "echo " + name}, map[string]string{"name": name}, l)
}

func TestParseReference(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, tc := range []struct{ in, want, err string }{
		{"busybox", "docker.io/library/busybox:latest", ""},
		{"busybox:1.36", "docker.io/library/busybox:1.36", ""},
		{"library/busybox", "docker.io/library/busybox:latest", ""},
		{"docker.io/library/busybox:latest", "docker.io/library/busybox:latest", ""},
		{"user/app", "docker.io/user/app:latest", ""},
		{"localhost:5000/busybox", "localhost:5000/busybox:latest", ""},
		{"127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1", ""},
		{"busybox@sha256:" + hex, "docker.io/library/busybox@sha256:" + hex, ""},
		{"busybox:1.36@sha256:" + hex, "docker.io/library/busybox@sha256:" + hex, ""},
		{"Busybox", "", "invalid reference format: repository name (library/Busybox) must be lowercase"},
		{"busybox:", "", "invalid reference format"},
		{"-busybox", "", "invalid reference format"},
		{"a b", "", "invalid reference format"},
	} {
		got, err := ParseReference(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err || !errdefs.IsInvalidParameter(err) {
				t.Errorf("ParseReference(%q) = %v, %v; want InvalidParameter %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseReference(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestResolve(t *testing.T) {
	s := newTestStore(t, "")
	a := simpleImage(t, "a")
	b := simpleImage(t, "b")
	recA := recordImage(t, s, a, "busybox")
	recordImage(t, s, b, "localhost:5000/app:v1")
	hex := recA.ID.Encoded()

	if got := recA.RepoTags; len(got) != 1 || got[0] != "busybox:latest" {
		t.Fatalf("RepoTags = %v", got)
	}
	if got := recA.RepoDigests; len(got) != 1 || got[0] != "busybox@"+a.manifestDesc.Digest.String() {
		t.Fatalf("RepoDigests = %v", got)
	}
	for _, name := range []string{
		"busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox",
		"docker.io/library/busybox:latest", "busybox@" + a.manifestDesc.Digest.String(),
		recA.ID.String(), hex, hex[:12], hex[:5], "sha256:" + hex[:7],
	} {
		img, err := s.Resolve(name)
		if err != nil || img.ID != recA.ID {
			t.Errorf("Resolve(%q) = %v, %v", name, img, err)
		}
	}
	if img, err := s.Resolve("localhost:5000/app:v1"); err != nil || img.ID == recA.ID {
		t.Errorf("Resolve(localhost:5000/app:v1) = %v, %v", img, err)
	}
	for name, msg := range map[string]string{
		"nosuch":                            "No such image: nosuch:latest",
		"busybox:1.0":                       "No such image: busybox:1.0",
		"localhost:5000/app":                "No such image: localhost:5000/app:latest",
		"sha256:" + strings.Repeat("0", 64): "No such image: sha256:" + strings.Repeat("0", 64),
	} {
		_, err := s.Resolve(name)
		if err == nil || !errdefs.IsNotFound(err) || err.Error() != msg {
			t.Errorf("Resolve(%q) error = %v, want NotFound %q", name, err, msg)
		}
	}
	if _, err := s.Resolve("Bad"); !errdefs.IsInvalidParameter(err) {
		t.Errorf("Resolve(Bad) = %v, want InvalidParameter", err)
	}

	// Ambiguous prefixes: with 17 more IDs two share their first digit.
	s2 := newTestStore(t, "")
	byFirst := map[byte]int{}
	for i := 0; i < 17; i++ {
		id := digest.FromString(fmt.Sprint("img", i))
		s2.images[id] = &Image{ID: id}
		byFirst[id.Encoded()[0]]++
	}
	for c, n := range byFirst {
		_, err := s2.Resolve(string(c))
		if n > 1 && !errdefs.IsNotFound(err) {
			t.Errorf("ambiguous prefix %c: err = %v", c, err)
		}
		if n == 1 && err != nil {
			t.Errorf("unique prefix %c: err = %v", c, err)
		}
	}
}

func TestLayersWhiteoutsAndExt4(t *testing.T) {
	findToolT(t, "mke2fs")
	findToolT(t, "debugfs")
	owned := func(e entry) entry { e.uid, e.gid = 1000, 1000; return e }
	dev := entry{name: "dev/testnull", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3}
	xf := file("etc/xattr", "x")
	xf.xattrs = map[string]string{"user.test": "hello"}
	l1 := makeLayer(t,
		dir("etc/", 0o755),
		file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
		file("etc/deleteme", "gone"),
		xf,
		dir("opq/", 0o755), file("opq/old1", "1"), dir("opq/sub/", 0o755), file("opq/sub/old2", "2"),
		dir("home/", 0o755), owned(dir("home/user/", 0o750)), owned(file("home/user/file", "mine")),
		dir("bin/", 0o755),
		entry{name: "bin/target", typ: tar.TypeReg, mode: 0o755, body: "#!/bin/sh\necho hi\n"},
		symlink("bin/link", "target"),
		entry{name: "bin/hard", typ: tar.TypeLink, mode: 0o755, link: "bin/target"}, // same inode, same mode
		dir("dev/", 0o755), dev,
	)
	l2 := makeLayer(t,
		dir("etc/", 0o755),
		whiteout("etc/", "deleteme"),
		file("etc/added", "new"),
		dir("opq/", 0o755), file("opq/.wh..wh..opq", ""), file("opq/new", "n"),
	)
	img := makeImage(t, []string{"sh"}, nil, l1, l2)
	s := newTestStore(t, "")
	rec := recordImage(t, s, img, "layers:test")

	start := time.Now()
	disk, err := s.BaseDisk(context.Background(), "layers:test")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %v", filepath.Base(disk), time.Since(start))
	st, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != s.DiskSize() {
		t.Errorf("disk size = %d, want %d", st.Size(), s.DiskSize())
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp not cleaned: %v", ents)
	}
	if got, _ := s.Get(rec.ID.String()); got.Size == 0 {
		t.Errorf("size not recorded")
	}

	etc := debugfs(t, disk, "ls -l /etc")
	if !strings.Contains(etc, "passwd") || !strings.Contains(etc, "added") || strings.Contains(etc, "deleteme") || strings.Contains(etc, ".wh.") {
		t.Errorf("/etc after whiteout:\n%s", etc)
	}
	opq := debugfs(t, disk, "ls -l /opq")
	if !strings.Contains(opq, "new") || strings.Contains(opq, "old1") || strings.Contains(opq, "sub") || strings.Contains(opq, ".wh.") {
		t.Errorf("/opq after opaque marker:\n%s", opq)
	}
	ownerRe := regexp.MustCompile(`User:\s+1000\s+Group:\s+1000`)
	for _, p := range []string{"/home/user", "/home/user/file"} {
		if out := debugfs(t, disk, "stat "+p); !ownerRe.MatchString(out) {
			t.Errorf("%s not owned by 1000:1000:\n%s", p, out)
		}
	}
	if out := debugfs(t, disk, "stat /home/user"); !strings.Contains(out, "Mode:  0750") {
		t.Errorf("/home/user mode:\n%s", out)
	}
	if out := debugfs(t, disk, "stat /bin/link"); !strings.Contains(out, "Type: symlink") || !strings.Contains(out, `"target"`) {
		t.Errorf("/bin/link:\n%s", out)
	}
	inode := regexp.MustCompile(`Inode: (\d+)`)
	t1 := inode.FindStringSubmatch(debugfs(t, disk, "stat /bin/target"))
	t2 := inode.FindStringSubmatch(debugfs(t, disk, "stat /bin/hard"))
	if t1 == nil || t2 == nil || t1[1] != t2[1] {
		t.Errorf("hardlink not preserved: %v vs %v", t1, t2)
	}
	if out := debugfs(t, disk, "stat /bin/target"); !strings.Contains(out, "Links: 2") || !strings.Contains(out, "Mode:  0755") {
		t.Errorf("/bin/target:\n%s", out)
	}
	if out := debugfs(t, disk, "stat /dev/testnull"); !strings.Contains(out, "character special") {
		t.Errorf("/dev/testnull:\n%s", out)
	}
	if out := debugfs(t, disk, "ea_list /etc/xattr"); !strings.Contains(out, "user.test") || !strings.Contains(out, "hello") {
		t.Errorf("xattr lost:\n%s", out)
	}
	if out := debugfs(t, disk, "cat /etc/passwd"); !strings.Contains(out, "root:x:0:0") {
		t.Errorf("passwd content:\n%s", out)
	}
	if out := debugfs(t, disk, "stat /"); !regexp.MustCompile(`User:\s+0\s+Group:\s+0`).MatchString(out) {
		t.Errorf("root dir owner:\n%s", out)
	}

	// A second call does not rebuild.
	n := s.buildCount.Load()
	if _, err := s.BaseDisk(context.Background(), rec.ID.String()); err != nil {
		t.Fatal(err)
	}
	if s.buildCount.Load() != n {
		t.Errorf("disk rebuilt")
	}
}

func TestDiffIDMismatch(t *testing.T) {
	findToolT(t, "mke2fs")
	l := makeLayer(t, file("a", "a"))
	l.diffID = digest.FromString("not the layer")
	img := makeImage(t, nil, nil, l)
	s := newTestStore(t, "")
	recordImage(t, s, img, "bad:diffid")
	if _, err := s.BaseDisk(context.Background(), "bad:diffid"); err == nil || !strings.Contains(err.Error(), "diff ID mismatch") {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp not cleaned: %v", ents)
	}
}

func users(ids []string, running bool) UsersFunc {
	return func(string) ([]string, bool) { return ids, running }
}

func untagged(recs []image.DeleteResponse) []string {
	var out []string
	for _, r := range recs {
		if r.Untagged != "" {
			out = append(out, r.Untagged)
		}
	}
	return out
}

func deleted(recs []image.DeleteResponse) []string {
	var out []string
	for _, r := range recs {
		if r.Deleted != "" {
			out = append(out, r.Deleted)
		}
	}
	return out
}

func TestDeleteConflicts(t *testing.T) {
	s := newTestStore(t, "")
	img := simpleImage(t, "x")
	rec := recordImage(t, s, img, "busybox", "busybox:other")
	id := rec.ID.String()
	short := rec.ShortID()
	ctr := "c1abcdef0123456789c1abcdef0123456789"
	dgstRef := "busybox@" + img.manifestDesc.Digest.String()
	none := users(nil, false)

	// Untagging one of several tags just untags.
	recs, err := s.Delete("busybox:other", false, false, none)
	if err != nil || len(recs) != 1 || recs[0].Untagged != "busybox:other" {
		t.Fatalf("untag: %v %v", recs, err)
	}

	if err := s.Tag("busybox", "foo", ""); err != nil {
		t.Fatal(err)
	}
	// By ID with tags in several repositories: must be forced.
	_, err = s.Delete(rec.ID.Encoded(), false, false, none)
	want := fmt.Sprintf("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", short)
	if err == nil || !errdefs.IsConflict(err) || err.Error() != want {
		t.Fatalf("delete by id: %v, want %q", err, want)
	}

	stopped := users([]string{ctr}, false)
	running := users([]string{ctr}, true)

	// Several repositories: a name just untags even with a container.
	recs, err = s.Delete("foo", false, false, stopped)
	if err != nil || strings.Join(untagged(recs), ",") != "foo:latest" || len(deleted(recs)) != 0 {
		t.Fatalf("untag foo: %v %v", recs, err)
	}
	// Last tag, used by a stopped container.
	_, err = s.Delete("busybox", false, false, stopped)
	want = fmt.Sprintf(`conflict: unable to remove repository reference "busybox" (must force) - container %s is using its referenced image %s`, ctr[:12], short)
	if err == nil || !errdefs.IsConflict(err) || err.Error() != want {
		t.Fatalf("stopped: %v, want %q", err, want)
	}
	// By ID, running container, even forced.
	_, err = s.Delete(short, true, false, running)
	want = fmt.Sprintf("conflict: unable to delete %s (cannot be forced) - image is being used by running container %s", short, ctr[:12])
	if err == nil || !errdefs.IsConflict(err) || err.Error() != want {
		t.Fatalf("running: %v, want %q", err, want)
	}
	// By ID, stopped container, not forced.
	_, err = s.Delete(id, false, false, stopped)
	want = fmt.Sprintf("conflict: unable to delete %s (must be forced) - image is being used by stopped container %s", short, ctr[:12])
	if err == nil || !errdefs.IsConflict(err) || err.Error() != want {
		t.Fatalf("stopped by id: %v, want %q", err, want)
	}
	if _, err := s.Get(id); err != nil {
		t.Fatalf("image gone after conflicts: %v", err)
	}
	// Forced by name with a running container: dockerd untags and keeps
	// the image.
	recs, err = s.Delete("busybox", true, false, running)
	if err != nil || strings.Join(untagged(recs), ",") != "busybox:latest,"+dgstRef || len(deleted(recs)) != 0 {
		t.Fatalf("forced untag: %v %v", recs, err)
	}
	if got, err := s.Get(id); err != nil || len(got.RepoTags) != 0 {
		t.Fatalf("dangling image: %v %v", got, err)
	}

	// Give it a disk, then force-delete it with a stopped container: the
	// disk stays for the container until GCDisks.
	findToolT(t, "mke2fs")
	disk, err := s.BaseDisk(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	recs, err = s.Delete(id, true, false, stopped)
	if err != nil || len(deleted(recs)) == 0 || deleted(recs)[0] != id {
		t.Fatalf("forced delete: %v %v", recs, err)
	}
	if _, err := os.Stat(disk); err != nil {
		t.Fatalf("disk of a used image removed: %v", err)
	}
	if _, err := s.Get(id); !errdefs.IsNotFound(err) {
		t.Fatalf("image still there: %v", err)
	}
	s.GCDisks(stopped)
	if _, err := os.Stat(disk); err != nil {
		t.Fatalf("disk removed while used: %v", err)
	}
	s.GCDisks(none)
	if _, err := os.Stat(disk); !os.IsNotExist(err) {
		t.Fatalf("orphan disk not collected: %v", err)
	}
	if _, err := s.cs.Info(context.Background(), img.layers[0].desc.Digest); err == nil {
		t.Fatalf("layer blob not collected")
	}
}

func TestDeleteSharedLayers(t *testing.T) {
	findToolT(t, "mke2fs")
	s := newTestStore(t, "")
	base := makeLayer(t, dir("etc/", 0o755), file("etc/os-release", "ID=test\n"))
	top1 := makeLayer(t, file("one", "1"))
	top2 := makeLayer(t, file("two", "2"))
	img1 := makeImage(t, []string{"one"}, nil, base, top1)
	img2 := makeImage(t, []string{"two"}, nil, base, top2)
	r1 := recordImage(t, s, img1, "one")
	recordImage(t, s, img2, "two")
	disk, err := s.BaseDisk(context.Background(), "one")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.Delete("one", false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantUntag := "one:latest,one@" + img1.manifestDesc.Digest.String()
	if strings.Join(untagged(recs), ",") != wantUntag {
		t.Errorf("untagged = %v, want %s", untagged(recs), wantUntag)
	}
	del := deleted(recs)
	if len(del) != 2 || del[0] != r1.ID.String() {
		t.Errorf("deleted = %v (want image + top layer chain)", del)
	}
	if _, err := os.Stat(disk); !os.IsNotExist(err) {
		t.Errorf("disk not removed")
	}
	ctx := context.Background()
	if _, err := s.cs.Info(ctx, base.desc.Digest); err != nil {
		t.Errorf("shared layer removed: %v", err)
	}
	if _, err := s.cs.Info(ctx, top1.desc.Digest); err == nil {
		t.Errorf("unshared layer kept")
	}
	if _, err := s.cs.Info(ctx, img1.configDesc.Digest); err == nil {
		t.Errorf("config kept")
	}
	if s.Count() != 1 {
		t.Errorf("Count = %d", s.Count())
	}
}

func TestTagListPrunePersistence(t *testing.T) {
	root := t.TempDir()
	s := newTestStore(t, root)
	a := recordImage(t, s, simpleImage(t, "a"), "alpha:1")
	time.Sleep(1100 * time.Millisecond) // distinct creation seconds
	b := recordImage(t, s, simpleImage(t, "b"), "beta:1")
	c := recordImage(t, s, simpleImage(t, "c")) // dangling

	for _, tc := range []struct{ repo, tag, err string }{
		{"Alpha", "", "invalid reference format: repository name (library/Alpha) must be lowercase"},
		{"alpha", "bad tag", "invalid tag format"},
		{"", "", "repository name must have at least one component"},
		{"sha256", "x", "refusing to create an ambiguous tag using digest algorithm as name"},
	} {
		if err := s.Tag("alpha:1", tc.repo, tc.tag); err == nil || !errdefs.IsInvalidParameter(err) || err.Error() != tc.err {
			t.Errorf("Tag(%q,%q) = %v, want %q", tc.repo, tc.tag, err, tc.err)
		}
	}
	if err := s.Tag("nosuch", "x", ""); !errdefs.IsNotFound(err) {
		t.Errorf("Tag(nosuch) = %v", err)
	}
	if err := s.Tag("alpha:1", "localhost:5000/alpha", "v2"); err != nil {
		t.Fatal(err)
	}
	if img, _ := s.Get("localhost:5000/alpha:v2"); img == nil || img.ID != a.ID {
		t.Fatal("tag not resolvable")
	}

	list := func(f filters.Args, all bool) []string {
		t.Helper()
		sums, err := s.List(image.ListOptions{Filters: f, All: all})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, x := range sums {
			ids = append(ids, x.ID)
		}
		return ids
	}
	sums, _ := s.List(image.ListOptions{})
	if len(sums) != 3 || sums[2].ID != a.ID.String() {
		t.Errorf("List order: %+v", sums)
	}
	if got := list(filters.NewArgs(filters.Arg("reference", "alpha")), false); len(got) != 1 || got[0] != a.ID.String() {
		t.Errorf("reference=alpha: %v", got)
	}
	if got := list(filters.NewArgs(filters.Arg("reference", "localhost:5000/*")), false); len(got) != 1 {
		t.Errorf("reference=localhost:5000/*: %v", got)
	}
	if got := list(filters.NewArgs(filters.Arg("dangling", "true")), false); len(got) != 1 || got[0] != c.ID.String() {
		t.Errorf("dangling=true: %v", got)
	}
	if got := list(filters.NewArgs(filters.Arg("dangling", "false")), false); len(got) != 2 {
		t.Errorf("dangling=false: %v", got)
	}
	if got := list(filters.NewArgs(filters.Arg("label", "name=b")), false); len(got) != 1 || got[0] != b.ID.String() {
		t.Errorf("label=name=b: %v", got)
	}
	if got := list(filters.NewArgs(filters.Arg("before", "beta:1")), false); len(got) != 1 || got[0] != a.ID.String() {
		t.Errorf("before=beta:1: %v", got)
	}
	if got := list(filters.NewArgs(filters.Arg("since", "alpha:1")), false); len(got) != 2 {
		t.Errorf("since=alpha:1: %v", got)
	}
	if _, err := s.List(image.ListOptions{Filters: filters.NewArgs(filters.Arg("bogus", "x"))}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("bogus filter: %v", err)
	}
	if _, err := s.List(image.ListOptions{Filters: filters.NewArgs(filters.Arg("before", "nosuch"))}); !errdefs.IsNotFound(err) {
		t.Errorf("before=nosuch: %v", err)
	}

	ins, err := s.Inspect("alpha:1")
	if err != nil {
		t.Fatal(err)
	}
	if ins.ID != a.ID.String() || len(ins.RepoTags) != 2 || ins.Os != "linux" || ins.Architecture != "amd64" ||
		ins.Config == nil || ins.Config.StopSignal != "SIGINT" || ins.Config.Healthcheck == nil ||
		ins.Comment != "made by the test" || len(ins.RootFS.Layers) != 1 || ins.Metadata.LastTagTime.IsZero() {
		b, _ := json.MarshalIndent(ins, "", " ")
		t.Errorf("Inspect: %s", b)
	}
	cc := a.ContainerConfig()
	if cc.WorkingDir != "/home/user" || cc.User != "1000:1000" || len(cc.Env) != 2 || cc.Cmd[0] != "/bin/sh" ||
		cc.StopSignal != "SIGINT" || cc.Labels["name"] != "a" || cc.Healthcheck == nil || cc.Healthcheck.Interval != time.Second {
		t.Errorf("ContainerConfig: %+v", cc)
	}
	if _, ok := cc.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("ExposedPorts: %v", cc.ExposedPorts)
	}
	if _, ok := cc.Volumes["/data"]; !ok {
		t.Errorf("Volumes: %v", cc.Volumes)
	}

	// Restart: everything is still there.
	s2 := newTestStore(t, root)
	if s2.Count() != 3 {
		t.Fatalf("after reload: %d images", s2.Count())
	}
	if img, err := s2.Get("localhost:5000/alpha:v2"); err != nil || img.ID != a.ID || img.Config.Config.StopSignal != "SIGINT" {
		t.Fatalf("after reload: %v %v", img, err)
	}

	// Prune: only the dangling one by default.
	rep, err := s2.Prune(filters.NewArgs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := deleted(rep.ImagesDeleted); len(d) < 1 || d[0] != c.ID.String() || s2.Count() != 2 {
		t.Fatalf("prune: %+v, count %d", rep, s2.Count())
	}
	// dangling=false removes unused images, not used ones.
	rep, err = s2.Prune(filters.NewArgs(filters.Arg("dangling", "false")), func(id string) ([]string, bool) {
		if id == b.ID.String() {
			return []string{"ctr"}, false
		}
		return nil, false
	})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Count() != 1 {
		t.Fatalf("prune dangling=false: %+v, count %d", rep, s2.Count())
	}
	if _, err := s2.Get("beta:1"); err != nil {
		t.Fatalf("used image pruned: %v", err)
	}
	if _, err := s2.Prune(filters.NewArgs(filters.Arg("nope", "1")), nil); !errdefs.IsInvalidParameter(err) {
		t.Errorf("bad prune filter: %v", err)
	}
	var st state
	raw, _ := os.ReadFile(filepath.Join(root, stateFile))
	if err := json.Unmarshal(raw, &st); err != nil || len(st.Images) != 1 || bytes.Contains(raw, []byte("alpha")) {
		t.Errorf("state file: %s", raw)
	}
}
