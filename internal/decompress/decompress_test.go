package decompress

import (
	"bytes"
	"compress/gzip"
	"io"
	"os/exec"
	"testing"
)

func TestStream(t *testing.T) {
	want := bytes.Repeat([]byte("jevm decompress "), 1000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(want)
	zw.Close()
	inputs := map[string][]byte{"plain": want, "gzip": gz.Bytes()}
	for name, tool := range map[string][]string{"bzip2": {"bzip2", "-c"}, "xz": {"xz", "-c"}, "zstd": {"zstd", "-c", "-q"}} {
		if _, err := exec.LookPath(tool[0]); err != nil {
			t.Logf("%s not installed: not tested", tool[0])
			continue
		}
		cmd := exec.Command(tool[0], tool[1:]...)
		cmd.Stdin = bytes.NewReader(want)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		inputs[name] = out
	}
	for name, in := range inputs {
		rc, err := Stream(bytes.NewReader(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, err %v", name, len(got), err)
		}
	}
}
