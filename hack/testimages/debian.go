package testimages

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/jevm/jevm/internal/mountinfo"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// run executes a host command, returning its combined output in the error.
func run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out.Bytes(), 4000))
	}
	return out.Bytes(), nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// aptCandidates returns the candidate version of each package according to
// the host's apt lists.
func aptCandidates(ctx context.Context, pkgs ...string) (map[string]string, error) {
	out := map[string]string{}
	if len(pkgs) == 0 {
		return out, nil
	}
	stdout, err := run(ctx, "", "apt-cache", append([]string{"policy"}, pkgs...)...)
	if err != nil {
		return nil, err
	}
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	for sc.Scan() {
		line := sc.Text()
		if line != "" && line[0] != ' ' && strings.HasSuffix(line, ":") {
			cur = strings.TrimSuffix(line, ":")
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok && cur != "" {
			out[cur] = strings.TrimSpace(v)
		}
	}
	for _, p := range pkgs {
		if v := out[p]; v == "" || v == "(none)" {
			return nil, fmt.Errorf("testimages: apt has no candidate version of %s (run apt-get update?)", p)
		}
	}
	return out, nil
}

func dpkgArch(ctx context.Context) (string, error) {
	out, err := run(ctx, "", "dpkg", "--print-architecture")
	return strings.TrimSpace(string(out)), err
}

func dpkgInstalledVersion(ctx context.Context, pkg string) (string, error) {
	out, err := run(ctx, "", "dpkg-query", "-W", "-f=${Version}", pkg)
	return strings.TrimSpace(string(out)), err
}

// aptDownload fetches pkg's candidate .deb into dir and returns its path.
func aptDownload(ctx context.Context, dir, pkg string) (string, error) {
	if _, err := run(ctx, dir, "apt-get", "download", "-q", pkg); err != nil {
		return "", err
	}
	m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download %s: expected one .deb, found %v", pkg, m)
	}
	return m[0], nil
}

// mirrors returns the Debian mirror and the security mirror ("" if none)
// to build from: the explicit setting, else the host's apt sources. No
// mirror host is built in: a machine's apt sources say which one it may
// reach, and a guess would fail slowly where the network is closed.
func mirrors(override string) (mirror, security string, err error) {
	return mirrorsFrom(override, "/etc/apt")
}

// mirrorsFrom is mirrors with the apt configuration directory as a
// parameter (tests give their own).
func mirrorsFrom(override, aptDir string) (mirror, security string, err error) {
	if override == "" {
		override = os.Getenv(MirrorEnv)
	}
	if override != "" {
		mirror = strings.TrimSuffix(override, "/")
		if strings.HasSuffix(mirror, "/debian") {
			security = mirror + "-security"
		}
		return mirror, security, nil
	}
	for _, u := range aptURIs(aptDir) {
		u = strings.TrimSuffix(u, "/")
		switch {
		case strings.HasSuffix(u, "/debian") && mirror == "":
			mirror = u
		case strings.HasSuffix(u, "/debian-security") && security == "":
			security = u
		}
	}
	if mirror == "" {
		return "", "", fmt.Errorf("no Debian mirror: the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d) name no http(s) URI ending in /debian; give one with --mirror URL or %s=URL", MirrorEnv)
	}
	return mirror, security, nil
}

// aptURIs lists the http(s) URIs of the apt sources under aptDir
// (/etc/apt on the host), deb822 .sources files and one-line .list files.
func aptURIs(aptDir string) []string {
	var uris []string
	files, _ := filepath.Glob(filepath.Join(aptDir, "sources.list.d", "*.sources"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "URIs:"); ok {
				uris = append(uris, strings.Fields(v)...)
			}
		}
	}
	lists, _ := filepath.Glob(filepath.Join(aptDir, "sources.list.d", "*.list"))
	for _, f := range append([]string{filepath.Join(aptDir, "sources.list")}, lists...) {
		data, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(data), "\n") {
			fs := strings.Fields(line)
			if len(fs) < 3 || fs[0] != "deb" {
				continue
			}
			for _, x := range fs[1:] {
				if strings.HasPrefix(x, "http://") || strings.HasPrefix(x, "https://") {
					uris = append(uris, x)
					break
				}
			}
		}
	}
	return uris
}

// sourcesList is the /etc/apt/sources.list written into the debian image.
func sourcesList(mirror, security string) string {
	s := fmt.Sprintf("deb %s %s main\ndeb %s %s-updates main\n", mirror, Suite, mirror, Suite)
	if security != "" {
		s += fmt.Sprintf("deb %s %s-security main\n", security, Suite)
	}
	return s
}

// debootstrap creates a minbase root filesystem in rootfs.
func debootstrap(ctx context.Context, rootfs, mirror string, logw io.Writer) error {
	arch, err := dpkgArch(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--arch="+arch,
		"--components=main", Suite, rootfs, mirror)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(&buf, logw)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap: %w\n%s", err, tail(buf.Bytes(), 4000))
	}
	return nil
}

// chroot prepares a root filesystem for running package maintenance in it:
// /proc mounted, a few device nodes, a policy-rc.d that forbids starting
// services and the host's resolv.conf. close undoes all of it.
type chroot struct {
	root    string
	mounts  []string
	created []string
}

func enterChroot(root string) (c *chroot, err error) {
	c = &chroot{root: root}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	proc := filepath.Join(root, "proc")
	if err := os.MkdirAll(proc, 0o555); err != nil {
		return nil, err
	}
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("mount proc: %w", err)
	}
	c.mounts = append(c.mounts, proc)

	dev := filepath.Join(root, "dev")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		p := filepath.Join(dev, d.name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return nil, fmt.Errorf("mknod %s: %w", p, err)
		}
		c.created = append(c.created, p)
		if err := os.Chmod(p, 0o666); err != nil {
			return nil, err
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		p := filepath.Join(dev, name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.Symlink(target, p); err != nil {
			return nil, err
		}
		c.created = append(c.created, p)
	}
	policy := filepath.Join(root, "usr/sbin/policy-rc.d")
	if _, err := os.Lstat(policy); os.IsNotExist(err) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\n# jevm testimages: never start services while building\nexit 101\n"), 0o755); err != nil {
			return nil, err
		}
		c.created = append(c.created, policy)
	}
	resolv := filepath.Join(root, "etc/resolv.conf")
	if _, err := os.Lstat(resolv); os.IsNotExist(err) {
		data, err := os.ReadFile("/etc/resolv.conf")
		if err != nil {
			data = nil
		}
		if err := os.WriteFile(resolv, data, 0o644); err != nil {
			return nil, err
		}
		c.created = append(c.created, resolv)
	}
	return c, nil
}

// run executes argv (absolute path) inside the chroot.
func (c *chroot) run(ctx context.Context, logw io.Writer, argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: c.root}
	cmd.Dir = "/"
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive", "DEBCONF_NONINTERACTIVE_SEEN=true",
	}
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(&buf, logw)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("chroot %s: %w\n%s", strings.Join(argv, " "), err, tail(buf.Bytes(), 4000))
	}
	return nil
}

func (c *chroot) close() error {
	var firstErr error
	for i := len(c.mounts) - 1; i >= 0; i-- {
		if err := unmount(c.mounts[i]); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	c.mounts = nil
	for i := len(c.created) - 1; i >= 0; i-- {
		if err := os.Remove(c.created[i]); err != nil && !os.IsNotExist(err) && firstErr == nil {
			firstErr = err
		}
	}
	c.created = nil
	return firstErr
}

func unmount(p string) error {
	if err := unix.Unmount(p, 0); err == nil || err == unix.EINVAL || err == unix.ENOENT {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	return nil
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) { return mountinfo.Under(dir) }

// safeRemoveAll unmounts anything mounted below dir, then removes it. It
// refuses to remove a tree that still has mounts (a bind-mounted /dev would
// otherwise lose the host's device nodes).
func safeRemoveAll(dir string) error {
	if _, err := os.Lstat(dir); os.IsNotExist(err) {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	mps, err := mountsUnder(abs)
	if err != nil {
		return err
	}
	for _, mp := range mps {
		if err := unmount(mp); err != nil {
			return err
		}
	}
	if mps, err = mountsUnder(abs); err != nil {
		return err
	}
	if len(mps) > 0 {
		return fmt.Errorf("refusing to remove %s: still mounted: %v", abs, mps)
	}
	return os.RemoveAll(abs)
}

// scrubRootfs removes caches, logs and host-specific files that a root
// filesystem picks up while being built, and pins the dates that would
// otherwise differ between builds.
func scrubRootfs(root string) error {
	j := func(p string) string { return filepath.Join(root, p) }
	removeGlob := func(pattern string) error {
		m, err := filepath.Glob(j(pattern))
		if err != nil {
			return err
		}
		for _, p := range m {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
		return nil
	}
	// apt lists and caches: keep the directories, drop the contents.
	ents, _ := os.ReadDir(j("var/lib/apt/lists"))
	for _, e := range ents {
		if e.Name() != "partial" && e.Name() != "lock" {
			if err := os.RemoveAll(j("var/lib/apt/lists/" + e.Name())); err != nil {
				return err
			}
		}
	}
	for _, g := range []string{
		"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
		"var/lib/dpkg/*-old", "var/cache/debconf/*-old",
		"var/cache/ldconfig/aux-cache", "var/log/bootstrap.log", "var/log/apt/eipp.log.xz",
		"etc/resolv.conf", "etc/hostname", "run/adduser", "tmp/*", "var/tmp/*", "root/.bash_history",
	} {
		if err := removeGlob(g); err != nil {
			return err
		}
	}
	// Logs carry timestamps: keep the files, empty them.
	err := filepath.Walk(j("var/log"), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if fi.Mode().IsRegular() && fi.Size() > 0 {
			return os.Truncate(p, 0)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(j("etc/hosts"), []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"), 0o644); err != nil {
		return err
	}
	// shadow's third field is the date of the last password change, in
	// days: pin it to Epoch.
	days := strconv.FormatInt(Epoch.Unix()/86400, 10)
	for _, f := range []string{"etc/shadow", "etc/shadow-"} {
		if err := rewriteLines(j(f), func(line string) string {
			fs := strings.Split(line, ":")
			if len(fs) >= 3 && fs[2] != "" {
				fs[2] = days
			}
			return strings.Join(fs, ":")
		}); err != nil {
			return err
		}
	}
	return nil
}

// rewriteLines applies fn to each line of p, keeping its mode and owner.
// A missing file is not an error.
func rewriteLines(p string, fn func(string) string) error {
	data, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = fn(l)
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(strings.Join(lines, "\n")); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// passwdHas reports whether root's /etc/passwd defines user.
func passwdHas(root, user string) bool {
	data, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, user+":") {
			return true
		}
	}
	return false
}
