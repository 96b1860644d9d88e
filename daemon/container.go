package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jevm/jevm/internal/atomicfile"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentproto"
	"github.com/jevm/jevm/volumes"
)

// Container is one container and everything the daemon persists about it.
// The JSON form is written to DATA_ROOT/containers/<id>/config.json on every
// state change, so a restarted daemon loses nothing.
type Container struct {
	mu sync.Mutex `json:"-"`
	// buildHold is set on a build step's container (build.go): its VM
	// stays up after the command exits so that the changes are read from
	// it. Not persisted.
	buildHold *buildHold

	ID      string    `json:"id"`
	Name    string    `json:"name"` // without the leading "/"
	Created time.Time `json:"created"`
	// ImageRef is the image as the user named it (shown by `docker ps`).
	ImageRef string `json:"imageRef"`
	// ImageID is the image's config digest ("sha256:...").
	ImageID    string                    `json:"imageId"`
	Config     *container.Config         `json:"config"`
	HostConfig *container.HostConfig     `json:"hostConfig"`
	NetConfig  *network.NetworkingConfig `json:"netConfig,omitempty"`
	// Path and Args are the merged entrypoint and command that run.
	Path  string          `json:"path"`
	Args  []string        `json:"args"`
	Shape vmbackend.Shape `json:"shape"`

	State        ContainerState `json:"state"`
	RestartCount int            `json:"restartCount"`
	// MountPoints are the bind mounts and volumes (mounts.go), parents
	// before children.
	MountPoints []*volumes.MountPoint `json:"mountPoints,omitempty"`
	// Rlimits are the resource limits of the container's processes since
	// its last start (its ulimits merged with the daemon's defaults then,
	// as dockerd fixes them in the runtime spec): exec'd processes and
	// health checks get them too.
	Rlimits []agentproto.Rlimit `json:"rlimits,omitempty"`
	// LinkEnv is the legacy links' environment since the last start
	// (links.go), for execs too; saved so it outlives a daemon restart.
	LinkEnv []string `json:"linkEnv,omitempty"`
	// HasBeenManuallyStopped is set by stop and kill and cleared by start
	// (the unless-stopped policy, and auto-starts at daemon start-up).
	HasBeenManuallyStopped bool `json:"hasBeenManuallyStopped,omitempty"`
	// MigratingOut is set while a live migration may have sent the
	// guest away (migrate_out.go): a daemon that dies then finds out, on
	// its next start, whether to resume the VM (readopt).
	MigratingOut *outgoingMigration `json:"migratingOut,omitempty"`
	// Dir is DATA_ROOT/containers/<id>: config, log, console log, root disk.
	Dir string `json:"-"`

	// Runtime, not persisted: the VM and the process in it while running.
	run *runtime `json:"-"`
	// waiters are told about exits and removal.
	waiters []*waiter `json:"-"`
	// removing is set while the container is being removed.
	removing bool `json:"-"`
	// output fans the output out to the log and attached clients.
	output *outputHub `json:"-"`
	// stdin carries attached clients' input to the process (OpenStdin).
	stdin *stdinPipe `json:"-"`
	// removeVolumes: the removal in progress also removes the container's
	// anonymous volumes (`docker rm -v`).
	removeVolumes bool `json:"-"`
	// lc is the restart-policy state (restartpolicy.go).
	lc lifecycle `json:"-"`
	// memFiles are files that exist only in memory, given to each start
	// (swarm secrets and configs: memfiles.go). Never persisted.
	memFiles []agentproto.FileRequest `json:"-"`
}

// hub returns the container's output hub. Callers hold c.mu.
func (c *Container) hub() *outputHub {
	if c.output == nil {
		c.output = newOutputHub()
	}
	return c.output
}

// ContainerState is the persisted lifecycle state.
type ContainerState struct {
	Status     container.ContainerState `json:"status"` // created, running, paused, exited, dead
	Pid        int                      `json:"pid"`    // the VMM process on the host
	ExitCode   int                      `json:"exitCode"`
	Error      string                   `json:"error,omitempty"`
	OOMKilled  bool                     `json:"oomKilled,omitempty"`
	StartedAt  time.Time                `json:"startedAt"`
	FinishedAt time.Time                `json:"finishedAt"`
	// PodShare is the 9p tag of the running VM's pod share (podshare.go),
	// "" when it has none.
	PodShare string `json:"podShare,omitempty"`
	// ConsoleOffset is the console log's size when this run's VM started:
	// only an exit marker after it is this run's.
	ConsoleOffset int64 `json:"consoleOffset,omitempty"`
	// Health is the health check state (health.go); nil without one.
	Health *container.Health `json:"health,omitempty"`
}

func (c *Container) configPath() string  { return filepath.Join(c.Dir, "config.json") }
func (c *Container) logPath() string     { return filepath.Join(c.Dir, "container-json.log") }
func (c *Container) consolePath() string { return filepath.Join(c.Dir, "console.log") }
func (c *Container) diskPath() string    { return filepath.Join(c.Dir, "rootfs.qcow2") }

// running reports whether the container's VM is up (running or paused).
func (c *Container) running() bool {
	return c.State.Status == container.StateRunning || c.State.Status == container.StatePaused
}

// save writes the container's record atomically. Callers hold c.mu.
func (c *Container) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode container %s: %w", c.ID, err)
	}
	return atomicfile.WriteFile(c.configPath(), b, 0o600)
}

func loadContainer(dir string) (*Container, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	c := new(Container)
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("decode %s: %w", dir, err)
	}
	c.Dir = dir
	if c.Config == nil {
		c.Config = &container.Config{}
	}
	if c.HostConfig == nil {
		c.HostConfig = &container.HostConfig{}
	}
	return c, nil
}
