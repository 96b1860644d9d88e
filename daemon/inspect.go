package daemon

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/storage"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
	units "github.com/docker/go-units"

	"github.com/jevm/jevm/internal/filterutil"
)

// ContainerInspect builds dockerd's inspect document. Mounts and
// NetworkSettings are empty structures until volumes and networking exist.
func (d *Daemon) ContainerInspect(ctx context.Context, ref string, size bool) (*container.InspectResponse, error) {
	c, err := d.containers.get(ref)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &container.State{
		Status:     c.State.Status,
		Running:    c.State.Status == container.StateRunning || c.State.Status == container.StatePaused || c.State.Status == container.StateRestarting,
		Paused:     c.State.Status == container.StatePaused,
		Restarting: c.State.Status == container.StateRestarting,
		Health:     copyHealth(c.State.Health),
		OOMKilled:  c.State.OOMKilled,
		Dead:       c.State.Status == container.StateDead,
		Pid:        c.State.Pid,
		ExitCode:   c.State.ExitCode,
		Error:      c.State.Error,
		StartedAt:  formatTime(c.State.StartedAt),
		FinishedAt: formatTime(c.State.FinishedAt),
	}
	hc := *c.HostConfig
	hc.Ulimits = mergeUlimits(hc.Ulimits, d.cfg.DefaultUlimits) // as dockerd shows them (ulimits.go)
	if hc.Runtime == "" {
		hc.Runtime = runtimeName // dockerd shows its default runtime
	}
	if hc.NetworkMode == "" {
		hc.NetworkMode = "none"
	}
	if hc.IpcMode.IsEmpty() {
		hc.IpcMode = container.IPCModePrivate // a record from before create set the default
	}
	// The effective log config; only json-file's path is shown, as
	// dockerd does.
	hc.LogConfig = c.logConfig()
	logPath := ""
	if hc.LogConfig.Type == logDriverJSONFile {
		logPath = c.logPath()
	}
	resp := &container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			ID:           c.ID,
			Created:      c.Created.Format(time.RFC3339Nano),
			Path:         c.Path,
			Args:         append([]string{}, c.Args...),
			State:        st,
			Image:        c.ImageID,
			LogPath:      logPath,
			Name:         "/" + c.Name,
			RestartCount: c.RestartCount,
			ExecIDs:      d.execIDs(c),
			Driver:       "qcow2",
			Platform:     "linux",
			HostConfig:   &hc,
			GraphDriver: storage.DriverData{
				Name: "qcow2",
				Data: map[string]string{"RootDisk": c.diskPath(), "VMMemoryMiB": strconv.Itoa(c.Shape.MemoryMiB), "VMCPUs": strconv.Itoa(c.Shape.VCPUs)},
			},
		},
		Mounts: inspectMounts(c),
		Config: c.Config,
		NetworkSettings: &container.NetworkSettings{
			NetworkSettingsBase: container.NetworkSettingsBase{Ports: nat.PortMap{}},
			Networks:            map[string]*network.EndpointSettings{},
		},
	}
	d.fillNetworkSettings(c, &hc, resp.NetworkSettings) // network.go
	if size {
		rw, rootfs := d.containerSizes(ctx, c)
		resp.SizeRw, resp.SizeRootFs = &rw, &rootfs
	}
	return resp, nil
}

// containerSizes are `docker ps -s` and `inspect --size`'s figures: the
// bytes the container's own disk holds (what it wrote, plus the overlay's
// small metadata) and that plus its image's size.
func (d *Daemon) containerSizes(ctx context.Context, c *Container) (rw, rootfs int64) {
	rw = allocatedSize(c.diskPath())
	rootfs = rw
	if img, err := d.images.Inspect(ctx, c.ImageID); err == nil {
		rootfs += img.Size
	}
	return rw, rootfs
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// ContainerList serves `docker ps`.
func (d *Daemon) ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error) {
	f := opts.Filters
	if err := f.Validate(map[string]bool{
		"id": true, "name": true, "label": true, "status": true, "ancestor": true,
		"exited": true, "before": true, "since": true, "isolation": true, "health": true,
		"volume": true, "network": true, "publish": true, "expose": true, "is-task": true,
	}); err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	for _, s := range f.Get("status") {
		switch s {
		case "created", "restarting", "running", "removing", "paused", "exited", "dead":
		default:
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid filter 'status=%s'", s))
		}
	}
	var exitCodes []int
	for _, v := range f.Get("exited") {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid filter 'exited=%s'", v))
		}
		exitCodes = append(exitCodes, n)
	}
	// before/since name a container; the list is ordered newest first.
	var beforeT, sinceT time.Time
	for key, dst := range map[string]*time.Time{"before": &beforeT, "since": &sinceT} {
		if vals := f.Get(key); len(vals) > 0 {
			ref, err := d.containers.get(vals[0])
			if err != nil {
				return nil, err
			}
			*dst = ref.Created
		}
	}
	var ancestors []string
	for _, a := range f.Get("ancestor") {
		id, _, err := d.images.ImageConfig(a)
		if err == nil {
			ancestors = append(ancestors, id)
		}
	}

	// A linked container is also listed under its link names
	// ("/parent/alias"), as dockerd lists it (links.go).
	linkNames := map[string][]string{}
	for _, c := range d.containers.all() {
		c.mu.Lock()
		for _, l := range c.HostConfig.Links {
			if target, alias, ok := strings.Cut(l, ":"); ok && strings.HasPrefix(alias, "/") {
				linkNames[strings.TrimPrefix(target, "/")] = append(linkNames[strings.TrimPrefix(target, "/")], alias)
			}
		}
		c.mu.Unlock()
	}
	var out []container.Summary
	for _, c := range d.containers.all() {
		c.mu.Lock()
		s, ok := d.summary(c, opts.All, f, exitCodes, beforeT, sinceT, ancestors)
		if ok {
			s.Names = append(s.Names, linkNames[c.Name]...)
		}
		if ok && opts.Size {
			s.SizeRw, s.SizeRootFs = d.containerSizes(ctx, c)
		}
		c.mu.Unlock()
		if ok {
			out = append(out, s)
		}
		if opts.Limit > 0 && len(out) >= opts.Limit {
			break
		}
	}
	if out == nil {
		out = []container.Summary{}
	}
	return out, nil
}

// summary renders one `docker ps` row if c passes the filters. Callers hold
// c.mu.
func (d *Daemon) summary(c *Container, all bool, f filters.Args, exitCodes []int, before, since time.Time, ancestors []string) (container.Summary, bool) {
	status := string(c.State.Status)
	if !all && !c.running() && c.State.Status != container.StateRestarting && !f.Contains("status") && !f.Contains("exited") {
		return container.Summary{}, false
	}
	if f.Contains("health") && !f.ExactMatch("health", healthFilterValue(c)) {
		return container.Summary{}, false
	}
	if f.Contains("id") && !matchAnyPrefix(f.Get("id"), c.ID) {
		return container.Summary{}, false
	}
	// dockerd matches the name with and without its leading "/".
	if f.Contains("name") && !matchAnyRegexp(f.Get("name"), "/"+c.Name) && !matchAnyRegexp(f.Get("name"), c.Name) {
		return container.Summary{}, false
	}
	if f.Contains("status") && !f.ExactMatch("status", status) {
		return container.Summary{}, false
	}
	if len(exitCodes) > 0 {
		if c.State.Status != container.StateExited {
			return container.Summary{}, false
		}
		hit := false
		for _, code := range exitCodes {
			hit = hit || code == c.State.ExitCode
		}
		if !hit {
			return container.Summary{}, false
		}
	}
	if !matchVolumeFilter(c, f) {
		return container.Summary{}, false
	}
	if !filterutil.MatchLabels(f, c.Config.Labels) {
		return container.Summary{}, false
	}
	if f.Contains("ancestor") {
		hit := false
		for _, id := range ancestors {
			hit = hit || id == c.ImageID
		}
		if !hit {
			return container.Summary{}, false
		}
	}
	if !before.IsZero() && !c.Created.Before(before) {
		return container.Summary{}, false
	}
	if !since.IsZero() && !c.Created.After(since) {
		return container.Summary{}, false
	}
	s := container.Summary{
		ID:      c.ID,
		Names:   []string{"/" + c.Name},
		Image:   c.ImageRef,
		ImageID: c.ImageID,
		Command: commandString(c.Path, c.Args),
		Created: c.Created.Unix(),
		Ports:   []container.Port{},
		Labels:  c.Config.Labels,
		State:   c.State.Status,
		Status:  statusString(c),
		Mounts:  inspectMounts(c),
		NetworkSettings: &container.NetworkSettingsSummary{
			Networks: map[string]*network.EndpointSettings{},
		},
	}
	s.HostConfig.NetworkMode = "none"
	// API 1.46; the router drops them for older clients.
	s.HostConfig.Annotations = c.HostConfig.Annotations
	if !d.fillSummaryNetwork(c, &s, f) { // network.go (and the network/publish/expose filters)
		return container.Summary{}, false
	}
	return s, true
}

// statusString is `docker ps`'s STATUS column.
func statusString(c *Container) string {
	switch c.State.Status {
	case container.StateRunning:
		if c.State.Health != nil {
			return "Up " + units.HumanDuration(time.Since(c.State.StartedAt)) + " (" + healthString(c.State.Health) + ")"
		}
		return "Up " + units.HumanDuration(time.Since(c.State.StartedAt))
	case container.StateRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", c.State.ExitCode, units.HumanDuration(time.Since(c.State.FinishedAt)))
	case container.StatePaused:
		return "Up " + units.HumanDuration(time.Since(c.State.StartedAt)) + " (Paused)"
	case container.StateExited:
		if c.State.FinishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", c.State.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s ago", c.State.ExitCode, units.HumanDuration(time.Since(c.State.FinishedAt)))
	case container.StateCreated:
		return "Created"
	case container.StateDead:
		return "Dead"
	}
	return string(c.State.Status)
}

func matchAnyPrefix(prefixes []string, s string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func matchAnyRegexp(patterns []string, s string) bool {
	for _, p := range patterns {
		if re, err := regexp.Compile(p); err == nil && re.MatchString(s) {
			return true
		}
	}
	return false
}

// commandString is `docker ps`'s COMMAND: dockerd quotes arguments that
// contain spaces.
func commandString(path string, args []string) string {
	parts := []string{path}
	for _, a := range args {
		if strings.Contains(a, " ") {
			a = "'" + a + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
