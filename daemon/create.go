package daemon

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/vmbackend"
)

// ContainerCreate makes a container: its record, its log and its own
// copy-on-write root disk on the image's base disk. Nothing of a failed
// create is left behind.
func (d *Daemon) ContainerCreate(ctx context.Context, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig, platform *ocispec.Platform) (resp container.CreateResponse, retErr error) {
	if cfg == nil {
		return resp, errdefs.InvalidParameter(fmt.Errorf("config cannot be empty in order to create a container"))
	}
	if hostCfg == nil {
		hostCfg = &container.HostConfig{}
	}
	if err := validateHostConfig(hostCfg); err != nil {
		return resp, err
	}
	// --network/--pid/--ipc container: (pods.go), on the user's config.
	if err := d.checkNamespaceContainers(hostCfg); err != nil {
		return resp, err
	}
	if err := validatePodConfig(cfg, hostCfg); err != nil {
		return resp, err
	}
	// The log config is fixed here: the container's, or the daemon's
	// default, merged as dockerd does (logconfig.go).
	logCfg, err := resolveLogConfig(hostCfg.LogConfig, d.cfg.DefaultLogConfig)
	if err != nil {
		return resp, err
	}
	hostCfg.LogConfig = logCfg
	if err := validateHealthcheck(cfg.Healthcheck); err != nil {
		return resp, err
	}
	if err := validateConfig(cfg); err != nil {
		return resp, err
	}
	if cfg.Image == "" {
		return resp, errdefs.InvalidParameter(fmt.Errorf("no image specified"))
	}
	imageID, imgCfg, err := d.images.ImageConfig(cfg.Image)
	if err != nil {
		return resp, err
	}
	if platform != nil {
		img, err := d.images.Inspect(ctx, imageID)
		if err != nil {
			return resp, err
		}
		if err := checkImagePlatform(cfg.Image, img, *platform); err != nil {
			return resp, err
		}
	}
	// dockerd's masked and read-only paths unless the client set them
	// (security.go).
	defaultSecurityPaths(hostCfg)
	if hostCfg.IpcMode.IsEmpty() {
		// dockerd's default IPC mode (its default-ipc-mode); a jeVM's IPC
		// namespace is its own in any case.
		hostCfg.IpcMode = container.IPCModePrivate
	}
	if hostCfg.ShmSize == 0 {
		// dockerd's default-shm-size, shown by inspect: /dev/shm's size.
		hostCfg.ShmSize = defaultShmSize
	}
	merged := mergeImageConfig(cfg, imgCfg)
	argv := append(append([]string{}, merged.Entrypoint...), merged.Cmd...)
	if len(argv) == 0 {
		return resp, errdefs.InvalidParameter(fmt.Errorf("no command specified"))
	}
	// Networks and published ports (network.go).
	if netCfg, err = d.prepareNetworking(hostCfg, merged, netCfg); err != nil {
		return resp, err
	}
	shape, warnings, err := d.shapeFor(hostCfg)
	if err != nil {
		return resp, err
	}
	// CPU bounds, enforced by the VM's cgroup (resources.go).
	cpuWarnings, err := checkCPUResources(&hostCfg.Resources, d.vms.ResourceSupport(), false)
	if err != nil {
		return resp, err
	}
	warnings = append(warnings, cpuWarnings...)

	id := newID()
	if name != "" {
		name = strings.TrimPrefix(name, "/")
		if !validName.MatchString(name) {
			return resp, errdefs.InvalidParameter(fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
		}
		if err := d.containers.reserve(name, id); err != nil {
			return resp, err
		}
	} else if name, err = d.containers.generateName(id); err != nil {
		return resp, err
	}
	if _, joins := joinsVM(hostCfg); joins {
		// A pod's member takes its VM's hostname when it starts.
		if x, err := d.containers.get(hostCfg.NetworkMode.ConnectedContainer()); err == nil {
			hostCfg.NetworkMode = container.NetworkMode("container:" + x.ID)
		}
	} else if merged.Hostname == "" {
		merged.Hostname = id[:12]
	}
	// Legacy links: the linked containers must exist (links.go).
	if err := d.normalizeLinks(name, hostCfg); err != nil {
		d.containers.release(name)
		return resp, err
	}
	c := &Container{
		ID:         id,
		Name:       name,
		Created:    time.Now().UTC(),
		ImageRef:   cfg.Image,
		ImageID:    imageID,
		Config:     merged,
		HostConfig: hostCfg,
		NetConfig:  netCfg,
		Path:       argv[0],
		Args:       argv[1:],
		Shape:      shape,
		State:      ContainerState{Status: container.StateCreated},
		Dir:        d.containerDir(id),
	}
	defer func() {
		if retErr != nil {
			d.containers.release(name)
			_ = os.RemoveAll(c.Dir)
		}
	}()
	// Bind mounts and volumes (mounts.go); it cleans up after itself on
	// error, and the volumes it made go with a later failure.
	if err := d.registerMounts(c); err != nil {
		return resp, err
	}
	defer func() {
		if retErr != nil {
			d.removeMounts(c, true)
		}
	}()
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return resp, fmt.Errorf("create container directory: %w", err)
	}
	// The image store has the image's base disk; the VM backend layers the
	// container's own disk over it in its format.
	base, err := d.images.BaseDisk(ctx, imageID)
	if err != nil {
		return resp, fmt.Errorf("image disk: %w", err)
	}
	if err := d.vms.CreateRootDisk(ctx, base, c.diskPath()); err != nil {
		return resp, errdefs.System(fmt.Errorf("create root disk: %w", err))
	}
	if err := c.save(); err != nil {
		return resp, err
	}
	d.containers.add(c)
	c.mu.Lock()
	d.containerEvent(c, events.ActionCreate, nil)
	c.mu.Unlock()
	d.log.WithFields(map[string]any{"container": id[:12], "name": name, "image": cfg.Image}).Info("container created")
	return container.CreateResponse{ID: id, Warnings: warnings}, nil
}

// checkImagePlatform answers as dockerd does when the image a create names
// is of another platform than the one asked for: "not found", so that a
// client may pull the right one. Like dockerd, a variant the image does
// not state matches (containerd's platform matcher).
func checkImagePlatform(ref string, img *image.InspectResponse, want ocispec.Platform) error {
	have := ocispec.Platform{OS: img.Os, Architecture: img.Architecture, Variant: img.Variant}
	if platforms.Only(want).Match(have) {
		return nil
	}
	return errdefs.NotFound(fmt.Errorf("image with reference %s was found but its platform (%s) does not match the specified platform (%s)", ref, platforms.FormatAll(have), platforms.FormatAll(want)))
}

func (d *Daemon) containerDir(id string) string { return d.cfg.containersDir() + "/" + id }

// validateHostConfig refuses what jevm cannot honour yet, rather than
// silently ignoring it.
// validateConfig checks and normalises the container config as dockerd
// does: environment entries need a name, the working directory is an
// absolute path, kept clean.
func validateConfig(cfg *container.Config) error {
	for _, e := range cfg.Env {
		if k, _, _ := strings.Cut(e, "="); k == "" {
			return errdefs.InvalidParameter(fmt.Errorf("invalid environment variable: %s", e))
		}
	}
	if cfg.WorkingDir != "" {
		if !path.IsAbs(cfg.WorkingDir) {
			return errdefs.InvalidParameter(fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path", cfg.WorkingDir))
		}
		cfg.WorkingDir = path.Clean(cfg.WorkingDir)
	}
	return nil
}

// defaultShmSize is dockerd's default size of /dev/shm (64 MiB).
const defaultShmSize = 64 << 20

// runtimeName is jevm's one OCI-runtime-like name, as /info lists it:
// every container is a jeVM.
const runtimeName = "jevm"

func validateHostConfig(hc *container.HostConfig) error {
	// --cap-add/--cap-drop: known names only (caps.go). --privileged is
	// what it is to the process, inside the container's own VM.
	if _, err := containerCapabilities(hc); err != nil {
		return err
	}
	// --security-opt (security.go); a seccomp profile is compiled at start,
	// as dockerd loads it then.
	if _, err := parseSecurityOpts(hc.SecurityOpt); err != nil {
		return err
	}
	// Namespace modes, with dockerd's checks and messages. In a jeVM
	// "host" is the container's own VM; sharing another container's
	// namespaces is the pods work (not there yet, refused at start).
	if !hc.IpcMode.Valid() {
		return errdefs.InvalidParameter(fmt.Errorf("invalid IPC mode: %s", hc.IpcMode))
	}
	if !hc.PidMode.Valid() {
		return errdefs.InvalidParameter(fmt.Errorf("invalid PID mode: %s", hc.PidMode))
	}
	if !hc.UTSMode.Valid() {
		return errdefs.InvalidParameter(fmt.Errorf("invalid UTS mode: %s", hc.UTSMode))
	}
	for k := range hc.Annotations {
		if k == "" {
			return errdefs.InvalidParameter(fmt.Errorf("invalid Annotations: the empty string is not permitted as an annotation key"))
		}
	}
	for k := range hc.Sysctls {
		if k == "" || strings.ContainsAny(k, "/ ") || strings.Contains(k, "..") {
			return errdefs.InvalidParameter(fmt.Errorf("invalid sysctl key %q", k))
		}
	}
	if hc.ShmSize < 0 {
		return errdefs.InvalidParameter(fmt.Errorf("SHM size can not be less than 0"))
	}
	// A jeVM reaches none of the host's devices: --device, --gpus and
	// CDI devices are refused rather than ignored.
	if len(hc.Devices) > 0 {
		return errdefs.InvalidParameter(fmt.Errorf("host devices (--device %s) are not supported by jevm: each container runs in its own VM, which has no access to the host's devices", hc.Devices[0].PathOnHost))
	}
	for _, dr := range hc.DeviceRequests {
		// dockerd's words when no driver offers the device.
		return errdefs.InvalidParameter(fmt.Errorf("could not select device driver %q with capabilities: %v", dr.Driver, dr.Capabilities))
	}
	if hc.CPUShares < 0 {
		return errdefs.InvalidParameter(fmt.Errorf("invalid CPU shares (%d): value must be a positive integer", hc.CPUShares))
	}
	if hc.Runtime != "" && hc.Runtime != runtimeName {
		// dockerd's answer for a runtime it does not have.
		return errdefs.InvalidParameter(fmt.Errorf("unknown or invalid runtime name: %s", hc.Runtime))
	}
	if hc.Memory != 0 && hc.Memory < 6*1024*1024 {
		return errdefs.InvalidParameter(fmt.Errorf("Minimum memory limit allowed is 6MB"))
	}
	if hc.NanoCPUs < 0 {
		return errdefs.InvalidParameter(fmt.Errorf("invalid CPU value"))
	}
	if err := container.ValidateRestartPolicy(hc.RestartPolicy); err != nil {
		return errdefs.InvalidParameter(err)
	}
	if hc.AutoRemove && hc.RestartPolicy.Name != "" && hc.RestartPolicy.Name != container.RestartPolicyDisabled {
		return errdefs.InvalidParameter(fmt.Errorf("can't create 'AutoRemove' container with restart policy"))
	}
	if err := validateUlimits(hc.Ulimits); err != nil { // ulimits.go
		return errdefs.InvalidParameter(err)
	}
	return nil
}

// shapeFor maps -m and --cpus to a VM size. The VM's memory is the
// container's memory limit (rounded up to 64 MiB, at least MinMemoryMiB).
func (d *Daemon) shapeFor(hc *container.HostConfig) (shape vmbackend.Shape, warnings []string, err error) {
	shape = d.cfg.DefaultShape
	if hc.Memory > 0 {
		mib := int((hc.Memory + (1<<20 - 1)) >> 20)
		mib = (mib + 63) / 64 * 64
		if mib < d.cfg.MinMemoryMiB {
			warnings = append(warnings, fmt.Sprintf("a jeVM needs at least %d MiB of memory; the memory limit was raised from %d MiB", d.cfg.MinMemoryMiB, hc.Memory>>20))
			mib = d.cfg.MinMemoryMiB
		}
		shape.MemoryMiB = mib
	}
	switch {
	case hc.NanoCPUs > 0:
		shape.VCPUs = int((hc.NanoCPUs + 1e9 - 1) / 1e9)
	case hc.CPUCount > 0:
		shape.VCPUs = int(hc.CPUCount)
	}
	return shape, warnings, nil
}

// mergeImageConfig applies dockerd's rules: container settings win, the
// image fills the gaps; an entrypoint given by the user drops the image's
// command.
func mergeImageConfig(cfg, img *container.Config) *container.Config {
	m := *cfg
	defer func() {
		// `--entrypoint ""` (an entrypoint of one empty word) clears the
		// image's entrypoint, as in dockerd.
		if len(m.Entrypoint) == 1 && m.Entrypoint[0] == "" {
			m.Entrypoint = nil
		}
	}()
	if img == nil {
		return &m
	}
	m.Env = mergeEnv(img.Env, cfg.Env)
	if len(cfg.Entrypoint) == 0 {
		m.Entrypoint = img.Entrypoint
		if len(cfg.Cmd) == 0 {
			m.Cmd = img.Cmd
		}
	}
	if m.WorkingDir == "" {
		m.WorkingDir = img.WorkingDir
	}
	if m.User == "" {
		m.User = img.User
	}
	if len(img.Labels) > 0 {
		labels := map[string]string{}
		for k, v := range img.Labels {
			labels[k] = v
		}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		m.Labels = labels
	}
	if len(img.ExposedPorts) > 0 {
		ports := nat.PortSet{}
		for k := range img.ExposedPorts {
			ports[k] = struct{}{}
		}
		for k := range cfg.ExposedPorts {
			ports[k] = struct{}{}
		}
		m.ExposedPorts = ports
	}
	if len(img.Volumes) > 0 {
		vols := map[string]struct{}{}
		for k := range img.Volumes {
			vols[k] = struct{}{}
		}
		for k := range cfg.Volumes {
			vols[k] = struct{}{}
		}
		m.Volumes = vols
	}
	if m.StopSignal == "" {
		m.StopSignal = img.StopSignal
	}
	m.Healthcheck = mergeHealthcheck(cfg.Healthcheck, img.Healthcheck)
	if len(m.OnBuild) == 0 {
		m.OnBuild = img.OnBuild
	}
	if len(m.Shell) == 0 {
		m.Shell = img.Shell
	}
	return &m
}
