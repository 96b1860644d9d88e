package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

func TestValidateLogConfig(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		opts map[string]string
		want string // "" for valid; else a part of the message
	}{
		{"", nil, ""},
		{"json-file", map[string]string{"max-size": "10m", "max-file": "3", "compress": "true"}, ""},
		{"json-file", map[string]string{"max-file": "3"}, ""}, // as dockerd: no rotation without max-size
		{"json-file", map[string]string{"labels": "a,b", "labels-regex": "^x", "env": "A", "env-regex": "^B", "tag": "{{.Name}}/{{.ID}}"}, ""},
		{"json-file", map[string]string{"mode": "non-blocking", "max-buffer-size": "4m", "cache-disabled": "true"}, ""},
		{"json-file", map[string]string{"x": "1"}, "unknown log opt 'x' for json-file log driver"},
		{"json-file", map[string]string{"max-size": "lots"}, "invalid size: 'lots'"},
		{"json-file", map[string]string{"max-size": "0"}, "max-size must be a positive number"},
		{"json-file", map[string]string{"max-file": "0"}, "max-file cannot be less than 1"},
		{"json-file", map[string]string{"max-file": "two"}, `strconv.Atoi: parsing "two": invalid syntax`},
		{"json-file", map[string]string{"compress": "maybe"}, `strconv.ParseBool: parsing "maybe": invalid syntax`},
		{"json-file", map[string]string{"compress": "true", "max-size": "1m"}, "compress cannot be true when max-file is less than 2 or max-size is not set"},
		{"json-file", map[string]string{"compress": "true", "max-file": "2"}, "compress cannot be true when max-file is less than 2 or max-size is not set"},
		{"json-file", map[string]string{"env-regex": "("}, "error parsing regexp"},
		{"json-file", map[string]string{"tag": "{{.Nope}}"}, "can't evaluate field Nope"},
		{"json-file", map[string]string{"tag": "{{"}, "template: log-tag"},
		{"json-file", map[string]string{"mode": "sometimes"}, "logger: logging mode not supported: sometimes"},
		{"json-file", map[string]string{"max-buffer-size": "1m"}, "logger: max-buffer-size option is only supported with 'mode=non-blocking'"},
		{"json-file", map[string]string{"cache-disabled": "perhaps"}, "invalid value for option cache-disabled: perhaps"},
		{"local", nil, ""},
		{"local", map[string]string{"max-size": "1m", "max-file": "1", "compress": "false"}, ""},
		{"local", map[string]string{"max-file": "1"}, "compression cannot be enabled when max file count is 1"},
		{"local", map[string]string{"labels": "a"}, "unknown log opt 'labels' for log driver local"},
		{"local", map[string]string{"max-size": "big"}, "invalid value for max-size: big: invalid size: 'big'"},
		{"local", map[string]string{"max-file": "-1"}, "max file count cannot be less than 0"},
		{"none", map[string]string{"anything": "goes"}, ""},
		{"syslog", nil, `logging driver "syslog" is not supported by jevm: use json-file, local or none`},
		{"journald", map[string]string{"tag": "x"}, "not supported by jevm"},
		{"nosuch", nil, "logger: no log driver named 'nosuch' is registered (jevm supports json-file, local and none)"},
	} {
		err := ValidateLogConfig(container.LogConfig{Type: tc.typ, Config: tc.opts})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %v: unexpected error %v", tc.typ, tc.opts, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s %v: got error %v, want %q", tc.typ, tc.opts, err, tc.want)
		}
	}
}

func TestResolveLogConfig(t *testing.T) {
	jf := func(kv ...string) container.LogConfig {
		lc := container.LogConfig{Type: "json-file", Config: map[string]string{}}
		for i := 0; i+1 < len(kv); i += 2 {
			lc.Config[kv[i]] = kv[i+1]
		}
		return lc
	}
	def := jf("max-size", "10m", "max-file", "2")
	for _, tc := range []struct {
		name      string
		user, def container.LogConfig
		want      container.LogConfig
	}{
		{"nothing set", container.LogConfig{}, container.LogConfig{}, jf()},
		{"daemon default", container.LogConfig{}, def, jf("max-size", "10m", "max-file", "2")},
		{"daemon default driver and options", container.LogConfig{}, container.LogConfig{Type: "local", Config: map[string]string{"max-size": "1m"}},
			container.LogConfig{Type: "local", Config: map[string]string{"max-size": "1m"}}},
		{"same driver: container's options win, daemon's fill in", jf("max-file", "5"), def, jf("max-size", "10m", "max-file", "5")},
		{"other driver: daemon's options left out", container.LogConfig{Type: "local"}, def, container.LogConfig{Type: "local", Config: map[string]string{}}},
		{"none", container.LogConfig{Type: "none"}, def, container.LogConfig{Type: "none", Config: map[string]string{}}},
		{"json-file over local default", container.LogConfig{Type: "json-file"}, container.LogConfig{Type: "local", Config: map[string]string{"max-file": "9"}}, jf()},
		{"cache options always merged", container.LogConfig{Type: "local"}, jf("cache-disabled", "true"),
			container.LogConfig{Type: "local", Config: map[string]string{"cache-disabled": "true"}}},
	} {
		defCopy := tc.def
		got, err := resolveLogConfig(tc.user, tc.def)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
		if !reflect.DeepEqual(tc.def, defCopy) {
			t.Errorf("%s: the daemon default was changed", tc.name)
		}
	}
	// The merged result is what is validated: a daemon option the
	// container's own setting makes invalid is refused at create.
	_, err := resolveLogConfig(jf("compress", "true"), jf("max-size", "1m"))
	if !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "compress cannot be true") {
		t.Errorf("compress without max-file: %v", err)
	}
	if _, err := resolveLogConfig(container.LogConfig{Type: "gelf"}, def); !errdefs.IsInvalidParameter(err) {
		t.Errorf("gelf: %v, want InvalidParameter", err)
	}
	if _, err := resolveLogConfig(jf("bogus", "1"), def); err == nil || err.Error() != "unknown log opt 'bogus' for json-file log driver" {
		t.Errorf("unknown option: %v", err)
	}
}

func TestInspectAndDefaultLogConfig(t *testing.T) {
	d := testDaemon(t)
	d.cfg.DefaultLogConfig = container.LogConfig{Type: "local"}
	if got := d.defaultLogConfig().Type; got != "local" {
		t.Errorf("default driver = %q", got)
	}
	d.cfg.DefaultLogConfig = container.LogConfig{}
	if got := d.defaultLogConfig().Type; got != "json-file" {
		t.Errorf("default driver of an empty config = %q", got)
	}

	old := testContainer(t, d, "old") // created before log drivers: json-file
	resp, err := d.ContainerInspect(context.Background(), "old", false)
	if err != nil {
		t.Fatal(err)
	}
	if lc := resp.HostConfig.LogConfig; lc.Type != "json-file" || lc.Config == nil || resp.LogPath != old.logPath() {
		t.Errorf("old container: %+v %q", lc, resp.LogPath)
	}
	loc := testContainer(t, d, "local")
	loc.HostConfig.LogConfig = container.LogConfig{Type: "local", Config: map[string]string{"max-file": "3"}}
	resp, err = d.ContainerInspect(context.Background(), "local", false)
	if err != nil {
		t.Fatal(err)
	}
	if lc := resp.HostConfig.LogConfig; lc.Type != "local" || lc.Config["max-file"] != "3" || resp.LogPath != "" {
		t.Errorf("local container: %+v %q", lc, resp.LogPath)
	}
	if loc.logFilePath() != filepath.Join(loc.Dir, "local-logs", "container.log") {
		t.Errorf("local log path = %s", loc.logFilePath())
	}
}

// testLog writes numbered, equally long entries ("line-NN\n", one second
// apart) to a log with the given settings.
type testLog struct {
	t     *testing.T
	path  string
	lw    *logWriter
	clock time.Time
}

func newTestLog(t *testing.T, set logSettings) *testLog {
	t.Helper()
	path := filepath.Join(t.TempDir(), "container-json.log")
	if set.maxFiles == 0 {
		set.maxFiles = 1
	}
	lw, err := newLogWriter(path, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLog{t: t, path: path, lw: lw, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	lw.now = func() time.Time { return tl.clock }
	return tl
}

func (tl *testLog) write(from, to int) {
	for i := from; i <= to; i++ {
		tl.clock = tl.clock.Add(time.Second)
		if err := tl.lw.write("stdout", []byte(fmt.Sprintf("line-%02d\n", i))); err != nil {
			tl.t.Fatal(err)
		}
	}
}

// entryLen is the size of one test entry in the file.
func entryLen(t *testing.T) int64 {
	b, err := json.Marshal(logEntry{Log: "line-00\n", Stream: "stdout", Time: time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b) + 1)
}

// fileLines returns the "line-NN" numbers in one file of the log.
func fileLines(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e logEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%s: %q: %v", name, l, err)
		}
		out = append(out, strings.TrimSpace(e.Log))
	}
	return out
}

func logFileNames(t *testing.T, path string) []string {
	t.Helper()
	m, _ := filepath.Glob(path + "*")
	var names []string
	for _, n := range m {
		names = append(names, filepath.Base(n))
	}
	return names
}

func TestLogRotation(t *testing.T) {
	l := entryLen(t)
	t.Run("two entries fill a file exactly", func(t *testing.T) {
		tl := newTestLog(t, logSettings{maxSize: 2 * l, maxFiles: 3})
		tl.write(1, 7)
		if err := tl.lw.Close(); err != nil {
			t.Fatal(err)
		}
		// 7 entries, 2 a file: 1-2 went, 3-4 in .2, 5-6 in .1, 7 current.
		if got := strings.Join(logFileNames(t, tl.path), " "); got != "container-json.log container-json.log.1 container-json.log.2" {
			t.Fatalf("files = %s", got)
		}
		for name, want := range map[string]string{"": "line-07", ".1": "line-05 line-06", ".2": "line-03 line-04"} {
			if got := strings.Join(fileLines(t, tl.path+name), " "); got != want {
				t.Errorf("file %q = %s, want %s", name, got, want)
			}
			if fi, _ := os.Stat(tl.path + name); fi.Size() > 2*l {
				t.Errorf("file %q is %d bytes, over max-size %d", name, fi.Size(), 2*l)
			}
		}
	})
	t.Run("one byte less holds one entry", func(t *testing.T) {
		tl := newTestLog(t, logSettings{maxSize: 2*l - 1, maxFiles: 2})
		tl.write(1, 3)
		tl.lw.Close()
		if got := strings.Join(fileLines(t, tl.path+".1"), " ") + "|" + strings.Join(fileLines(t, tl.path), " "); got != "line-02|line-03" {
			t.Errorf("files = %s", got)
		}
	})
	t.Run("max-file 1 keeps only the current file", func(t *testing.T) {
		tl := newTestLog(t, logSettings{maxSize: 3 * l, maxFiles: 1})
		tl.write(1, 5)
		tl.lw.Close()
		if got := strings.Join(logFileNames(t, tl.path), " "); got != "container-json.log" {
			t.Fatalf("files = %s", got)
		}
		if got := strings.Join(fileLines(t, tl.path), " "); got != "line-04 line-05" {
			t.Errorf("current = %s", got)
		}
	})
	t.Run("an entry longer than max-size gets a file of its own", func(t *testing.T) {
		tl := newTestLog(t, logSettings{maxSize: 10, maxFiles: 3})
		tl.write(1, 2)
		tl.lw.Close()
		if a, b := fileLines(t, tl.path+".1"), fileLines(t, tl.path); len(a) != 1 || len(b) != 1 || b[0] != "line-02" {
			t.Errorf("files = %v %v", a, b)
		}
	})
	t.Run("no max-size, no rotation", func(t *testing.T) {
		tl := newTestLog(t, logSettings{maxSize: -1, maxFiles: 3})
		tl.write(1, 20)
		tl.lw.Close()
		if got := logFileNames(t, tl.path); len(got) != 1 {
			t.Errorf("files = %v", got)
		}
	})
	t.Run("reopened log continues the file's size", func(t *testing.T) {
		tl := newTestLog(t, logSettings{maxSize: 2 * l, maxFiles: 3})
		tl.write(1, 1)
		tl.lw.Close()
		lw, err := newLogWriter(tl.path, logSettings{maxSize: 2 * l, maxFiles: 3}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tl.lw = lw
		lw.now = func() time.Time { return tl.clock }
		tl.write(2, 3)
		lw.Close()
		if got := strings.Join(fileLines(t, tl.path+".1"), " ") + "|" + strings.Join(fileLines(t, tl.path), " "); got != "line-01 line-02|line-03" {
			t.Errorf("files = %s", got)
		}
	})
	t.Run("compress", func(t *testing.T) {
		tl := newTestLog(t, logSettings{maxSize: 2 * l, maxFiles: 4, compress: true})
		tl.write(1, 9)
		tl.lw.Close() // waits for the last compression
		if got := strings.Join(logFileNames(t, tl.path), " "); got != "container-json.log container-json.log.1.gz container-json.log.2.gz container-json.log.3.gz" {
			t.Fatalf("files = %s", got)
		}
		got := readAll(t, tl.path, logReadOptions{Stdout: true, Tail: -1})
		if want := "line-03 line-04 line-05 line-06 line-07 line-08 line-09"; got != want {
			t.Errorf("read = %s, want %s", got, want)
		}
		// The gzip header's last time lets --since skip whole files.
		since := time.Date(2026, 1, 1, 0, 0, 7, 0, time.UTC)
		if got := readAll(t, tl.path, logReadOptions{Stdout: true, Tail: -1, Since: since}); got != "line-07 line-08 line-09" {
			t.Errorf("since = %s", got)
		}
	})
}

func readAll(t *testing.T, path string, o logReadOptions) string {
	t.Helper()
	ch := make(chan backend.LogMessage)
	go readLog(context.Background(), path, o, func() bool { return false }, ch)
	var got []string
	for m := range ch {
		if m.Err != nil {
			t.Fatal(m.Err)
		}
		got = append(got, strings.TrimSpace(string(m.Line)))
	}
	return strings.Join(got, " ")
}

func TestLogReadAcrossRotatedFiles(t *testing.T) {
	l := entryLen(t)
	tl := newTestLog(t, logSettings{maxSize: 3 * l, maxFiles: 5})
	tl.write(1, 10) // .3: 1-3, .2: 4-6, .1: 7-9, current: 10
	tl.lw.Close()
	at := func(s int) time.Time { return time.Date(2026, 1, 1, 0, 0, s, 0, time.UTC) }
	for _, tc := range []struct {
		o    logReadOptions
		want string
	}{
		{logReadOptions{Stdout: true, Tail: -1}, "line-01 line-02 line-03 line-04 line-05 line-06 line-07 line-08 line-09 line-10"},
		{logReadOptions{Stdout: true, Tail: 4}, "line-07 line-08 line-09 line-10"},
		{logReadOptions{Stdout: true, Tail: 0}, ""},
		{logReadOptions{Stdout: true, Tail: -1, Since: at(5)}, "line-05 line-06 line-07 line-08 line-09 line-10"},
		{logReadOptions{Stdout: true, Tail: -1, Until: at(4)}, "line-01 line-02 line-03 line-04"},
		{logReadOptions{Stdout: true, Tail: 2, Since: at(2), Until: at(8)}, "line-07 line-08"},
		{logReadOptions{Stderr: true, Tail: -1}, ""},
	} {
		if got := readAll(t, tl.path, tc.o); got != tc.want {
			t.Errorf("%+v: got %s, want %s", tc.o, got, tc.want)
		}
	}
}

func TestLogFollowAcrossRotation(t *testing.T) {
	l := entryLen(t)
	for _, tc := range []struct {
		name string
		set  logSettings
		step int // entries written between waits for the follower
		upto int
	}{
		// Many rotations before the follower looks again: it catches up
		// through the rotated files.
		{"burst", logSettings{maxSize: 2 * l, maxFiles: 100}, 20, 60},
		{"burst compressed", logSettings{maxSize: 2 * l, maxFiles: 100, compress: true}, 20, 60},
		// max-file 1: the followed file is removed at each rotation.
		{"max-file 1", logSettings{maxSize: 2 * l, maxFiles: 1}, 1, 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := newTestLog(t, tc.set)
			tl.write(1, 3) // a rotation before the follower starts
			done := make(chan struct{})
			stillRunning := func() bool {
				select {
				case <-done:
					return false
				default:
					return true
				}
			}
			ch := make(chan backend.LogMessage)
			go readLog(context.Background(), tl.path, logReadOptions{Stdout: true, Tail: 1, Follow: true}, stillRunning, ch)
			next := func() string {
				select {
				case m, ok := <-ch:
					if !ok {
						t.Fatal("follower ended early")
					}
					return strings.TrimSpace(string(m.Line))
				case <-time.After(5 * time.Second):
					t.Fatal("follower stalled")
				}
				return ""
			}
			if got := next(); got != "line-03" {
				t.Fatalf("tail 1 = %s", got)
			}
			n := 4
			for n <= tc.upto {
				tl.write(n, n+tc.step-1)
				for i := n; i < n+tc.step; i++ {
					if got, want := next(), fmt.Sprintf("line-%02d", i); got != want {
						t.Fatalf("got %s, want %s", got, want)
					}
				}
				n += tc.step
			}
			tl.write(n, n)
			tl.lw.Close()
			close(done)
			var rest []string
			for m := range ch {
				rest = append(rest, strings.TrimSpace(string(m.Line)))
			}
			if got := strings.Join(rest, " "); got != fmt.Sprintf("line-%02d", n) {
				t.Errorf("after the exit: %q", got)
			}
		})
	}
}

func TestLogPartialLines(t *testing.T) {
	tl := newTestLog(t, logSettings{maxSize: -1, maxFiles: 1})
	w := tl.lw.streamWriter("stderr")
	w.Write([]byte(strings.Repeat("x", 2*maxLogLine+5)))
	w.Write([]byte("y\nz"))
	tl.lw.Close()
	ch := make(chan backend.LogMessage)
	go readLog(context.Background(), tl.path, logReadOptions{Stderr: true, Tail: -1}, func() bool { return false }, ch)
	var lens []int
	for m := range ch {
		lens = append(lens, len(m.Line))
	}
	if !reflect.DeepEqual(lens, []int{maxLogLine, maxLogLine, 7, 1}) {
		t.Errorf("entry lengths = %v", lens)
	}
}

// saveTestContainer makes a container record in its directory, as create does.
func saveTestContainer(t *testing.T, d *Daemon, name string, lc container.LogConfig, cfg *container.Config) *Container {
	t.Helper()
	c := testContainer(t, d, name)
	c.HostConfig.LogConfig = lc
	if cfg != nil {
		c.Config = cfg
	}
	c.ImageID = "sha256:" + strings.Repeat("ab", 32)
	c.Path, c.Args = "/bin/sh", []string{"-c", "true"}
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLogDriverNone(t *testing.T) {
	d := testDaemon(t)
	c := saveTestContainer(t, d, "quiet", container.LogConfig{Type: "none", Config: map[string]string{}}, nil)
	lw, err := openContainerLog(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := lw.write("stdout", []byte("lost\n")); err != nil {
		t.Fatal(err)
	}
	lw.Close()
	if names := logFileNames(t, c.logPath()); len(names) != 0 {
		t.Errorf("driver none stored %v", names)
	}
	_, _, err = d.ContainerLogs(context.Background(), "quiet", container.LogsOptions{ShowStdout: true})
	if !errdefs.IsNotImplemented(err) || err.Error() != "configured logging driver does not support reading" {
		t.Errorf("logs: %v, want NotImplemented 'configured logging driver does not support reading'", err)
	}
	err = d.ContainerAttach(context.Background(), "quiet", &backend.AttachConfig{Logs: true, UseStdout: true})
	if !errdefs.IsNotImplemented(err) {
		t.Errorf("attach with logs: %v, want NotImplemented", err)
	}
}

func TestOpenLogWriterUsesContainerRecord(t *testing.T) {
	d := testDaemon(t)
	t.Run("json-file attrs", func(t *testing.T) {
		c := saveTestContainer(t, d, "attrs", container.LogConfig{Type: "json-file", Config: map[string]string{
			"labels": "team,missing", "env": "STAGE", "env-regex": "^REG", "tag": "{{.Name}}/{{.ID}}/{{.ImageName}}",
		}}, &container.Config{Image: "busybox", Labels: map[string]string{"team": "a", "other": "b"}, Env: []string{"STAGE=prod", "REGION=eu", "X=1"}})
		lw, err := openContainerLog(c)
		if err != nil {
			t.Fatal(err)
		}
		lw.write("stdout", []byte("hi\n"))
		lw.Close()
		b, err := os.ReadFile(c.logPath())
		if err != nil {
			t.Fatal(err)
		}
		var e logEntry
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"team": "a", "STAGE": "prod", "REGION": "eu", "tag": "attrs/aaaaaaaaaaaa/busybox"}
		if !reflect.DeepEqual(e.Attrs, want) || e.Log != "hi\n" {
			t.Errorf("entry = %+v, want attrs %v", e, want)
		}
		if !strings.Contains(string(b), `"stream":"stdout","attrs":{`) {
			t.Errorf("field order differs from dockerd's: %s", b)
		}
	})
	t.Run("local", func(t *testing.T) {
		c := saveTestContainer(t, d, "local", container.LogConfig{Type: "local", Config: map[string]string{}}, nil)
		lw, err := openContainerLog(c)
		if err != nil {
			t.Fatal(err)
		}
		if lw.set.maxSize != 20<<20 || lw.set.maxFiles != 5 || !lw.set.compress {
			t.Errorf("local defaults = %+v", lw.set)
		}
		lw.write("stdout", []byte("kept\n"))
		lw.Close()
		if _, err := os.Stat(c.logPath()); !os.IsNotExist(err) {
			t.Errorf("local wrote container-json.log: %v", err)
		}
		if got := readAll(t, c.logFilePath(), logReadOptions{Stdout: true, Tail: -1}); got != "kept" {
			t.Errorf("local log = %q", got)
		}
		ch, _, err := d.ContainerLogs(context.Background(), "local", container.LogsOptions{ShowStdout: true})
		if err != nil {
			t.Fatal(err)
		}
		if m := <-ch; string(m.Line) != "kept\n" {
			t.Errorf("docker logs = %q", m.Line)
		}
	})
	t.Run("json-file with rotation", func(t *testing.T) {
		c := saveTestContainer(t, d, "rot", container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "1k", "max-file": "2"}}, nil)
		lw, err := openContainerLog(c)
		if err != nil {
			t.Fatal(err)
		}
		if lw.set.maxSize != 1000 || lw.set.maxFiles != 2 || lw.path != c.logPath() {
			t.Errorf("settings = %+v at %s", lw.set, lw.path)
		}
		lw.Close()
	})
}

// openLogWriter opens a plain json-file log at path, without rotation.
func openLogWriter(path string) (*logWriter, error) {
	return newLogWriter(path, logSettings{driver: logDriverJSONFile, maxSize: -1, maxFiles: 1}, nil)
}

// streamWriter returns an io.Writer that logs to stream ("stdout"/"stderr").
func (l *logWriter) streamWriter(stream string) io.Writer {
	return writerFunc(func(p []byte) (int, error) { return len(p), l.write(stream, p) })
}
