package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"

	"github.com/jevm/jevm/vmbackend/agentclient/fakeagent"
	"github.com/jevm/jevm/volumes"
)

// dockerd's checks of --network container: (its validateNetContainerMode)
// and jevm's: --pid/--ipc container: need the network too.
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
		// Through the VM's pod share (podshare.go).
		{NetworkMode: "container:x", Binds: []string{"/tmp:/tmp"}},
		{NetworkMode: "container:x", Mounts: []mount.Mount{{Type: mount.TypeVolume, Target: "/v"}}},
	} {
		if err := validatePodConfig(&container.Config{}, &ok); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// A pod on fake VMs: a member starts in its host's VM (its disk attached,
// a join with its name and the disk's serial), pauses alone, stops alone
// (its disk unplugged), is refused while its host is stopped, keeps its
// host from removal, and is stopped before its host.
func TestFakePodLifecycle(t *testing.T) {
	d, vms, _ := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{
			Main: func(p *fakeagent.Proc) int { return p.WaitSignal(syscall.SIGTERM, syscall.SIGKILL) },
			Join: func(p *fakeagent.Proc) int { return p.WaitSignal(syscall.SIGTERM, syscall.SIGKILL) },
		}
	})
	ctx := context.Background()
	host := fakeContainer(t, d, "host")
	member := fakeContainer(t, d, "member")
	member.HostConfig.NetworkMode = "container:host"
	member.HostConfig.PidMode = "container:host"

	if err := d.ContainerStart(ctx, "member"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "cannot join network namespace of a non running container: container host is exited") {
		t.Fatalf("start of a member without its host: %v", err)
	}
	if err := d.ContainerStart(ctx, "host"); err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(ctx, "member"); err != nil {
		t.Fatal(err)
	}
	m := vms.Machine(host.ID)
	if vms.Machine(member.ID) != nil {
		t.Fatal("the member got a VM of its own")
	}
	req := m.Guest.JoinRequest(member.ID)
	if req == nil || req.RootSerial == "" || req.RootDevice != "" || req.PIDContainer != host.ID || req.Hostname != "host" || len(req.Interfaces) != 0 {
		t.Fatalf("join request %+v", req)
	}
	if disks := m.Disks(); len(disks) != 1 || disks[0] != member.diskPath() {
		t.Fatalf("disks attached to the host's VM: %v", disks)
	}
	member.mu.Lock()
	if member.HostConfig.NetworkMode != container.NetworkMode("container:"+host.ID) || member.State.Status != container.StateRunning {
		t.Fatalf("member after start: %s %+v", member.HostConfig.NetworkMode, member.State)
	}
	member.mu.Unlock()

	// Pause freezes the member only.
	if err := d.ContainerPause(ctx, "member"); err != nil {
		t.Fatal(err)
	}
	if !m.Guest.Frozen(member.ID) || m.Paused() {
		t.Fatalf("pause of a member: frozen %v, VM paused %v", m.Guest.Frozen(member.ID), m.Paused())
	}
	if err := d.ContainerUnpause(ctx, "member"); err != nil || m.Guest.Frozen(member.ID) {
		t.Fatalf("unpause of a member: %v, frozen %v", err, m.Guest.Frozen(member.ID))
	}

	// The host cannot be removed under it.
	if err := d.ContainerRemove(ctx, "host", container.RemoveOptions{Force: true}); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "runs in its VM") {
		t.Fatalf("rm -f of a pod's host: %v", err)
	}

	// The member stops alone; its disk is unplugged; the VM runs on.
	if err := d.ContainerStop(ctx, "member", container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	member.mu.Lock()
	st := member.State
	member.mu.Unlock()
	if st.Status != container.StateExited || st.ExitCode != 128+int(syscall.SIGTERM) {
		t.Fatalf("member after stop: %+v", st)
	}
	if len(m.Disks()) != 0 || m.Exited() {
		t.Fatalf("after the member's stop: disks %v, VM exited %v", m.Disks(), m.Exited())
	}

	// Stopping the host stops the member first.
	if err := d.ContainerStart(ctx, "member"); err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStop(ctx, "host", container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Container{member, host} {
		c.mu.Lock()
		st := c.State
		c.mu.Unlock()
		if st.Status != container.StateExited {
			t.Fatalf("%s after the host's stop: %+v", c.Name, st)
		}
	}
	if err := d.checkNoMembers(host); err != nil {
		t.Fatalf("a stopped host cannot be removed: %v", err)
	}
}

// The network files kept for a pod's later members are replaced whole.
func TestWritePodFiles(t *testing.T) {
	c := &Container{ID: strings.Repeat("c", 64), Dir: t.TempDir()}
	writePodFiles(c, "127.0.0.1 a\n", "nameserver 1.1.1.1\n")
	writePodFiles(c, "127.0.0.1 b\n", "nameserver 9.9.9.9\n")
	if got := readPodFile(c, "hosts"); got != "127.0.0.1 b\n" {
		t.Fatalf("hosts %q", got)
	}
	if got := readPodFile(c, "resolv.conf"); got != "nameserver 9.9.9.9\n" {
		t.Fatalf("resolv.conf %q", got)
	}
	if ents, _ := os.ReadDir(c.Dir); len(ents) != 2 {
		t.Fatalf("files left: %v", ents)
	}
}

// A member's bind mounts go through its VM's pod share (podshare.go): the
// VM gets the share on a spare slot, the member's join names it and its
// entry, the entry shows the source, the guest cannot add entries, and
// the member's stop, then the VM's, take everything away.
func TestFakePodShare(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("bind mounts need root")
	}
	d, vms, _ := fakeDaemon(t, func() *fakeagent.Guest {
		return &fakeagent.Guest{
			Main: func(p *fakeagent.Proc) int { return p.WaitSignal(syscall.SIGTERM, syscall.SIGKILL) },
			Join: func(p *fakeagent.Proc) int { return p.WaitSignal(syscall.SIGTERM, syscall.SIGKILL) },
		}
	})
	ctx := context.Background()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	host := fakeContainer(t, d, "host")
	member := fakeContainer(t, d, "member")
	member.HostConfig.NetworkMode = "container:host"
	member.MountPoints = []*volumes.MountPoint{{Type: mount.TypeBind, Source: src, Destination: "/data", RW: false}}
	if err := d.ContainerStart(ctx, "host"); err != nil {
		t.Fatal(err)
	}
	shares := vms.Machine(host.ID).Spec.Shares
	if host.State.PodShare != "jv0" || len(shares) != 1 || shares[0].Tag != "jv0" || shares[0].ReadOnly {
		t.Fatalf("host's pod share: tag %q, shares %+v", host.State.PodShare, shares)
	}
	p := d.podShareOf(host.ID)
	if err := os.WriteFile(filepath.Join(p.share(), "planted"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("a write to the top of the pod share: %v, want EROFS", err)
	}

	if err := d.ContainerStart(ctx, "member"); err != nil {
		t.Fatal(err)
	}
	req := vms.Machine(host.ID).Guest.JoinRequest(member.ID)
	entry := member.ID[:12] + ".0"
	if req == nil || len(req.Mounts) != 1 || !req.Mounts[0].PodShare || req.Mounts[0].Source != "jv0" || req.Mounts[0].SubPath != entry ||
		req.Mounts[0].Target != "/data" || !req.Mounts[0].ReadOnly {
		t.Fatalf("the member's join mounts: %+v", req)
	}
	if b, err := os.ReadFile(filepath.Join(p.share(), entry, "f")); err != nil || string(b) != "from-host" {
		t.Fatalf("the entry through the pod share: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(p.share(), entry, "g"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("a write to a read-only member mount: %v, want EROFS", err)
	}

	if err := d.ContainerStop(ctx, "member", container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(p.points()); len(ents) != 0 {
		t.Fatalf("entries after the member's stop: %v", ents)
	}
	if err := d.ContainerStop(ctx, "host", container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p.base); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pod share after its VM stopped: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(src, "f")); err != nil || string(b) != "from-host" {
		t.Fatalf("the source after all: %q %v", b, err)
	}
}

// --pid/--ipc container:X of a missing X is dockerd's 400 at create.
func TestCheckNamespaceContainers(t *testing.T) {
	d, _, _ := fakeDaemon(t, nil)
	fakeContainer(t, d, "x")
	for _, hc := range []container.HostConfig{{PidMode: "container:x"}, {IpcMode: "container:x"}, {NetworkMode: "container:nosuch"}, {}} {
		if err := d.checkNamespaceContainers(&hc); err != nil {
			t.Errorf("%+v: %v", hc, err)
		}
	}
	for _, hc := range []container.HostConfig{{PidMode: "container:nosuch"}, {IpcMode: "container:nosuch"}} {
		if err := d.checkNamespaceContainers(&hc); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "No such container: nosuch") {
			t.Errorf("%+v: %v", hc, err)
		}
	}
}
