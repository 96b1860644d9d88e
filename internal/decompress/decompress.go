// Package decompress opens a stream that may be compressed, telling the
// format by its magic number as dockerd's archive.DecompressStream does:
// gzip, bzip2, xz, zstd, or none. docker build contexts, ADD's local
// archives and docker import all take these.
package decompress

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"io"

	"github.com/containerd/containerd/archive/compression"
	"github.com/ulikunitz/xz"
)

// Stream returns the decompressed content of r.
func Stream(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(head, []byte("BZh")):
		return io.NopCloser(bzip2.NewReader(br)), nil
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(xr), nil
	}
	// gzip, zstd and plain streams: containerd's detection.
	return compression.DecompressStream(br)
}
