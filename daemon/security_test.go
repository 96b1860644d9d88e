package daemon

import (
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
)

func TestParseSecurityOpts(t *testing.T) {
	so, err := parseSecurityOpts([]string{"no-new-privileges", "seccomp=unconfined", "label=disable", "apparmor=unconfined", "writable-cgroups=false"})
	if err != nil {
		t.Fatal(err)
	}
	if !so.NoNewPrivileges || so.SeccompProfile != "unconfined" || so.WritableCgroups == nil || *so.WritableCgroups {
		t.Errorf("got %+v", so)
	}
	for opt, msg := range map[string]string{
		"writeable-cgroups=true":  `invalid --security-opt 2: "writeable-cgroups=true"`,
		"writable-cgroups=1":      "",
		"writable-cgroups=potato": `invalid --security-opt 2: "writable-cgroups=potato"`,
		"no-new-privileges=yes":   `invalid --security-opt 2: "no-new-privileges=yes"`,
		"unknown":                 `invalid --security-opt 1: "unknown"`,
	} {
		_, err := parseSecurityOpts([]string{opt})
		if msg == "" {
			if err != nil {
				t.Errorf("%s: %v", opt, err)
			}
			continue
		}
		if err == nil || err.Error() != msg || !errdefs.IsInvalidParameter(err) {
			t.Errorf("%s: got %v, want %s", opt, err, msg)
		}
	}
}

func TestContainerSeccompChoice(t *testing.T) {
	const confined = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chown"], "action": "SCMP_ACT_ERRNO"}]}`
	for _, tc := range []struct {
		name       string
		hc         container.HostConfig
		wantFilter bool
		wantErr    bool
	}{
		{"default", container.HostConfig{}, true, false},
		{"builtin", container.HostConfig{SecurityOpt: []string{"seccomp=builtin"}}, true, false},
		{"unconfined", container.HostConfig{SecurityOpt: []string{"seccomp=unconfined"}}, false, false},
		{"privileged", container.HostConfig{Privileged: true}, false, false},
		// moby#47499: an explicit profile applies even with --privileged.
		{"privileged custom", container.HostConfig{Privileged: true, SecurityOpt: []string{"seccomp=" + confined}}, true, false},
		{"custom", container.HostConfig{SecurityOpt: []string{"seccomp=" + confined}}, true, false},
		{"bad JSON", container.HostConfig{SecurityOpt: []string{"seccomp={"}}, false, true},
	} {
		f, err := containerSeccomp(&tc.hc)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: error %v", tc.name, err)
			continue
		}
		if (f != nil) != tc.wantFilter {
			t.Errorf("%s: filter %v, want one: %v", tc.name, f != nil, tc.wantFilter)
		}
		if f != nil && (len(f.Program) == 0 || len(f.Program)%8 != 0) {
			t.Errorf("%s: program of %d bytes", tc.name, len(f.Program))
		}
	}
}

func TestSecurityPathDefaults(t *testing.T) {
	hc := &container.HostConfig{}
	defaultSecurityPaths(hc)
	if len(hc.MaskedPaths) < 12 || hc.MaskedPaths[3] != "/proc/kcore" || len(hc.ReadonlyPaths) != 5 {
		t.Errorf("defaults: %v %v", hc.MaskedPaths, hc.ReadonlyPaths)
	}
	hc = &container.HostConfig{MaskedPaths: []string{}, ReadonlyPaths: []string{"/proc/sys"}}
	defaultSecurityPaths(hc)
	if len(hc.MaskedPaths) != 0 || hc.MaskedPaths == nil || len(hc.ReadonlyPaths) != 1 {
		t.Errorf("set by the client: %v %v", hc.MaskedPaths, hc.ReadonlyPaths)
	}
	hc = &container.HostConfig{Privileged: true}
	defaultSecurityPaths(hc)
	if hc.MaskedPaths != nil || hc.ReadonlyPaths != nil {
		t.Errorf("privileged: %v %v", hc.MaskedPaths, hc.ReadonlyPaths)
	}
	if writableCgroups(&container.HostConfig{}) || !writableCgroups(&container.HostConfig{Privileged: true}) ||
		!writableCgroups(&container.HostConfig{SecurityOpt: []string{"writable-cgroups"}}) ||
		writableCgroups(&container.HostConfig{Privileged: true, SecurityOpt: []string{"writable-cgroups=false"}}) {
		t.Error("writableCgroups")
	}
}
