package daemon

import (
	"github.com/docker/docker/api/types/container"

	"github.com/jevm/jevm/builder"
)

// applyChanges applies `docker commit --change` instructions to cfg with
// the builder's Dockerfile parser and instruction code (dockerd's
// BuildFromConfig does the same with its builder).
func applyChanges(cfg *container.Config, changes []string) (*container.Config, error) {
	return builder.ApplyChanges(cfg, changes)
}
