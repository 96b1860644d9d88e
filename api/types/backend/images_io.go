package backend

import (
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageImportConfig is POST /images/create?fromSrc=... (docker import).
type ImageImportConfig struct {
	// Src is "-" (the root file system tar is Body) or a URL the daemon
	// fetches it from ("http://" is added when there is no scheme).
	Src  string
	Body io.Reader
	// Repo and Tag name the image (validated by the router); Repo ""
	// leaves it untagged.
	Repo, Tag string
	// Message is the history comment; "" means "Imported from <Src>".
	Message string
	// Changes are Dockerfile instructions applied to the empty config, as
	// with commit --change.
	Changes []string
	// Platform is the platform parameter as given ("" = the daemon's).
	Platform string
}

// ImageLoadConfig is POST /images/load (docker load).
type ImageLoadConfig struct {
	Quiet    bool
	Platform *ocispec.Platform
}
