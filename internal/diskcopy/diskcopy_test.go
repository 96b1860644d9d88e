package diskcopy

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A copy has the same bytes (zeros included) and size, a hole where the
// source had one; an existing destination is refused.
func TestCopy(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	data := bytes.Repeat([]byte("disk"), 1<<18) // 1 MiB
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(data, 0)
	f.WriteAt(data, 5<<20) // a 4 MiB hole between
	f.Truncate(7 << 20)
	f.Close()
	if err := Copy(src, dst); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatalf("copy differs: %d and %d bytes", len(a), len(b))
	}
	if err := Copy(src, dst); err == nil {
		t.Fatal("copied over an existing file")
	}
	if b2, _ := os.ReadFile(dst); !bytes.Equal(b2, a) {
		t.Fatal("a refused copy changed the destination")
	}
}
