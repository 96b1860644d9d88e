// Package backend holds the request and stream types that the HTTP layer
// (package api) hands to the engine (package daemon) and back. It is a
// leaf: it imports neither api nor daemon, so the daemon implements the
// interfaces api declares without importing the HTTP package. moby keeps
// the same kind of types in its api/types/backend.
package backend

import (
	"io"
	"os"
	"time"

	"github.com/docker/docker/api/types/container"
)

// AttachConfig is what the router hands the backend for an attach. The
// backend validates the container, then calls GetStreams exactly once with
// multiplexed = !tty; the router hijacks the connection at that point and
// returns the client's streams (stdout and stderr are already wrapped in
// stdcopy framing when multiplexed). The backend then copies until the
// container's process exits or the client goes away, and returns.
type AttachConfig struct {
	GetStreams func(multiplexed bool) (stdin io.ReadCloser, stdout, stderr io.Writer, err error)
	UseStdin   bool
	UseStdout  bool
	UseStderr  bool
	Logs       bool // replay the log first
	Stream     bool // then stream live output
	DetachKeys string
}

// LogMessage is one line (or partial line) of a container's output.
type LogMessage struct {
	Stream    string // "stdout" or "stderr"
	Line      []byte
	Timestamp time.Time
	// Attrs are the message's details (logs --details): for a swarm
	// service's logs, the node, service and task it comes from.
	Attrs []LogAttr
	Err   error // set on the last message if reading failed
}

// ContainerFile is a file of a container's that exists only in memory (a
// swarm secret or config): Target is its absolute path in the container,
// Mode its permission bits.
type ContainerFile struct {
	Target   string
	Data     []byte
	UID, GID uint32
	Mode     os.FileMode
}

// LogAttr is one detail of a log message.
type LogAttr struct{ Key, Value string }

// ExecStartConfig is what the router hands the backend to start an exec.
type ExecStartConfig struct {
	// Detach: start the process and return; GetStreams is not called.
	Detach bool
	Tty    bool
	// ConsoleSize is the initial terminal size [height, width], if given.
	ConsoleSize *[2]uint
	// GetStreams hijacks the connection, as AttachConfig.GetStreams does;
	// the backend calls it once (multiplexed = !tty) unless Detach.
	GetStreams func(multiplexed bool) (stdin io.ReadCloser, stdout, stderr io.Writer, err error)
}

// ExecInspect is the answer to GET /exec/{id}/json (dockerd's
// api/types/backend.ExecInspect, which we do not import: that package
// pulls in the image builder's dependencies).
type ExecInspect struct {
	ID            string
	Running       bool
	ExitCode      *int // nil until the process exited
	ProcessConfig *ExecProcessConfig
	OpenStdin     bool
	OpenStderr    bool
	OpenStdout    bool
	CanRemove     bool
	ContainerID   string
	DetachKeys    []byte
	Pid           int
}

// ExecProcessConfig describes an exec's process in ExecInspect.
type ExecProcessConfig struct {
	Tty        bool     `json:"tty"`
	Entrypoint string   `json:"entrypoint"`
	Arguments  []string `json:"arguments"`
	Privileged *bool    `json:"privileged,omitempty"`
	User       string   `json:"user,omitempty"`
}

// StatsConfig is what the router hands the backend for /stats.
type StatsConfig struct {
	// Stream: one sample a second until the client goes or the container
	// stops; else one, with PreCPUStats from a sample a second earlier
	// (unless OneShot).
	Stream  bool
	OneShot bool
	// Send writes one sample to the client.
	Send func(*container.StatsResponse) error
}

// CommitConfig is a POST /commit request.
type CommitConfig struct {
	Container string
	// Repo and Tag name the image (Repo "" leaves it untagged).
	Repo, Tag string
	Author    string
	Comment   string
	// Pause the container while its changes are read (default true).
	Pause bool
	// Changes are Dockerfile instructions applied to the config
	// (`docker commit --change`).
	Changes []string
	// Config, if set, replaces the container's config as the base of the
	// image's config.
	Config *container.Config
}

// DiskUsageOptions says which parts of GET /system/df to compute.
type DiskUsageOptions struct {
	Containers, Images, Volumes bool
	// BuildCache: the builder's cached steps.
	BuildCache bool
}

// SwarmUpdateOptions are POST /swarm/update's query parameters: the
// swarm's version the spec was read at, and what to rotate.
type SwarmUpdateOptions struct {
	Version                uint64
	RotateWorkerToken      bool
	RotateManagerToken     bool
	RotateManagerUnlockKey bool
}
