package imagestore

import (
	"bytes"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
)

// checkLayerSequence checks that the statuses of one layer come in the
// order dockerd sends them.
func checkLayerSequence(t *testing.T, id string, got []string) {
	t.Helper()
	order := []string{"Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum", "Download complete", "Extracting", "Pull complete"}
	rank := map[string]int{}
	for i, s := range order {
		rank[s] = i
	}
	last := -1
	seen := map[string]bool{}
	for _, s := range got {
		r, ok := rank[s]
		if !ok {
			t.Errorf("layer %s: unexpected status %q in %v", id, s, got)
			continue
		}
		if r < last {
			t.Errorf("layer %s: %q out of order in %v", id, s, got)
		}
		last = r
		seen[s] = true
	}
	for _, s := range []string{"Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete", "Extracting", "Pull complete"} {
		if !seen[s] {
			t.Errorf("layer %s: no %q in %v", id, s, got)
		}
	}
}

func TestPullProgressAndUpToDate(t *testing.T) {
	findToolT(t, "mke2fs")
	reg := newFakeRegistry(t)
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB, for several progress updates
	l1 := makeLayer(t, dir("bin/", 0o755), file("bin/big", big))
	l2 := makeLayer(t, dir("etc/", 0o755), file("etc/hostname", "test\n"))
	img := makeImage(t, []string{"/bin/big"}, map[string]string{"k": "v"}, l1, l2)
	reg.add("test/img", "latest", img)

	s := newTestStore(t, "")
	ref := reg.host() + "/test/img"
	var out bytes.Buffer
	got, err := s.Pull(context.Background(), ref, "", &out)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, out.String())
	}
	msgs := parseProgress(t, out.Bytes())
	t.Logf("first pull: %d messages", len(msgs))
	if m := msgs[0]; m.ID != "latest" || m.Status != "Pulling from test/img" {
		t.Errorf("first message = %+v", m)
	}
	n := len(msgs)
	if msgs[n-2].Status != "Digest: "+img.manifestDesc.Digest.String() {
		t.Errorf("digest message = %+v", msgs[n-2])
	}
	if want := "Status: Downloaded newer image for " + ref + ":latest"; msgs[n-1].Status != want {
		t.Errorf("last message = %q, want %q", msgs[n-1].Status, want)
	}
	st := statuses(msgs)
	for _, l := range []testLayer{l1, l2} {
		checkLayerSequence(t, l.desc.Digest.Encoded()[:12], st[l.desc.Digest.Encoded()[:12]])
	}
	for _, m := range msgs {
		if m.Status == "Downloading" && (m.Progress == nil || m.Progress.Total == 0) {
			t.Errorf("Downloading without progress detail: %+v", m)
		}
		if m.Status == "Pulling fs layer" && m.Progress == nil {
			t.Errorf("Pulling fs layer without progressDetail: %+v", m)
		}
	}
	if got.ID != img.configDesc.Digest || got.RepoTags[0] != ref+":latest" ||
		got.RepoDigests[0] != reg.host()+"/test/img@"+img.manifestDesc.Digest.String() {
		t.Errorf("image = %+v", got)
	}
	if got.Size < int64(len(big)) {
		t.Errorf("size = %d", got.Size)
	}
	disk := s.diskPath(got.ID)
	if fi, err := os.Stat(disk); err != nil || fi.Size() != s.DiskSize() {
		t.Fatalf("base disk: %v %v", fi, err)
	}
	if out := debugfs(t, disk, "stat /bin/big"); !strings.Contains(out, "Size: 1048576") {
		t.Errorf("/bin/big:\n%s", out)
	}

	// Second pull: nothing downloaded, nothing built.
	builds := s.buildCount.Load()
	out.Reset()
	if _, err := s.Pull(context.Background(), ref+":latest", "linux/amd64", &out); err != nil {
		t.Fatal(err)
	}
	msgs = parseProgress(t, out.Bytes())
	var texts []string
	for _, m := range msgs {
		texts = append(texts, m.ID+" "+m.Status)
	}
	want := []string{
		"latest Pulling from test/img",
		" Digest: " + img.manifestDesc.Digest.String(),
		" Status: Image is up to date for " + ref + ":latest",
	}
	if strings.Join(texts, "\n") != strings.Join(want, "\n") {
		t.Errorf("second pull said:\n%s\nwant:\n%s", strings.Join(texts, "\n"), strings.Join(want, "\n"))
	}
	if g := reg.gets(l1.desc.Digest); g != 1 {
		t.Errorf("layer fetched %d times", g)
	}
	if s.buildCount.Load() != builds {
		t.Errorf("disk rebuilt")
	}

	// Another tag of the same image: layers are not fetched again, but the
	// tag is new, so "Downloaded newer image".
	reg.add("test/img", "v2", img)
	out.Reset()
	if _, err := s.Pull(context.Background(), ref+":v2", "", &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Status: Downloaded newer image for "+ref+":v2") || strings.Contains(out.String(), "Downloading") {
		t.Errorf("pull of a new tag:\n%s", out.String())
	}

	// Pull by digest.
	out.Reset()
	dref := ref + "@" + img.manifestDesc.Digest.String()
	if _, err := s.Pull(context.Background(), dref, "", &out); err != nil {
		t.Fatal(err)
	}
	msgs = parseProgress(t, out.Bytes())
	if msgs[0].ID != img.manifestDesc.Digest.String() || !strings.Contains(out.String(), "Image is up to date for "+dref) {
		t.Errorf("digest pull:\n%s", out.String())
	}

	// A new image sharing the bottom layer: "Already exists" for it.
	l3 := makeLayer(t, file("extra", "x"))
	img2 := makeImage(t, []string{"x"}, nil, l1, l3)
	reg.add("test/other", "latest", img2)
	out.Reset()
	if _, err := s.Pull(context.Background(), reg.host()+"/test/other", "", &out); err != nil {
		t.Fatal(err)
	}
	st = statuses(parseProgress(t, out.Bytes()))
	if s := st[l1.desc.Digest.Encoded()[:12]]; len(s) != 1 || s[0] != "Already exists" {
		t.Errorf("shared layer: %v", s)
	}
	checkLayerSequence(t, "l3", st[l3.desc.Digest.Encoded()[:12]])
	if g := reg.gets(l1.desc.Digest); g != 1 {
		t.Errorf("shared layer fetched %d times", g)
	}
}

func TestPullErrors(t *testing.T) {
	reg := newFakeRegistry(t)
	img := makeImage(t, nil, nil, makeLayer(t, file("a", "a")))
	reg.add("test/img", "latest", img)
	s := newTestStore(t, "")
	ctx := context.Background()

	var out bytes.Buffer
	_, err := s.Pull(ctx, reg.host()+"/test/img:nope", "", &out)
	want := "manifest for " + reg.host() + "/test/img:nope not found: manifest unknown: manifest unknown"
	if !errdefs.IsNotFound(err) || err.Error() != want {
		t.Errorf("unknown tag: %v, want %q", err, want)
	}
	_, err = s.Pull(ctx, reg.host()+"/test/nosuch", "", &out)
	if !errdefs.IsNotFound(err) {
		t.Errorf("unknown repo: %v", err)
	}
	_, err = s.Pull(ctx, "Bad/Name", "", &out)
	if !errdefs.IsInvalidParameter(err) {
		t.Errorf("bad name: %v", err)
	}
	_, err = s.Pull(ctx, reg.host()+"/test/img", "linux/arm64", &out)
	want = "image with reference " + reg.host() + "/test/img:latest was found but does not match the specified platform: wanted linux/arm64, actual: linux/amd64"
	if !errdefs.IsNotFound(err) || err.Error() != want {
		t.Errorf("platform mismatch: %v, want %q", err, want)
	}
	_, err = s.Pull(ctx, "Busybox", "", &out)
	if !errdefs.IsInvalidParameter(err) || err.Error() != "invalid reference format: repository name (library/Busybox) must be lowercase" {
		t.Errorf("uppercase: %v", err)
	}
	_, err = s.Pull(ctx, reg.host()+"/test/img", "not/a/valid/platform", &out)
	if !errdefs.IsInvalidParameter(err) {
		t.Errorf("bad platform: %v", err)
	}

	// A registry with basic authentication and no credentials: dockerd's
	// distribution client words it so (checked against Debian's dockerd
	// and docker-registry with htpasswd); a refusal at a token registry
	// (Docker Hub) keeps translatePullError's "pull access denied".
	reg.requireAuth = true
	_, err = s.Pull(ctx, reg.host()+"/test/img", "", &out)
	want = `Head "http://` + reg.host() + `/v2/test/img/manifests/latest": no basic auth credentials`
	if err == nil || err.Error() != want {
		t.Errorf("auth: %v, want %q", err, want)
	}

	// Nothing listens on this port.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, err = s.Pull(ctx, addr+"/test/img", "", &out)
	if !errdefs.IsSystem(err) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("connection refused: %v (%T)", err, err)
	}
	t.Logf("connection refused error: %v", err)
	// Everything above failed before the first message.
	if out.Len() != 0 {
		t.Errorf("errors wrote progress: %s", out.String())
	}
}

func TestPullManifestList(t *testing.T) {
	findToolT(t, "mke2fs")
	reg := newFakeRegistry(t)
	amd := makeImage(t, []string{"amd"}, nil, makeLayer(t, file("arch", "amd64")))
	arm := makeImage(t, []string{"arm"}, nil, makeLayer(t, file("arch", "arm64")))
	reg.add("multi", "amd", amd)
	reg.add("multi", "arm", arm)
	idx := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"` + arm.manifestDesc.Digest.String() + `","size":` + itoa(arm.manifestDesc.Size) + `,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},` +
		`{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"` + amd.manifestDesc.Digest.String() + `","size":` + itoa(amd.manifestDesc.Size) + `,"platform":{"architecture":"amd64","os":"linux"}}]}`)
	reg.mu.Lock()
	reg.manifests["multi"]["latest"] = idx
	reg.mtypes[digestOf(idx)] = "application/vnd.oci.image.index.v1+json"
	reg.manifests["multi"][digestOf(idx).String()] = idx
	reg.mu.Unlock()

	s := newTestStore(t, "")
	var out bytes.Buffer
	img, err := s.Pull(context.Background(), reg.host()+"/multi", "", &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if img.ID != amd.configDesc.Digest || img.Manifest.Digest != amd.manifestDesc.Digest || img.Target.Digest != digestOf(idx) {
		t.Errorf("picked %+v", img)
	}
	if !strings.Contains(out.String(), "Digest: "+digestOf(idx).String()) || img.RepoDigests[0] != reg.host()+"/multi@"+digestOf(idx).String() {
		t.Errorf("repo digest should be the index's: %v\n%s", img.RepoDigests, out.String())
	}
	_, err = s.Pull(context.Background(), reg.host()+"/multi", "linux/s390x", &out)
	if !errdefs.IsNotFound(err) || err.Error() != "no matching manifest for linux/s390x in the manifest list entries" {
		t.Errorf("no platform: %v", err)
	}
}

func TestConcurrentPullsBuildOnce(t *testing.T) {
	findToolT(t, "mke2fs")
	reg := newFakeRegistry(t)
	img := makeImage(t, nil, nil, makeLayer(t, file("a", strings.Repeat("a", 300<<10))), makeLayer(t, file("b", "b")))
	reg.add("same", "latest", img)
	s := newTestStore(t, "")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = s.Pull(context.Background(), reg.host()+"/same", "", nil)
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.buildCount.Load(); n != 1 {
		t.Errorf("%d builds", n)
	}
	if s.Count() != 1 {
		t.Errorf("count %d", s.Count())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func digestOf(b []byte) digest.Digest { return digest.FromBytes(b) }

func TestOrphanDiskAdoptedByRepull(t *testing.T) {
	findToolT(t, "mke2fs")
	reg := newFakeRegistry(t)
	img := makeImage(t, nil, nil, makeLayer(t, file("a", "a")))
	reg.add("orphan", "latest", img)
	s := newTestStore(t, "")
	ctx := context.Background()
	ref := reg.host() + "/orphan"
	got, err := s.Pull(ctx, ref, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	disk := s.diskPath(got.ID)
	before, _ := os.Stat(disk)
	stopped := users([]string{"0123456789abcdef"}, false)
	if _, err := s.Delete(ref, true, false, stopped); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.orphans[got.ID]; !ok {
		t.Fatal("disk not kept as orphan")
	}
	// Survives a restart.
	s = newTestStore(t, s.Root())
	if _, ok := s.orphans[got.ID]; !ok {
		t.Fatal("orphan lost on reload")
	}
	builds := s.buildCount.Load()
	again, err := s.Pull(ctx, ref, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(disk)
	if s.buildCount.Load() != builds || !os.SameFile(before, after) || again.Size != got.Size {
		t.Errorf("orphaned disk not adopted (builds %d->%d, size %d vs %d)", builds, s.buildCount.Load(), again.Size, got.Size)
	}
	if _, ok := s.orphans[got.ID]; ok {
		t.Error("orphan entry kept after adoption")
	}
}
