package qemu

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
)

// qcow2Magic starts every qcow2 image.
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// qcow2Header is what jevm reads of a qcow2 header: the guest-visible size
// and the backing file. Reading it directly saves a qemu-img round trip on
// every start.
type qcow2Header struct {
	virtualSize int64
	backingFile string // "" when there is none
}

// readQcow2Header reads path's qcow2 header; ok is false for a disk that is
// not qcow2 (a raw image).
func readQcow2Header(f *os.File) (h qcow2Header, ok bool, err error) {
	var hdr [32]byte
	n, err := f.ReadAt(hdr[:], 0)
	if n < len(hdr) || !bytes.Equal(hdr[:4], qcow2Magic) {
		return h, false, nil // short or not qcow2: raw
	}
	h.virtualSize = int64(binary.BigEndian.Uint64(hdr[24:32]))
	off := binary.BigEndian.Uint64(hdr[8:16])
	size := binary.BigEndian.Uint32(hdr[16:20])
	if off != 0 && size != 0 {
		if size > 4096 {
			return h, true, fmt.Errorf("%s: backing file name of %d bytes", f.Name(), size)
		}
		name := make([]byte, size)
		if _, err := f.ReadAt(name, int64(off)); err != nil {
			return h, true, fmt.Errorf("read backing file name of %s: %w", f.Name(), err)
		}
		h.backingFile = string(name)
	}
	return h, true, nil
}

// diskVirtualSize returns the guest-visible size of a raw or qcow2 image
// and its format.
func diskVirtualSize(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h, ok, err := readQcow2Header(f)
	if err != nil {
		return 0, "", err
	}
	if ok {
		return h.virtualSize, "qcow2", nil
	}
	st, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	return st.Size(), "raw", nil
}
