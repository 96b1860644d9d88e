package agentproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// frame returns the wire bytes of one frame (header with any length n,
// then the payload as given), for seeds and tests.
func frame(typ byte, stream, n uint32, payload []byte) []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(payload))
	copy(b, Magic[:])
	b[4] = typ
	binary.BigEndian.PutUint32(b[8:12], stream)
	binary.BigEndian.PutUint32(b[12:16], n)
	return append(b, payload...)
}

func msgFrame(stream uint32, js string) []byte {
	return frame(FrameMsg, stream, uint32(len(js)), []byte(js))
}

// readAll reads frames from data as the host's reader loop does
// (agentclient: Resync after a bad magic or an oversized header) and
// checks what must hold for any bytes a guest writes: no panic, no frame
// above MaxPayload, every error one of the reader's or the end of input,
// DecodeMsg of any FrameMsg returns a message or an error.
func readAll(t *testing.T, data []byte) (frames int) {
	r := NewReader(bytes.NewReader(data))
	// Each round consumes at least one byte (a frame header is 16, a
	// resync at least one), so this bound is never the one that stops it.
	for i := 0; i <= len(data); i++ {
		f, err := r.ReadFrame()
		if err != nil {
			if errors.Is(err, ErrBadMagic) || errors.Is(err, ErrTooLarge) {
				if err := r.Resync(); err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("Resync: %v", err)
					}
					return frames
				}
				continue
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadFrame: unexpected error %v", err)
			}
			return frames
		}
		frames++
		if len(f.Payload) > MaxPayload {
			t.Fatalf("frame of %d bytes", len(f.Payload))
		}
		if f.Type == FrameMsg {
			m, err := DecodeMsg(f)
			if (m == nil) == (err == nil) {
				t.Fatalf("DecodeMsg: %v, %v", m, err)
			}
		} else if _, err := DecodeMsg(f); err == nil {
			t.Fatalf("DecodeMsg accepted frame type %d", f.Type)
		}
	}
	t.Fatalf("reader made no progress on %d bytes", len(data))
	return frames
}

// FuzzReadFrame feeds arbitrary bytes, as a hostile guest may write them
// to the agent port, to ReadFrame, Resync and DecodeMsg.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add(msgFrame(0, `{"type":"hello","version":1,"nonce":"ab","phase":"idle"}`))
	f.Add(append(msgFrame(1, `{"type":"exit","status":{"code":3}}`), frame(FrameStdout, 1, 2, []byte("hi"))...))
	f.Add(append([]byte("tail of an old frameJV"), msgFrame(0, `{"type":"hello"}`)...))
	f.Add(frame(FrameMsg, 0, MaxPayload+1, nil))                       // oversized header
	f.Add(frame(FrameMsg, 0, MaxPayload, []byte("short")))             // truncated payload
	f.Add(msgFrame(0, `{"type":"ok","id":1,"top":{"Titles":[1]}}`))    // wrong field types
	f.Add(msgFrame(0, `{"type":"ok","id":18446744073709551616}`))      // ID overflows
	f.Add(msgFrame(0, `{"type":"ok"} trailing`))                       // trailing data
	f.Add(append([]byte("JVMJVM1"), frame(FrameStderr, 7, 0, nil)...)) // partial magic before the magic
	f.Add(bytes.Repeat([]byte("xxxxxxxxxxxxxxxxJVM1\x03\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00"), 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		readAll(t, data)
	})
}

// FuzzFrameRoundTrip: what Writer writes, Reader reads back unchanged,
// split into MaxPayload pieces.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add(byte(FrameStdout), uint32(1), []byte("hello"))
	f.Add(byte(FrameMsg), uint32(0), []byte(`{"type":"hello"}`))
	f.Add(byte(0xff), uint32(0xffffffff), []byte{})
	f.Fuzz(func(t *testing.T, typ byte, stream uint32, payload []byte) {
		var buf bytes.Buffer
		if err := NewWriter(&buf).WriteFrame(typ, stream, payload); err != nil {
			t.Fatal(err)
		}
		r := NewReader(&buf)
		var got []byte
		for {
			fr, err := r.ReadFrame()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if fr.Type != typ || fr.Stream != stream || len(fr.Payload) > MaxPayload {
				t.Fatalf("frame %d/%d of %d bytes, wrote %d/%d", fr.Type, fr.Stream, len(fr.Payload), typ, stream)
			}
			got = append(got, fr.Payload...)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("read %d bytes back, wrote %d", len(got), len(payload))
		}
	})
}

// A header that claims MaxPayload bytes costs at most one payload buffer,
// even when the bytes never come.
func TestReadFrameAllocationBound(t *testing.T) {
	data := frame(FrameStdout, 1, MaxPayload, []byte("only this"))
	allocated := heapAllocatedBy(func() {
		_, err := NewReader(bytes.NewReader(data)).ReadFrame()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated frame: %v", err)
		}
	})
	// The payload buffer, the reader's 64 KiB buffer and small change.
	if limit := uint64(MaxPayload + HeaderSize + 64<<10 + 16<<10); allocated > limit {
		t.Fatalf("reading one truncated frame allocated %d bytes, limit %d", allocated, limit)
	}
}

// A guest that alternates garbage and frames makes the host resynchronise
// again and again; the reader's memory must not grow with the number of
// resyncs (each used to wrap the reader in one more 64 KiB buffer).
func TestResyncMemoryBounded(t *testing.T) {
	unit := append([]byte("xxxxxxxxxxxxxxxx"), frame(FrameStdout, 1, 0, nil)...)
	const rounds = 4096
	data := bytes.Repeat(unit, rounds)
	r := NewReader(bytes.NewReader(data))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resyncs, frames := 0, 0
	// Stop before the end of input: at EOF the old readers would let go.
	for frames < rounds {
		_, err := r.ReadFrame()
		if errors.Is(err, ErrBadMagic) {
			if err := r.Resync(); err != nil {
				t.Fatal(err)
			}
			resyncs++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		frames++
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(r)
	if resyncs != rounds || frames != rounds {
		t.Fatalf("%d resyncs and %d frames, want %d each", resyncs, frames, rounds)
	}
	var grown uint64
	if after.HeapAlloc > before.HeapAlloc {
		grown = after.HeapAlloc - before.HeapAlloc
	}
	if grown > 4<<20 {
		t.Fatalf("the reader holds %d MiB after %d resyncs", grown>>20, resyncs)
	}
}

// heapAllocatedBy is the bytes fn allocated on the heap.
func heapAllocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Resync stops at the next magic, wherever it lies: after a partial
// magic, right away, and across the reader's 64 KiB buffer boundary.
func TestResync(t *testing.T) {
	want := frame(FrameStderr, 9, 3, []byte("abc"))
	for name, garbage := range map[string][]byte{
		"none":           nil,
		"partial magic":  []byte("JVJVMJVM"),
		"text":           []byte("the tail of an old frame"),
		"buffer edge":    bytes.Repeat([]byte{'x'}, 64<<10-2),
		"beyond buffer":  bytes.Repeat([]byte{'J'}, 200<<10),
		"magic at start": []byte("JVM"),
	} {
		r := NewReader(bytes.NewReader(append(append([]byte{}, garbage...), want...)))
		if err := r.Resync(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f, err := r.ReadFrame()
		if err != nil || f.Type != FrameStderr || f.Stream != 9 || string(f.Payload) != "abc" {
			t.Fatalf("%s: %+v %v", name, f, err)
		}
	}
	if err := NewReader(bytes.NewReader([]byte("no magic here JVM"))).Resync(); !errors.Is(err, io.EOF) {
		t.Fatalf("no magic: %v", err)
	}
}
