package daemon

import (
	"reflect"
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
