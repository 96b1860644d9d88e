package migwire

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ChunkSize is the unit a disk is hashed and sent in.
const ChunkSize = 64 << 10

// diskMagic opens a disk stream.
const diskMagic = "JEVMDISK1"

// digester hashes a disk as DiskIdentity documents it: its size, then
// each non-zero chunk with its offset.
type digester struct{ h hash.Hash }

func newDigester(size int64) *digester {
	d := &digester{h: sha256.New()}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(size))
	d.h.Write(b[:])
	return d
}

func (d *digester) chunk(off int64, data []byte) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(off))
	d.h.Write(b[:])
	d.h.Write(data)
}

func (d *digester) sum() string { return "sha256:" + hex.EncodeToString(d.h.Sum(nil)) }

var zeroChunk = make([]byte, ChunkSize)

// eachChunk calls fn with each non-zero chunk of f (size bytes), in
// order, skipping holes (SEEK_DATA) where the file system says where
// they are.
func eachChunk(ctx context.Context, f *os.File, size int64, fn func(off int64, data []byte) error) error {
	buf := make([]byte, ChunkSize)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err == nil && data > off {
			off = data / ChunkSize * ChunkSize
		}
		n := int(min(ChunkSize, size-off))
		if _, err := f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return err
		}
		if !bytes.Equal(buf[:n], zeroChunk[:n]) {
			if err := fn(off, buf[:n]); err != nil {
				return err
			}
		}
		off += int64(n)
	}
	return nil
}

// Identity returns the size and digest of the disk at path.
func Identity(ctx context.Context, path string) (size int64, digest string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	d := newDigester(st.Size())
	if err := eachChunk(ctx, f, st.Size(), func(off int64, data []byte) error { d.chunk(off, data); return nil }); err != nil {
		return 0, "", fmt.Errorf("digest %s: %w", path, err)
	}
	return st.Size(), d.sum(), nil
}

// SendDisk writes the disk at path to w: a header with its size, then
// each non-zero chunk (8-byte offset, 4-byte length, the bytes), then a
// zero length.
func SendDisk(ctx context.Context, path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := make([]byte, len(diskMagic)+8)
	copy(hdr, diskMagic)
	binary.BigEndian.PutUint64(hdr[len(diskMagic):], uint64(st.Size()))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	var rec [12]byte
	err = eachChunk(ctx, f, st.Size(), func(off int64, data []byte) error {
		binary.BigEndian.PutUint64(rec[:8], uint64(off))
		binary.BigEndian.PutUint32(rec[8:], uint32(len(data)))
		if _, err := w.Write(rec[:]); err != nil {
			return err
		}
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint64(rec[:8], 0)
	binary.BigEndian.PutUint32(rec[8:], 0)
	_, err = w.Write(rec[:])
	return err
}

// ReceiveDisk writes what SendDisk sent into a new sparse file at path,
// which must have want's size and digest; on any error path is removed.
func ReceiveDisk(r io.Reader, path string, want DiskIdentity) (err error) {
	hdr := make([]byte, len(diskMagic)+8)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return fmt.Errorf("disk stream: %w", err)
	}
	if string(hdr[:len(diskMagic)]) != diskMagic {
		return errors.New("disk stream: not a disk stream")
	}
	size := int64(binary.BigEndian.Uint64(hdr[len(diskMagic):]))
	if size != want.Size {
		return fmt.Errorf("disk stream: %d bytes, the offer said %d", size, want.Size)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Truncate(size); err != nil {
		return err
	}
	d := newDigester(size)
	buf := make([]byte, ChunkSize)
	next := int64(0)
	for {
		var rec [12]byte
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			return fmt.Errorf("disk stream: %w", err)
		}
		off, n := int64(binary.BigEndian.Uint64(rec[:8])), int64(binary.BigEndian.Uint32(rec[8:]))
		if n == 0 {
			break
		}
		// Chunks in order, aligned, whole (the last may be short), inside.
		if off < next || off%ChunkSize != 0 || off >= size || n != min(ChunkSize, size-off) {
			return fmt.Errorf("disk stream: bad chunk at %d (%d bytes)", off, n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("disk stream: %w", err)
		}
		d.chunk(off, buf[:n])
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
		next = off + n
	}
	if got := d.sum(); got != want.Digest {
		return fmt.Errorf("disk stream: digest %s, the offer said %s", got, want.Digest)
	}
	return f.Sync()
}

// DiskIdentity is what ReceiveDisk checks.
type DiskIdentity struct {
	Size   int64
	Digest string
}
