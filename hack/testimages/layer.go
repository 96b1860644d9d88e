package testimages

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Epoch is the fixed timestamp used for every file mtime in every layer and
// for every "created" field in image configs, so that rebuilding from the
// same inputs yields byte-identical blobs.
var Epoch = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

// whiteout markers, as defined by the OCI image spec (layer changesets).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

type inodeKey struct{ dev, ino uint64 }

// entry is one tar member of a layer. Regular file contents come either from
// data (in-memory) or from src (a file on disk).
type entry struct {
	name     string // clean relative path, no leading or trailing slash
	typ      byte   // tar typeflag
	mode     int64  // permission bits plus setuid/setgid/sticky
	uid, gid int
	size     int64
	link     string // symlink target
	devMajor int64
	devMinor int64
	data     []byte
	src      string
	ino      inodeKey // non-zero for files with more than one link
}

func (e *entry) header() *tar.Header {
	h := &tar.Header{
		Typeflag: e.typ,
		Name:     e.name,
		Mode:     e.mode,
		Uid:      e.uid,
		Gid:      e.gid,
		ModTime:  Epoch,
		Linkname: e.link,
	}
	switch e.typ {
	case tar.TypeDir:
		h.Name += "/"
	case tar.TypeReg:
		h.Size = e.size
	case tar.TypeChar, tar.TypeBlock:
		h.Devmajor, h.Devminor = e.devMajor, e.devMinor
	}
	return h
}

// memLayer builds a layer from entries declared in code.
type memLayer struct {
	entries map[string]*entry
}

func newMemLayer() *memLayer { return &memLayer{entries: map[string]*entry{}} }

func cleanRel(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

// parents adds root-owned 0755 directories for missing parents of p.
func (l *memLayer) parents(p string) {
	dir := path.Dir(p)
	if dir == "." || dir == "/" || dir == "" {
		return
	}
	if _, ok := l.entries[dir]; ok {
		return
	}
	l.parents(dir)
	l.entries[dir] = &entry{name: dir, typ: tar.TypeDir, mode: 0o755}
}

func (l *memLayer) dir(p string, mode int64, uid, gid int) {
	p = cleanRel(p)
	l.parents(p)
	l.entries[p] = &entry{name: p, typ: tar.TypeDir, mode: mode, uid: uid, gid: gid}
}

func (l *memLayer) file(p string, mode int64, uid, gid int, data []byte) {
	p = cleanRel(p)
	l.parents(p)
	l.entries[p] = &entry{name: p, typ: tar.TypeReg, mode: mode, uid: uid, gid: gid, size: int64(len(data)), data: data}
}

func (l *memLayer) symlink(p, target string) {
	p = cleanRel(p)
	l.parents(p)
	l.entries[p] = &entry{name: p, typ: tar.TypeSymlink, mode: 0o777, link: target}
}

// whiteout records the deletion of p (present in a lower layer).
func (l *memLayer) whiteout(p string) {
	p = cleanRel(p)
	wh := path.Join(path.Dir(p), whiteoutPrefix+path.Base(p))
	l.file(wh, 0o644, 0, 0, nil)
}

// opaque marks directory p as opaque: everything below it in lower layers is
// hidden.
func (l *memLayer) opaque(p string) {
	p = cleanRel(p)
	l.file(path.Join(p, whiteoutOpaque), 0o644, 0, 0, nil)
}

func (l *memLayer) list() []*entry {
	out := make([]*entry, 0, len(l.entries))
	for _, e := range l.entries {
		out = append(out, e)
	}
	sortEntries(out)
	return out
}

// sortEntries orders entries by path. Plain string order puts every
// directory before its contents because a parent path is a prefix of its
// children's paths.
func sortEntries(es []*entry) {
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
}

// builtLayer is a layer blob written into an OCI layout.
type builtLayer struct {
	Desc   ocispec.Descriptor // gzip-compressed blob
	DiffID digest.Digest      // digest of the uncompressed tar
}

// writeLayer writes entries (already sorted) as a gzip-compressed tar into
// the layout's blob store and returns its descriptor and diff ID.
func writeLayer(lay *layout, entries []*entry) (builtLayer, error) {
	tmp, err := os.CreateTemp(lay.dir, ".layer-*")
	if err != nil {
		return builtLayer{}, err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()

	compHash := sha256.New()
	counter := &countWriter{}
	gz, err := gzip.NewWriterLevel(io.MultiWriter(tmp, compHash, counter), gzip.DefaultCompression)
	if err != nil {
		return builtLayer{}, err
	}
	diffHash := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, diffHash))

	seen := map[inodeKey]string{}
	for _, e := range entries {
		h := e.header()
		if e.typ == tar.TypeReg && e.ino != (inodeKey{}) {
			if first, ok := seen[e.ino]; ok {
				h.Typeflag = tar.TypeLink
				h.Linkname = first
				h.Size = 0
			} else {
				seen[e.ino] = e.name
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return builtLayer{}, fmt.Errorf("tar header %s: %w", e.name, err)
		}
		if h.Typeflag != tar.TypeReg || h.Size == 0 {
			continue
		}
		if e.data != nil {
			if _, err := tw.Write(e.data); err != nil {
				return builtLayer{}, err
			}
			continue
		}
		if err := copyFileInto(tw, e.src, h.Size); err != nil {
			return builtLayer{}, fmt.Errorf("tar %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return builtLayer{}, err
	}
	if err := gz.Close(); err != nil {
		return builtLayer{}, err
	}
	if err := tmp.Sync(); err != nil {
		return builtLayer{}, err
	}
	dgst := digest.NewDigestFromBytes(digest.SHA256, compHash.Sum(nil))
	if err := os.Rename(tmp.Name(), lay.blobPath(dgst)); err != nil {
		return builtLayer{}, err
	}
	return builtLayer{
		Desc: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageLayerGzip,
			Digest:    dgst,
			Size:      counter.n,
		},
		DiffID: digest.NewDigestFromBytes(digest.SHA256, diffHash.Sum(nil)),
	}, nil
}

func copyFileInto(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("file changed size while archiving (%d != %d)", n, size)
	}
	return nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// fsNode describes one path of a directory tree on disk.
type fsNode struct {
	entry
	hash []byte // sha256 of regular file content, computed on demand
}

// scanOptions control which parts of a tree are archived.
type scanOptions struct {
	// emptyDirs lists directories that are archived without their contents
	// (dev, proc, sys of a root filesystem).
	emptyDirs map[string]bool
	// hash computes content digests of all regular files.
	hash bool
}

var rootfsScan = scanOptions{emptyDirs: map[string]bool{"dev": true, "proc": true, "sys": true}}

// scanTree walks root in lexical order and returns its nodes. Sockets are
// skipped.
func scanTree(root string, opts scanOptions) ([]*fsNode, error) {
	var nodes []*fsNode
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		n := &fsNode{entry: entry{
			name: rel,
			mode: int64(st.Mode & 0o7777),
			uid:  int(st.Uid),
			gid:  int(st.Gid),
			src:  p,
		}}
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			n.typ = tar.TypeDir
		case syscall.S_IFREG:
			n.typ = tar.TypeReg
			n.size = st.Size
			if st.Nlink > 1 {
				n.ino = inodeKey{uint64(st.Dev), st.Ino}
			}
		case syscall.S_IFLNK:
			n.typ = tar.TypeSymlink
			if n.link, err = os.Readlink(p); err != nil {
				return err
			}
		case syscall.S_IFIFO:
			n.typ = tar.TypeFifo
		case syscall.S_IFCHR, syscall.S_IFBLK:
			n.typ = tar.TypeChar
			if st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
				n.typ = tar.TypeBlock
			}
			n.devMajor = int64(unix.Major(uint64(st.Rdev)))
			n.devMinor = int64(unix.Minor(uint64(st.Rdev)))
		default:
			return nil // sockets and anything exotic
		}
		if n.typ == tar.TypeReg && opts.hash {
			if n.hash, err = hashFile(p); err != nil {
				return err
			}
		}
		nodes = append(nodes, n)
		if n.typ == tar.TypeDir && opts.emptyDirs[rel] {
			return fs.SkipDir
		}
		return nil
	})
	return nodes, err
}

func hashFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// treeEntries turns a scanned tree into layer entries (a full, non-diff
// layer).
func treeEntries(nodes []*fsNode) []*entry {
	out := make([]*entry, len(nodes))
	for i, n := range nodes {
		out[i] = &n.entry
	}
	sortEntries(out)
	return out
}

func sameMeta(a, b *fsNode) bool {
	return a.typ == b.typ && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid &&
		a.size == b.size && a.link == b.link && a.devMajor == b.devMajor && a.devMinor == b.devMinor
}

// diffEntries computes the changeset that turns the tree described by base
// into the tree described by upper: added and changed paths, their parent
// directories, and whiteouts for deleted paths. base must have been scanned
// with hashing enabled.
func diffEntries(base, upper []*fsNode) ([]*entry, error) {
	baseByName := make(map[string]*fsNode, len(base))
	for _, n := range base {
		baseByName[n.name] = n
	}
	upperByName := make(map[string]*fsNode, len(upper))
	for _, n := range upper {
		upperByName[n.name] = n
	}

	out := map[string]*entry{}
	var addParents func(p string)
	addParents = func(p string) {
		dir := path.Dir(p)
		if dir == "." {
			return
		}
		if _, ok := out[dir]; ok {
			return
		}
		if u, ok := upperByName[dir]; ok {
			out[dir] = &u.entry
		}
		addParents(dir)
	}

	for _, u := range upper {
		b := baseByName[u.name]
		changed := b == nil || !sameMeta(b, u)
		if !changed && u.typ == tar.TypeReg {
			h, err := hashFile(u.src)
			if err != nil {
				return nil, err
			}
			changed = string(h) != string(b.hash)
		}
		if changed {
			out[u.name] = &u.entry
			addParents(u.name)
		}
	}
	for _, b := range base {
		if _, ok := upperByName[b.name]; ok {
			continue
		}
		if dir := path.Dir(b.name); dir != "." {
			if u, ok := upperByName[dir]; !ok || u.typ != tar.TypeDir {
				continue // the parent is deleted or replaced: that covers b
			}
		}
		wh := path.Join(path.Dir(b.name), whiteoutPrefix+path.Base(b.name))
		out[wh] = &entry{name: wh, typ: tar.TypeReg, mode: 0o644}
		addParents(wh)
	}
	list := make([]*entry, 0, len(out))
	for _, e := range out {
		list = append(list, e)
	}
	sortEntries(list)
	return list, nil
}
