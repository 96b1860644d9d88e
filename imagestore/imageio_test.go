package imagestore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/images"
	"github.com/docker/docker/api/types/container"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarMember is a file of an archive read back.
type tarMember struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, b []byte) (map[string]tarMember, []string) {
	t.Helper()
	files := map[string]tarMember{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = tarMember{h, data}
		order = append(order, h.Name)
	}
	return files, order
}

// blobsIn lists the content store's blobs.
func blobsIn(t *testing.T, s *Store) map[digest.Digest]bool {
	t.Helper()
	out := map[digest.Digest]bool{}
	if _, err := os.Stat(filepath.Join(s.root, "content", "blobs")); os.IsNotExist(err) {
		return out
	}
	if err := s.cs.Walk(context.Background(), func(i content.Info) error { out[i.Digest] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// assertEmptyStore checks that a store has no image, blob, ingest or disk.
func assertEmptyStore(t *testing.T, s *Store) {
	t.Helper()
	if n := s.Count(); n != 0 {
		t.Errorf("%d images recorded", n)
	}
	if b := blobsIn(t, s); len(b) != 0 {
		t.Errorf("blobs left behind: %v", b)
	}
	if d := dirEntries(t, filepath.Join(s.root, "disks")); len(d) != 0 {
		t.Errorf("disks left behind: %v", d)
	}
	if d := dirEntries(t, filepath.Join(s.root, "content", "ingest")); len(d) != 0 {
		t.Errorf("ingests left behind: %v", d)
	}
}

func loadMessages(t *testing.T, out []byte) []string {
	t.Helper()
	var lines []string
	for _, m := range parseProgress(t, out) {
		if m.Stream != "" {
			lines = append(lines, strings.TrimSpace(m.Stream))
		}
	}
	return lines
}

func TestSaveLoadRoundTrip(t *testing.T) {
	findToolT(t, "mke2fs")
	ctx := context.Background()
	a := newTestStore(t, "")
	l1 := makeLayer(t, dir("etc/", 0o755), file("etc/hostname", "one\n"))
	l2 := makeLayer(t, file("hello", "world\n"))
	foo := recordImage(t, a, makeImage(t, []string{"sh"}, nil, l1, l2), "foo:1", "foo:2")
	time.Sleep(10 * time.Millisecond) // distinct created times, distinct configs
	bar := recordImage(t, a, makeImage(t, []string{"true"}, map[string]string{"x": "y"}, l1), "bar:latest")

	var buf bytes.Buffer
	ids, err := a.Save(ctx, []string{"foo", "bar:latest"}, nil, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != foo.ID.String() || ids[1] != bar.ID.String() {
		t.Fatalf("saved ids = %v", ids)
	}
	files, order := readTar(t, buf.Bytes())
	if order[0] != "blobs/" || order[1] != "blobs/sha256/" {
		t.Errorf("archive starts with %v", order[:2])
	}
	for _, n := range []string{"manifest.json", "repositories", "index.json", "oci-layout"} {
		if _, ok := files[n]; !ok {
			t.Errorf("archive lacks %s", n)
		}
	}
	var items []archiveManifestItem
	if err := json.Unmarshal(files["manifest.json"].data, &items); err != nil || len(items) != 2 {
		t.Fatalf("manifest.json: %v %s", err, files["manifest.json"].data)
	}
	if items[0].Config != "blobs/sha256/"+foo.ID.Encoded() || strings.Join(items[0].RepoTags, ",") != "foo:1,foo:2" || len(items[0].Layers) != 2 {
		t.Errorf("manifest.json[0] = %+v", items[0])
	}
	if strings.Join(items[1].RepoTags, ",") != "bar:latest" {
		t.Errorf("manifest.json[1] = %+v", items[1])
	}
	for _, it := range items {
		for _, p := range append([]string{it.Config}, it.Layers...) {
			if _, ok := files[p]; !ok {
				t.Errorf("%s is not in the archive", p)
			}
		}
	}
	// The config carries the image's creation time (dockerd's graph-driver
	// store does; moby's TestSaveCheckTimes).
	if got := files[items[0].Config].hdr.ModTime; !got.Equal(foo.Created().Truncate(time.Second)) {
		t.Errorf("config mtime = %v, want %v", got, foo.Created())
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"].data, &idx); err != nil || len(idx.Manifests) != 3 {
		t.Fatalf("index.json: %v %s", err, files["index.json"].data)
	}
	if a := idx.Manifests[0].Annotations; a[images.AnnotationImageName] != "docker.io/library/foo:1" || a[ocispec.AnnotationRefName] != "1" {
		t.Errorf("index.json annotations = %v", a)
	}
	if idx.Manifests[0].Digest != foo.Manifest.Digest {
		t.Errorf("the index names manifest %s, the image's is %s", idx.Manifests[0].Digest, foo.Manifest.Digest)
	}
	var repos map[string]map[string]string
	if err := json.Unmarshal(files["repositories"].data, &repos); err != nil || repos["foo"]["2"] != l2.diffID.Encoded() || repos["bar"]["latest"] != l1.diffID.Encoded() {
		t.Errorf("repositories: %v %s", err, files["repositories"].data)
	}
	if !strings.Contains(string(files["oci-layout"].data), `"imageLayoutVersion": "1.0.0"`) {
		t.Errorf("oci-layout = %s", files["oci-layout"].data)
	}

	// Into an empty store.
	b := newTestStore(t, "")
	var out bytes.Buffer
	loaded, err := b.Load(ctx, bytes.NewReader(buf.Bytes()), LoadOptions{}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 2 {
		t.Fatalf("loaded %+v", loaded)
	}
	msgs := loadMessages(t, out.Bytes())
	if strings.Join(msgs, "|") != "Loaded image: foo:1|Loaded image: foo:2|Loaded image: bar:latest" {
		t.Errorf("load messages = %q", msgs)
	}
	if !strings.Contains(out.String(), `"status":"Loading layer"`) {
		t.Errorf("no layer progress without quiet: %s", out.String())
	}
	for ref, want := range map[string]*Image{"foo:1": foo, "foo:2": foo, "bar": bar} {
		img, err := b.Resolve(ref)
		if err != nil {
			t.Fatal(err)
		}
		if img.ID != want.ID || img.Manifest.Digest != want.Manifest.Digest || len(img.Layers) != len(want.Layers) {
			t.Errorf("%s: loaded %s (manifest %s), saved %s (manifest %s)", ref, img.ID, img.Manifest.Digest, want.ID, want.Manifest.Digest)
		}
		if img.Size == 0 {
			t.Errorf("%s: size 0", ref)
		}
		if _, err := os.Stat(b.diskPath(img.ID)); err != nil {
			t.Errorf("%s: no base disk: %v", ref, err)
		}
	}
	// Only the images' blobs are kept.
	if got := len(blobsIn(t, b)); got != 2+2+2 /* 2 layers, 2 configs, 2 manifests */ {
		t.Errorf("%d blobs after the load: %v", got, blobsIn(t, b))
	}

	// Loading again moves nothing; a tag that pointed elsewhere moves
	// and dockerd's message says so.
	if err := b.Tag(bar.ID.String(), "foo", "1"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if _, err := b.Load(ctx, bytes.NewReader(buf.Bytes()), LoadOptions{Quiet: true}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "The image foo:1 already exists, renaming the old one with ID "+bar.ID.String()+" to empty string") ||
		strings.Contains(out.String(), "Loading layer") {
		t.Errorf("second load: %s", out.String())
	}
	if img, _ := b.Resolve("foo:1"); img == nil || img.ID != foo.ID {
		t.Errorf("foo:1 was not moved back")
	}
}

func TestSaveByIDAndErrors(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t, "")
	img := recordImage(t, s, makeImage(t, []string{"sh"}, nil, makeLayer(t, file("a", "b"))), "foo:1")
	var buf bytes.Buffer
	if _, err := s.Save(ctx, []string{img.ID.String()[:19]}, nil, &buf); err != nil {
		t.Fatal(err)
	}
	files, _ := readTar(t, buf.Bytes())
	var idx ocispec.Index
	json.Unmarshal(files["index.json"].data, &idx)
	if len(idx.Manifests) != 1 || len(idx.Manifests[0].Annotations) != 0 {
		t.Errorf("index of an image saved by ID: %s", files["index.json"].data)
	}
	var items []archiveManifestItem
	json.Unmarshal(files["manifest.json"].data, &items)
	if len(items) != 1 || len(items[0].RepoTags) != 0 {
		t.Errorf("manifest.json of an image saved by ID: %s", files["manifest.json"].data)
	}
	if _, ok := files["repositories"]; ok {
		t.Error("repositories written for an untagged save")
	}

	buf.Reset()
	if _, err := s.Save(ctx, []string{"foo:1", "nosuch"}, nil, &buf); err == nil || !strings.Contains(err.Error(), "No such image: nosuch:latest") {
		t.Errorf("save of an unknown image: %v", err)
	}
	if buf.Len() != 0 {
		t.Errorf("%d bytes written before the error", buf.Len())
	}
	arm := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	if _, err := s.Save(ctx, []string{"foo:1"}, &arm, &buf); err == nil {
		t.Error("save for another platform succeeded")
	}
}

// buildArchive writes a tar of the given members in order.
func buildArchive(t *testing.T, members ...tarMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := *m.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(m.data))
		}
		h.Mode = 0o644
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.data)
	}
	tw.Close()
	return buf.Bytes()
}

func member(name string, data []byte) tarMember {
	return tarMember{hdr: &tar.Header{Name: name}, data: data}
}

func TestLoadFailuresLeaveNothing(t *testing.T) {
	findToolT(t, "mke2fs")
	ctx := context.Background()
	src := newTestStore(t, "")
	good := makeLayer(t, file("a", "1"))
	recordImage(t, src, makeImage(t, []string{"sh"}, nil, makeLayer(t, dir("etc/", 0o755), file("etc/x", strings.Repeat("x", 4000))), good), "foo:1")
	var buf bytes.Buffer
	if _, err := src.Save(ctx, []string{"foo:1"}, nil, &buf); err != nil {
		t.Fatal(err)
	}
	archive := buf.Bytes()

	// A layer whose content does not match its config's diff ID: the
	// archive reads fine, the base disk build finds the mismatch.
	bad := makeLayer(t, file("a", "2"))
	badImg := makeImage(t, []string{"sh"}, nil, good)
	var cfg map[string]any
	json.Unmarshal(badImg.config, &cfg)
	cfgB, _ := json.Marshal(cfg)
	cfgD := digest.FromBytes(cfgB)
	mismatch := buildArchive(t,
		member("blobs/sha256/"+bad.desc.Digest.Encoded(), bad.blob),
		member("blobs/sha256/"+cfgD.Encoded(), cfgB),
		member("manifest.json", []byte(`[{"Config":"blobs/sha256/`+cfgD.Encoded()+`","RepoTags":["bad:1"],"Layers":["blobs/sha256/`+bad.desc.Digest.Encoded()+`"]}]`)),
	)

	cases := map[string]struct {
		data []byte
		want string
	}{
		"truncated in a layer": {archive[:len(archive)/2], "invalid archive"},
		"cut before manifests": {archive[:1024], "invalid archive"},
		"not a tar":            {[]byte(strings.Repeat("garbage!", 200)), "invalid archive"},
		"empty":                {nil, "invalid archive"},
		"diff ID mismatch":     {mismatch, "diff ID mismatch"},
		"blob not its name":    {buildArchive(t, member("blobs/sha256/"+strings.Repeat("a", 64), []byte("x"))), "has digest"},
		"layer count mismatch": {buildArchive(t, member("blobs/sha256/"+cfgD.Encoded(), cfgB), member("manifest.json", []byte(`[{"Config":"blobs/sha256/`+cfgD.Encoded()+`","Layers":[]}]`))), "layers length mismatch"},
		"missing layer":        {buildArchive(t, member("blobs/sha256/"+cfgD.Encoded(), cfgB), member("manifest.json", []byte(`[{"Config":"blobs/sha256/`+cfgD.Encoded()+`","Layers":["nope/layer.tar"]}]`))), "nope/layer.tar is missing"},
		"no manifest or index": {buildArchive(t, member("blobs/sha256/"+cfgD.Encoded(), cfgB)), "neither manifest.json nor index.json"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := newTestStore(t, "")
			var out bytes.Buffer
			_, err := s.Load(ctx, bytes.NewReader(c.data), LoadOptions{}, &out)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if strings.Contains(out.String(), "Loaded image") {
				t.Errorf("a failed load said %s", out.String())
			}
			assertEmptyStore(t, s)
		})
	}

	// A failed load keeps the blobs of images the store already had.
	s := newTestStore(t, "")
	recordImage(t, s, makeImage(t, []string{"sh"}, nil, good), "keep:1")
	before := blobsIn(t, s)
	if _, err := s.Load(ctx, bytes.NewReader(archive[:len(archive)-2048]), LoadOptions{}, io.Discard); err == nil {
		t.Fatal("a truncated archive loaded")
	}
	after := blobsIn(t, s)
	if len(after) != len(before) {
		t.Errorf("blobs before %v, after %v", before, after)
	}
	if _, err := s.Resolve("keep:1"); err != nil || s.Count() != 1 {
		t.Errorf("the store's image is gone: %v", err)
	}
}

func TestLoadOCILayoutAndOldArchive(t *testing.T) {
	findToolT(t, "mke2fs")
	ctx := context.Background()
	l := makeLayer(t, file("hello", "oci\n"))
	img := makeImage(t, []string{"cat", "/hello"}, nil, l)
	ociManifest, _ := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: img.configDesc.Digest, Size: img.configDesc.Size},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: l.desc.Digest, Size: l.desc.Size}},
	})
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(ociManifest), Size: int64(len(ociManifest))}
	named, bare := md, md
	named.Annotations = map[string]string{images.AnnotationImageName: "example.com/oci/img:v1", ocispec.AnnotationRefName: "v1"}
	bare.Annotations = map[string]string{ocispec.AnnotationRefName: "latest"}

	index := func(ds ...ocispec.Descriptor) []byte {
		b, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: ds})
		return b
	}
	blobs := []tarMember{
		member("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)),
		member("blobs/sha256/"+l.desc.Digest.Encoded(), l.blob),
		member("blobs/sha256/"+img.configDesc.Digest.Encoded(), img.config),
		member("blobs/sha256/"+md.Digest.Encoded(), ociManifest),
	}

	s := newTestStore(t, "")
	var out bytes.Buffer
	if _, err := s.Load(ctx, bytes.NewReader(buildArchive(t, append(blobs, member("index.json", index(named)))...)), LoadOptions{Quiet: true}, &out); err != nil {
		t.Fatal(err)
	}
	if msgs := loadMessages(t, out.Bytes()); len(msgs) != 1 || msgs[0] != "Loaded image: example.com/oci/img:v1" {
		t.Errorf("messages %q", msgs)
	}
	got, err := s.Resolve("example.com/oci/img:v1")
	if err != nil || got.Manifest.Digest != md.Digest || got.ID != img.configDesc.Digest {
		t.Fatalf("resolve: %v %+v", err, got)
	}

	// A multi-platform index whose arm64 image was left out of the archive
	// (its manifest is there, its blobs are not): amd64 is loaded.
	armL := makeLayer(t, file("hello", "arm\n"))
	armCfg := []byte(`{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + armL.diffID.String() + `"]}}`)
	armMan, _ := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(armCfg), Size: int64(len(armCfg))},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: armL.desc.Digest, Size: armL.desc.Size}},
	})
	amd, arm := md, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(armMan), Size: int64(len(armMan))}
	amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	multi := index(arm, amd)
	multiD := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(multi), Size: int64(len(multi)),
		Annotations: map[string]string{images.AnnotationImageName: "docker.io/library/multi:1"}}
	multiArchive := buildArchive(t, append(blobs,
		member("blobs/sha256/"+arm.Digest.Encoded(), armMan),
		member("blobs/sha256/"+multiD.Digest.Encoded(), multi),
		member("index.json", index(multiD)))...)
	sm := newTestStore(t, "")
	if _, err := sm.Load(ctx, bytes.NewReader(multiArchive), LoadOptions{Quiet: true}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got, err := sm.Resolve("multi:1"); err != nil || got.ID != img.configDesc.Digest {
		t.Fatalf("multi-platform load: %v %+v", err, got)
	}
	sm2 := newTestStore(t, "")
	if _, err := sm2.Load(ctx, bytes.NewReader(multiArchive), LoadOptions{Platform: arm.Platform}, io.Discard); err == nil || !strings.Contains(err.Error(), "no image in the archive matches the platform linux/arm64") {
		t.Fatalf("load of a platform the archive lacks: %v", err)
	}
	assertEmptyStore(t, sm2)

	// A bare ref.name names no repository: the image is loaded untagged.
	s2 := newTestStore(t, "")
	out.Reset()
	if _, err := s2.Load(ctx, bytes.NewReader(buildArchive(t, append(blobs, member("index.json", index(bare)))...)), LoadOptions{Quiet: true}, &out); err != nil {
		t.Fatal(err)
	}
	if msgs := loadMessages(t, out.Bytes()); len(msgs) != 1 || msgs[0] != "Loaded image ID: "+img.configDesc.Digest.String() {
		t.Errorf("messages %q", msgs)
	}

	// dockerd before 25: <id>/layer.tar (plain), <id>.json config, a
	// symlinked layer, no OCI layout; a manifest is made for it.
	var raw bytes.Buffer
	zr, _ := gzip.NewReader(bytes.NewReader(l.blob))
	io.Copy(&raw, zr)
	s3 := newTestStore(t, "")
	old := buildArchive(t,
		member("aaaa/layer.tar", raw.Bytes()),
		member("aaaa/json", []byte(`{"id":"aaaa"}`)),
		member("aaaa/VERSION", []byte("1.0")),
		tarMember{hdr: &tar.Header{Name: "bbbb/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../aaaa/layer.tar"}},
		member(img.configDesc.Digest.Encoded()+".json", img.config),
		member("manifest.json", []byte(`[{"Config":"`+img.configDesc.Digest.Encoded()+`.json","RepoTags":["old:1"],"Layers":["bbbb/layer.tar"]}]`)),
		member("repositories", []byte(`{"old":{"1":"aaaa"}}`)),
	)
	out.Reset()
	if _, err := s3.Load(ctx, bytes.NewReader(old), LoadOptions{Quiet: true}, &out); err != nil {
		t.Fatal(err)
	}
	got, err = s3.Resolve("old:1")
	if err != nil || len(got.Layers) != 1 || got.Layers[0].MediaType != ocispec.MediaTypeImageLayer || got.Layers[0].Digest != l.diffID {
		t.Fatalf("old archive: %v %+v", err, got)
	}
	if _, err := os.Stat(s3.diskPath(got.ID)); err != nil {
		t.Error(err)
	}
	// The legacy json and VERSION files are not kept.
	if n := len(blobsIn(t, s3)); n != 3 {
		t.Errorf("%d blobs kept: %v", n, blobsIn(t, s3))
	}
}

func TestImportAndHistory(t *testing.T) {
	findToolT(t, "mke2fs")
	ctx := context.Background()
	s := newTestStore(t, "")
	rootfs := rawTar(t, dir("bin/", 0o755), file("bin/app", "12345"), file("etc-hosts", "abc"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(rootfs)
	zw.Close()
	img, err := s.Import(ctx, &gz, ImportOptions{
		Config:   &container.Config{Cmd: []string{"/bin/app"}, Env: []string{"A=b"}},
		Platform: "linux/arm64",
		Message:  "Imported from -",
		Repo:     "imported", Tag: "v1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if img.Config.OS != "linux" || img.Config.Architecture != "arm64" || len(img.Layers) != 1 ||
		strings.Join(img.Config.Config.Cmd, " ") != "/bin/app" || img.RepoTags[0] != "imported:v1" {
		t.Fatalf("imported image: %+v", img)
	}
	if h := img.Config.History; len(h) != 1 || h[0].Comment != "Imported from -" || h[0].CreatedBy != "" {
		t.Errorf("history %+v", h)
	}
	if _, err := os.Stat(s.diskPath(img.ID)); err != nil {
		t.Error(err)
	}

	// A commit on top: its history names the parent.
	child, err := s.Commit(ctx, bytes.NewReader(rawTar(t, file("new", "xy"))), CommitOptions{
		Parent: img.ID.String(), Config: &container.Config{Cmd: []string{"sh"}}, CreatedBy: "/bin/sh -c touch new", Comment: "c",
	})
	if err != nil {
		t.Fatal(err)
	}
	insp, err := s.Inspect(child.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	if insp.Parent != img.ID.String() {
		t.Errorf("inspect of the commit: parent %q, want %s", insp.Parent, img.ID)
	}
	hist, err := s.History(ctx, child.ID.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 {
		t.Fatalf("history %+v", hist)
	}
	if hist[0].ID != child.ID.String() || hist[0].CreatedBy != "/bin/sh -c touch new" || hist[0].Size != 2 || hist[0].Tags != nil || hist[0].Comment != "c" {
		t.Errorf("top entry %+v", hist[0])
	}
	if hist[1].ID != img.ID.String() || hist[1].Size != 8 || len(hist[1].Tags) != 1 || hist[1].Tags[0] != "imported:v1" || hist[1].Comment != "Imported from -" {
		t.Errorf("parent entry %+v", hist[1])
	}
	// A pulled image: entries below the top are <missing>.
	pulled := recordImage(t, s, makeImage(t, []string{"sh"}, nil, makeLayer(t, file("z", "123"))), "pulled:1")
	hist, err = s.History(ctx, "pulled:1", nil)
	if err != nil || len(hist) != 1 || hist[0].ID != pulled.ID.String() || hist[0].Size != 3 || hist[0].CreatedBy != "test" {
		t.Errorf("pulled history %v %+v", err, hist)
	}
	if _, err := s.History(ctx, "nosuch", nil); err == nil {
		t.Error("history of an unknown image")
	}

	// An empty tar is still a layer (dockerd's import).
	var empty bytes.Buffer
	tw := tar.NewWriter(&empty)
	tw.Close()
	e, err := s.Import(ctx, &empty, ImportOptions{Platform: "linux"})
	if err != nil || len(e.Layers) != 1 || len(e.Config.RootFS.DiffIDs) != 1 || e.Config.Architecture != "amd64" {
		t.Fatalf("empty import: %v %+v", err, e)
	}

	// Bad platforms, dockerd's words.
	for p, want := range map[string]string{"macos": "operating system is not supported", "/": "invalid OS component", "nintendo64": "unknown operating system or architecture"} {
		if _, err := s.Import(ctx, bytes.NewReader(rootfs), ImportOptions{Platform: p}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("platform %q: %v", p, err)
		}
	}
}

func TestImportGarbageLeavesNothing(t *testing.T) {
	findToolT(t, "mke2fs")
	s := newTestStore(t, "")
	if _, err := s.Import(context.Background(), strings.NewReader(strings.Repeat("not a tar ", 300)), ImportOptions{Repo: "x"}); err == nil {
		t.Fatal("garbage imported")
	}
	assertEmptyStore(t, s)
	// A truncated gzip stream.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(rawTar(t, file("a", strings.Repeat("z", 100000))))
	zw.Close()
	if _, err := s.Import(context.Background(), bytes.NewReader(gz.Bytes()[:gz.Len()/2]), ImportOptions{}); err == nil || !strings.Contains(err.Error(), "reading the image's file system") {
		t.Fatalf("truncated gzip: %v", err)
	}
	assertEmptyStore(t, s)
}

// docker import takes the formats dockerd's does: xz and bzip2 too.
func TestImportXZAndBzip2(t *testing.T) {
	findToolT(t, "mke2fs")
	s := newTestStore(t, "")
	rootfs := rawTar(t, dir("bin/", 0o755), file("bin/app", "12345"))
	for _, tool := range [][]string{{"xz", "-c"}, {"bzip2", "-c"}} {
		if _, err := exec.LookPath(tool[0]); err != nil {
			t.Logf("%s not installed: not tested", tool[0])
			continue
		}
		cmd := exec.Command(tool[0], tool[1:]...)
		cmd.Stdin = bytes.NewReader(rootfs)
		packed, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		img, err := s.Import(context.Background(), bytes.NewReader(packed), ImportOptions{Repo: "packed", Tag: tool[0]})
		if err != nil {
			t.Fatalf("%s: %v", tool[0], err)
		}
		if img.Size != 5 {
			t.Errorf("%s: image size %d, want 5", tool[0], img.Size)
		}
	}
}
