package imagestore

import (
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/storage"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// GraphDriverName is what Inspect reports as the image's graph driver.
const GraphDriverName = "jevm-ext4"

// Inspect returns GET /images/{name}/json's answer.
func (s *Store) Inspect(nameOrID string) (*image.InspectResponse, error) {
	img, err := s.Resolve(nameOrID)
	if err != nil {
		return nil, err
	}
	c := img.Config
	comment := ""
	if len(c.History) > 0 {
		comment = c.History[len(c.History)-1].Comment
	}
	created := ""
	if c.Created != nil {
		created = c.Created.Format(time.RFC3339Nano)
	}
	layers := make([]string, 0, len(c.RootFS.DiffIDs))
	for _, d := range c.RootFS.DiffIDs {
		layers = append(layers, d.String())
	}
	cfg := dockerspec.DockerOCIImageConfig{}
	cfg.ImageConfig = c.Config.ImageConfig
	cfg.DockerOCIImageConfigExt = c.Config.DockerOCIImageConfigExt
	rootfsType := c.RootFS.Type
	if rootfsType == "" {
		rootfsType = "layers"
	}
	data := map[string]string{"BaseDisk": s.diskPath(img.ID)}
	return &image.InspectResponse{
		ID:           img.ID.String(),
		Parent:       img.Parent.String(),
		RepoTags:     img.RepoTags,
		RepoDigests:  img.RepoDigests,
		Comment:      comment,
		Created:      created,
		Author:       c.Author,
		Config:       &cfg,
		Architecture: c.Architecture,
		Variant:      c.Variant,
		Os:           c.OS,
		OsVersion:    c.OSVersion,
		Size:         img.Size,
		GraphDriver:  storage.DriverData{Name: GraphDriverName, Data: data},
		RootFS:       image.RootFS{Type: rootfsType, Layers: layers},
		Metadata:     image.Metadata{LastTagTime: img.LastTagTime},
	}, nil
}
