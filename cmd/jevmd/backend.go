package main

import (
	"github.com/jevm/jevm/api"
	"github.com/jevm/jevm/daemon"
)

// The daemon serves every area of the API: one assertion per interface
// package api declares, so a signature that drifts on either side fails
// the build here, naming the area, instead of at api.NewServer.
var (
	_ api.SystemBackend       = (*daemon.Daemon)(nil)
	_ api.ContainerBackend    = (*daemon.Daemon)(nil)
	_ api.LifecycleBackend    = (*daemon.Daemon)(nil)
	_ api.StatsBackend        = (*daemon.Daemon)(nil)
	_ api.ExecBackend         = (*daemon.Daemon)(nil)
	_ api.ImageBackend        = (*daemon.Daemon)(nil)
	_ api.ImageArchiveBackend = (*daemon.Daemon)(nil)
	_ api.EventsBackend       = (*daemon.Daemon)(nil)
	_ api.VolumeBackend       = (*daemon.Daemon)(nil)
	_ api.NetworkBackend      = (*daemon.Daemon)(nil)
	_ api.ArchiveBackend      = (*daemon.Daemon)(nil)
)
