package daemon

import (
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
)

// dockerd's checks of --network container: (its validateNetContainerMode)
// and jevm's: --pid/--ipc container: need the network too, and members
// have no shares yet.
func TestValidatePodConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  container.Config
		hc   container.HostConfig
		want string
	}{
		{hc: container.HostConfig{NetworkMode: "container:"}, want: "invalid container format container:<name|id>"},
		{hc: container.HostConfig{NetworkMode: "container"}, want: "invalid container format"},
		{cfg: container.Config{Hostname: "h"}, hc: container.HostConfig{NetworkMode: "container:x"}, want: "conflicting options: hostname and the network mode"},
		{hc: container.HostConfig{NetworkMode: "container:x", Links: []string{"a:b"}}, want: "can't be used with links"},
		{hc: container.HostConfig{NetworkMode: "container:x", DNS: []string{"1.1.1.1"}}, want: "dns and the network mode"},
		{hc: container.HostConfig{NetworkMode: "container:x", ExtraHosts: []string{"a:1.2.3.4"}}, want: "custom host-to-IP mapping"},
		{hc: container.HostConfig{NetworkMode: "container:x", PublishAllPorts: true}, want: "port publishing"},
		{cfg: container.Config{ExposedPorts: nat.PortSet{"80/tcp": {}}}, hc: container.HostConfig{NetworkMode: "container:x"}, want: "port exposing"},
		{hc: container.HostConfig{PidMode: "container:x"}, want: "need --network container: too"},
		{hc: container.HostConfig{IpcMode: "container:x", NetworkMode: "bridge"}, want: "need --network container: too"},
		{hc: container.HostConfig{NetworkMode: "container:x", Binds: []string{"/tmp:/tmp"}}, want: "cannot give volumes or bind mounts"},
		{hc: container.HostConfig{NetworkMode: "container:x", Mounts: []mount.Mount{{Type: mount.TypeVolume, Target: "/v"}}}, want: "cannot give volumes or bind mounts"},
	} {
		err := validatePodConfig(&tc.cfg, &tc.hc)
		if !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v %+v: %v, want %q", tc.cfg, tc.hc, err, tc.want)
		}
	}
	for _, ok := range []container.HostConfig{
		{NetworkMode: "container:x"},
		{NetworkMode: "container:x", PidMode: "container:x", IpcMode: "container:y"},
		{NetworkMode: "bridge", IpcMode: "shareable"},
		{NetworkMode: "container:x", Tmpfs: map[string]string{"/t": ""}},
	} {
		if err := validatePodConfig(&container.Config{}, &ok); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}
