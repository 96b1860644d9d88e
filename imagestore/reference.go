package imagestore

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
)

// ParseReference normalises a reference as dockerd does for a pull:
// "busybox" -> docker.io/library/busybox:latest, "user/app" ->
// docker.io/user/app:latest, "localhost:5000/busybox" ->
// localhost:5000/busybox:latest; a reference with a digest keeps its digest
// (a tag given along with a digest is dropped). Invalid references give an
// errdefs.InvalidParameter error with dockerd's wording.
func ParseReference(s string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	if c, ok := named.(reference.Canonical); ok {
		if _, tagged := named.(reference.NamedTagged); tagged {
			// dockerd ignores the tag when a digest is given
			named, err = reference.WithDigest(reference.TrimNamed(named), c.Digest())
			if err != nil {
				return nil, errdefs.InvalidParameter(err)
			}
		}
		return named, nil
	}
	return reference.TagNameOnly(named), nil
}

// refKey is the key a reference is stored under: its full normalised form
// with the default tag added; for a reference with both a tag and a digest
// the digest wins (as in dockerd's reference store).
func refKey(named reference.Named) string {
	if c, ok := named.(reference.Canonical); ok {
		if r, err := reference.WithDigest(reference.TrimNamed(named), c.Digest()); err == nil {
			return r.String()
		}
	}
	return reference.TagNameOnly(named).String()
}

// notFound builds dockerd's "No such image" error for the given input.
func notFound(ref reference.Reference) error {
	if named, ok := ref.(reference.Named); ok {
		ref = reference.TagNameOnly(named)
	}
	return errdefs.NotFound(fmt.Errorf("No such image: %s", reference.FamiliarString(ref)))
}

func notFoundString(s string) error {
	return errdefs.NotFound(fmt.Errorf("No such image: %s", s))
}

// Resolve finds an image as dockerd's GetImage does: by reference
// (full or familiar name, with tag or digest; "latest" when neither), by full
// image ID ("sha256:<hex>" or the 64 hex digits), or by a unique prefix of
// the ID's hex (with or without "sha256:"). Unknown or ambiguous names give
// errdefs.NotFound ("No such image: busybox:latest"); unparsable ones
// errdefs.InvalidParameter.
func (s *Store) Resolve(nameOrID string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.resolveLocked(nameOrID)
	if err != nil {
		return nil, err
	}
	return s.copyLocked(img), nil
}

func (s *Store) resolveLocked(nameOrID string) (*Image, error) {
	if nameOrID == "" {
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid reference format"))
	}
	ref, err := reference.ParseAnyReference(nameOrID)
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	named, ok := ref.(reference.Named)
	if !ok {
		// A bare digest (or 64 hex digits): an image ID.
		if d, ok := ref.(reference.Digested); ok {
			if img := s.images[d.Digest()]; img != nil {
				return img, nil
			}
		}
		return nil, notFound(ref)
	}
	if id, ok := s.refs[refKey(named)]; ok {
		if img := s.images[id]; img != nil {
			return img, nil
		}
	}
	// An ID prefix ("abc123", "sha256:abc123").
	if id, err := s.searchIDLocked(nameOrID); err == nil {
		return s.images[id], nil
	}
	return nil, notFound(ref)
}

var errAmbiguous = fmt.Errorf("ambiguous image ID prefix")

// searchIDLocked finds the image whose ID has the given hex prefix.
func (s *Store) searchIDLocked(prefix string) (digest.Digest, error) {
	alg := string(digest.Canonical)
	hex := prefix
	if i := strings.IndexByte(prefix, ':'); i >= 0 {
		alg, hex = prefix[:i], prefix[i+1:]
	}
	if hex == "" || alg != string(digest.Canonical) || !isHex(hex) {
		return "", fmt.Errorf("not an ID prefix")
	}
	var found digest.Digest
	for id := range s.images {
		if strings.HasPrefix(id.Encoded(), hex) {
			if found != "" {
				return "", errAmbiguous
			}
			found = id
		}
	}
	if found == "" {
		return "", fmt.Errorf("no match")
	}
	return found, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isImageIDPrefix reports whether s names the image by (a prefix of) its ID
// rather than by a reference, as dockerd decides it in ImageDelete.
func isImageIDPrefix(imageID, s string) bool {
	if strings.HasPrefix(imageID, s) {
		return true
	}
	if i := strings.IndexRune(imageID, ':'); i >= 0 {
		return strings.HasPrefix(imageID[i+1:], s)
	}
	return false
}
