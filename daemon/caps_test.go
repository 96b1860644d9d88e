package daemon

import (
	"reflect"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
)

// The bounding set as dockerd computes it (moby's caps.TweakCapabilities).
func TestContainerCapabilities(t *testing.T) {
	without := func(drop ...string) []string {
		var out []string
		for _, c := range defaultCapabilities {
			if !contains(drop, c) {
				out = append(out, c)
			}
		}
		return out
	}
	for name, tc := range map[string]struct {
		hc   container.HostConfig
		want *[]string
	}{
		"defaults":        {container.HostConfig{}, &defaultCapabilities},
		"privileged: all": {container.HostConfig{Privileged: true, CapDrop: []string{"ALL"}}, nil},
		"add, lower case": {container.HostConfig{CapAdd: []string{"net_admin"}}, ptr(append(without(), "CAP_NET_ADMIN"))},
		"drop":            {container.HostConfig{CapDrop: []string{"CHOWN", "CAP_KILL"}}, ptr(without("CAP_CHOWN", "CAP_KILL"))},
		"drop all, add":   {container.HostConfig{CapDrop: []string{"all"}, CapAdd: []string{"SYS_ADMIN"}}, &[]string{"CAP_SYS_ADMIN"}},
		"drop all":        {container.HostConfig{CapDrop: []string{"ALL"}}, &[]string{}},
		"add all but one": {container.HostConfig{CapAdd: []string{"ALL"}, CapDrop: []string{"CAP_SYS_MODULE"}}, ptr(allBut("CAP_SYS_MODULE"))},
		"add a default":   {container.HostConfig{CapAdd: []string{"CAP_CHOWN"}}, &defaultCapabilities},
	} {
		got, err := containerCapabilities(&tc.hc)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", name, deref(got), deref(tc.want))
		}
	}
	if _, err := containerCapabilities(&container.HostConfig{CapAdd: []string{"CAP_FOO"}}); !errdefs.IsInvalidParameter(err) || err.Error() != `unknown capability: "CAP_FOO"` {
		t.Errorf("unknown capability: %v", err)
	}
	if err := validateHostConfig(&container.HostConfig{CapDrop: []string{"nope"}}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("create with an unknown capability: %v", err)
	}
	if err := validateHostConfig(&container.HostConfig{Privileged: true}); err != nil {
		t.Errorf("--privileged refused: %v", err)
	}
}

func ptr(s []string) *[]string { return &s }

func deref(s *[]string) any {
	if s == nil {
		return "nil (all)"
	}
	return *s
}

func allBut(c string) []string {
	var out []string
	for _, x := range everyCapability() {
		if x != c {
			out = append(out, x)
		}
	}
	return out
}

// dockerd's create-time checks of the host config and config.
func TestCreateValidation(t *testing.T) {
	for _, tc := range []struct {
		hc   container.HostConfig
		want string
	}{
		{container.HostConfig{IpcMode: "invalid"}, "invalid IPC mode: invalid"},
		{container.HostConfig{PidMode: "invalid"}, "invalid PID mode: invalid"},
		{container.HostConfig{PidMode: "container"}, "invalid PID mode: container"},
		{container.HostConfig{UTSMode: "invalid"}, "invalid UTS mode: invalid"},
		{container.HostConfig{Annotations: map[string]string{"": "a"}}, "invalid Annotations: the empty string is not permitted as an annotation key"},
		{container.HostConfig{Resources: container.Resources{CPUShares: -1}}, "invalid CPU shares (-1): value must be a positive integer"},
	} {
		err := validateHostConfig(&tc.hc)
		if !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.hc, err, tc.want)
		}
	}
	for _, ok := range []container.HostConfig{{PidMode: "host"}, {IpcMode: "shareable"}, {UTSMode: "host"}} {
		if err := validateHostConfig(&ok); err != nil {
			t.Errorf("%+v refused: %v", ok, err)
		}
	}
	for _, env := range []string{"", "=", "=foo"} {
		if err := validateConfig(&container.Config{Env: []string{env}}); !errdefs.IsInvalidParameter(err) || err.Error() != "invalid environment variable: "+env {
			t.Errorf("env %q: %v", env, err)
		}
	}
	cfg := &container.Config{WorkingDir: "/tmp/"}
	if err := validateConfig(cfg); err != nil || cfg.WorkingDir != "/tmp" {
		t.Errorf("working dir: %q %v", cfg.WorkingDir, err)
	}
	if err := validateConfig(&container.Config{WorkingDir: "rel"}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("relative working dir: %v", err)
	}
}
