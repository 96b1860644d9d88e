// Package migration holds the wire types of live migration
// (docs/MIGRATION.md): what a client asks of the source daemon, and what
// the source and target daemons say to each other. A leaf: the API
// layer, the daemon and the CLI plugin share it.
package migration

import (
	"encoding/json"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/jevm/jevm/vmbackend"
)

// Request is the body of POST /containers/{name}/jevm/migrate.
type Request struct {
	// Target is the target daemon's API address, tcp://HOST:PORT; the
	// source reaches it over TLS with its own certificate.
	Target string `json:"Target"`
}

// Offer is the body of POST /jevm/migrations on the target: the
// container as the source has it.
type Offer struct {
	ID         string                    `json:"Id"`
	Name       string                    `json:"Name"`
	Created    time.Time                 `json:"Created"`
	StartedAt  time.Time                 `json:"StartedAt"`
	ImageRef   string                    `json:"ImageRef"`
	ImageID    string                    `json:"ImageId"`
	Config     *container.Config         `json:"Config"`
	HostConfig *container.HostConfig     `json:"HostConfig"`
	NetConfig  *network.NetworkingConfig `json:"NetworkingConfig,omitempty"`
	Path       string                    `json:"Path"`
	Args       []string                  `json:"Args"`
	// RestartCount carries on; Rlimits and LinkEnv are the running
	// process's (its execs get them too).
	RestartCount int             `json:"RestartCount"`
	Rlimits      json.RawMessage `json:"Rlimits,omitempty"`
	LinkEnv      []string        `json:"LinkEnv,omitempty"`
	// Endpoints are the addresses the guest has, by network name: the
	// target asks its networks for the same ones.
	Endpoints map[string]Endpoint `json:"Endpoints,omitempty"`
	// MountPoints are the container's mounts as the source records them
	// (daemon's volumes.MountPoint): tmpfs mounts, and volumes and bind
	// mounts its VM mounts itself (NFS), which move with the VM.
	MountPoints json.RawMessage `json:"MountPoints,omitempty"`
	// Volumes are the volumes those mounts use: the target makes any it
	// lacks with the same options; one it has must have the same.
	Volumes []Volume `json:"Volumes,omitempty"`
	// Binds are the directories bind-mounted from shared storage, which
	// the guest mounts itself: the target's must be the same exports.
	Binds []Bind `json:"Binds,omitempty"`
	// Health is the container's health-check state: the target goes on
	// from it (the container did not restart) instead of "starting".
	Health *container.Health `json:"Health,omitempty"`
	// Machine is what the target's VM must match.
	Machine vmbackend.MigrationInfo `json:"Machine"`
	// Base identifies the base disk under the container's own layer.
	Base DiskIdentity `json:"Base"`
}

// Volume is a volume of a migrated container.
type Volume struct {
	Name    string            `json:"Name"`
	Driver  string            `json:"Driver"`
	Options map[string]string `json:"Options,omitempty"`
	Labels  map[string]string `json:"Labels,omitempty"`
	// GuestMount is what the guest has mounted for a bind-source volume
	// on shared storage ("nfs server:/export/dir"): the target's
	// directory must be the same export.
	GuestMount string `json:"GuestMount,omitempty"`
}

// Bind is a bind-mounted directory on shared storage.
type Bind struct {
	// Source is the host directory.
	Source string `json:"Source"`
	// GuestMount is what the guest has mounted for it
	// ("nfs server:/export/dir").
	GuestMount string `json:"GuestMount"`
}

// Endpoint is one of the guest's addresses.
type Endpoint struct {
	IP   string `json:"IP,omitempty"`
	IPv6 string `json:"IPv6,omitempty"`
	MAC  string `json:"MAC,omitempty"`
}

// DiskIdentity names a base disk by its contents: the SHA-256 of its
// size and of each of its non-zero 64 KiB chunks with the chunk's offset
// (how the file is allocated does not count).
type DiskIdentity struct {
	Size   int64  `json:"Size"`
	Digest string `json:"Digest"`
}

// OfferResponse is the target's answer to an Offer.
type OfferResponse struct {
	// NeedBase: the target has no base disk of these contents; the
	// source sends its own (PUT /jevm/migrations/{id}/base).
	NeedBase bool `json:"NeedBase"`
}

// Status is a control message on the run stream (POST
// /jevm/migrations/{id}/run), after the VM's stream: the target says
// "ready" (all arrived, the guest paused there), the source "commit",
// the target "running"; either may say Error instead.
type Status struct {
	Status string `json:"Status,omitempty"`
	Error  string `json:"Error,omitempty"`
	// ResumedAfter, with "running", is how long after saying "ready"
	// the target resumed the guest: the source adds it to the pause.
	ResumedAfter time.Duration `json:"ResumedAfter,omitempty"`
	// LogTail, with "commit", is what the container's current log file
	// got since the source sent its log files (PUT .../log), which the
	// target appends before the guest resumes.
	LogTail []byte `json:"LogTail,omitempty"`
}

// The statuses of the run stream.
const (
	StatusReady   = "ready"
	StatusCommit  = "commit"
	StatusRunning = "running"
)
