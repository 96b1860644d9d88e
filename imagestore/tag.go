package imagestore

import (
	"errors"
	"fmt"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

// Tag adds repo:tag (normalised; tag "" means latest) to the image source
// names, moving the tag if it pointed elsewhere.
func (s *Store) Tag(source, repo, tag string) error {
	ref, err := tagReference(repo, tag)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.resolveLocked(source)
	if err != nil {
		return err
	}
	s.refs[refKey(ref)] = img.ID
	img.LastTagTime = time.Now().UTC()
	if err := s.saveLocked(); err != nil {
		return errdefs.System(err)
	}
	s.log.WithFields(logrus.Fields{"image": img.ID, "tag": reference.FamiliarString(ref)}).Info("tagged image")
	return nil
}

// tagReference validates a repo and tag as dockerd's POST /images/{}/tag.
func tagReference(repo, tag string) (reference.NamedTagged, error) {
	if repo == "" {
		return nil, errdefs.InvalidParameter(errors.New("repository name must have at least one component"))
	}
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, errdefs.InvalidParameter(errors.New("refusing to create a tag with a digest reference"))
	}
	if tag != "" {
		named, err = reference.WithTag(reference.TrimNamed(named), tag)
		if err != nil {
			return nil, errdefs.InvalidParameter(err)
		}
	}
	named = reference.TagNameOnly(named)
	if reference.FamiliarName(named) == string(digest.Canonical) {
		return nil, errdefs.InvalidParameter(errors.New("refusing to create an ambiguous tag using digest algorithm as name"))
	}
	t, ok := named.(reference.NamedTagged)
	if !ok {
		return nil, errdefs.InvalidParameter(fmt.Errorf("unexpected reference: %q", named.String()))
	}
	return t, nil
}
