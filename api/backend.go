package api

import (
	"context"
	"io"
	"time"

	dtypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/checkpoint"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/system"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
)

// The API layer declares what it needs from the engine; daemon.Daemon
// implements it. Errors returned by a backend carry their kind through
// github.com/docker/docker/errdefs (NotFound, Conflict, InvalidParameter,
// ...) and are mapped to an HTTP status once, in this package.

// SystemBackend serves /_ping, /version and /info.
type SystemBackend interface {
	SystemInfo(ctx context.Context) (*system.Info, error)
	SystemVersion(ctx context.Context) dtypes.Version
}

// ContainerBackend serves /containers/...
type ContainerBackend interface {
	// ContainerCreate makes a container; platform, when not nil, is the
	// platform the image must be of (the create's "platform" query).
	ContainerCreate(ctx context.Context, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig, platform *ocispec.Platform) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, nameOrID string) error
	ContainerStop(ctx context.Context, nameOrID string, opts container.StopOptions) error
	ContainerKill(ctx context.Context, nameOrID string, signal string) error
	ContainerRestart(ctx context.Context, nameOrID string, opts container.StopOptions) error
	// ContainerWait registers the wait before it returns (so a following
	// start cannot be missed) and delivers exactly one response on the
	// channel.
	ContainerWait(ctx context.Context, nameOrID string, cond container.WaitCondition) (<-chan container.WaitResponse, error)
	ContainerAttach(ctx context.Context, nameOrID string, cfg *backend.AttachConfig) error
	// ContainerLogs returns the messages (closed at the end, or when ctx is
	// done with Follow) and whether the container has a TTY (then the
	// router writes them raw instead of stdcopy-multiplexed).
	ContainerLogs(ctx context.Context, nameOrID string, opts container.LogsOptions) (<-chan backend.LogMessage, bool, error)
	ContainerResize(ctx context.Context, nameOrID string, height, width uint) error
	ContainerRemove(ctx context.Context, nameOrID string, opts container.RemoveOptions) error
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, nameOrID string, size bool) (*container.InspectResponse, error)
	ContainerRename(ctx context.Context, nameOrID, newName string) error
	ContainersPrune(ctx context.Context, pruneFilters filters.Args) (*container.PruneReport, error)
}

// ImageBackend serves /images/...
type ImageBackend interface {
	// PullImage writes JSON progress messages (jsonmessage.JSONMessage, one
	// per line) to out. If it fails before writing anything, the router
	// answers with the error's HTTP status; after, with an error message in
	// the stream, as dockerd does.
	PullImage(ctx context.Context, ref string, platform string, auth *registry.AuthConfig, out io.Writer) error
	ImageList(ctx context.Context, opts image.ListOptions) ([]image.Summary, error)
	ImageInspect(ctx context.Context, nameOrID string) (*image.InspectResponse, error)
	ImageTag(ctx context.Context, source, repo, tag string) error
	ImageDelete(ctx context.Context, nameOrID string, force, prune bool) ([]image.DeleteResponse, error)
	ImagesPrune(ctx context.Context, pruneFilters filters.Args) (*image.PruneReport, error)
}

// EventsBackend serves /events.
type EventsBackend interface {
	// SubscribeToEvents returns the recorded events from since to until
	// that match ef (none when both times are zero; a zero bound is open),
	// and a channel of new matching events, closed if the subscriber falls
	// behind or after cancel.
	SubscribeToEvents(since, until time.Time, ef filters.Args) (past []events.Message, live <-chan events.Message, cancel func())
}

// ExecBackend serves /containers/{name}/exec and /exec/... (docker exec).
// Exec errors carry their kind as other backend errors do.
type ExecBackend interface {
	// ContainerExecCreate registers an exec in a running container and
	// returns its ID.
	ContainerExecCreate(ctx context.Context, nameOrID string, cfg *container.ExecOptions) (string, error)
	// ContainerExecStart validates the exec, then (unless cfg.Detach) calls
	// cfg.GetStreams once, as ContainerAttach does, starts the process and
	// copies its streams until it exits or the client goes away. An error
	// returned after GetStreams is written into the stream by the router.
	ContainerExecStart(ctx context.Context, execID string, cfg *backend.ExecStartConfig) error
	ContainerExecInspect(execID string) (*backend.ExecInspect, error)
	ContainerExecResize(ctx context.Context, execID string, height, width uint) error
}

// StatsBackend serves /containers/{name}/top and /containers/{name}/stats.
type StatsBackend interface {
	ContainerTop(ctx context.Context, nameOrID string, psArgs string) (*container.TopResponse, error)
	// ContainerStats sends stats through cfg.Send until done (one with
	// !cfg.Stream); errors before the first Send become HTTP errors.
	ContainerStats(ctx context.Context, nameOrID string, cfg *backend.StatsConfig) error
}

// Backend is everything the router serves. Every area is required: an
// engine that does not serve one answers its routes with an
// errdefs.NotImplemented error (501) itself. cmd/jevmd asserts at compile
// time that daemon.Daemon implements each of these interfaces, so a
// signature that drifts breaks the build.
type Backend interface {
	ExecBackend
	StatsBackend
	SystemBackend
	RegistryBackend
	ContainerBackend
	ImageBackend
	ImageArchiveBackend
	EventsBackend
	LifecycleBackend
	VolumeBackend
	NetworkBackend
	ArchiveBackend
	BuildBackend
	SwarmBackend
	CheckpointBackend
	MigrationBackend
}

// CheckpointBackend serves /containers/{name}/checkpoints and starts
// from a checkpoint (experimental mode only, as dockerd).
type CheckpointBackend interface {
	CheckpointCreate(ctx context.Context, nameOrID string, opts checkpoint.CreateOptions) error
	CheckpointList(ctx context.Context, nameOrID string, opts checkpoint.ListOptions) ([]checkpoint.Summary, error)
	CheckpointDelete(ctx context.Context, nameOrID string, opts checkpoint.DeleteOptions) error
	// ContainerRestore starts the stopped container from checkpoint id
	// (in dir, or the container's own checkpoints).
	ContainerRestore(ctx context.Context, nameOrID, id, dir string) error
}
