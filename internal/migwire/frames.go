// Package migwire is what live migration sends between daemons besides
// JSON (docs/MIGRATION.md): the VM's stream in frames, so that its end
// is marked and control messages can follow on the same connection, and
// a base disk's non-zero chunks with a digest of its contents.
package migwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxFrame bounds one frame's payload.
const MaxFrame = 1 << 20

// FrameWriter cuts what is written into frames: a 4-byte big-endian
// length, then that many bytes. Close writes the empty frame that ends
// the stream (it does not close w).
type FrameWriter struct {
	w   io.Writer
	hdr [4]byte
}

func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

func (f *FrameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxFrame)]
		binary.BigEndian.PutUint32(f.hdr[:], uint32(len(chunk)))
		if _, err := f.w.Write(f.hdr[:]); err != nil {
			return n, err
		}
		m, err := f.w.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		p = p[len(chunk):]
	}
	return n, nil
}

// Close ends the stream.
func (f *FrameWriter) Close() error {
	binary.BigEndian.PutUint32(f.hdr[:], 0)
	_, err := f.w.Write(f.hdr[:])
	return err
}

// FrameReader reads what a FrameWriter wrote; it returns io.EOF at the
// end frame and io.ErrUnexpectedEOF if the stream stops before it. It
// never reads past the end frame.
type FrameReader struct {
	r    io.Reader
	left int
	done bool
}

func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{r: r} }

// ErrFrameTooLarge is returned for a frame longer than MaxFrame.
var ErrFrameTooLarge = errors.New("migration stream: frame too large")

func (f *FrameReader) Read(p []byte) (int, error) {
	if f.done {
		return 0, io.EOF
	}
	if f.left == 0 {
		var hdr [4]byte
		if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			f.done = true
			return 0, io.EOF
		}
		if n > MaxFrame {
			return 0, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
		}
		f.left = int(n)
	}
	if len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= n
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
