package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/sirupsen/logrus"
)

func newTestBuilder(t *testing.T) (*Builder, *fakeEngine) {
	t.Helper()
	fe := newFakeEngine()
	log := logrus.New()
	log.SetOutput(io.Discard)
	b, err := New(Options{Root: t.TempDir(), Images: fe, Containers: fe, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return b, fe
}

// contextTar makes a build context; names ending in "/" are directories.
func contextTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o644, ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg, Size: int64(len(files[n]))}
		if strings.HasSuffix(n, "/") {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	return buf.Bytes()
}

// runBuild builds and returns the image ID, the stream's text and error.
func runBuild(t *testing.T, b *Builder, opts build.ImageBuildOptions, ctxTar []byte) (string, string, error) {
	t.Helper()
	opts.Context = bytes.NewReader(ctxTar)
	if opts.Version == "" {
		opts.Version = build.BuilderV1
	}
	var out bytes.Buffer
	id, err := b.Build(context.Background(), &opts, &out)
	var text strings.Builder
	dec := json.NewDecoder(&out)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			break
		}
		text.WriteString(m.Stream)
		if m.Status != "" {
			text.WriteString(m.Status + "\n")
		}
		if m.Aux != nil {
			text.WriteString("AUX " + string(*m.Aux) + "\n")
		}
	}
	return id, text.String(), err
}

func sp(s string) *string { return &s }

func TestBuildStepsConfigAndCache(t *testing.T) {
	b, fe := newTestBuilder(t)
	fe.runHook = func(cfg *container.Config) (string, int, map[string]fakeFile) {
		return "ran: " + strings.Join(cfg.Cmd, " ") + "\n", 0, map[string]fakeFile{"/app/built": {mode: 0o644, content: "x"}}
	}
	df := `ARG BASE=busybox
FROM ${BASE} AS base
ARG GREETING
ARG UNSET
ENV HOME_DIR=/app
WORKDIR $HOME_DIR
LABEL a=b "c d"=e
EXPOSE 80 53/udp
USER app
RUN echo $GREETING
CMD ["run"]
ENTRYPOINT ["/entry"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s CMD ["true"]
VOLUME /data
ONBUILD RUN echo child
`
	opts := build.ImageBuildOptions{Tags: []string{"out:1", "other"}, BuildArgs: map[string]*string{"GREETING": sp("hi"), "NOTUSED": sp("x"), "HTTP_PROXY": sp("http://proxy")}, Labels: map[string]string{"from-cli": "1"}, Remove: true}
	id, text, err := runBuild(t, b, opts, contextTar(t, map[string]string{"Dockerfile": df}))
	if err != nil {
		t.Fatalf("build: %v\n%s", err, text)
	}
	for _, want := range []string{
		"Step 1/17 : ARG BASE=busybox\n", "Step 2/17 : FROM ${BASE} AS base\n", "Pulled busybox\n",
		" ---> Running in ", "ran: /bin/sh -c echo $GREETING\n", " ---> Removed intermediate container ",
		"Step 17/17 : LABEL from-cli=1\n", "[Warning] One or more build-args [NOTUSED] were not consumed\n",
		"Successfully built " + shortID(id) + "\n", "Successfully tagged out:1\n", "Successfully tagged other:latest\n",
		"AUX {\"ID\":\"" + id + "\"}\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// One RUN container, with the build arg and the proxy in its
	// environment, no entrypoint, and removed.
	if len(fe.created) != 1 || len(fe.removed) != 1 {
		t.Fatalf("containers created %d removed %d", len(fe.created), len(fe.removed))
	}
	run := fe.created[0]
	if strings.Join(run.Cmd, "|") != "/bin/sh|-c|echo $GREETING" || len(run.Entrypoint) != 1 || run.Entrypoint[0] != "" ||
		!contains(run.Env, "GREETING=hi") || !contains(run.Env, "HTTP_PROXY=http://proxy") || run.User != "app" || run.WorkingDir != "/app" {
		t.Errorf("RUN container config %+v", run)
	}
	img := fe.images[id]
	cfg := img.config
	if cfg.WorkingDir != "/app" || cfg.User != "app" || strings.Join(cfg.Cmd, " ") != "run" || strings.Join(cfg.Entrypoint, " ") != "/entry" ||
		cfg.Labels["a"] != "b" || cfg.Labels["c d"] != "e" || cfg.Labels["from-cli"] != "1" || cfg.StopSignal != "SIGINT" ||
		cfg.Healthcheck == nil || cfg.Healthcheck.Interval != 5*time.Second || len(cfg.Volumes) != 1 ||
		len(cfg.ExposedPorts) != 2 || strings.Join(cfg.OnBuild, "") != "RUN echo child" || !contains(cfg.Env, "HOME_DIR=/app") {
		t.Errorf("image config %+v", cfg)
	}
	if contains(cfg.Env, "GREETING=hi") {
		t.Error("a build arg leaked into the image's environment")
	}
	// The RUN step's history records the declared arg, not the proxy.
	runImg := findImage(fe, func(i *fakeImage) bool { return strings.Contains(i.createdBy, "echo $GREETING") })
	if runImg == nil || runImg.createdBy != "|2 GREETING=hi UNSET= /bin/sh -c echo $GREETING" && runImg.createdBy != "|1 GREETING=hi /bin/sh -c echo $GREETING" {
		t.Errorf("RUN history: %+v", runImg)
	}
	if _, ok := runImg.files["/app/built"]; !ok {
		t.Error("the RUN step's changes are not in its image")
	}
	if len(fe.prepared) != 1 || fe.prepared[0] != id || fe.tags["out:1"] != id || fe.tags["other:latest"] != id {
		t.Errorf("prepared %v tags %v", fe.prepared, fe.tags)
	}

	// Nothing changed: every step from the cache, no container.
	id2, text, err := runBuild(t, b, opts, contextTar(t, map[string]string{"Dockerfile": df}))
	if err != nil || id2 != id || strings.Contains(text, "Running in") || strings.Count(text, "Using cache") != 15 {
		t.Fatalf("cached rebuild: %v %s %s\n%s", err, id2, id, text)
	}
	// Another value of the arg reruns from the RUN step on.
	opts.BuildArgs["GREETING"] = sp("bye")
	id3, text, err := runBuild(t, b, opts, contextTar(t, map[string]string{"Dockerfile": df}))
	if err != nil || id3 == id || strings.Count(text, "Running in") != 1 || strings.Count(text, "Using cache") != 7 {
		t.Fatalf("rebuild with another arg: %v\n%s", err, text)
	}
	// --no-cache runs everything again.
	opts.NoCache = true
	_, text, err = runBuild(t, b, opts, contextTar(t, map[string]string{"Dockerfile": df}))
	if err != nil || strings.Contains(text, "Using cache") {
		t.Fatalf("no-cache: %v\n%s", err, text)
	}
	// Prune forgets the cache.
	rep, err := b.PruneCache(context.Background(), build.CachePruneOptions{})
	if err != nil || len(rep.CachesDeleted) == 0 || b.cache.len() != 0 {
		t.Fatalf("prune: %v %+v", err, rep)
	}

	// A child of the image runs its ONBUILD trigger.
	child := "FROM out:1\nRUN echo mine\n"
	n := len(fe.created)
	_, text, err = runBuild(t, b, build.ImageBuildOptions{Remove: true}, contextTar(t, map[string]string{"Dockerfile": child}))
	if err != nil || !strings.Contains(text, "# Executing 1 build trigger\n") || len(fe.created) != n+2 ||
		strings.Join(fe.created[n].Cmd, " ") != "/bin/sh -c echo child" {
		t.Fatalf("ONBUILD: %v\n%s", err, text)
	}
}

func findImage(fe *fakeEngine, match func(*fakeImage) bool) *fakeImage {
	for _, img := range fe.images {
		if match(img) {
			return img
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestBuildCopySemantics(t *testing.T) {
	b, fe := newTestBuilder(t)
	df := `FROM busybox AS first
COPY one.txt /etc
COPY one.txt /new/name.txt
COPY dir /copied/
COPY *.txt /many/
COPY --chown=app:app --chmod=0600 one.txt /owned
COPY --chown=7 one.txt /numeric
WORKDIR /w
COPY one.txt rel.txt
FROM busybox
COPY --from=first /new/name.txt /from-stage.txt
COPY --from=0 /copied/sub/two.txt /from-index.txt
`
	files := map[string]string{
		"Dockerfile": df, "one.txt": "one", "also.txt": "also", "dir/": "", "dir/sub/": "", "dir/sub/two.txt": "two",
		"dir/skip.log": "ignored", ".dockerignore": "dir/*.log\n",
	}
	id, text, err := runBuild(t, b, build.ImageBuildOptions{Remove: true}, contextTar(t, files))
	if err != nil {
		t.Fatalf("build: %v\n%s", err, text)
	}
	if len(fe.created) != 0 {
		t.Errorf("COPY steps ran %d containers; they need none", len(fe.created))
	}
	first := findImage(fe, func(i *fakeImage) bool { _, ok := i.files["/w/rel.txt"]; return ok })
	if first == nil {
		t.Fatalf("no image has /w/rel.txt")
	}
	want := map[string]fakeFile{
		"/etc/one.txt":            {mode: 0o644, content: "one"},
		"/new":                    {mode: fs.ModeDir | 0o755},
		"/new/name.txt":           {mode: 0o644, content: "one"},
		"/copied/sub/two.txt":     {mode: 0o644, content: "two"},
		"/many/one.txt":           {mode: 0o644, content: "one"},
		"/many/also.txt":          {mode: 0o644, content: "also"},
		"/owned":                  {mode: 0o600, uid: 1000, gid: 1002, content: "one"},
		"/numeric":                {mode: 0o644, uid: 7, gid: 7, content: "one"},
		"/w/rel.txt":              {mode: 0o644, content: "one"},
		"/copied/sub":             {mode: fs.ModeDir | 0o755},
		"/etc/passwd (unchanged)": {},
	}
	for p, w := range want {
		if strings.HasSuffix(p, "(unchanged)") {
			continue
		}
		got, ok := first.files[p]
		if !ok || got.mode != w.mode || got.uid != w.uid || got.gid != w.gid || got.content != w.content {
			t.Errorf("%s = %+v (present %v), want %+v", p, got, ok, w)
		}
	}
	if _, ok := first.files["/copied/skip.log"]; ok {
		t.Error(".dockerignore'd file was copied")
	}
	if f := first.files["/etc"]; f.mode != fs.ModeDir|0o755 {
		t.Errorf("COPY into the existing /etc changed it: %+v", f)
	}
	final := fe.images[id]
	if final.files["/from-stage.txt"].content != "one" || final.files["/from-index.txt"].content != "two" {
		t.Errorf("COPY --from: %+v %+v", final.files["/from-stage.txt"], final.files["/from-index.txt"])
	}

	for _, c := range []struct{ df, msg string }{
		{"FROM busybox\nCOPY *.txt /notadir\n", "When using COPY with more than one source file, the destination must be a directory and end with a /"},
		{"FROM busybox\nCOPY dir/skip.log /\n", "COPY failed: file not found in build context or excluded by .dockerignore: stat dir/skip.log: file does not exist"},
		{"FROM busybox\nCOPY ../outside /\n", "COPY failed: file not found in build context or excluded by .dockerignore: stat ../outside: file does not exist"},
		{"FROM busybox\nCOPY --chown=nobody one.txt /\n", "can't find uid for user nobody"},
		{"FROM busybox\nCOPY --link one.txt /\n", "the --link option requires BuildKit"},
		{"FROM busybox\nCOPY --chmod=999 one.txt /\n", "invalid chmod parameter: 999"},
	} {
		files["Dockerfile"] = c.df
		_, text, err := runBuild(t, b, build.ImageBuildOptions{Remove: true}, contextTar(t, files))
		if err == nil || !strings.Contains(err.Error(), c.msg) || !errdefs.IsInvalidParameter(err) {
			t.Errorf("%q: error %v, want %q\n%s", c.df, err, c.msg, text)
		}
	}
}

func TestBuildAddArchiveAndContexts(t *testing.T) {
	b, fe := newTestBuilder(t)
	// A local tar in the context is extracted by ADD.
	inner := contextTar(t, map[string]string{"pkg/": "", "pkg/a.txt": "A"})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(inner)
	zw.Close()
	files := map[string]string{"Dockerfile": "FROM busybox\nADD pkg.tar.gz /opt/\nADD plain.txt /opt/plain.txt\n", "pkg.tar.gz": gz.String(), "plain.txt": "p"}
	id, text, err := runBuild(t, b, build.ImageBuildOptions{}, contextTar(t, files))
	if err != nil {
		t.Fatalf("build: %v\n%s", err, text)
	}
	img := fe.images[id]
	if img.files["/opt/pkg/a.txt"].content != "A" || img.files["/opt/plain.txt"].content != "p" {
		t.Errorf("ADD: %+v", img.files)
	}

	// A gzip-compressed context, with the Dockerfile under another name.
	ctx := contextTar(t, map[string]string{"build/My.Dockerfile": "FROM busybox\nCOPY x /x\n", "x": "X"})
	gz.Reset()
	zw = gzip.NewWriter(&gz)
	zw.Write(ctx)
	zw.Close()
	id, text, err = runBuild(t, b, build.ImageBuildOptions{Dockerfile: "build/My.Dockerfile"}, gz.Bytes())
	if err != nil || fe.images[id].files["/x"].content != "X" {
		t.Fatalf("gzip context: %v\n%s", err, text)
	}

	// `docker build - < Dockerfile`: the body is the Dockerfile.
	id, text, err = runBuild(t, b, build.ImageBuildOptions{}, []byte("FROM busybox\nENV FROM_STDIN=1\n"))
	if err != nil || !contains(fe.images[id].config.Env, "FROM_STDIN=1") {
		t.Fatalf("Dockerfile as the body: %v\n%s", err, text)
	}
	// The target stage ends the build.
	id, text, err = runBuild(t, b, build.ImageBuildOptions{Target: "Two"}, []byte("FROM busybox AS one\nENV A=1\nFROM one AS two\nENV B=2\nFROM busybox\nENV C=3\n"))
	if err != nil || !contains(fe.images[id].config.Env, "B=2") || contains(fe.images[id].config.Env, "C=3") {
		t.Fatalf("target: %v\n%s", err, text)
	}
	// FROM scratch gets a default PATH, and an image without layers.
	id, text, err = runBuild(t, b, build.ImageBuildOptions{}, []byte("FROM scratch\nCMD [\"x\"]\n"))
	if err != nil || !contains(fe.images[id].config.Env, "PATH="+defaultPathEnv) || fe.images[id].parent != "" {
		t.Fatalf("scratch: %v\n%s", err, text)
	}
}

func TestBuildErrors(t *testing.T) {
	b, fe := newTestBuilder(t)
	fe.runHook = func(cfg *container.Config) (string, int, map[string]fakeFile) {
		return "failing\n", 3, nil
	}
	for _, c := range []struct {
		opts build.ImageBuildOptions
		df   string
		msg  string
		code int // a failed RUN's exit code (JSONError)
	}{
		{df: "FRM busybox\n", msg: "unknown instruction: FRM"},
		{df: "", msg: "the Dockerfile (Dockerfile) cannot be empty"},
		{df: "# only a comment\n\n", msg: "file with no instructions"},
		{df: "FROM busybox\n", opts: build.ImageBuildOptions{Target: "nope"}, msg: "failed to reach build target nope in Dockerfile"},
		{df: "FROM busybox\n", opts: build.ImageBuildOptions{Tags: []string{"UPPER:case"}}, msg: "invalid reference format"},
		{df: "FROM busybox\n", opts: build.ImageBuildOptions{Platform: "linux/arm64"}, msg: `platform "linux/arm64" is not supported`},
		{df: "FROM busybox\n", opts: build.ImageBuildOptions{Platform: "foobar"}, msg: "unknown operating system or architecture"},
		{df: "FROM busybox\n", opts: build.ImageBuildOptions{Version: build.BuilderBuildKit}, msg: "buildkit not supported by daemon"},
		{df: "FROM nosuchimage\n", msg: "pull access denied for nosuchimage"},
		{df: "FROM busybox\nRUN --mount=type=cache,target=/x true\n", msg: "the --mount option requires BuildKit"},
		{df: "FROM busybox\nSTOPSIGNAL SIGNOPE\n", msg: "Invalid signal: SIGNOPE"},
		{df: "FROM busybox\nONBUILD ONBUILD RUN x\n", msg: "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"},
		{df: "FROM busybox\nRUN exit 3\n", opts: build.ImageBuildOptions{Remove: true, ForceRemove: true}, msg: "The command '/bin/sh -c exit 3' returned a non-zero code: 3", code: 3},
	} {
		n := len(fe.created)
		_, text, err := runBuild(t, b, c.opts, contextTar(t, map[string]string{"Dockerfile": c.df}))
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: error %v, want %q\n%s", c.df, err, c.msg, text)
			continue
		}
		var je *jsonmessage.JSONError
		if c.code != 0 {
			if !errors.As(err, &je) || je.Code != c.code {
				t.Errorf("%q: %T %v, want a JSONError with code %d", c.df, err, err, c.code)
			}
			if !strings.Contains(text, "failing\n") {
				t.Errorf("%q: the step's output is missing:\n%s", c.df, text)
			}
		} else if len(fe.created) != n {
			t.Errorf("%q: a container was created before the error", c.df)
		}
	}
	if len(fe.containers) != 0 {
		t.Errorf("failed builds left containers: %v", fe.containers)
	}
	// Without forcerm, a failed step's container stays, as in dockerd
	// (rm only removes the containers of steps that succeeded).
	_, _, err := runBuild(t, b, build.ImageBuildOptions{Remove: true}, contextTar(t, map[string]string{"Dockerfile": "FROM busybox\nRUN exit 3\n"}))
	if err == nil || len(fe.containers) != 1 {
		t.Errorf("rm=1: %v, %d containers", err, len(fe.containers))
	}
}
