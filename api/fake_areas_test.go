package api

import (
	"context"
	"errors"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

// The fake backend's volumes, networks and file operations: most tests do
// not use them, so they answer 501. volFake, netFake and fakeArchive
// override them for the tests of those routes.

var (
	errFakeVolumes  = errdefs.NotImplemented(errors.New("fake backend: no volumes"))
	errFakeNetworks = errdefs.NotImplemented(errors.New("fake backend: no networks"))
	errFakeArchive  = errdefs.NotImplemented(errors.New("fake backend: no file operations"))
)

func (f *fakeBackend) VolumeList(context.Context, filters.Args) ([]*volume.Volume, []string, error) {
	return nil, nil, errFakeVolumes
}

func (f *fakeBackend) VolumeCreate(context.Context, volume.CreateOptions) (*volume.Volume, error) {
	return nil, errFakeVolumes
}

func (f *fakeBackend) VolumeInspect(context.Context, string) (*volume.Volume, error) {
	return nil, errFakeVolumes
}

func (f *fakeBackend) VolumeRemove(context.Context, string, bool) error { return errFakeVolumes }

func (f *fakeBackend) VolumesPrune(context.Context, filters.Args) (*volume.PruneReport, error) {
	return nil, errFakeVolumes
}

func (f *fakeBackend) SystemDiskUsage(context.Context, backend.DiskUsageOptions) (*system.DiskUsage, error) {
	return nil, errFakeVolumes
}

func (f *fakeBackend) NetworkCreate(context.Context, network.CreateRequest) (network.CreateResponse, error) {
	return network.CreateResponse{}, errFakeNetworks
}

func (f *fakeBackend) NetworkList(context.Context, filters.Args) ([]network.Summary, error) {
	return nil, errFakeNetworks
}

func (f *fakeBackend) NetworkInspect(context.Context, string, network.InspectOptions) (network.Inspect, error) {
	return network.Inspect{}, errFakeNetworks
}

func (f *fakeBackend) NetworkRemove(context.Context, string) error { return errFakeNetworks }

func (f *fakeBackend) NetworkConnect(context.Context, string, network.ConnectOptions) error {
	return errFakeNetworks
}

func (f *fakeBackend) NetworkDisconnect(context.Context, string, network.DisconnectOptions) error {
	return errFakeNetworks
}

func (f *fakeBackend) NetworksPrune(context.Context, filters.Args) (*network.PruneReport, error) {
	return nil, errFakeNetworks
}

func (f *fakeBackend) ContainerStatPath(context.Context, string, string) (*container.PathStat, error) {
	return nil, errFakeArchive
}

func (f *fakeBackend) ContainerArchivePath(context.Context, string, string, func(*container.PathStat) (io.Writer, error)) error {
	return errFakeArchive
}

func (f *fakeBackend) ContainerExtractToDir(context.Context, string, string, bool, bool, io.Reader) error {
	return errFakeArchive
}

func (f *fakeBackend) ContainerExport(context.Context, string, io.Writer) error {
	return errFakeArchive
}

func (f *fakeBackend) ContainerChanges(context.Context, string) ([]container.FilesystemChange, error) {
	return nil, errFakeArchive
}

func (f *fakeBackend) ContainerCommit(context.Context, *backend.CommitConfig) (string, error) {
	return "", errFakeArchive
}
