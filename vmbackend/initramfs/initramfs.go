// Package initramfs builds the initramfs every jeVM boots: the guest agent
// as /init plus the kernel modules it needs, in the order they must be
// loaded (the guest has no modprobe and no modules.dep).
//
// The archive is a gzip-compressed "newc" cpio, the format the kernel
// unpacks. It is written with github.com/cavaliergopher/cpio (already a
// dependency of the module) because the standard library has no cpio
// writer and newc's header/padding rules are easy to get subtly wrong. That
// library cannot record device numbers, which is fine: the kernel's
// built-in initramfs already provides /dev/console, and the agent mounts
// devtmpfs on /dev.
//
// The output is deterministic (sorted entries, fixed ownership and mtimes,
// a gzip header without name or time), so its SHA-256 can key templates.
package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// DefaultModules must be present (or built into the kernel).
var DefaultModules = []string{
	"virtio_pci",
	"virtio_blk",
	"virtio_console",
	"virtio_net",
	"ext4",
	// ext4 and jbd2 compute metadata checksums with the crypto API's
	// "crc32c", which the kernel would request_module() at mount time
	// (ext4's softdep); there is no modprobe in the guest, so load it.
	"crc32c_generic",
	"overlay",
}

// DefaultOptionalModules are included when the kernel has them.
var DefaultOptionalModules = []string{
	"crc32c_intel",
	"virtio_rng",
	"9p",
	"9pnet_virtio",
	"vmw_vsock_virtio_transport",
	// NFS volumes are mounted by the guest itself (volumes.GuestMount);
	// nfs, sunrpc and lockd come as their dependencies.
	"nfsv3",
	"nfsv4",
	// The agent aborts the TCP connections of addresses a migrated or
	// forked guest lost (sock_diag's SOCK_DESTROY).
	"tcp_diag",
}

// OrderFile is the path, inside the initramfs, of the module load order:
// one absolute path per line, dependencies first.
const OrderFile = "/lib/modules/ORDER"

// Options says what to put in the initramfs.
type Options struct {
	// AgentPath is the static jevm-agent binary, installed as /init.
	AgentPath string
	// ModulesDir is the kernel's lib/modules/<release> directory (with
	// uncompressed .ko files; modules.dep is not needed).
	ModulesDir string
	// Output is the file to write (replaced atomically).
	Output string
	// Modules and OptionalModules override DefaultModules and
	// DefaultOptionalModules when non-nil. Names use '_' or '-'.
	Modules         []string
	OptionalModules []string
	// KeepSignatures keeps the modules' appended signatures. By default
	// they are stripped: the kernel then loads the modules unverified (and
	// marks itself tainted), which halves module loading at a cold boot
	// under TCG (~2.8 s -> ~1.3 s measured); it would refuse them only
	// under module.sig_enforce or lockdown, which jeVMs do not use.
	KeepSignatures bool
}

// Result describes a built initramfs.
type Result struct {
	Path string
	// SHA256 is the hex SHA-256 of the output file.
	SHA256  string
	Size    int64
	Release string
	// Modules are the module paths inside the initramfs in load order (the
	// lines of OrderFile).
	Modules []string
	// Missing lists optional modules the kernel has neither as a module
	// nor built in.
	Missing []string
}

type module struct {
	name    string
	rel     string // path relative to ModulesDir
	depends []string
	softpre []string // as written: module names or aliases
	loaded  bool     // modinfo read
}

type index struct {
	dir     string
	mods    map[string]*module // by normalised name
	builtin map[string]bool
	aliases map[string]string // crypto algorithm alias -> module, built lazily
}

// cryptoAlias resolves a soft dependency that names a crypto algorithm
// (ext4's "pre: crc32c") to the module implementing it, preferring the
// portable "_generic" one. Only modules under crypto/ directories are
// scanned, which is where such aliases live.
func (ix *index) cryptoAlias(name string) string {
	if ix.aliases == nil {
		ix.aliases = map[string]string{}
		var names []string
		for n, m := range ix.mods {
			if strings.Contains("/"+m.rel, "/crypto/") {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			for _, a := range readAliases(filepath.Join(ix.dir, ix.mods[n].rel)) {
				a = strings.TrimPrefix(a, "crypto-")
				if old, ok := ix.aliases[a]; !ok || (!strings.HasSuffix(old, "_generic") && strings.HasSuffix(n, "_generic")) {
					ix.aliases[a] = n
				}
			}
		}
	}
	return ix.aliases[name]
}

func readAliases(p string) []string {
	f, err := elf.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil
	}
	var out []string
	for _, kv := range strings.Split(string(data), "\x00") {
		if v, ok := strings.CutPrefix(kv, "alias="); ok {
			out = append(out, v)
		}
	}
	return out
}

func normName(s string) string {
	s = strings.TrimSuffix(filepath.Base(s), ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

func loadIndex(dir string) (*index, error) {
	ix := &index{dir: dir, mods: map[string]*module{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			return nil
		}
		if strings.HasSuffix(name, ".ko.xz") || strings.HasSuffix(name, ".ko.zst") || strings.HasSuffix(name, ".ko.gz") {
			return fmt.Errorf("initramfs: compressed module %s is not supported (unpack modules first)", p)
		}
		if !strings.HasSuffix(name, ".ko") {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		n := normName(name)
		if old, ok := ix.mods[n]; ok && old.rel < filepath.ToSlash(rel) {
			return nil // deterministic choice among duplicates
		}
		ix.mods[n] = &module{name: n, rel: filepath.ToSlash(rel)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ix.mods) == 0 {
		return nil, fmt.Errorf("initramfs: no kernel modules under %s", dir)
	}
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if l := strings.TrimSpace(s.Text()); l != "" {
				ix.builtin[normName(l)] = true
			}
		}
		f.Close()
	}
	return ix, nil
}

// modinfo reads a module's dependencies from its ELF .modinfo section.
func (ix *index) modinfo(m *module) error {
	if m.loaded {
		return nil
	}
	f, err := elf.Open(filepath.Join(ix.dir, m.rel))
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", m.rel, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return fmt.Errorf("initramfs: %s has no .modinfo section", m.rel)
	}
	data, err := sec.Data()
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", m.rel, err)
	}
	for _, kv := range strings.Split(string(data), "\x00") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					m.depends = append(m.depends, normName(d))
				}
			}
		case "softdep":
			// "pre: a b post: c"
			pre := false
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						m.softpre = append(m.softpre, w)
					}
				}
			}
		}
	}
	m.loaded = true
	return nil
}

// resolveOrder returns the modules to load for the requested names,
// dependencies first, and the optional names that are missing.
func (ix *index) resolveOrder(required, optional []string) ([]*module, []string, error) {
	var order []*module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string, soft bool) error
	visit = func(name string, chain []string, soft bool) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("initramfs: module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		}
		m := ix.mods[name]
		if m == nil {
			if ix.builtin[name] || soft {
				// Built in, or a soft dependency naming an alias (such
				// as "crc32c") rather than a module.
				state[name] = 2
				return nil
			}
			return fmt.Errorf("initramfs: module %s (needed by %s) not found", name, strings.Join(chain, " -> "))
		}
		state[name] = 1
		if err := ix.modinfo(m); err != nil {
			return err
		}
		next := append(chain, name)
		for _, raw := range m.softpre {
			d := normName(raw)
			if ix.mods[d] == nil && !ix.builtin[d] {
				d = ix.cryptoAlias(strings.TrimPrefix(raw, "crypto-"))
				if d == "" {
					continue
				}
			}
			if err := visit(d, next, true); err != nil {
				return err
			}
		}
		for _, d := range m.depends {
			if err := visit(d, next, false); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, m)
		return nil
	}
	for _, n := range required {
		n = normName(n)
		if ix.mods[n] == nil && !ix.builtin[n] {
			return nil, nil, fmt.Errorf("initramfs: required module %s is neither in %s nor built in", n, ix.dir)
		}
		if err := visit(n, nil, false); err != nil {
			return nil, nil, err
		}
	}
	var missing []string
	for _, n := range optional {
		n = normName(n)
		if ix.mods[n] == nil && !ix.builtin[n] {
			missing = append(missing, n)
			continue
		}
		if err := visit(n, nil, false); err != nil {
			return nil, nil, err
		}
	}
	return order, missing, nil
}

type entry struct {
	name string // without leading slash
	mode cpio.FileMode
	src  string // file to copy (regular files)
	data []byte // contents (when src is empty)
}

// Build writes the initramfs.
func Build(opts Options) (Result, error) {
	if opts.AgentPath == "" || opts.ModulesDir == "" || opts.Output == "" {
		return Result{}, errors.New("initramfs: AgentPath, ModulesDir and Output are required")
	}
	if err := checkStatic(opts.AgentPath); err != nil {
		return Result{}, err
	}
	dir := filepath.Clean(opts.ModulesDir)
	release := filepath.Base(dir)
	ix, err := loadIndex(dir)
	if err != nil {
		return Result{}, err
	}
	required, optional := opts.Modules, opts.OptionalModules
	if required == nil {
		required = DefaultModules
	}
	if optional == nil {
		optional = DefaultOptionalModules
	}
	order, missing, err := ix.resolveOrder(required, optional)
	if err != nil {
		return Result{}, err
	}

	const dirMode = cpio.TypeDir | 0o755
	entries := map[string]*entry{}
	addDirs := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if entries[d] == nil {
				entries[d] = &entry{name: d, mode: dirMode}
			}
		}
	}
	add := func(e *entry) {
		entries[e.name] = e
		addDirs(e.name)
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "mnt/root", "bin", "etc"} {
		add(&entry{name: d, mode: dirMode})
	}
	entries["tmp"].mode = cpio.TypeDir | 0o1777
	add(&entry{name: "init", mode: cpio.TypeReg | 0o755, src: opts.AgentPath})
	var lines []string
	for _, m := range order {
		name := path.Join("lib/modules", release, m.rel)
		e := &entry{name: name, mode: cpio.TypeReg | 0o644, src: filepath.Join(dir, filepath.FromSlash(m.rel))}
		if !opts.KeepSignatures {
			data, err := os.ReadFile(e.src)
			if err != nil {
				return Result{}, fmt.Errorf("initramfs: %w", err)
			}
			e.src, e.data = "", stripSignature(data)
		}
		add(e)
		lines = append(lines, "/"+name)
	}
	add(&entry{name: strings.TrimPrefix(OrderFile, "/"), mode: cpio.TypeReg | 0o644, data: []byte(strings.Join(lines, "\n") + "\n")})

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)

	tmp, err := os.CreateTemp(filepath.Dir(opts.Output), "."+filepath.Base(opts.Output)+".*")
	if err != nil {
		return Result{}, fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	gz, _ := gzip.NewWriterLevel(bw, gzip.BestCompression) // header: no name, zero mtime
	gz.OS = 3                                              // Unix, whatever the build host
	cw2 := cpio.NewWriter(gz)
	for _, n := range names {
		if err := writeEntry(cw2, entries[n]); err != nil {
			return Result{}, fmt.Errorf("initramfs: %s: %w", n, err)
		}
	}
	if err := cw2.Close(); err != nil {
		return Result{}, fmt.Errorf("initramfs: %w", err)
	}
	if err := gz.Close(); err != nil {
		return Result{}, fmt.Errorf("initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return Result{}, fmt.Errorf("initramfs: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return Result{}, fmt.Errorf("initramfs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Result{}, fmt.Errorf("initramfs: %w", err)
	}
	if err := os.Rename(tmp.Name(), opts.Output); err != nil {
		return Result{}, fmt.Errorf("initramfs: %w", err)
	}
	return Result{
		Path:    opts.Output,
		SHA256:  hex.EncodeToString(h.Sum(nil)),
		Size:    cw.n,
		Release: release,
		Modules: lines,
		Missing: missing,
	}, nil
}

func writeEntry(w *cpio.Writer, e *entry) error {
	hdr := &cpio.Header{Name: e.name, Mode: e.mode, Links: 1}
	if e.mode&cpio.ModeType == cpio.TypeDir {
		hdr.Links = 2
		return w.WriteHeader(hdr)
	}
	if e.src == "" {
		hdr.Size = int64(len(e.data))
		if err := w.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := w.Write(e.data)
		return err
	}
	f, err := os.Open(e.src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", e.src)
	}
	hdr.Size = fi.Size()
	if err := w.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(w, f)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("%s changed size while being read", e.src)
	}
	return err
}

// moduleSigMagic ends a signed module: the signature, a struct
// module_signature (12 bytes, big-endian signature length last) and this.
const moduleSigMagic = "~Module signature appended~\n"

// stripSignature returns the module without its appended signature (or
// unchanged if it has none).
func stripSignature(b []byte) []byte {
	if !bytes.HasSuffix(b, []byte(moduleSigMagic)) {
		return b
	}
	end := len(b) - len(moduleSigMagic)
	if end < 12 {
		return b
	}
	info := b[end-12 : end]
	sigLen := int(binary.BigEndian.Uint32(info[8:12])) + int(info[3]) + int(info[4]) // sig + signer + key id
	start := end - 12 - sigLen
	if start < 0 {
		return b
	}
	return b[:start]
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// checkStatic refuses an agent that needs a dynamic loader: the initramfs
// has no libc.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("initramfs: agent %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("initramfs: agent %s is dynamically linked; build it with CGO_ENABLED=0", p)
		}
	}
	if f.Machine != elf.EM_X86_64 && f.Machine != elf.EM_AARCH64 {
		return fmt.Errorf("initramfs: agent %s is for %v", p, f.Machine)
	}
	return nil
}

// AgentPackage is the import path of the agent command.
const AgentPackage = "github.com/jevm/jevm/cmd/jevm-agent"

// BuildAgent compiles the guest agent as a static binary at output, running
// `CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w'` in srcDir
// (a directory of the jevm module) with the given GOARCH ("" for the
// host's).
func BuildAgent(ctx context.Context, srcDir, goarch, output string) error {
	abs, err := filepath.Abs(output)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", abs, AgentPackage)
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if goarch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+goarch)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build jevm-agent: %w\n%s", err, out)
	}
	return nil
}
