package qemu

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A process started under the host filter (as QEMU is) cannot make device
// nodes, setuid or setgid-executable files, or set extended attributes;
// FIFOs and ordinary modes stay allowed.
func TestHostFilter(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mknod of a device needs root, to show that only the filter refuses it")
	}
	dir := t.TempDir()
	script := `cd "$1"
try() { if "$@" 2>/dev/null; then echo "$* ok"; else echo "$* denied"; fi; }
try mknod c1 c 1 3
try mknod b1 b 7 0
try mkfifo f1
touch s
try chmod 4755 s
try chmod 2755 s
try chmod 2644 s
try chmod 0755 s
`
	cmd := exec.Command("sh", "-c", script, "sh", dir)
	var out strings.Builder
	cmd.Stdout = &out
	if err := startFiltered(nil, cmd.Start, nil); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	want := "mknod c1 c 1 3 denied\nmknod b1 b 7 0 denied\nmkfifo f1 ok\nchmod 4755 s denied\nchmod 2755 s denied\nchmod 2644 s ok\nchmod 0755 s ok\n"
	if out.String() != want {
		t.Fatalf("under the filter:\n%s\nwant:\n%s", out.String(), want)
	}
	// Without it (this test runs as root), the same is allowed.
	out.Reset()
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	cmd = exec.Command("sh", "-c", script, "sh", dir)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil || !strings.HasPrefix(out.String(), "mknod c1 c 1 3 ok\n") {
		t.Fatalf("without the filter: %v %s", err, out.String())
	}
}
