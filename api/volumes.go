package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	dtypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

// VolumeBackend serves /volumes and /system/df.
type VolumeBackend interface {
	VolumeList(ctx context.Context, f filters.Args) ([]*volume.Volume, []string, error)
	VolumeCreate(ctx context.Context, req volume.CreateOptions) (*volume.Volume, error)
	VolumeInspect(ctx context.Context, name string) (*volume.Volume, error)
	// VolumeRemove refuses a volume in use (Conflict); force only ignores
	// a missing one.
	VolumeRemove(ctx context.Context, name string, force bool) error
	// VolumesPrune gets the filters as sent; the router adds all=true for
	// clients older than API 1.42 (which pruned named volumes too).
	VolumesPrune(ctx context.Context, f filters.Args) (*volume.PruneReport, error)
	SystemDiskUsage(ctx context.Context, opts backend.DiskUsageOptions) (*system.DiskUsage, error)
}

// volumeRoutes are added to the router by newRouter.
func (s *Server) volumeRoutes() []route {
	return []route{
		{http.MethodGet, "/volumes", s.getVolumesList},
		{http.MethodPost, "/volumes/create", withJSONBody(s.postVolumesCreate)},
		{http.MethodPost, "/volumes/prune", s.postVolumesPrune},
		{http.MethodGet, "/volumes/{name:.*}", s.getVolumeByName},
		{http.MethodPut, "/volumes/{name:.*}", s.putVolume},
		{http.MethodDelete, "/volumes/{name:.*}", s.deleteVolume},
		{http.MethodGet, "/system/df", s.getSystemDF},
	}
}

func (s *Server) getVolumesList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	vols, warnings, err := s.backend.VolumeList(ctx, f)
	if err != nil {
		return err
	}
	if vols == nil {
		vols = []*volume.Volume{}
	}
	return writeJSON(w, http.StatusOK, volume.ListResponse{Volumes: vols, Warnings: warnings})
}

func (s *Server) postVolumesCreate(ctx context.Context, w http.ResponseWriter, _ map[string]string, req *volume.CreateOptions) error {
	v, err := s.backend.VolumeCreate(ctx, *req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, v)
}

func (s *Server) getVolumeByName(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	v, err := s.backend.VolumeInspect(ctx, vars["name"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (s *Server) putVolume(context.Context, http.ResponseWriter, *http.Request, map[string]string) error {
	return errdefs.Unavailable(errors.New("volume update only valid for cluster volumes, but swarm is unavailable"))
}

func (s *Server) deleteVolume(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.backend.VolumeRemove(ctx, vars["name"], boolValue(r, "force")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postVolumesPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	// API 1.42 made prune remove only anonymous volumes by default.
	if versions.LessThan(VersionFromContext(ctx), "1.42") {
		f.Add("all", "true")
	}
	rep, err := s.backend.VolumesPrune(ctx, f)
	if err != nil {
		return err
	}
	if rep.VolumesDeleted == nil {
		rep.VolumesDeleted = []string{}
	}
	return writeJSON(w, http.StatusOK, rep)
}

func (s *Server) getSystemDF(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	opts := backend.DiskUsageOptions{Containers: true, Images: true, Volumes: true}
	getBuildCache := true
	if types, ok := r.Form["type"]; ok && !versions.LessThan(VersionFromContext(ctx), "1.42") {
		opts = backend.DiskUsageOptions{}
		getBuildCache = false
		for _, t := range types {
			switch dtypes.DiskUsageObject(t) {
			case dtypes.ContainerObject:
				opts.Containers = true
			case dtypes.ImageObject:
				opts.Images = true
			case dtypes.VolumeObject:
				opts.Volumes = true
			case dtypes.BuildCacheObject:
				getBuildCache = true
			default:
				return errdefs.InvalidParameter(fmt.Errorf("unknown object type: %s", t))
			}
		}
	}
	opts.BuildCache = getBuildCache
	du, err := s.backend.SystemDiskUsage(ctx, opts)
	if err != nil {
		return err
	}
	// The response is the pre-1.49 shape every client reads.
	var out dtypes.DiskUsage
	if du.Images != nil {
		out.LayersSize = du.Images.TotalSize
		out.Images = du.Images.Items
		if versions.LessThan(VersionFromContext(ctx), "1.44") {
			for _, im := range out.Images {
				im.VirtualSize = im.Size //nolint:staticcheck // still set for old clients, as dockerd does
			}
		}
	}
	if du.Containers != nil {
		out.Containers = du.Containers.Items
	}
	if du.Volumes != nil {
		out.Volumes = du.Volumes.Items
	}
	if getBuildCache {
		// `[]`, not null, when there is none.
		out.BuildCache = []*build.CacheRecord{}
		if du.BuildCache != nil && du.BuildCache.Items != nil {
			out.BuildCache = du.BuildCache.Items
		}
	}
	return writeJSON(w, http.StatusOK, out)
}
