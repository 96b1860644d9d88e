package daemon

import (
	"reflect"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
)

// TestApplyChanges: the changes go through the builder (BuildKit's parser,
// as dockerd's BuildFromConfig), so the messages and forms are dockerd's.
func TestApplyChanges(t *testing.T) {
	base := func() *container.Config {
		return &container.Config{
			Env:        []string{"PATH=/usr/bin:/bin", "HOME=/root"},
			Cmd:        []string{"sh", "-c", "echo x > /new"},
			WorkingDir: "/srv",
			Labels:     map[string]string{"keep": "1"},
		}
	}
	cases := []struct {
		name    string
		changes []string
		check   func(t *testing.T, c *container.Config)
	}{
		{"cmd json", []string{`CMD ["cat","/x"]`}, func(t *testing.T, c *container.Config) {
			if !reflect.DeepEqual([]string(c.Cmd), []string{"cat", "/x"}) {
				t.Errorf("Cmd %q", c.Cmd)
			}
		}},
		{"cmd shell", []string{`cmd echo "hi there"`}, func(t *testing.T, c *container.Config) {
			if !reflect.DeepEqual([]string(c.Cmd), []string{"/bin/sh", "-c", `echo "hi there"`}) {
				t.Errorf("Cmd %q", c.Cmd)
			}
		}},
		{"entrypoint clears cmd", []string{`ENTRYPOINT ["/bin/cat"]`}, func(t *testing.T, c *container.Config) {
			if !reflect.DeepEqual([]string(c.Entrypoint), []string{"/bin/cat"}) || c.Cmd != nil {
				t.Errorf("Entrypoint %q Cmd %q", c.Entrypoint, c.Cmd)
			}
		}},
		{"cmd then entrypoint keeps cmd", []string{`CMD ["/x"]`, `ENTRYPOINT ["/bin/cat"]`}, func(t *testing.T, c *container.Config) {
			if !reflect.DeepEqual([]string(c.Cmd), []string{"/x"}) {
				t.Errorf("Cmd %q", c.Cmd)
			}
		}},
		{"env forms", []string{`ENV FOO=bar BAZ="a b" Q='$HOME' E=\$HOME`, `ENV OLD legacy value`, `ENV H=$HOME/x W=${NOPE:-dflt} P=${HOME:+set}`}, func(t *testing.T, c *container.Config) {
			want := []string{"PATH=/usr/bin:/bin", "HOME=/root", "FOO=bar", "BAZ=a b", "Q=$HOME", "E=$HOME", "OLD=legacy value", "H=/root/x", "W=dflt", "P=set"}
			if !reflect.DeepEqual(c.Env, want) {
				t.Errorf("Env\n got %q\nwant %q", c.Env, want)
			}
		}},
		{"env overrides", []string{"ENV HOME=/home/u"}, func(t *testing.T, c *container.Config) {
			if c.Env[1] != "HOME=/home/u" || len(c.Env) != 2 {
				t.Errorf("Env %q", c.Env)
			}
		}},
		{"label expose volume", []string{`LABEL a=1 "b c"=2`, "EXPOSE 80 53/udp 8000-8001", `VOLUME ["/data", "/logs"]`, "VOLUME /v1 /v2"}, func(t *testing.T, c *container.Config) {
			if c.Labels["a"] != "1" || c.Labels["b c"] != "2" || c.Labels["keep"] != "1" {
				t.Errorf("Labels %v", c.Labels)
			}
			want := nat.PortSet{"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
			if !reflect.DeepEqual(c.ExposedPorts, want) {
				t.Errorf("ExposedPorts %v", c.ExposedPorts)
			}
			if len(c.Volumes) != 4 {
				t.Errorf("Volumes %v", c.Volumes)
			}
		}},
		{"workdir user stopsignal", []string{"WORKDIR sub/dir", "USER nobody:nogroup", "STOPSIGNAL SIGINT"}, func(t *testing.T, c *container.Config) {
			if c.WorkingDir != "/srv/sub/dir" || c.User != "nobody:nogroup" || c.StopSignal != "SIGINT" {
				t.Errorf("%q %q %q", c.WorkingDir, c.User, c.StopSignal)
			}
		}},
		{"continuation and comments", []string{"# note\nENV A=1 \\\n  B=2", "", "onbuild run echo hi"}, func(t *testing.T, c *container.Config) {
			if !reflect.DeepEqual(c.Env[2:], []string{"A=1", "B=2"}) || !reflect.DeepEqual(c.OnBuild, []string{"run echo hi"}) {
				t.Errorf("Env %q OnBuild %q", c.Env, c.OnBuild)
			}
		}},
		{"healthcheck", []string{`HEALTHCHECK --interval=5s --retries=3 CMD ["true"]`}, func(t *testing.T, c *container.Config) {
			if c.Healthcheck == nil || !reflect.DeepEqual(c.Healthcheck.Test, []string{"CMD", "true"}) || c.Healthcheck.Interval != 5*time.Second || c.Healthcheck.Retries != 3 {
				t.Errorf("Healthcheck %+v", c.Healthcheck)
			}
		}},
		{"healthcheck shell and none", []string{`HEALTHCHECK CMD curl -f http://x/ || exit 1`}, func(t *testing.T, c *container.Config) {
			if !reflect.DeepEqual(c.Healthcheck.Test, []string{"CMD-SHELL", "curl -f http://x/ || exit 1"}) {
				t.Errorf("Healthcheck %+v", c.Healthcheck)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := applyChanges(base(), tc.changes)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}

	for _, bad := range []struct{ change, msg string }{
		{"RUN echo hi", "run is not a valid change command"},
		{"FROM busybox", "from is not a valid change command"},
		{"NOPE x", "nope is not a valid change command"},
		{"ENV A=1 B", `Syntax error - can't find = in "B". Must be of the form: name=value`},
		{"ENV ONLYNAME", "ENV must have two arguments"},
		{"EXPOSE notaport", ""},
		{"STOPSIGNAL NOSUCH", "Invalid signal: NOSUCH"},
		{`ENV A="unterminated`, ""},
		{"VOLUME", "VOLUME requires at least one argument"},
	} {
		_, err := applyChanges(base(), []string{bad.change})
		if err == nil || !errdefs.IsInvalidParameter(err) || (bad.msg != "" && err.Error() != bad.msg) {
			t.Errorf("%q: error %v, want %q (invalid parameter)", bad.change, err, bad.msg)
		}
	}
}

func TestMergeCommitConfig(t *testing.T) {
	ctr := &container.Config{
		User: "u", Env: []string{"A=1", "B=2"}, Cmd: []string{"sh"}, Entrypoint: []string{"/init"},
		Labels: map[string]string{"l": "1"}, WorkingDir: "/w", StopSignal: "SIGINT",
		ExposedPorts: nat.PortSet{"80/tcp": {}},
	}
	user := &container.Config{Env: []string{"B=3", "C=4"}, Entrypoint: []string{}, Labels: map[string]string{"m": "2"}}
	mergeCommitConfig(user, ctr)
	if !reflect.DeepEqual(user.Env, []string{"B=3", "C=4", "A=1"}) || user.User != "u" || user.WorkingDir != "/w" || user.StopSignal != "SIGINT" {
		t.Errorf("merged %+v", user)
	}
	// An explicitly empty entrypoint stays empty, and the command is the container's.
	if len(user.Entrypoint) != 0 || user.Entrypoint == nil || !reflect.DeepEqual([]string(user.Cmd), []string{"sh"}) {
		t.Errorf("entrypoint %q cmd %q", user.Entrypoint, user.Cmd)
	}
	if user.Labels["l"] != "1" || user.Labels["m"] != "2" || len(user.ExposedPorts) != 1 {
		t.Errorf("labels %v ports %v", user.Labels, user.ExposedPorts)
	}
}
