//go:build linux

package guestagent

import (
	"os"
	"testing"
)

// The exit path keeps waiting for output while a pipe has data or its end
// of file waiting (a starved copier), and gives up only on a pipe held open
// and idle.
func TestReadableTellsWaitingOutputFromAnIdlePipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if readable(r) {
		t.Fatal("an empty pipe whose writer is open is readable")
	}
	if _, err := w.Write([]byte("left over")); err != nil {
		t.Fatal(err)
	}
	if !readable(r) {
		t.Fatal("a pipe with data waiting is not readable")
	}
	buf := make([]byte, 64)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if !readable(r) {
		t.Fatal("a pipe whose end of file is waiting is not readable")
	}
	p := &proc{stdout: r}
	if !p.outputWaiting() {
		t.Fatal("outputWaiting misses the stdout pipe")
	}
}
