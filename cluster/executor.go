package cluster

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/moby/swarmkit/v2/agent"
	"github.com/moby/swarmkit/v2/agent/exec"
	swarmapi "github.com/moby/swarmkit/v2/api"
	"github.com/moby/swarmkit/v2/template"
)

// executor is SwarmKit's view of this engine: it describes the host so
// that the node shows and schedules as dockerd's does, and runs each task
// given to it as a container of the engine (controller.go), so as a jeVM.
type executor struct {
	engineVersion string
	hostname      string
	containers    Containers
	// dependencies holds the secrets and configs the managers sent for
	// this node's tasks (in memory only); each task sees its own.
	dependencies exec.DependencyManager
}

var _ exec.DependencyManager = (*executor)(nil)

// Secrets, Configs and Volumes implement exec.DependencyManager: the
// agent keeps them up to date.
func (e *executor) Secrets() exec.SecretsManager { return e.dependencies.Secrets() }
func (e *executor) Configs() exec.ConfigsManager { return e.dependencies.Configs() }
func (e *executor) Volumes() exec.VolumesManager { return e.dependencies.Volumes() }

// Describe implements exec.Executor.
func (e *executor) Describe(context.Context) (*swarmapi.NodeDescription, error) {
	return &swarmapi.NodeDescription{
		Hostname: e.hostname,
		Platform: &swarmapi.Platform{Architecture: unameArch(), OS: runtime.GOOS},
		Resources: &swarmapi.Resources{
			NanoCPUs:    int64(runtime.NumCPU()) * 1e9,
			MemoryBytes: memTotal(),
		},
		Engine: &swarmapi.EngineDescription{EngineVersion: e.engineVersion},
	}, nil
}

// Configure implements exec.Executor.
func (e *executor) Configure(context.Context, *swarmapi.Node) error { return nil }

// Controller implements exec.Executor.
func (e *executor) Controller(t *swarmapi.Task) (exec.Controller, error) {
	desc, _ := e.Describe(context.Background())
	deps := template.NewTemplatedDependencyGetter(agent.Restrict(e.dependencies, t), t, desc)
	return newController(e.containers, t, deps)
}

// SetNetworkBootstrapKeys implements exec.Executor.
func (e *executor) SetNetworkBootstrapKeys([]*swarmapi.EncryptionKey) error { return nil }

// unameArch is the architecture as `uname -m` and dockerd name it.
func unameArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// memTotal is the host's memory from /proc/meminfo (0 if unreadable).
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
