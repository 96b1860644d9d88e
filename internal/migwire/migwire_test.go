package migwire

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	big := bytes.Repeat([]byte("x"), MaxFrame+10)
	fw.Write([]byte("hello "))
	fw.Write(big)
	fw.Close()
	buf.WriteString("after")
	fr := NewFrameReader(&buf)
	got, err := io.ReadAll(fr)
	if err != nil || !bytes.Equal(got, append([]byte("hello "), big...)) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	// Nothing past the end frame was read.
	if rest := buf.String(); rest != "after" {
		t.Fatalf("left %q", rest)
	}
	// A stream cut short is not an end.
	var cut bytes.Buffer
	NewFrameWriter(&cut).Write([]byte("abc"))
	if _, err := io.ReadAll(NewFrameReader(bytes.NewReader(cut.Bytes()[:5]))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut stream: %v", err)
	}
	if _, err := io.ReadAll(NewFrameReader(bytes.NewReader(cut.Bytes()))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("no end frame: %v", err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxFrame+1)
	if _, err := io.ReadAll(NewFrameReader(bytes.NewReader(hdr[:]))); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("huge frame: %v", err)
	}
}

func TestDiskStream(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, _ := os.Create(src)
	size := int64(10*ChunkSize + 1000)
	f.Truncate(size)
	f.WriteAt([]byte("start"), 0)
	f.WriteAt([]byte("middle"), 5*ChunkSize+17)
	f.WriteAt([]byte("end"), size-3)
	f.Close()
	// The same contents, allocated differently (zeros written out).
	dense := filepath.Join(dir, "dense")
	b, _ := os.ReadFile(src)
	os.WriteFile(dense, b, 0o644)
	sz, dg, err := Identity(ctx, src)
	if err != nil || sz != size {
		t.Fatal(sz, err)
	}
	if _, dg2, _ := Identity(ctx, dense); dg2 != dg {
		t.Fatalf("digests differ with allocation: %s %s", dg, dg2)
	}
	var stream bytes.Buffer
	if err := SendDisk(ctx, src, &stream); err != nil {
		t.Fatal(err)
	}
	if stream.Len() > 4*ChunkSize {
		t.Errorf("stream of %d bytes for 3 non-zero chunks", stream.Len())
	}
	dst := filepath.Join(dir, "dst")
	if err := ReceiveDisk(bytes.NewReader(stream.Bytes()), dst, DiskIdentity{Size: size, Digest: dg}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, b) {
		t.Fatal("received disk differs")
	}
	// Another digest: refused, nothing left.
	other := filepath.Join(dir, "other")
	if err := ReceiveDisk(bytes.NewReader(stream.Bytes()), other, DiskIdentity{Size: size, Digest: "sha256:00"}); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("wrong digest: %v", err)
	}
	if _, err := os.Stat(other); err == nil {
		t.Error("a refused disk was left")
	}
	// A tampered chunk is refused.
	bad := bytes.Clone(stream.Bytes())
	bad[len(bad)-20] ^= 1
	if err := ReceiveDisk(bytes.NewReader(bad), other, DiskIdentity{Size: size, Digest: dg}); err == nil {
		t.Fatal("tampered stream accepted")
	}
	if err := ReceiveDisk(bytes.NewReader(stream.Bytes()), other, DiskIdentity{Size: size + 1, Digest: dg}); err == nil {
		t.Fatal("size mismatch accepted")
	}
}
