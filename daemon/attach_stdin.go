package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"
)

// defaultDetachKeys is dockerd's detach sequence, ctrl-p ctrl-q.
var defaultDetachKeys = []byte{0x10, 0x11}

// stdinCopyBuffer is the chunk size of stdin copies: large chunks become
// large agent frames (the agent's MaxPayload is 1 MiB).
const stdinCopyBuffer = 256 << 10

// parseDetachKeys turns a detach-keys setting ("ctrl-p,ctrl-q", "a,ctrl-\\",
// "DEL") into the bytes of the sequence, with dockerd's syntax: keys are
// comma-separated; a key is a single character, "ctrl-@", "ctrl-a" ...
// "ctrl-z", "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_", or "DEL".
func parseDetachKeys(s string) ([]byte, error) {
	var seq []byte
	for _, key := range strings.Split(s, ",") {
		if len(key) == 1 {
			seq = append(seq, key[0])
			continue
		}
		if key == "DEL" {
			seq = append(seq, 0x7f)
			continue
		}
		if c, ok := strings.CutPrefix(key, "ctrl-"); ok && len(c) == 1 {
			switch ch := c[0]; {
			case ch >= 'a' && ch <= 'z':
				seq = append(seq, ch-'a'+1)
				continue
			case ch == '@' || ch == '[' || ch == '\\' || ch == ']' || ch == '^' || ch == '_':
				// '@' is 0x40: its control code is 0; '[' .. '_' follow 'Z'.
				seq = append(seq, ch-'@')
				continue
			}
		}
		return nil, fmt.Errorf("Unknown character: '%s'", key)
	}
	return seq, nil
}

// errDetached ends a stdin copy that saw the detach sequence.
var errDetached = errors.New("detached from container")

// copyStdin copies src to dst until src ends. With keys it watches the
// stream for that sequence: everything before it is passed on, the
// sequence itself is not, and the copy stops there with errDetached (what
// follows the sequence in the same read is dropped, as with dockerd). A
// partial sequence at the end of src is passed on. Without keys it is a
// plain copy in large chunks. The error is nil at the end of src.
func copyStdin(dst io.Writer, src io.Reader, keys []byte) (int64, error) {
	buf := make([]byte, stdinCopyBuffer)
	var out []byte
	if len(keys) > 0 {
		out = make([]byte, 0, stdinCopyBuffer+len(keys))
	}
	matched := 0 // bytes of keys seen at the end of the input so far
	var written int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			detached := false
			if len(keys) > 0 {
				out = out[:0]
				for _, b := range chunk {
					if b == keys[matched] {
						matched++
						if matched == len(keys) {
							detached = true
							break
						}
						continue
					}
					if matched == 0 {
						out = append(out, b)
						continue
					}
					// The held bytes and b are not the sequence: keep the
					// longest tail of them that still starts it and pass
					// on the rest.
					held := append(append([]byte(nil), keys[:matched]...), b)
					keep := longestSeqPrefix(held, keys)
					out = append(out, held[:len(held)-keep]...)
					matched = keep
				}
				chunk = out
			}
			if len(chunk) > 0 {
				w, werr := dst.Write(chunk)
				written += int64(w)
				if werr != nil {
					return written, werr
				}
			}
			if detached {
				return written, errDetached
			}
		}
		if rerr != nil {
			if matched > 0 {
				// A partial sequence at the end of the input is data.
				w, werr := dst.Write(keys[:matched])
				written += int64(w)
				if werr != nil {
					return written, werr
				}
			}
			if errors.Is(rerr, io.EOF) {
				return written, nil
			}
			return written, rerr
		}
	}
}

// longestSeqPrefix is the length of the longest suffix of held that is a
// proper prefix of keys.
func longestSeqPrefix(held, keys []byte) int {
	max := len(held)
	if max >= len(keys) {
		max = len(keys) - 1
	}
	for k := max; k > 0; k-- {
		if string(held[len(held)-k:]) == string(keys[:k]) {
			return k
		}
	}
	return 0
}

// attachDetachKeys parses an attach's detachKeys parameter (empty: the
// default sequence); a bad one is the caller's mistake, as with dockerd.
func attachDetachKeys(s string) ([]byte, error) {
	if s == "" {
		return defaultDetachKeys, nil
	}
	keys, err := parseDetachKeys(s)
	if err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("Invalid detach keys (%s) provided", s))
	}
	return keys, nil
}

// attachStreams runs the live part of an attach: the client's input goes
// into the container's stdin pipe (pipe is nil when the client sends none)
// while sub receives the output. It returns when the run ends, the client
// goes away or detaches.
//
// As with dockerd: the detach sequence is only looked for on a TTY; the end
// of a client's input closes the container's stdin only for a StdinOnce
// container without a TTY (`docker run -i`), and ends the attach otherwise.
// A detaching client never closes the container's stdin: its copy stops at
// the sequence, having passed on everything before it, and the pipe (with
// the process reading it) stays for the next client.
func (d *Daemon) attachStreams(ctx context.Context, c *Container, sub *subscriber, pipe *stdinPipe, stdin io.Reader, tty, stdinOnce bool, keys []byte) {
	var stdinEnded chan error
	if pipe != nil {
		stdinEnded = make(chan error, 1)
		var scan []byte
		if tty {
			scan = keys
		}
		go func() {
			_, err := copyStdin(pipe.w, stdin, scan)
			stdinEnded <- err
		}()
	}
	for {
		select {
		case <-sub.done:
			return
		case <-ctx.Done():
			d.detachEvent(c)
			return
		case err := <-stdinEnded:
			stdinEnded = nil
			switch {
			case errors.Is(err, errDetached):
				d.detachEvent(c)
				return
			case errors.Is(err, io.ErrClosedPipe):
				// The run ended and took its stdin along: the output
				// ends next.
			case !tty && stdinOnce:
				pipe.w.Close()
			default:
				d.detachEvent(c)
				return
			}
		}
	}
}

// detachEvent records that a client left a container that goes on running.
func (d *Daemon) detachEvent(c *Container) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running() {
		d.containerEvent(c, events.ActionDetach, nil)
	}
}
