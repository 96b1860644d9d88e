package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountsOf returns a container's Mounts as inspect shows them.
type inspectMount struct {
	Type, Name, Source, Destination, Driver, Mode, Propagation string
	RW                                                         bool
}

func mountsOf(t *testing.T, name string) []inspectMount {
	t.Helper()
	var ms []inspectMount
	if err := json.Unmarshal([]byte(mustDocker(t, "inspect", "--format", "{{json .Mounts}}", name)), &ms); err != nil {
		t.Fatalf("inspect mounts: %v", err)
	}
	return ms
}

func volumeExists(t *testing.T, name string) bool {
	t.Helper()
	return docker(t, "volume", "inspect", name).code == 0
}

func rmVolumesOnCleanup(t *testing.T, names ...string) {
	t.Cleanup(func() {
		for _, n := range names {
			docker(t, "volume", "rm", "-f", n)
		}
	})
}

// Bind mounts: a directory and a file, read-only variants, dockerd's
// ownership, the guest's permission checks, and missing sources.
func TestBindMounts(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "my.conf")
	if err := os.WriteFile(conf, []byte("conf-v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rodir := t.TempDir()
	missing := filepath.Join(t.TempDir(), "created", "by-v")
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	out := mustDocker(t, "run", "--name", name,
		"-v", dir+":/data",
		"-v", conf+":/etc/my.conf:ro",
		"--mount", "type=bind,source="+rodir+",target=/ro,readonly",
		"-v", missing+":/made",
		"busybox", "sh", "-c", `
cat /data/in
echo from-ctr > /data/out; mkdir /data/sub; chmod 0750 /data/sub
cat /etc/my.conf
echo x > /etc/my.conf 2>/dev/null || echo conf-ro
touch /ro/x 2>/dev/null || echo dir-ro
ls /made && echo made-ok`)
	want := "from-host\nconf-v1\nconf-ro\ndir-ro\nmade-ok\n"
	if out != want {
		t.Fatalf("stdout = %q, want %q", out, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, "out"))
	if err != nil || string(b) != "from-ctr\n" {
		t.Fatalf("host sees out = %q, %v", b, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "sub"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 0 || st.Mode&0o7777 != 0o750 {
		t.Fatalf("host sees sub as %d:%d %o, want 0:0 750", st.Uid, st.Gid, st.Mode&0o7777)
	}
	// The guest kernel checks permissions: nobody cannot write into a
	// root-owned 0755 directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := docker(t, "run", "--rm", "-u", "nobody", "-v", dir+":/data", "busybox", "sh", "-c", "cat /data/in; touch /data/by-nobody")
	if r.code == 0 || r.stdout != "from-host\n" || !strings.Contains(r.stderr, "Permission denied") {
		t.Fatalf("nobody writing to a root-owned directory:\n%s", r)
	}
	if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
		t.Fatalf("-v did not create the missing source: %v", err)
	}

	ms := mountsOf(t, name)
	byDest := map[string]inspectMount{}
	for _, m := range ms {
		byDest[m.Destination] = m
	}
	if m := byDest["/data"]; m.Type != "bind" || m.Source != dir || !m.RW || m.Propagation != "rprivate" || m.Mode != "" {
		t.Fatalf("inspect /data mount = %+v", m)
	}
	if m := byDest["/etc/my.conf"]; m.Type != "bind" || m.Source != conf || m.RW || m.Mode != "ro" {
		t.Fatalf("inspect /etc/my.conf mount = %+v", m)
	}
	if m := byDest["/ro"]; m.Type != "bind" || m.RW {
		t.Fatalf("inspect /ro mount = %+v", m)
	}

	// --mount type=bind with a missing source is refused at create.
	nope := filepath.Join(t.TempDir(), "nope")
	r = docker(t, "run", "--rm", "--mount", "type=bind,source="+nope+",target=/x", "busybox", "true")
	wantErr := `invalid mount config for type "bind": bind source path does not exist: ` + nope
	if r.code != 125 || !strings.Contains(r.stderr, wantErr) {
		t.Fatalf("missing --mount source:\n%s", r)
	}
	if _, err := os.Stat(nope); err == nil {
		t.Fatal("--mount created the missing source")
	}
}

// Changes on either side show while the container runs.
func TestBindLiveBothWays(t *testing.T) {
	dir := t.TempDir()
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "-v", dir+":/shared", "busybox", "sh", "-c", `
i=0
while true; do
  echo "ctr $i" > /shared/from-ctr
  if [ -f /shared/from-host ]; then echo "seen: $(cat /shared/from-host)"; fi
  i=$((i+1)); sleep 0.2
done`)
	// Container -> host.
	var first string
	waitFor(t, 60*time.Second, "the container's writes on the host", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "from-ctr"))
		first = string(b)
		return err == nil && strings.HasPrefix(first, "ctr ")
	})
	waitFor(t, 10*time.Second, "the container's next write on the host", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "from-ctr"))
		return strings.HasPrefix(string(b), "ctr ") && string(b) != first
	})
	// Host -> container, twice (no stale cache).
	for _, v := range []string{"one", "two"} {
		if err := os.WriteFile(filepath.Join(dir, "from-host"), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the container seeing "+v, func() bool {
			return strings.Contains(mustDocker(t, "logs", name), "seen: "+v)
		})
	}
}

// Named volumes: create/ls/inspect/rm, data survives containers, in-use
// removal conflicts, options of the local driver.
func TestVolumeLifecycle(t *testing.T) {
	vol := uniqueName(t, "v")
	rmVolumesOnCleanup(t, vol)
	if got := strings.TrimSpace(mustDocker(t, "volume", "create", "--label", "team=jevm", vol)); got != vol {
		t.Fatalf("volume create printed %q", got)
	}
	if got := strings.TrimSpace(mustDocker(t, "volume", "create", vol)); got != vol {
		t.Fatalf("second create printed %q", got)
	}
	ls := mustDocker(t, "volume", "ls", "--filter", "label=team=jevm", "--format", "{{.Driver}} {{.Name}}")
	if !strings.Contains(ls, "local "+vol+"\n") {
		t.Fatalf("volume ls = %q", ls)
	}
	var vi []struct {
		Name, Driver, Mountpoint, Scope, CreatedAt string
		Labels                                     map[string]string
	}
	if err := json.Unmarshal([]byte(mustDocker(t, "volume", "inspect", vol)), &vi); err != nil || len(vi) != 1 {
		t.Fatalf("volume inspect: %v", err)
	}
	if vi[0].Driver != "local" || vi[0].Scope != "local" || vi[0].Labels["team"] != "jevm" ||
		!strings.HasSuffix(vi[0].Mountpoint, "/volumes/"+vol+"/_data") || vi[0].CreatedAt == "" {
		t.Fatalf("volume inspect = %+v", vi[0])
	}

	w := uniqueName(t, "w")
	rmOnCleanup(t, w)
	mustDocker(t, "run", "--name", w, "-v", vol+":/data", "busybox", "sh", "-c", "echo kept > /data/f; chown 1234:5678 /data/f")
	if b, err := os.ReadFile(filepath.Join(vi[0].Mountpoint, "f")); err != nil || string(b) != "kept\n" {
		t.Fatalf("volume data on the host: %q %v", b, err)
	}
	out := mustDocker(t, "run", "--rm", "--mount", "type=volume,source="+vol+",target=/v,readonly", "busybox", "sh", "-c", "cat /v/f; stat -c %u:%g /v/f; touch /v/g 2>/dev/null || echo ro")
	if out != "kept\n1234:5678\nro\n" {
		t.Fatalf("second container saw %q", out)
	}
	ms := mountsOf(t, w)
	if len(ms) != 1 || ms[0].Type != "volume" || ms[0].Name != vol || ms[0].Driver != "local" || ms[0].Mode != "z" || !ms[0].RW || ms[0].Source != vi[0].Mountpoint || ms[0].Destination != "/data" {
		t.Fatalf("inspect mounts = %+v", ms)
	}

	// In use by a (stopped) container: 409 with dockerd's message.
	id := inspectField(t, w, "{{.Id}}")
	r := docker(t, "volume", "rm", vol)
	if r.code == 0 || !strings.Contains(r.stderr, "remove "+vol+": volume is in use - ["+id+"]") {
		t.Fatalf("volume rm of a volume in use:\n%s", r)
	}
	mustDocker(t, "rm", w)
	if !volumeExists(t, vol) {
		t.Fatal("rm without -v removed a named volume")
	}
	mustDocker(t, "volume", "rm", vol)
	if volumeExists(t, vol) {
		t.Fatal("volume still there after volume rm")
	}
	r = docker(t, "volume", "inspect", vol)
	if r.code == 0 || !strings.Contains(r.stderr, "no such volume") {
		t.Fatalf("inspect of a removed volume:\n%s", r)
	}

	// Local driver options: tmpfs is mounted while used; unknown and
	// quota options are refused clearly.
	tv := uniqueName(t, "tmpfs")
	rmVolumesOnCleanup(t, tv)
	mustDocker(t, "volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=8m,uid=1000", tv)
	out = mustDocker(t, "run", "--rm", "-v", tv+":/t", "busybox", "sh", "-c", "echo hi > /t/x; cat /t/x; stat -c %u /t")
	if out != "hi\n1000\n" {
		t.Fatalf("tmpfs volume: %q", out)
	}
	r = docker(t, "volume", "create", "--opt", "foo=bar", uniqueName(t, "bad"))
	if r.code == 0 || !strings.Contains(r.stderr, `invalid option: "foo"`) {
		t.Fatalf("unknown option:\n%s", r)
	}
	r = docker(t, "volume", "create", "--opt", "size=1g", uniqueName(t, "bad2"))
	if r.code == 0 || !strings.Contains(r.stderr, "quota size requested but no quota support") {
		t.Fatalf("size option:\n%s", r)
	}
	bindDir := t.TempDir()
	os.WriteFile(filepath.Join(bindDir, "b"), []byte("bound\n"), 0o644)
	bv := uniqueName(t, "bind")
	rmVolumesOnCleanup(t, bv)
	mustDocker(t, "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", "device="+bindDir, bv)
	if out := mustDocker(t, "run", "--rm", "-v", bv+":/b", "busybox", "cat", "/b/b"); out != "bound\n" {
		t.Fatalf("bind volume: %q", out)
	}
}

// A new volume is filled from the image (dockerd's copy-up), anonymous
// volumes come from VOLUME and `-v /path` and go with rm -v and --rm.
func TestVolumeCopyUpAndAnonymous(t *testing.T) {
	// The layers image: USER nobody, VOLUME /vol holding seed (65534).
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	out := mustDocker(t, "run", "--name", name, "-v", "/anon", "layers", "sh", "-c",
		"cat /vol/seed; stat -c '%u %a' /vol /vol/seed; echo mine > /vol/new && echo wrote; ls -A /anon | wc -l")
	if out != "seed\n65534 755\n65534 644\nwrote\n0\n" {
		t.Fatalf("stdout = %q", out)
	}
	ms := mountsOf(t, name)
	var anon []string
	for _, m := range ms {
		if m.Type != "volume" || len(m.Name) != 64 || !m.RW || m.Driver != "local" {
			t.Fatalf("anonymous mount = %+v", m)
		}
		anon = append(anon, m.Name)
	}
	if len(anon) != 2 {
		t.Fatalf("mounts = %+v, want /anon and /vol", ms)
	}
	lbl := strings.TrimSpace(mustDocker(t, "volume", "inspect", "--format", `{{index .Labels "com.docker.volume.anonymous"}}|{{len .Labels}}`, anon[0]))
	if lbl != "|1" {
		t.Fatalf("anonymous label: %q", lbl)
	}
	// A second start does not copy again (the volume keeps its data).
	mustDocker(t, "start", "-a", name)
	mustDocker(t, "rm", "-v", name)
	for _, v := range anon {
		if volumeExists(t, v) {
			t.Fatalf("rm -v left anonymous volume %s", v)
		}
	}

	// A named, empty volume is filled too; a non-empty one is not.
	vol := uniqueName(t, "v")
	rmVolumesOnCleanup(t, vol)
	out = mustDocker(t, "run", "--rm", "-v", vol+":/vol", "layers", "sh", "-c", "ls /vol; rm /vol/seed; echo other > /vol/other")
	if out != "seed\n" {
		t.Fatalf("named volume copy-up: %q", out)
	}
	if out = mustDocker(t, "run", "--rm", "-v", vol+":/vol", "layers", "ls", "/vol"); out != "other\n" {
		t.Fatalf("non-empty volume was filled again: %q", out)
	}
	// nocopy.
	nc := uniqueName(t, "nocopy")
	rmVolumesOnCleanup(t, nc)
	if out = mustDocker(t, "run", "--rm", "-v", nc+":/vol:nocopy", "layers", "ls", "-A", "/vol"); out != "" {
		t.Fatalf("nocopy volume: %q", out)
	}

	// --rm removes the anonymous volumes but not named ones.
	before := mustDocker(t, "volume", "ls", "-q")
	mustDocker(t, "run", "--rm", "-v", "/scratch", "busybox", "true")
	if after := mustDocker(t, "volume", "ls", "-q"); after != before {
		t.Fatalf("--rm left volumes: before %q after %q", before, after)
	}
	if !volumeExists(t, vol) {
		t.Fatal("--rm removed a named volume")
	}
}

// One volume in two running jeVMs: each sees the other's writes.
func TestVolumeSharedByRunningContainers(t *testing.T) {
	vol := uniqueName(t, "v")
	rmVolumesOnCleanup(t, vol)
	w, r := uniqueName(t, "writer"), uniqueName(t, "reader")
	rmOnCleanup(t, w, r)
	mustDocker(t, "run", "-d", "--name", w, "-v", vol+":/shared", "busybox", "sh", "-c",
		`i=0; while true; do echo $i > /shared/n.tmp; mv /shared/n.tmp /shared/n; i=$((i+1)); sleep 0.1; done`)
	mustDocker(t, "run", "-d", "--name", r, "-v", vol+":/shared", "busybox", "sh", "-c",
		`while true; do cat /shared/n 2>/dev/null; echo hello-from-reader > /shared/r; sleep 0.3; done`)
	seen := func() []int {
		var ns []int
		for _, l := range strings.Fields(mustDocker(t, "logs", r)) {
			if n, err := strconv.Atoi(l); err == nil {
				ns = append(ns, n)
			}
		}
		return ns
	}
	waitFor(t, 90*time.Second, "the reader to see the writer's counter grow", func() bool {
		ns := seen()
		return len(ns) >= 3 && ns[len(ns)-1] > ns[0]
	})
	ns := seen()
	for i := 1; i < len(ns); i++ {
		if ns[i] < ns[i-1] {
			t.Fatalf("reader saw the counter go backwards: %v", ns)
		}
	}
	mp := strings.TrimSpace(mustDocker(t, "volume", "inspect", "--format", "{{.Mountpoint}}", vol))
	// The reader rewrites the file every 0.3 s (truncate, then write):
	// a read can fall between the two.
	var last string
	deadline := time.Now().Add(10 * time.Second)
	for last != "hello-from-reader\n" && time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join(mp, "r"))
		last = string(b)
		if err != nil {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last != "hello-from-reader\n" {
		t.Fatalf("host view of the reader's file: %q", last)
	}
	rr := docker(t, "volume", "rm", vol)
	if rr.code == 0 || !strings.Contains(rr.stderr, "volume is in use") {
		t.Fatalf("rm of a volume used by running containers:\n%s", rr)
	}
}

// --volumes-from copies the mounts, read-only on request.
func TestVolumesFrom(t *testing.T) {
	dir := t.TempDir()
	vol := uniqueName(t, "v")
	rmVolumesOnCleanup(t, vol)
	src := uniqueName(t, "src")
	rmOnCleanup(t, src)
	mustDocker(t, "create", "--name", src, "-v", vol+":/data", "-v", dir+":/host", "-v", "/anon", "busybox", "true")
	mustDocker(t, "run", "--rm", "--volumes-from", src, "busybox", "sh", "-c", "echo a > /data/a; echo h > /host/h; echo n > /anon/n")
	out := mustDocker(t, "run", "--rm", "--volumes-from", src+":ro", "busybox", "sh", "-c",
		"cat /data/a /host/h /anon/n; touch /data/x 2>/dev/null || echo ro1; touch /host/x 2>/dev/null || echo ro2")
	if out != "a\nh\nn\nro1\nro2\n" {
		t.Fatalf("stdout = %q", out)
	}
	dst := uniqueName(t, "dst")
	rmOnCleanup(t, dst)
	mustDocker(t, "create", "--name", dst, "--volumes-from", src+":ro", "busybox", "true")
	for _, m := range mountsOf(t, dst) {
		if m.RW {
			t.Fatalf("--volumes-from :ro mount is rw: %+v", m)
		}
	}
	r := docker(t, "run", "--rm", "--volumes-from", "no-such-container-xyz", "busybox", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "No such container") {
		t.Fatalf("--volumes-from unknown:\n%s", r)
	}
}

// --tmpfs and --mount type=tmpfs inside the guest.
func TestTmpfsMounts(t *testing.T) {
	out := mustDocker(t, "run", "--rm",
		"--tmpfs", "/run:rw,size=1m,mode=700",
		"--mount", "type=tmpfs,destination=/scratch,tmpfs-size=2097152,tmpfs-mode=1770",
		"busybox", "sh", "-c", `
grep -E ' /(run|scratch) ' /proc/mounts | awk '{print $2, $3}'
stat -c '%a' /run /scratch
df -k /run /scratch | awk 'NR>1 {print $2}'
grep ' /run ' /proc/mounts | grep -q noexec && echo noexec
echo x > /scratch/f && cat /scratch/f`)
	want := "/run tmpfs\n/scratch tmpfs\n700\n1770\n1024\n2048\nnoexec\nx\n"
	if out != want {
		t.Fatalf("stdout = %q, want %q", out, want)
	}
	r := docker(t, "run", "--rm", "--tmpfs", "relative", "busybox", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "mount path must be absolute") {
		t.Fatalf("relative --tmpfs:\n%s", r)
	}
}

// --read-only: the root is read-only, /dev, /proc, tmpfs and volumes work.
func TestReadOnlyRootfs(t *testing.T) {
	vol := uniqueName(t, "v")
	rmVolumesOnCleanup(t, vol)
	out := mustDocker(t, "run", "--rm", "--read-only", "--tmpfs", "/tmp", "-v", vol+":/data", "busybox", "sh", "-c", `
touch /x 2>&1 | grep -q 'Read-only file system' && echo root-ro
echo t > /tmp/t && echo tmp-ok
echo d > /data/d && echo vol-ok
echo z > /dev/null && head -c 4 /dev/zero | wc -c
cat /proc/self/stat > /dev/null && echo proc-ok
echo s > /dev/shm/s && echo shm-ok`)
	want := "root-ro\ntmp-ok\nvol-ok\n4\nproc-ok\nshm-ok\n"
	if out != want {
		t.Fatalf("stdout = %q, want %q", out, want)
	}
	if got := inspectReadonly(t); got != "true" {
		t.Fatalf("HostConfig.ReadonlyRootfs = %s", got)
	}
}

func inspectReadonly(t *testing.T) string {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "create", "--name", name, "--read-only", "busybox", "true")
	return inspectField(t, name, "{{.HostConfig.ReadonlyRootfs}}")
}

// `docker system df` counts volumes and their sizes.
func TestVolumeSystemDF(t *testing.T) {
	vol := uniqueName(t, "v")
	rmVolumesOnCleanup(t, vol)
	mustDocker(t, "run", "--rm", "-v", vol+":/d", "busybox", "sh", "-c", "head -c 300000 /dev/zero > /d/blob")
	out := mustDocker(t, "system", "df", "--format", "{{.Type}} {{.TotalCount}}")
	if !strings.Contains(out, "Local Volumes ") || !strings.Contains(out, "Images ") || !strings.Contains(out, "Containers ") {
		t.Fatalf("system df = %q", out)
	}
	v := mustDocker(t, "system", "df", "-v", "--format", "{{json .Volumes}}")
	var vols []struct{ Name, Size, Links string }
	if err := json.Unmarshal([]byte(v), &vols); err != nil {
		t.Fatalf("system df -v: %v\n%s", err, v)
	}
	found := false
	for _, x := range vols {
		if x.Name == vol {
			found = true
			if x.Size != "300kB" || x.Links != "0" {
				t.Fatalf("volume row = %+v", x)
			}
		}
	}
	if !found {
		t.Fatalf("volume %s missing from system df -v: %s", vol, v)
	}
}

// Volumes persist across a daemon restart, and a running container's
// share keeps working (QEMU keeps running).
func TestVolumeDaemonRestart(t *testing.T) {
	vol := uniqueName(t, "v")
	rmVolumesOnCleanup(t, vol)
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "-v", vol+":/data", "busybox", "sh", "-c",
		`while true; do if [ -f /data/ping ]; then echo "pong $(cat /data/ping)"; rm /data/ping; fi; sleep 0.2; done`)
	mp := strings.TrimSpace(mustDocker(t, "volume", "inspect", "--format", "{{.Mountpoint}}", vol))
	restartDaemon(t)
	if !volumeExists(t, vol) {
		t.Fatal("volume lost by the restart")
	}
	if err := os.WriteFile(filepath.Join(mp, "ping"), []byte("after-restart\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the running container to see the host's write", func() bool {
		return strings.Contains(mustDocker(t, "logs", name), "pong after-restart")
	})
	r := docker(t, "volume", "rm", vol)
	if r.code == 0 || !strings.Contains(r.stderr, "volume is in use") {
		t.Fatalf("rm after restart:\n%s", r)
	}
	if ms := mountsOf(t, name); len(ms) != 1 || ms[0].Name != vol {
		t.Fatalf("mounts after restart = %+v", ms)
	}
}

// More shares than the template's pre-plugged devices are hot-plugged; the
// limit is refused at create.
func TestVolumeManyMounts(t *testing.T) {
	args := []string{"run", "--rm"}
	script := ""
	var dirs []string
	for i := 0; i < 10; i++ {
		dir := t.TempDir()
		dirs = append(dirs, dir)
		args = append(args, "-v", dir+":/m"+strconv.Itoa(i))
		script += "echo " + strconv.Itoa(i) + " > /m" + strconv.Itoa(i) + "/f; "
	}
	args = append(args, "busybox", "sh", "-c", script+"grep -c ' 9p ' /proc/mounts")
	if out := mustDocker(t, args...); out != "10\n" {
		t.Fatalf("9p mounts: %q", out)
	}
	for i, dir := range dirs {
		if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != strconv.Itoa(i)+"\n" {
			t.Fatalf("share %d on the host: %q %v", i, b, err)
		}
	}
	args = []string{"run", "--rm"}
	for i := 0; i < 17; i++ {
		args = append(args, "-v", "/tmp:/m"+strconv.Itoa(i))
	}
	args = append(args, "busybox", "true")
	r := docker(t, args...)
	if r.code != 125 || !strings.Contains(r.stderr, "at most 16") {
		t.Fatalf("17 mounts:\n%s", r)
	}
}

// A stopped container's file operations run in a maintenance clone that
// mounts the container's volumes too: a copy to a volume path lands in the
// volume, as it does on dockerd.
func TestCpIntoStoppedContainerVolume(t *testing.T) {
	vol := uniqueName(t, "vol")
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	t.Cleanup(func() { docker(t, "volume", "rm", "-f", vol) })
	mustDocker(t, "volume", "create", vol)
	mustDocker(t, "create", "--name", name, "-v", vol+":/data", "busybox", "true")
	src := filepath.Join(t.TempDir(), "note.txt")
	if err := os.WriteFile(src, []byte("into the volume\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustDocker(t, "cp", src, name+":/data/note.txt")
	if out := mustDocker(t, "run", "--rm", "-v", vol+":/v", "busybox", "cat", "/v/note.txt"); out != "into the volume\n" {
		t.Fatalf("the volume holds %q", out)
	}
}

// A volume subpath follows symbolic links inside the volume and refuses
// one that leaves it, with dockerd's message.
func TestVolumeSubpathLinks(t *testing.T) {
	vol := uniqueName(t, "v")
	mustDocker(t, "volume", "create", vol)
	t.Cleanup(func() { docker(t, "volume", "rm", "-f", vol) })
	mustDocker(t, "run", "--rm", "-v", vol+":/v", "busybox", "sh", "-c",
		"mkdir /v/sub && echo hi > /v/sub/f && ln -s sub /v/good && ln -s / /v/root")
	if out := mustDocker(t, "run", "--rm", "--mount", "type=volume,src="+vol+",dst=/x,volume-subpath=good", "busybox", "cat", "/x/f"); out != "hi\n" {
		t.Errorf("subpath through a link: %q", out)
	}
	r := docker(t, "run", "--rm", "--mount", "type=volume,src="+vol+",dst=/x,volume-subpath=root", "busybox", "ls", "/x")
	if r.code == 0 || !strings.Contains(r.stderr, "path concatenation escapes the base directory") {
		t.Errorf("subpath escaping the volume:\n%s", r)
	}
}
