package daemon

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	units "github.com/docker/go-units"

	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

func TestValidateUlimits(t *testing.T) {
	ok := [][]*units.Ulimit{
		nil,
		{{Name: "nofile", Soft: 1024, Hard: 2048}},
		{{Name: "nofile", Soft: 2048, Hard: 2048}, {Name: "nproc", Soft: -1, Hard: -1}},
		{{Name: "core", Soft: 0, Hard: -1}},    // unlimited hard: any soft
		{{Name: "stack", Soft: 100, Hard: -1}}, // (go-units accepts it too)
	}
	for _, uls := range ok {
		if err := validateUlimits(uls); err != nil {
			t.Errorf("%v: %v", uls, err)
		}
	}
	for _, n := range agentproto.RlimitNames {
		if err := validateUlimits([]*units.Ulimit{{Name: n, Soft: 1, Hard: 1}}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	bad := []struct {
		uls  []*units.Ulimit
		want string
	}{
		{[]*units.Ulimit{{Name: "nofiles", Soft: 1, Hard: 1}}, "invalid ulimit type: nofiles"},
		{[]*units.Ulimit{{Name: "as", Soft: 1, Hard: 1}}, "invalid ulimit type: as"},
		{[]*units.Ulimit{{Name: "", Soft: 1, Hard: 1}}, "invalid ulimit type: "},
		{[]*units.Ulimit{{Name: "nofile", Soft: 2048, Hard: 1024}}, "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"},
		{[]*units.Ulimit{{Name: "nofile", Soft: -1, Hard: 1024}}, "ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: 1024"},
		{[]*units.Ulimit{nil}, "invalid ulimit: null"},
	}
	for _, b := range bad {
		err := validateUlimits(b.uls)
		if err == nil || err.Error() != b.want {
			t.Errorf("%v: %v, want %q", b.uls, err, b.want)
		}
	}
	// The messages are go-units' own (docker's --ulimit parser).
	for _, c := range []struct {
		flag string
		ul   units.Ulimit
	}{
		{"nofiles=1", units.Ulimit{Name: "nofiles", Soft: 1, Hard: 1}},
		{"nofile=2048:1024", units.Ulimit{Name: "nofile", Soft: 2048, Hard: 1024}},
		{"nofile=-1:1024", units.Ulimit{Name: "nofile", Soft: -1, Hard: 1024}},
	} {
		_, perr := units.ParseUlimit(c.flag)
		err := validateUlimits([]*units.Ulimit{&c.ul})
		if perr == nil || err == nil || perr.Error() != err.Error() {
			t.Errorf("%s: %v, go-units says %v", c.flag, err, perr)
		}
	}
}

func TestValidateHostConfigUlimits(t *testing.T) {
	err := validateHostConfig(&container.HostConfig{Resources: container.Resources{Ulimits: []*container.Ulimit{{Name: "nofile", Soft: 10, Hard: 5}}}})
	if !errdefs.IsInvalidParameter(err) {
		t.Errorf("soft above hard: %v (want a 400)", err)
	}
	err = validateHostConfig(&container.HostConfig{Resources: container.Resources{Ulimits: []*container.Ulimit{{Name: "bogus", Soft: 1, Hard: 1}}}})
	if !errdefs.IsInvalidParameter(err) || err.Error() != "invalid ulimit type: bogus" {
		t.Errorf("bad name: %v", err)
	}
	if err := validateHostConfig(&container.HostConfig{Resources: container.Resources{Ulimits: []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}}}}); err != nil {
		t.Errorf("valid: %v", err)
	}
}

func ulimitStrings(uls []*units.Ulimit) string {
	var s []string
	for _, ul := range uls {
		s = append(s, ul.String())
	}
	return strings.Join(s, " ")
}

func TestMergeUlimits(t *testing.T) {
	defaults := []*units.Ulimit{
		{Name: "nofile", Soft: 64000, Hard: 64000},
		{Name: "nproc", Soft: 100, Hard: 200},
		{Name: "core", Soft: 0, Hard: 0},
		{Name: "core", Soft: -1, Hard: -1}, // a later default of the same name wins
	}
	own := []*units.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "stack", Soft: 8192, Hard: 8192}}
	ownCopy := append([]*units.Ulimit(nil), own...)
	got := mergeUlimits(own, defaults)
	// The container's own first and winning, then the defaults it lacks.
	if want := "nofile=1024:2048 stack=8192:8192 nproc=100:200 core=-1:-1"; ulimitStrings(got) != want {
		t.Errorf("merged %s, want %s", ulimitStrings(got), want)
	}
	if !reflect.DeepEqual(own, ownCopy) {
		t.Errorf("own modified: %s", ulimitStrings(own))
	}
	if got := mergeUlimits(nil, defaults); ulimitStrings(got) != "nofile=64000:64000 nproc=100:200 core=-1:-1" {
		t.Errorf("defaults only: %s", ulimitStrings(got))
	}
	if got := mergeUlimits(own, nil); !reflect.DeepEqual(got, own) {
		t.Errorf("no defaults: %s", ulimitStrings(got))
	}
	if got := mergeUlimits(nil, nil); got != nil {
		t.Errorf("nothing: %v", got)
	}
}

func TestContainerRlimits(t *testing.T) {
	d := &Daemon{cfg: Config{DefaultUlimits: []*units.Ulimit{{Name: "nofile", Soft: 64000, Hard: 64000}, {Name: "nproc", Soft: -1, Hard: -1}}}}
	c := &Container{HostConfig: &container.HostConfig{Resources: container.Resources{Ulimits: []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}}}}}
	got := d.containerRlimits(c)
	want := []agentproto.Rlimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "nproc", Soft: agentproto.RlimitInfinity, Hard: agentproto.RlimitInfinity}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rlimits %+v, want %+v", got, want)
	}
	if len(c.HostConfig.Ulimits) != 1 {
		t.Errorf("the container's ulimits changed: %s", ulimitStrings(c.HostConfig.Ulimits))
	}
	if got := (&Daemon{}).containerRlimits(&Container{HostConfig: &container.HostConfig{}}); got != nil {
		t.Errorf("no ulimits: %+v", got)
	}

	// Execs and health checks get the container's rlimits (as runc's exec
	// gets the spec's).
	c.Config = &container.Config{}
	c.Rlimits = got
	req := execProcessRequest(c, &container.ExecOptions{Cmd: []string{"sh"}}, nil)
	if !reflect.DeepEqual(req.Rlimits, got) {
		t.Errorf("exec rlimits %+v", req.Rlimits)
	}
}

// Inspect shows the container's ulimits merged with the daemon's defaults,
// as dockerd's getInspectData does; the stored config keeps the container's
// own.
func TestInspectUlimits(t *testing.T) {
	d := &Daemon{cfg: Config{DefaultUlimits: []*units.Ulimit{{Name: "nofile", Soft: 64000, Hard: 64000}, {Name: "core", Soft: 0, Hard: 0}}},
		containers: newContainerStore(), execs: newExecStore(), events: newEventBus()}
	c := &Container{ID: strings.Repeat("b", 64), Name: "u", Dir: t.TempDir(), Config: &container.Config{},
		HostConfig: &container.HostConfig{Resources: container.Resources{Ulimits: []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}}}}}
	d.containers.add(c)
	resp, err := d.ContainerInspect(context.Background(), c.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := ulimitStrings(resp.HostConfig.Ulimits); got != "nofile=1024:2048 core=0:0" {
		t.Errorf("inspect ulimits %s", got)
	}
	if got := ulimitStrings(c.HostConfig.Ulimits); got != "nofile=1024:2048" {
		t.Errorf("stored ulimits %s", got)
	}
}

// A limit the guest cannot apply fails the start like any other start
// failure the agent reports (not as a missing or non-executable command).
func TestStartErrorRlimit(t *testing.T) {
	c := &Container{ID: strings.Repeat("c", 64), Dir: t.TempDir(), Config: &container.Config{}, HostConfig: &container.HostConfig{}}
	msg := "error setting rlimit type 7 (nofile=1024:2000000): operation not permitted (the kernel allows at most 1048576 open files: fs.nr_open)"
	err := startError(c, &agentclient.AgentError{Op: "start", Message: msg})
	if err == nil || !strings.Contains(err.Error(), msg) || errdefs.IsInvalidParameter(err) || c.State.ExitCode != 0 {
		t.Errorf("start error %v (exit code %d)", err, c.State.ExitCode)
	}
}
