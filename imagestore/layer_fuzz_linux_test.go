//go:build linux

package imagestore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/archive/compression"
	"github.com/containerd/containerd/content"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/internal/fuzzjail"
)

// The layer targets run applyLayer (the host-side unpacker behind base
// disks and Unpack: pulled, loaded, imported and committed layers all go
// through it) on a thread chrooted to a fresh temporary directory holding
// the unpack root, "/root", and a sentinel directory beside it,
// "/sentinel". The chroot is only the harness's safety net: if the
// unpacker let a layer out of its root, the damage would stop at the
// temporary directory instead of reaching the host's files, and the
// sentinel check below would see it.

// memContent serves blobs from memory: all applyLayer needs of a content
// store.
type memContent struct {
	content.Store
	blobs map[digest.Digest][]byte
}

type memReaderAt struct{ *bytes.Reader }

func (memReaderAt) Close() error { return nil }

func (m *memContent) ReaderAt(_ context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	b, ok := m.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("no blob %s", desc.Digest)
	}
	return memReaderAt{bytes.NewReader(b)}, nil
}

// layerSandbox is one fuzz input's jail (internal/fuzzjail): layers are
// applied to its root, beside a sentinel that must never change.
type layerSandbox struct{ *fuzzjail.Sandbox }

func newLayerSandbox(t *testing.T) *layerSandbox {
	t.Helper()
	return &layerSandbox{fuzzjail.New(t)}
}

// check: fuzzjail's checks (nothing outside the root created, removed or
// changed, no hard link out), and names that begin with ".wh." are
// whiteouts, never written as files (only a directory created as the
// parent of another entry may have such a name).
func (sb *layerSandbox) check(t *testing.T) {
	t.Helper()
	sb.Check(t, func(p string, fi fs.FileInfo) {
		if !fi.IsDir() && strings.HasPrefix(fi.Name(), ".wh.") {
			t.Fatalf("whiteout written as a file: %s (%v)", p, fi.Mode())
		}
	})
}

// apply runs applyLayer with blob onto /root inside the chroot. diffID
// "" skips the diff ID check. An error must be a System error (a layer
// that cannot be applied fails the pull or the disk build); when diffID is
// the blob's true diff ID it must not be a mismatch.
func (sb *layerSandbox) apply(t *testing.T, blob []byte, diffID digest.Digest) error {
	t.Helper()
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	s := &Store{cs: &memContent{blobs: map[digest.Digest][]byte{desc.Digest: blob}}}
	var n int64
	err := sb.Run(t, func() error {
		var err error
		n, err = s.applyLayer(context.Background(), "/root", desc, diffID, nil)
		return err
	})
	if err != nil {
		if !errdefs.IsSystem(err) {
			t.Fatalf("applyLayer: error is not System: %v", err)
		}
		if diffID != "" && strings.Contains(err.Error(), "diff ID mismatch") {
			t.Fatalf("applyLayer: %v", err)
		}
		return err
	}
	if n < 0 {
		t.Fatalf("applyLayer: size %d", n)
	}
	return nil
}

// fuzzEntry is one entry of a layer the fuzzer wrote as a program.
type fuzzEntry struct {
	hdr  tar.Header
	body []byte
}

// Entry kinds of the layer program (op & 7).
const (
	opDir = iota
	opFile
	opSymlink
	opHardlink
	opWhiteout
	opOpaque
	opSpecial // a fifo or a /dev/null-like character device
	opNextLayer
)

// fuzzParts are path components the fuzzer picks from, so that names
// collide, climb and point at the sentinel; any other pick is raw bytes.
var fuzzParts = []string{"a", "b", "c", "..", ".", "", "sentinel", "victim", "root", "l", ".wh.a", ".wh..wh..opq", "...", "dir"}

type progReader struct {
	b []byte
	i int
}

func (r *progReader) next() byte {
	if r.i >= len(r.b) {
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *progReader) bytes(n int) []byte {
	end := r.i + n
	if end > len(r.b) {
		end = len(r.b)
	}
	out := r.b[r.i:end]
	r.i = end
	return out
}

func (r *progReader) part() string {
	c := int(r.next() % 16)
	if c < len(fuzzParts) {
		return fuzzParts[c]
	}
	return string(r.bytes(int(r.next() % 8)))
}

// name is 1 to 4 parts, perhaps absolute, perhaps with a trailing slash.
func (r *progReader) name() string {
	n := int(r.next()%4) + 1
	parts := make([]string, n)
	for i := range parts {
		parts[i] = r.part()
	}
	flags := r.next()
	s := strings.Join(parts, "/")
	if flags&1 != 0 {
		s = "/" + s
	}
	if flags&2 != 0 {
		s += "/"
	}
	return s
}

// linkname: the sentinel (absolute or climbing from the root) or a name.
func (r *progReader) linkname() string {
	switch r.next() % 6 {
	case 0:
		return "/sentinel"
	case 1:
		return "/sentinel/victim"
	case 2:
		return "../sentinel/victim"
	case 3:
		return "../../sentinel"
	}
	return r.name()
}

var fuzzModes = []int64{0o644, 0o755, 0o4755, 0o2755, 0o1777, 0, 0o777, 0o600}

// decodeLayers turns a fuzz program into up to three layers of at most 64
// entries in all.
func decodeLayers(prog []byte) [][]fuzzEntry {
	r := &progReader{b: prog}
	layers := [][]fuzzEntry{nil}
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for n := 0; r.i < len(r.b) && n < 64; n++ {
		op := r.next()
		flags := op >> 3
		h := tar.Header{Mode: fuzzModes[int(flags)%len(fuzzModes)], ModTime: mtime, Format: tar.FormatPAX}
		if flags&8 != 0 {
			h.Uid, h.Gid = 1000, 1000
		}
		var body []byte
		switch op & 7 {
		case opDir:
			h.Typeflag, h.Name = tar.TypeDir, r.name()
		case opFile:
			h.Typeflag, h.Name = tar.TypeReg, r.name()
			body = r.bytes(int(r.next() % 32))
			h.Size = int64(len(body))
		case opSymlink:
			h.Typeflag, h.Name, h.Linkname = tar.TypeSymlink, r.name(), r.linkname()
		case opHardlink:
			h.Typeflag, h.Name, h.Linkname = tar.TypeLink, r.name(), r.linkname()
		case opWhiteout:
			h.Typeflag, h.Mode = tar.TypeReg, 0o644
			d, x := r.name(), r.part()
			h.Name = strings.TrimSuffix(d, "/") + "/.wh." + x
		case opOpaque:
			h.Typeflag, h.Mode = tar.TypeReg, 0o644
			h.Name = strings.TrimSuffix(r.name(), "/") + "/.wh..wh..opq"
		case opSpecial:
			h.Name = r.name()
			if flags&1 != 0 {
				h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3
			} else {
				h.Typeflag = tar.TypeFifo
			}
		case opNextLayer:
			if len(layers) < 3 {
				layers = append(layers, nil)
			}
			continue
		}
		layers[len(layers)-1] = append(layers[len(layers)-1], fuzzEntry{hdr: h, body: body})
	}
	return layers
}

// writeLayer writes entries as a tar, leaving out those tar refuses to
// write; it returns the tar and the entries it holds.
func writeLayer(entries []fuzzEntry) ([]byte, []fuzzEntry) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var kept []fuzzEntry
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			if buf.Len() > 0 && !errors.Is(err, tar.ErrHeader) && !errors.Is(err, tar.ErrFieldTooLong) {
				break
			}
			continue
		}
		if len(e.body) > 0 {
			if _, err := tw.Write(e.body); err != nil {
				break
			}
		}
		kept = append(kept, e)
	}
	tw.Close()
	return buf.Bytes(), kept
}

// cleanName is where an entry lands when no symbolic link is involved:
// relative to the root, cleaned, ".." at the root staying there.
func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// atOrUnder reports whether name is p or below it ("" is the root).
func atOrUnder(name, p string) bool {
	return p == "" || name == p || strings.HasPrefix(name, p+"/")
}

// checkModel checks what the layer's entries say about the result when no
// layer has a symbolic link (names then mean what they say): the last
// entry, if a regular file, is at its name with its content and mode; a
// whiteout of d/x in the last layer leaves nothing at d/x unless an entry
// of that layer is at or below d/x; after an opaque marker in d, each
// child of d is at or above an entry of the last layer.
func checkModel(t *testing.T, root string, last []fuzzEntry) {
	t.Helper()
	if len(last) == 0 {
		return
	}
	names := make([]string, len(last))
	for i, e := range last {
		names[i] = cleanName(e.hdr.Name)
	}
	touched := func(p string) bool {
		for _, n := range names {
			if atOrUnder(n, p) {
				return true
			}
		}
		return false
	}
	if e := last[len(last)-1]; e.hdr.Typeflag == tar.TypeReg && names[len(names)-1] != "" && !strings.HasPrefix(path.Base(names[len(names)-1]), ".wh.") {
		p := filepath.Join(root, names[len(names)-1])
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("last entry %q: %s is %v, %v", e.hdr.Name, p, fi, err)
		}
		if want := e.hdr.FileInfo().Mode(); fi.Mode() != want {
			t.Fatalf("last entry %q: mode %v, want %v", e.hdr.Name, fi.Mode(), want)
		}
		if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, e.body) {
			t.Fatalf("last entry %q: content %q, %v; want %q", e.hdr.Name, b, err, e.body)
		}
	}
	for _, n := range names {
		d, base := path.Split(n)
		d = strings.TrimSuffix(d, "/")
		switch {
		case base == ".wh..wh..opq":
			ents, err := os.ReadDir(filepath.Join(root, d))
			if err != nil {
				continue // gone or replaced since
			}
			for _, ent := range ents {
				if c := path.Join(d, ent.Name()); !touched(c) {
					t.Fatalf("opaque %q: %s from a lower layer is still there", d, c)
				}
			}
		case strings.HasPrefix(base, ".wh."):
			x := strings.TrimPrefix(base, ".wh.")
			gone := path.Join(d, x)
			if x == "" || x == "." || x == ".." || touched(gone) {
				continue
			}
			if fi, err := os.Lstat(filepath.Join(root, gone)); err == nil {
				t.Fatalf("whiteout %q: %s is still there (%v)", n, gone, fi.Mode())
			}
		}
	}
}

// FuzzApplyLayer reads the fuzz input as a program of up to three layers:
// directories, regular files, symbolic and hard links (to names of the
// layer, or to the sentinel: absolute, climbing out with ".."),
// whiteouts, opaque markers, fifos and character devices, with names made
// of parts that collide ("a", "..", ".", "", ".wh.a", raw bytes),
// absolute or not, and any of a few modes (setuid, setgid, sticky
// included). It applies them bottom first with applyLayer and checks,
// whatever the input: no panic; a refused layer is a System error, never a
// diff ID mismatch (the diff ID given is the tar's); nothing outside the
// root is created, removed or changed, and nothing in it is a hard link to
// a file outside; no whiteout is written as a file; and, when no layer has
// a symbolic link, the whiteouts, the opaque markers and the last entry
// of the last layer (see checkModel).
func FuzzApplyLayer(f *testing.F) {
	f.Setenv("CONTAINERD_DISABLE_PIGZ", "1")
	prog := func(b ...byte) []byte { return b }
	// part indexes: 0 a, 1 b, 2 c, 3 .., 4 ., 6 sentinel, 7 victim, 9 l, 10 .wh.a, 11 opq
	f.Add(prog(
		opDir, 0, 0, 0, // dir "a"
		opFile, 1, 0, 1, 0, 3, 'h', 'i', '\n', // file "a/b" (2 parts: a, b)
	))
	// A symlink out, then a file through it.
	f.Add(prog(
		opSymlink, 0, 9, 0, 0, // "l" -> /sentinel
		opFile, 1, 9, 7, 0, 4, 'p', 'w', 'n', '\n', // "l/victim"
	))
	// "../sentinel/victim" by name, absolute "/sentinel/victim".
	f.Add(prog(
		opFile, 2, 3, 6, 7, 0, 2, 'x', 'x', // "../sentinel/victim"
		opFile, 1, 6, 7, 1, 2, 'y', 'y', // "/sentinel/victim"
	))
	// Hard links out: absolute and climbing.
	f.Add(prog(
		opHardlink, 0, 0, 0, 1, // "a" => /sentinel/victim
		opHardlink, 0, 1, 0, 2, // "b" => ../sentinel/victim
	))
	// A symlink to a climbing directory, a hard link through it.
	f.Add(prog(
		opSymlink, 0, 9, 0, 3, // "l" -> ../../sentinel
		opHardlink, 0, 0, 0, 4, 1, 9, 7, 0, // "a" => "l/victim"
	))
	// Whiteouts and an opaque directory over a lower layer.
	f.Add(prog(
		opDir, 0, 0, 0,
		opFile, 1, 0, 0, 0, 1, '1',
		opFile, 1, 0, 1, 0, 1, '2',
		opDir, 1, 1, 2, 0,
		opFile, 2, 1, 2, 0, 0, 1, '3',
		opNextLayer,
		opWhiteout, 0, 0, 0, 1, // "a/.wh.b"
		opOpaque, 0, 1, 0, // "b/.wh..wh..opq"
		opFile, 1, 1, 0, 0, 1, 'n', // "b/a"
	))
	// Whiteouts that climb or name the sentinel.
	f.Add(prog(
		opWhiteout, 0, 3, 0, 6, // "../.wh.sentinel"
		opWhiteout, 0, 6, 1, 7, // "/sentinel/.wh.victim"
		opWhiteout, 0, 3, 0, 3, // "../.wh.."
		opOpaque, 0, 3, 0, // "../.wh..wh..opq"
	))
	// A symlinked directory replaced in an upper layer; an opaque marker
	// under a symlink to the sentinel.
	f.Add(prog(
		opSymlink, 0, 9, 0, 0,
		opNextLayer,
		opOpaque, 0, 9, 0, // "l/.wh..wh..opq"
		opDir, 0, 9, 0,
		opFile, 1, 9, 0, 0, 1, 'z',
	))
	// Setuid file, fifo, device, a file over a directory.
	f.Add(prog(
		opFile|2<<3, 0, 0, 0, 0,
		opSpecial, 0, 1, 0,
		opSpecial|1<<3, 0, 2, 0,
		opDir, 0, 0, 0,
	))
	f.Fuzz(func(t *testing.T, prog []byte) {
		sb := newLayerSandbox(t)
		layers := decodeLayers(prog)
		symlinks := false
		var last []fuzzEntry
		applied := true
		for _, entries := range layers {
			blob, kept := writeLayer(entries)
			for _, e := range kept {
				if e.hdr.Typeflag == tar.TypeSymlink {
					symlinks = true
				}
			}
			last = kept
			if err := sb.apply(t, blob, digest.FromBytes(blob)); err != nil {
				applied = false
				break
			}
		}
		sb.check(t)
		if applied && !symlinks {
			checkModel(t, sb.Root, last)
		}
	})
}

// layerTar writes entries as a tar, for seeds.
func layerTar(f *testing.F, entries ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		body := ""
		if h.Typeflag == tar.TypeReg { // reg carries the body in Linkname
			body, h.Linkname = h.Linkname, ""
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			f.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	if err := tw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzApplyLayerTar applies any bytes as a layer (plain tar, or gzip or
// zstd if they start like one) over a fixed lower layer that has
// symbolic links to the sentinel (absolute and climbing), a directory, a
// file and a hard link. Whatever the input: no panic; a refused layer is
// a System error; for a plain tar, never a diff ID mismatch (bytes after
// the end-of-archive marker count in the diff ID); nothing outside the
// root is created, removed or changed; nothing in it is a hard link to a
// file outside; no whiteout is written as a file.
func FuzzApplyLayerTar(f *testing.F) {
	f.Setenv("CONTAINERD_DISABLE_PIGZ", "1")
	reg := func(name, body string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Linkname: body, Mode: 0o644}
	}
	lower := layerTar(f,
		&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755},
		reg("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
		&tar.Header{Typeflag: tar.TypeSymlink, Name: "abs", Linkname: "/sentinel", Mode: 0o777},
		&tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/up", Linkname: "../../sentinel", Mode: 0o777},
		&tar.Header{Typeflag: tar.TypeSymlink, Name: "victim", Linkname: "/sentinel/victim", Mode: 0o777},
		&tar.Header{Typeflag: tar.TypeLink, Name: "etc/hard", Linkname: "etc/passwd", Mode: 0o644},
	)
	seeds := [][]byte{
		layerTar(f, reg("etc/group", "root:x:0:\n")),
		layerTar(f, reg("../sentinel/victim", "x")),
		layerTar(f, reg("/../../sentinel/victim", "x")),
		layerTar(f, reg("abs/victim", "x"), reg("etc/up/victim", "y"), reg("victim", "z")),
		layerTar(f, &tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "/sentinel/victim"}),
		layerTar(f, &tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "abs/victim"}),
		layerTar(f, &tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "../sentinel/victim"}),
		layerTar(f, &tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "victim"}, reg("h", "through the link")),
		layerTar(f, reg("abs/.wh.victim", ""), reg("etc/up/.wh..wh..opq", ""), reg("../.wh.sentinel", "")),
		layerTar(f, reg("etc/.wh.passwd", ""), reg(".wh..wh..opq", ""), reg("etc/.wh..", "")),
		layerTar(f, &tar.Header{Typeflag: tar.TypeDir, Name: "abs/", Mode: 0o755}, reg("abs/new", "n")),
		layerTar(f, &tar.Header{Typeflag: tar.TypeSymlink, Name: "etc", Linkname: "/sentinel"}, reg("etc/victim", "x")),
		layerTar(f, &tar.Header{Typeflag: tar.TypeChar, Name: "dev/x", Devmajor: 1, Devminor: 3, Mode: 0o4777}),
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(seeds[3])
	zw.Close()
	seeds = append(seeds, gz.Bytes(), append(append([]byte{}, seeds[0]...), "trailing bytes"...), seeds[0][:700], nil)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sb := newLayerSandbox(t)
		if err := sb.apply(t, lower, digest.FromBytes(lower)); err != nil {
			t.Fatalf("lower layer: %v", err)
		}
		var diffID digest.Digest
		if compression.DetectCompression(data) == compression.Uncompressed {
			diffID = digest.FromBytes(data)
		}
		sb.apply(t, data, diffID)
		sb.check(t)
	})
}
