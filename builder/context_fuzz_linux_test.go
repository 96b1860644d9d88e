//go:build linux

package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/internal/fuzzjail"
)

// fuzzContextTar is a build context (a client's tar) made of hdrs; regular
// files get their name as content.
func fuzzContextTar(tb testing.TB, hdrs ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		body := []byte(nil)
		if h.Typeflag == tar.TypeReg {
			body = []byte(h.Name)
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzExtractContext feeds any bytes as a build context to extractTar (a
// client's upload: `docker build`'s context), in a fuzzjail sandbox with a
// sentinel directory beside the context's. What must hold: no panic; a
// refusal is InvalidParameter (a bad context, 400) or System; nothing
// outside the context is created, removed or changed, and nothing in it
// is a hard link to a file outside; every regular file written through
// the context is under it.
func FuzzExtractContext(f *testing.F) {
	reg := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg} }
	sym := func(name, to string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: to}
	}
	link := func(name, to string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: to}
	}
	dir := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	for _, hs := range [][]*tar.Header{
		{reg("Dockerfile"), dir("src"), reg("src/main.go")},
		{reg("../sentinel/victim"), reg("/sentinel/victim"), reg("a/../../sentinel/new")},
		{sym("out", "../sentinel"), reg("out/victim"), reg("out/new")},
		{sym("abs", "/sentinel"), reg("abs/victim"), dir("abs/sub")},
		{link("hl", "../sentinel/victim"), link("hl2", "/sentinel/victim")},
		{sym("s", "/sentinel/victim"), link("h", "s")},
		{reg("f"), sym("f", "../sentinel/victim"), reg("f")},
		{dir("d"), sym("d", ".."), reg("d/sentinel/victim")},
		{sym("loop", "loop"), reg("loop/x")},
		{{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, {Name: "fifo", Typeflag: tar.TypeFifo}},
	} {
		f.Add(fuzzContextTar(f, hs...))
	}
	f.Add([]byte("not a tar at all"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sb := fuzzjail.New(t)
		err := sb.Run(t, func() error {
			return extractTar(context.Background(), tar.NewReader(bytes.NewReader(data)), "/root", nil)
		})
		if err != nil && !errdefs.IsInvalidParameter(err) && !errdefs.IsSystem(err) {
			t.Fatalf("extractTar: neither InvalidParameter nor System: %v", err)
		}
		sb.Check(t, func(p string, fi fs.FileInfo) {
			if !fi.Mode().IsRegular() {
				return
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if rel, err := filepath.Rel(sb.Root, real); err != nil || rel == ".." || filepath.IsAbs(rel) || len(rel) > 2 && rel[:3] == ".."+string(os.PathSeparator) {
				t.Fatalf("%s resolves outside the context: %s", p, real)
			}
		})
	})
}
