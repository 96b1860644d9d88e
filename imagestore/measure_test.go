package imagestore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/images"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestMeasureBigImage measures a pull of a large layer made from a host
// directory. Run with JEVM_IMAGESTORE_MEASURE=/usr/bin.
func TestMeasureBigImage(t *testing.T) {
	src := os.Getenv("JEVM_IMAGESTORE_MEASURE")
	if src == "" {
		t.Skip("set JEVM_IMAGESTORE_MEASURE to a directory")
	}
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return nil
		}
		hdr.Name = p[1:]
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return nil
			}
			defer f.Close()
			tw.WriteHeader(hdr)
			io.Copy(tw, f)
			return nil
		}
		tw.WriteHeader(hdr)
		return nil
	})
	tw.Close()
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zw.Write(raw.Bytes())
	zw.Close()
	l := testLayer{blob: gz.Bytes(), diffID: digest.FromBytes(raw.Bytes()), desc: ocispec.Descriptor{
		MediaType: images.MediaTypeDockerSchema2LayerGzip, Digest: digest.FromBytes(gz.Bytes()), Size: int64(gz.Len())}}
	img := makeImage(t, nil, nil, l)
	reg := newFakeRegistry(t)
	reg.add("big", "latest", img)
	s := newTestStore(t, "", func(o *Options) { o.DiskSize = DefaultDiskSize })
	start := time.Now()
	got, err := s.Pull(context.Background(), reg.host()+"/big", "", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	st, _ := os.Stat(s.diskPath(got.ID))
	t.Logf("tar %d MB, gzip %d MB, image size %d MB: pull+build %v; disk %d bytes virtual, %d MB allocated",
		raw.Len()>>20, gz.Len()>>20, got.Size>>20, total, st.Size(), allocated(st)>>20)
	os.Remove(s.diskPath(got.ID))
	start = time.Now()
	if _, err := s.BaseDisk(context.Background(), got.ID.String()); err != nil {
		t.Fatal(err)
	}
	t.Logf("rebuild from local blobs: %v", time.Since(start))
	tmp := t.TempDir()
	os.MkdirAll(tmp+"/r", 0o755)
	n, _ := s.applyLayer(context.Background(), tmp+"/r", l.desc, l.diffID, nil)
	start = time.Now()
	if err := s.mkfs(context.Background(), tmp+"/r", tmp+"/d.ext4"); err != nil {
		t.Fatal(err)
	}
	t.Logf("mke2fs -d alone (%d MB of files) into %d GiB: %v", n>>20, s.diskSize>>30, time.Since(start))
}
