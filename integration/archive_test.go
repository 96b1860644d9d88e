package integration

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// makeCpSource builds a host directory with what docker cp must keep: a
// symlink, a 0700 file, a file owned by 1234:4321, a subdirectory, mtimes.
func makeCpSource(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "hello"), []byte("hello from the host\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cret\n"), 0o600))
	must(os.Chmod(filepath.Join(dir, "secret"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "owned"), []byte("owned\n"), 0o640))
	must(os.Lchown(filepath.Join(dir, "owned"), 1234, 4321))
	must(os.WriteFile(filepath.Join(dir, "sub", "deep"), []byte("deep\n"), 0o644))
	must(os.Symlink("hello", filepath.Join(dir, "link")))
	old := time.Date(2021, 6, 7, 8, 9, 10, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "secret"), old, old))
	return dir
}

// treeOf describes a tree: per relative path, type, mode, mtime (files),
// symlink target and content. Owners are not in it: the CLI extracts what
// it copies from a container with the invoking user's (tarOwners checks
// them in the archive the daemon sends).
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		desc := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			desc += " " + fi.ModTime().UTC().Format(time.RFC3339) + " " + string(b)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, want, got map[string]string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s:\n  want %q\n   got %q", k, want[k], got[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s: %q", k, got[k])
		}
	}
}

// tarNames lists the entries of a tar stream.
func tarNames(t *testing.T, r io.Reader) map[string]*tar.Header {
	t.Helper()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		out[h.Name] = h
	}
}

// tarOwners is "uid:gid" per entry of a `docker cp C:path -` archive.
func tarOwners(t *testing.T, container, path string) map[string]string {
	t.Helper()
	r := docker(t, "cp", container+":"+path, "-")
	if r.code != 0 {
		t.Fatalf("docker cp %s:%s -:\n%s", container, path, r)
	}
	out := map[string]string{}
	for name, h := range tarNames(t, strings.NewReader(r.stdout)) {
		out[name] = strconv.Itoa(h.Uid) + ":" + strconv.Itoa(h.Gid)
	}
	return out
}

func checkOwners(t *testing.T, owners map[string]string) {
	t.Helper()
	want := map[string]string{"src/": "0:0", "src/hello": "0:0", "src/secret": "0:0", "src/owned": "1234:4321", "src/sub/": "0:0", "src/sub/deep": "0:0", "src/link": "0:0"}
	for k, v := range want {
		if owners[k] != v {
			t.Errorf("owner of %s in the container: %q, want %q (all: %v)", k, owners[k], v, owners)
		}
	}
}

func TestCpRunningContainer(t *testing.T) {
	src := makeCpSource(t)
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sleep", "600")

	// Host -> container (the destination does not exist: HEAD, then PUT
	// into /tmp), ownership kept with -a.
	mustDocker(t, "cp", "-a", src, name+":/tmp/src")
	// Container -> host.
	out := t.TempDir()
	mustDocker(t, "cp", "-a", name+":/tmp/src", out)
	compareTrees(t, treeOf(t, src), treeOf(t, filepath.Join(out, "src")))
	checkOwners(t, tarOwners(t, name, "/tmp/src"))

	// A symlink is copied as the link, a single file under its name.
	r := docker(t, "cp", name+":/tmp/src/link", "-")
	if r.code != 0 {
		t.Fatalf("cp link: %s", r)
	}
	hdrs := tarNames(t, strings.NewReader(r.stdout))
	if h := hdrs["link"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "hello" || len(hdrs) != 1 {
		t.Fatalf("archive of the link: %v", hdrs)
	}
	// The copied files are there for the container's processes too: the
	// API files (/etc/hostname) are the container's real ones.
	r = docker(t, "cp", name+":/etc/hostname", "-")
	hdrs = tarNames(t, strings.NewReader(r.stdout))
	if h := hdrs["hostname"]; h == nil || h.Size == 0 {
		t.Fatalf("/etc/hostname: %v (%s)", hdrs, r.stderr)
	}

	// A file larger than the flow-control windows, both ways.
	big := make([]byte, 12<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	bigPath := filepath.Join(t.TempDir(), "big")
	os.WriteFile(bigPath, big, 0o644)
	t0 := time.Now()
	mustDocker(t, "cp", bigPath, name+":/tmp/big")
	tIn := time.Since(t0)
	t0 = time.Now()
	mustDocker(t, "cp", name+":/tmp/big", out+"/big")
	t.Logf("12 MiB file: in %v, out %v", tIn.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	if b, _ := os.ReadFile(out + "/big"); !bytes.Equal(b, big) {
		t.Fatalf("big file: got %d bytes, differs", len(b))
	}

	// Contents of a directory into an existing directory ("src/.").
	mustDocker(t, "cp", src+"/.", name+":/root")
	out2 := t.TempDir()
	mustDocker(t, "cp", name+":/root/sub/deep", out2+"/deep-copy")
	if b, _ := os.ReadFile(out2 + "/deep-copy"); string(b) != "deep\n" {
		t.Fatalf("deep-copy = %q", b)
	}
}

func TestCpStoppedContainer(t *testing.T) {
	src := makeCpSource(t)
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	// A created container: files go onto its disk through a maintenance
	// clone, and its first run sees them.
	mustDocker(t, "create", "--name", name, "busybox", "sh", "-c", "cat /tmp/src/hello /tmp/src/sub/deep; ls -ln /tmp/src | grep owned | awk '{print $1, $3, $4}'; echo ran > /ran")
	mustDocker(t, "cp", "-a", src, name+":/tmp/src")
	r := docker(t, "start", "-a", name)
	if r.code != 0 || r.stdout != "hello from the host\ndeep\n-rw-r----- 1234 4321\n" {
		t.Fatalf("start -a:\n%s", r)
	}
	// From the exited container.
	out := t.TempDir()
	mustDocker(t, "cp", name+":/ran", out)
	if b, _ := os.ReadFile(filepath.Join(out, "ran")); string(b) != "ran\n" {
		t.Fatalf("/ran = %q", b)
	}
	mustDocker(t, "cp", "-a", name+":/tmp/src", out)
	compareTrees(t, treeOf(t, src), treeOf(t, filepath.Join(out, "src")))
	checkOwners(t, tarOwners(t, name, "/tmp/src"))
	// Into the exited container, seen by its next run.
	f := filepath.Join(t.TempDir(), "later")
	os.WriteFile(f, []byte("later\n"), 0o644)
	mustDocker(t, "cp", f, name+":/tmp/src/later")
	if st := inspectField(t, name, "{{.State.Status}}"); st != "exited" {
		t.Fatalf("state after cp: %s", st)
	}
	mustDocker(t, "cp", f, name+":/ran") // a file over a file
	r = docker(t, "start", "-a", name)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "hello from the host\n") {
		t.Fatalf("second start -a:\n%s", r)
	}
	mustDocker(t, "cp", name+":/tmp/src/later", out)
	if b, _ := os.ReadFile(filepath.Join(out, "later")); string(b) != "later\n" {
		t.Fatalf("later = %q", b)
	}
}

func TestCpErrors(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "create", "--name", name, "busybox", "true")
	r := docker(t, "cp", name+":/nope", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "Could not find the file /nope in container "+name) {
		t.Fatalf("cp of a missing path:\n%s", r)
	}
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, []byte("x"), 0o644)
	r = docker(t, "cp", f, name+":/no/such/dir/f")
	if r.code == 0 || !strings.Contains(r.stderr, "Could not find the file /no/such/dir in container "+name) {
		t.Fatalf("cp into a missing directory:\n%s", r)
	}
	r = docker(t, "cp", f, "nosuchcontainer-xyz:/tmp")
	if r.code == 0 || !strings.Contains(r.stderr, "No such container") {
		t.Fatalf("cp to a missing container:\n%s", r)
	}
}

func TestExport(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "--name", name, "busybox", "sh", "-c", "mkdir -p /out && echo exported > /out/file")
	cmd := exec.Command("docker", "export", name)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+env.sock)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hdrs := tarNames(t, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("docker export: %v", err)
	}
	for _, n := range []string{"bin/busybox", "out/file", "etc/passwd", "proc/", "dev/"} {
		if hdrs[n] == nil {
			t.Errorf("export lacks %s", n)
		}
	}
	for n := range hdrs {
		if strings.HasPrefix(n, "proc/") && n != "proc/" || strings.HasPrefix(n, "sys/") && n != "sys/" || strings.HasPrefix(n, "/") || strings.HasPrefix(n, "./") {
			t.Errorf("unexpected entry %q", n)
		}
	}
	if h := hdrs["out/file"]; h == nil || h.Size != int64(len("exported\n")) {
		t.Errorf("out/file: %+v", h)
	}
}

func diffLines(t *testing.T, name string) []string {
	t.Helper()
	out := strings.TrimSpace(mustDocker(t, "diff", name))
	if out == "" {
		return nil
	}
	lines := strings.Split(out, "\n")
	sort.Strings(lines)
	return lines
}

func TestDiff(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "--name", name, "busybox", "sh", "-c", "echo x > /new; rm /etc/group; echo y >> /etc/passwd")
	got := diffLines(t, name)
	want := []string{"A /new", "C /etc", "C /etc/passwd", "D /etc/group"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("docker diff (exited):\n got %q\nwant %q", got, want)
	}

	// A running container, and one that changed nothing.
	run := uniqueName(t, "r")
	rmOnCleanup(t, run)
	mustDocker(t, "run", "-d", "--name", run, "busybox", "sh", "-c", "mkdir -p /tmp/a/b && touch /tmp/a/b/c && sleep 600")
	waitFor(t, 30*time.Second, "the running container's files", func() bool {
		return len(diffLines(t, run)) == 4
	})
	got = diffLines(t, run)
	want = []string{"A /tmp/a", "A /tmp/a/b", "A /tmp/a/b/c", "C /tmp"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("docker diff (running):\n got %q\nwant %q", got, want)
	}
	quiet := uniqueName(t, "q")
	rmOnCleanup(t, quiet)
	mustDocker(t, "run", "--name", quiet, "busybox", "true")
	if got := diffLines(t, quiet); len(got) != 0 {
		t.Fatalf("docker diff of a container that changed nothing: %q", got)
	}
}

func TestCommit(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	img1, img2 := "jevm-commit-test:1", "jevm-commit-test:2"
	t.Cleanup(func() { docker(t, "rmi", "-f", img1, img2) })
	mustDocker(t, "run", "--name", name, "busybox", "sh", "-c", "echo x > /new; rm /etc/group; echo y >> /etc/passwd")

	id := strings.TrimSpace(mustDocker(t, "commit", "-a", "tester", "-m", "my change", name, img1))
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("commit printed %q", id)
	}
	if out := mustDocker(t, "run", "--rm", img1, "cat", "/new"); out != "x\n" {
		t.Fatalf("cat /new = %q", out)
	}
	if out := mustDocker(t, "run", "--rm", img1, "sh", "-c", "test -e /etc/group && echo present || echo gone; tail -n1 /etc/passwd"); out != "gone\ny\n" {
		t.Fatalf("committed image: %q", out)
	}
	var ii []struct {
		Author, Comment string
		Config          struct{ Cmd []string }
		RootFS          struct{ Layers []string }
	}
	if err := json.Unmarshal([]byte(mustDocker(t, "image", "inspect", img1)), &ii); err != nil || len(ii) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	if ii[0].Author != "tester" || ii[0].Comment != "my change" || len(ii[0].RootFS.Layers) != 2 ||
		strings.Join(ii[0].Config.Cmd, " ") != "sh -c echo x > /new; rm /etc/group; echo y >> /etc/passwd" {
		t.Fatalf("image inspect: %+v", ii[0])
	}

	// --change instructions take effect.
	mustDocker(t, "commit", "--change", "ENV FOO=bar", "--change", `CMD ["cat","/new"]`, name, img2)
	if out := mustDocker(t, "run", "--rm", img2); out != "x\n" {
		t.Fatalf("run with the committed CMD: %q", out)
	}
	if out := mustDocker(t, "run", "--rm", img2, "sh", "-c", "echo $FOO"); out != "bar\n" {
		t.Fatalf("FOO = %q", out)
	}
	if r := docker(t, "commit", "--change", "RUN echo no", name, img2); r.code == 0 || !strings.Contains(r.stderr, "run is not a valid change command") {
		t.Fatalf("commit with RUN:\n%s", r)
	}

	// A running container (paused while its changes are read).
	run := uniqueName(t, "r")
	rmOnCleanup(t, run)
	mustDocker(t, "run", "-d", "--name", run, "busybox", "sh", "-c", "echo live > /live; sleep 600")
	waitFor(t, 30*time.Second, "the running container's file", func() bool {
		return docker(t, "cp", run+":/live", "-").code == 0
	})
	liveImg := strings.TrimSpace(mustDocker(t, "commit", run))
	t.Cleanup(func() { docker(t, "rmi", "-f", liveImg) })
	if out := mustDocker(t, "run", "--rm", liveImg, "cat", "/live"); out != "live\n" {
		t.Fatalf("committed running container: %q", out)
	}
	if st := inspectField(t, run, "{{.State.Status}}"); st != "running" {
		t.Fatalf("container after commit: %s", st)
	}
}

func TestPortWithoutPublishedPorts(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "create", "--name", name, "busybox", "true")
	r := docker(t, "port", name)
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("docker port:\n%s", r)
	}
}
