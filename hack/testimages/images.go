package testimages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/archive"
	"github.com/containerd/containerd/archive/compression"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultPath is the PATH every image sets.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// WebIndexHTML is the content of /www/index.html in the web image.
const WebIndexHTML = "<!doctype html>\n<html><body><h1>jevm web test image</h1></body></html>\n"

// Files of the layers image.
const (
	LayersKeepContent = "keep\n"
	LayersNewContent  = "new\n"
)

func labels(name, desc, version string) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       name,
		"org.opencontainers.image.description": desc,
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.vendor":      "jevm hack/testimages",
		"dev.jevm.testimage":                   name,
	}
}

// recipe builds image name into lay, using work as scratch space.
func (b *builder) recipe(ctx context.Context, name string, lay *layout, work string) error {
	switch name {
	case Busybox:
		return b.buildBusybox(ctx, lay, work)
	case Web:
		return b.buildWeb(lay)
	case Layers:
		return b.buildLayers(lay)
	case Debian:
		return b.buildDebian(ctx, lay, work)
	case Redis:
		return b.buildRedis(ctx, lay, work)
	}
	return fmt.Errorf("unknown image %q", name)
}

func (b *builder) buildBusybox(ctx context.Context, lay *layout, work string) error {
	deb, err := aptDownload(ctx, work, "busybox-static")
	if err != nil {
		return err
	}
	version := strings.ReplaceAll(strings.SplitN(filepath.Base(deb), "_", 3)[1], "%3a", ":")
	x := filepath.Join(work, "x")
	if _, err := run(ctx, "", "dpkg", "-x", deb, x); err != nil {
		return err
	}
	bin := filepath.Join(x, "bin/busybox")
	if _, err := os.Stat(bin); err != nil {
		bin = filepath.Join(x, "usr/bin/busybox")
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("busybox-static has no busybox binary: %w", err)
	}
	list, err := run(ctx, "", bin, "--list-full")
	if err != nil {
		return err
	}

	l := newMemLayer()
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var", "var/spool", "var/spool/mail"} {
		l.dir(d, 0o755, 0, 0)
	}
	l.dir("root", 0o700, 0, 0)
	l.dir("tmp", 0o1777, 0, 0)
	l.dir("var/www", 0o755, 33, 33)
	l.file("bin/busybox", 0o755, 0, 0, binary)
	applets := 0
	for _, p := range strings.Fields(string(list)) {
		p = cleanRel(p)
		if !strings.Contains(p, "/") || p == "bin/busybox" {
			continue // e.g. /linuxrc
		}
		l.symlink(p, "/bin/busybox")
		applets++
	}
	if applets < 100 {
		return fmt.Errorf("busybox --list-full listed only %d applets", applets)
	}
	l.file("etc/passwd", 0o644, 0, 0, []byte(
		"root:x:0:0:root:/root:/bin/sh\n"+
			"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"+
			"www-data:x:33:33:www-data:/var/www:/bin/false\n"+
			"nobody:x:65534:65534:nobody:/home:/bin/false\n"))
	l.file("etc/group", 0o644, 0, 0, []byte(
		"root:x:0:\n"+
			"daemon:x:1:\n"+
			"www-data:x:33:\n"+
			"users:x:100:\n"+
			"nogroup:x:65534:\n"))
	l.file("etc/shadow", 0o640, 0, 0, []byte(
		"root:*::0:::::\n"+
			"daemon:*::0:::::\n"+
			"www-data:*::0:::::\n"+
			"nobody:*::0:::::\n"))
	layer, err := writeLayer(lay, l.list())
	if err != nil {
		return err
	}
	return assemble(lay, imageRecipe{
		name:          Busybox,
		layers:        []builtLayer{layer},
		createdBy:     []string{fmt.Sprintf("ADD busybox-static %s (/bin/busybox, %d applet symlinks, /etc/passwd, /etc/group) in /", version, applets)},
		configHistory: []string{`CMD ["sh"]`},
		config: ocispec.ImageConfig{
			Env:    []string{DefaultPath},
			Cmd:    []string{"sh"},
			Labels: labels(Busybox, "busybox-static from Debian "+Suite, version),
		},
	})
}

func (b *builder) buildWeb(lay *layout) error {
	base := b.built[Busybox]
	l := newMemLayer()
	l.dir("www", 0o755, 0, 0)
	l.file("www/index.html", 0o644, 0, 0, []byte(WebIndexHTML))
	layer, err := writeLayer(lay, l.list())
	if err != nil {
		return err
	}
	return assemble(lay, imageRecipe{
		name:      Web,
		base:      base,
		layers:    []builtLayer{layer},
		createdBy: []string{"COPY index.html /www/index.html"},
		configHistory: []string{
			"WORKDIR /www",
			"EXPOSE 80/tcp",
			`CMD ["httpd","-f","-v","-p","80","-h","/www"]`,
		},
		config: ocispec.ImageConfig{
			Env:          []string{DefaultPath},
			Cmd:          []string{"httpd", "-f", "-v", "-p", "80", "-h", "/www"},
			ExposedPorts: map[string]struct{}{"80/tcp": {}},
			WorkingDir:   "/www",
			StopSignal:   "SIGTERM",
			Labels:       labels(Web, "busybox httpd serving /www on port 80", base.Config.Config.Labels["org.opencontainers.image.version"]),
		},
	})
}

func (b *builder) buildLayers(lay *layout) error {
	base := b.built[Busybox]
	l2 := newMemLayer()
	l2.dir("data", 0o755, 0, 0)
	l2.file("data/keep", 0o644, 0, 0, []byte(LayersKeepContent))
	l2.file("data/gone", 0o644, 0, 0, []byte("gone\n"))
	l2.dir("opq", 0o755, 0, 0)
	l2.file("opq/old1", 0o644, 0, 0, []byte("old1\n"))
	l2.dir("opq/sub", 0o755, 0, 0)
	l2.file("opq/sub/old2", 0o644, 0, 0, []byte("old2\n"))
	l2.dir("vol", 0o755, 65534, 65534)
	l2.file("vol/seed", 0o644, 65534, 65534, []byte("seed\n"))
	layer2, err := writeLayer(lay, l2.list())
	if err != nil {
		return err
	}
	l3 := newMemLayer()
	l3.dir("data", 0o755, 0, 0)
	l3.whiteout("data/gone")
	l3.dir("opq", 0o755, 0, 0)
	l3.opaque("opq")
	l3.file("opq/new", 0o644, 0, 0, []byte(LayersNewContent))
	layer3, err := writeLayer(lay, l3.list())
	if err != nil {
		return err
	}
	return assemble(lay, imageRecipe{
		name:   Layers,
		base:   base,
		layers: []builtLayer{layer2, layer3},
		createdBy: []string{
			"ADD data/keep data/gone opq/old1 opq/sub/old2 vol/seed /",
			"RUN rm /data/gone && rm -rf /opq && mkdir /opq && echo new > /opq/new",
		},
		configHistory: []string{"USER nobody", "WORKDIR /data", "VOLUME /vol", `CMD ["sh"]`},
		config: ocispec.ImageConfig{
			User:       "nobody",
			Env:        []string{DefaultPath, "JEVM_TEST=layers"},
			Cmd:        []string{"sh"},
			WorkingDir: "/data",
			Volumes:    map[string]struct{}{"/vol": {}},
			Labels:     labels(Layers, "whiteout and opaque-directory test image", base.Config.Config.Labels["org.opencontainers.image.version"]),
		},
	})
}

func (b *builder) logFile(work string) (*os.File, error) {
	return os.Create(filepath.Join(work, "build.log"))
}

func (b *builder) buildDebian(ctx context.Context, lay *layout, work string) error {
	logw, err := b.logFile(work)
	if err != nil {
		return err
	}
	defer logw.Close()
	mirror, security, err := mirrors(b.opts.Mirror)
	if err != nil {
		return err
	}
	rootfs := filepath.Join(work, "rootfs")
	b.opts.Logf("debootstrap --variant=minbase %s from %s", Suite, mirror)
	if err := debootstrap(ctx, rootfs, mirror, logw); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/apt/sources.list"), []byte(sourcesList(mirror, security)), 0o644); err != nil {
		return err
	}
	// Bring the minbase system up to date with -updates and -security, so
	// it has the versions the cache key was computed from.
	b.opts.Logf("apt-get dist-upgrade in the debian rootfs")
	if err := inChroot(rootfs, func(c *chroot) error {
		for _, argv := range [][]string{
			{"/usr/bin/apt-get", "update", "-q"},
			{"/usr/bin/apt-get", "dist-upgrade", "-y", "-q", "--no-install-recommends"},
			{"/usr/bin/apt-get", "clean"},
		} {
			if err := c.run(ctx, logw, argv...); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := scrubRootfs(rootfs); err != nil {
		return err
	}
	versions := installedVersions(rootfs, debianKeyPackages...)
	nodes, err := scanTree(rootfs, rootfsScan)
	if err != nil {
		return err
	}
	b.opts.Logf("writing debian layer (%d entries)", len(nodes))
	layer, err := writeLayer(lay, treeEntries(nodes))
	if err != nil {
		return err
	}
	return assemble(lay, imageRecipe{
		name:          Debian,
		layers:        []builtLayer{layer},
		createdBy:     []string{fmt.Sprintf("debootstrap --variant=minbase %s / && apt-get dist-upgrade (%s)", Suite, versions)},
		configHistory: []string{`CMD ["bash"]`},
		config: ocispec.ImageConfig{
			Env:    []string{DefaultPath},
			Cmd:    []string{"bash"},
			Labels: labels(Debian, "Debian "+Suite+" minbase", versions),
		},
	})
}

func (b *builder) buildRedis(ctx context.Context, lay *layout, work string) error {
	base := b.built[Debian]
	logw, err := b.logFile(work)
	if err != nil {
		return err
	}
	defer logw.Close()
	rootfs := filepath.Join(work, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return err
	}
	b.opts.Logf("unpacking the debian layer")
	for _, l := range base.Layers {
		if err := applyLayer(ctx, rootfs, base.BlobPath(l.Digest)); err != nil {
			return err
		}
	}
	lower, err := scanTree(rootfs, scanOptions{emptyDirs: rootfsScan.emptyDirs, hash: true})
	if err != nil {
		return err
	}
	b.opts.Logf("apt-get install redis-server in the debian rootfs")
	if err := inChroot(rootfs, func(c *chroot) error {
		for _, argv := range [][]string{
			{"/usr/bin/apt-get", "update", "-q"},
			{"/usr/bin/apt-get", "install", "-y", "-q", "--no-install-recommends", "redis-server"},
			{"/usr/bin/apt-get", "clean"},
			{"/usr/bin/install", "-d", "-m", "0755", "-o", "redis", "-g", "redis", "/data"},
		} {
			if err := c.run(ctx, logw, argv...); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := scrubRootfs(rootfs); err != nil {
		return err
	}
	upper, err := scanTree(rootfs, rootfsScan)
	if err != nil {
		return err
	}
	entries, err := diffEntries(lower, upper)
	if err != nil {
		return err
	}
	b.opts.Logf("writing redis layer (%d changed entries)", len(entries))
	layer, err := writeLayer(lay, entries)
	if err != nil {
		return err
	}
	version := installedVersions(rootfs, "redis-server")
	cfg := ocispec.ImageConfig{
		Env:          []string{DefaultPath},
		Entrypoint:   []string{"redis-server"},
		Cmd:          []string{"--protected-mode", "no", "--dir", "/data"},
		ExposedPorts: map[string]struct{}{"6379/tcp": {}},
		Volumes:      map[string]struct{}{"/data": {}},
		WorkingDir:   "/data",
		Labels:       labels(Redis, "Debian's redis-server on "+Suite, version),
	}
	hist := []string{"VOLUME /data", "WORKDIR /data", "EXPOSE 6379/tcp", `ENTRYPOINT ["redis-server"]`, `CMD ["--protected-mode","no","--dir","/data"]`}
	if passwdHas(rootfs, "redis") {
		cfg.User = "redis"
		hist = append([]string{"USER redis"}, hist...)
	}
	return assemble(lay, imageRecipe{
		name:          Redis,
		base:          base,
		layers:        []builtLayer{layer},
		createdBy:     []string{"apt-get install -y --no-install-recommends redis-server && install -d -o redis -g redis /data (" + version + ")"},
		configHistory: hist,
		config:        cfg,
	})
}

// inChroot prepares rootfs (see enterChroot), runs fn and always undoes the
// preparation.
func inChroot(rootfs string, fn func(*chroot) error) error {
	c, err := enterChroot(rootfs)
	if err != nil {
		return err
	}
	err = fn(c)
	if cerr := c.close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// applyLayer unpacks a (compressed) layer blob onto root, honouring
// whiteouts.
func applyLayer(ctx context.Context, root, blob string) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := compression.DecompressStream(f)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = archive.Apply(ctx, root, r)
	return err
}

// installedVersions reads dpkg's status file in root and returns
// "pkg=version" for each of pkgs, space separated.
func installedVersions(root string, pkgs ...string) string {
	data, _ := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	found := map[string]string{}
	for _, stanza := range strings.Split(string(data), "\n\n") {
		var name, version string
		for _, line := range strings.Split(stanza, "\n") {
			if v, ok := strings.CutPrefix(line, "Package: "); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(line, "Version: "); ok {
				version = v
			}
		}
		found[name] = version
	}
	var parts []string
	for _, p := range pkgs {
		parts = append(parts, p+"="+found[p])
	}
	return strings.Join(parts, " ")
}
