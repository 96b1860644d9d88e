package daemon

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"
)

// A migration's log: the current file and the rotated ones go (nothing
// else of the directory), the tail is what the current file got since,
// none once it was rotated; the target takes only its log's file names
// and leaves nothing of a refused stream.
func TestMigrateLogFiles(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	for _, driver := range []string{logDriverJSONFile, logDriverLocal} {
		src := &Container{Dir: t.TempDir(), HostConfig: &container.HostConfig{LogConfig: container.LogConfig{Type: driver}}}
		dst := &Container{Dir: t.TempDir(), HostConfig: src.HostConfig}
		cur := src.logFilePath()
		files := map[string]string{cur: "line 1\nline 2\n", cur + ".1": "older\n", cur + ".2.gz": "oldest", cur + ".bak": "not a log file", filepath.Join(src.Dir, "config.json"): "{}"}
		for p, data := range files {
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
				t.Fatal(err)
			}
		}
		names, err := logFilesToMigrate(src)
		if err != nil || len(names) != 3 {
			t.Fatalf("%s: files to send: %v %v", driver, names, err)
		}
		var buf bytes.Buffer
		sent := &sentLog{path: cur}
		if err := writeLogTar(src.Dir, names, &buf, sent); err != nil || sent.size != int64(len(files[cur])) || sent.ino == 0 {
			t.Fatalf("%s: tar: %v %+v", driver, err, sent)
		}
		if err := receiveLogTar(dst, &buf); err != nil {
			t.Fatalf("%s: receive: %v", driver, err)
		}
		for p, data := range files {
			rel, _ := filepath.Rel(src.Dir, p)
			b, err := os.ReadFile(filepath.Join(dst.Dir, rel))
			if strings.HasSuffix(p, ".bak") || strings.HasSuffix(p, "config.json") {
				if err == nil {
					t.Errorf("%s: %s was sent", driver, rel)
				}
			} else if string(b) != data {
				t.Errorf("%s: %s arrived as %q, %v", driver, rel, b, err)
			}
		}

		// The tail: what the current file got since.
		f, _ := os.OpenFile(cur, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("line 3\n")
		f.Close()
		tail := sent.tail(log)
		if string(tail) != "line 3\n" {
			t.Fatalf("%s: tail %q", driver, tail)
		}
		if err := appendLogTail(dst, tail); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(dst.logFilePath()); string(b) != "line 1\nline 2\nline 3\n" {
			t.Fatalf("%s: the target's log after the tail: %q", driver, b)
		}
		// Rotated since: no tail.
		os.Rename(cur, cur+".1")
		os.WriteFile(cur, []byte("line 1\nline 2\nline 3\nline 4\n"), 0o640)
		if tail := sent.tail(log); tail != nil {
			t.Fatalf("%s: a tail across a rotation: %q", driver, tail)
		}
	}

	// Refused: other files, links, directories, escapes; what a refused
	// stream wrote is removed.
	dst := &Container{Dir: t.TempDir(), HostConfig: &container.HostConfig{}}
	for _, bad := range []tar.Header{
		{Name: "config.json", Typeflag: tar.TypeReg},
		{Name: "container-json.log.x", Typeflag: tar.TypeReg},
		{Name: "container-json.log/../../escape", Typeflag: tar.TypeReg},
		{Name: "container-json.log.1", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		{Name: "container-json.log.2", Typeflag: tar.TypeDir},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "container-json.log", Typeflag: tar.TypeReg, Size: 3, Mode: 0o640})
		tw.Write([]byte("ok\n"))
		bad.Mode = 0o640
		tw.WriteHeader(&bad)
		tw.Close()
		if err := receiveLogTar(dst, &buf); !errdefs.IsInvalidParameter(err) {
			t.Errorf("%s (%c): %v", bad.Name, bad.Typeflag, err)
		}
		if entries, _ := os.ReadDir(dst.Dir); len(entries) != 0 {
			t.Fatalf("%s: a refused stream left %d files", bad.Name, len(entries))
		}
	}
}
