package imagestore

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"github.com/sirupsen/logrus"
)

// UsersFunc reports the containers using an image, given its full ID
// ("sha256:<hex>"): their IDs, running ones first, and whether the first one
// is running. A nil UsersFunc means no container uses any image.
type UsersFunc = func(id string) (containerIDs []string, running bool)

// deleteConflict is dockerd's imageDeleteConflict.
type deleteConflict struct {
	hard    bool
	used    bool
	id      digest.Digest
	message string
}

func (c *deleteConflict) Error() string {
	force := "must be forced"
	if c.hard {
		force = "cannot be forced"
	}
	return fmt.Sprintf("conflict: unable to delete %s (%s) - %s", shortID(c.id), force, c.message)
}

func (c *deleteConflict) Conflict() {}

type conflictMask int

const (
	conflictDependentChild conflictMask = 1 << iota
	conflictRunning
	conflictActiveRef
	conflictStopped
	conflictHard = conflictDependentChild | conflictRunning
	conflictSoft = conflictActiveRef | conflictStopped
)

// usage is what a UsersFunc said about one image.
type usage struct {
	ctrs    []string
	running bool
}

func (s *Store) checkConflictLocked(id digest.Digest, u usage, mask conflictMask) *deleteConflict {
	if mask&conflictDependentChild != 0 && s.hasChildrenLocked(id) {
		return &deleteConflict{hard: true, id: id, message: "image has dependent child images"}
	}
	if mask&conflictRunning != 0 && u.running && len(u.ctrs) > 0 {
		return &deleteConflict{hard: true, used: true, id: id,
			message: "image is being used by running container " + truncID(u.ctrs[0])}
	}
	if mask&conflictActiveRef != 0 && len(s.namedRefsLocked(id)) > 0 {
		return &deleteConflict{id: id, message: "image is referenced in multiple repositories"}
	}
	if mask&conflictStopped != 0 && !u.running && len(u.ctrs) > 0 {
		return &deleteConflict{used: true, id: id,
			message: "image is being used by stopped container " + truncID(u.ctrs[0])}
	}
	return nil
}

// isSingleReference reports whether all references are of one repository
// with at most one tag (dockerd's rule).
func isSingleReference(refs []reference.Named) bool {
	if len(refs) <= 1 {
		return len(refs) == 1
	}
	var single reference.Named
	canonical := map[string]struct{}{}
	for _, r := range refs {
		if _, ok := r.(reference.Canonical); ok {
			canonical[r.Name()] = struct{}{}
		} else if single == nil {
			single = r
		} else {
			return false
		}
	}
	if single == nil {
		single = refs[0]
	}
	_, ok := canonical[single.Name()]
	return len(canonical) == 1 && ok
}

// Delete removes an image or a reference to it with dockerd's semantics
// (DELETE /images/{name}): a reference is untagged, and the image itself is
// deleted when nothing references it any more; conflicts with containers and
// other references are errdefs.Conflict errors worded as dockerd's. Deleting
// an image removes its record, the content blobs no other image uses and its
// base disk (kept, until GCDisks, while containers still use it). prune is
// prune also deletes the image's untagged parents (a commit's or a build's
// intermediate images) that nothing else uses, as dockerd does unless
// noprune is given.
func (s *Store) Delete(nameOrID string, force, prune bool, users UsersFunc) ([]image.DeleteResponse, error) {
	s.mu.Lock()
	img, err := s.resolveLocked(nameOrID)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	id := img.ID
	s.mu.Unlock()

	// Ask about containers without holding the store lock: the caller's
	// function may take its own locks.
	var u usage
	if users != nil {
		u.ctrs, u.running = users(id.String())
	}

	s.mu.Lock()
	records, del, err := s.deleteLocked(nameOrID, id, force, u)
	s.mu.Unlock()
	if del != nil {
		s.finishDelete(del, &records)
	}
	if err != nil {
		return nil, err
	}
	if del != nil && prune {
		s.pruneParents(del.img.Parent, users, &records)
	}
	s.GCDisks(users)
	return records, nil
}

// pruneParents deletes parent and its own parents while each is untagged,
// has no other child and no container: the chain of intermediate images
// that only the deleted image needed.
func (s *Store) pruneParents(parent digest.Digest, users UsersFunc, records *[]image.DeleteResponse) {
	for parent != "" {
		var u usage
		if users != nil {
			u.ctrs, u.running = users(parent.String())
		}
		if len(u.ctrs) > 0 {
			return
		}
		s.mu.Lock()
		img := s.images[parent]
		if img == nil || len(s.namedRefsLocked(parent)) > 0 || s.hasChildrenLocked(parent) {
			s.mu.Unlock()
			return
		}
		recs, del, err := s.deleteLocked(parent.String(), parent, false, u)
		s.mu.Unlock()
		if del != nil {
			s.finishDelete(del, &recs)
		}
		*records = append(*records, recs...)
		if err != nil || del == nil {
			return
		}
		parent = del.img.Parent
	}
}

// hasChildrenLocked reports whether an image names id as its parent.
func (s *Store) hasChildrenLocked(id digest.Digest) bool {
	for _, img := range s.images {
		if img.Parent == id {
			return true
		}
	}
	return false
}

// deletion is what remains to do after an image record went away.
type deletion struct {
	img      *Image
	keepDisk bool
	blobs    []digest.Digest // candidates for collection
	freed    int64
}

func (s *Store) deleteLocked(nameOrID string, id digest.Digest, force bool, u usage) ([]image.DeleteResponse, *deletion, error) {
	if s.images[id] == nil {
		return nil, nil, notFoundString(nameOrID)
	}
	records := []image.DeleteResponse{}
	changed := false
	save := func() error {
		if !changed {
			return nil
		}
		if err := s.saveLocked(); err != nil {
			return errdefs.System(err)
		}
		return nil
	}
	repoRefs := s.namedRefsLocked(id)
	removedRepositoryRef := false

	if !isImageIDPrefix(id.String(), nameOrID) {
		if !force && isSingleReference(repoRefs) && len(u.ctrs) > 0 {
			return nil, nil, errdefs.Conflict(fmt.Errorf("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s",
				nameOrID, truncID(u.ctrs[0]), shortID(id)))
		}
		parsed, err := reference.ParseNormalizedNamed(nameOrID)
		if err != nil {
			return nil, nil, errdefs.InvalidParameter(err)
		}
		parsed = reference.TagNameOnly(parsed)
		delete(s.refs, refKey(parsed))
		changed = true
		records = append(records, image.DeleteResponse{Untagged: reference.FamiliarString(parsed)})

		repoRefs = s.namedRefsLocked(id)
		if _, canonical := parsed.(reference.Canonical); !canonical {
			foundTag := false
			for _, r := range repoRefs {
				if _, c := r.(reference.Canonical); !c && r.Name() == parsed.Name() {
					foundTag = true
					break
				}
			}
			if !foundTag {
				var remaining []reference.Named
				for _, r := range repoRefs {
					if _, c := r.(reference.Canonical); c && r.Name() == parsed.Name() {
						delete(s.refs, refKey(r))
						records = append(records, image.DeleteResponse{Untagged: reference.FamiliarString(r)})
					} else {
						remaining = append(remaining, r)
					}
				}
				repoRefs = remaining
			}
		}
		if len(repoRefs) > 0 {
			return records, nil, save()
		}
		removedRepositoryRef = true
	} else if isSingleReference(repoRefs) {
		mask := conflictHard
		if !force {
			mask |= conflictSoft &^ conflictActiveRef
		}
		if c := s.checkConflictLocked(id, u, mask); c != nil {
			return nil, nil, errdefs.Conflict(c)
		}
		for _, r := range repoRefs {
			delete(s.refs, refKey(r))
			changed = true
			records = append(records, image.DeleteResponse{Untagged: reference.FamiliarString(r)})
		}
	}

	mask := conflictHard
	if !force {
		mask |= conflictSoft
	}
	if c := s.checkConflictLocked(id, u, mask); c != nil {
		if removedRepositoryRef && (len(s.namedRefsLocked(id)) > 0 || c.used) {
			// dockerd: the untag was what was asked for; the image stays.
			return records, nil, save()
		}
		if err := save(); err != nil {
			return nil, nil, err
		}
		return nil, nil, errdefs.Conflict(c)
	}

	for _, r := range s.namedRefsLocked(id) {
		delete(s.refs, refKey(r))
		records = append(records, image.DeleteResponse{Untagged: reference.FamiliarString(r)})
	}
	img := s.images[id]
	delete(s.images, id)
	del := &deletion{img: img, keepDisk: len(u.ctrs) > 0}
	if del.keepDisk {
		s.orphans[id] = img.Size
	}
	changed = true
	if err := save(); err != nil {
		// Put it back: nothing was removed from disk yet.
		s.images[id] = img
		delete(s.orphans, id)
		return nil, nil, err
	}
	records = append(records, image.DeleteResponse{Deleted: id.String()})
	s.log.WithFields(logrus.Fields{"image": id, "keepDisk": del.keepDisk}).Info("deleted image")
	return records, del, nil
}

// finishDelete removes the deleted image's unreferenced blobs and its base
// disk, appending dockerd-style "Deleted: <layer chain ID>" records for the
// layers whose blobs went away.
func (s *Store) finishDelete(del *deletion, records *[]image.DeleteResponse) {
	img := del.img
	if !del.keepDisk {
		path := s.diskPath(img.ID)
		if st, err := os.Stat(path); err == nil {
			del.freed += allocated(st)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.WithError(err).Warn("removing base disk")
		}
	}
	cands := []digest.Digest{img.Target.Digest, img.Manifest.Digest, img.ConfigDescriptor.Digest}
	for _, l := range img.Layers {
		cands = append(cands, l.Digest)
	}
	removed, freed := s.collectBlobs(cands)
	del.freed += freed
	diffIDs := img.Config.RootFS.DiffIDs
	for i, l := range img.Layers {
		if removed[l.Digest] && i < len(diffIDs) {
			*records = append(*records, image.DeleteResponse{Deleted: identity.ChainID(diffIDs[:i+1]).String()})
			removed[l.Digest] = false // once
		}
	}
}

// collectBlobs deletes the candidate blobs no image, reference or running
// pull uses.
func (s *Store) collectBlobs(cands []digest.Digest) (map[digest.Digest]bool, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	used := map[digest.Digest]bool{}
	for d := range s.leases {
		used[d] = true
	}
	for _, img := range s.images {
		used[img.Target.Digest] = true
		used[img.Manifest.Digest] = true
		used[img.ConfigDescriptor.Digest] = true
		for _, l := range img.Layers {
			used[l.Digest] = true
		}
	}
	for k := range s.refs {
		if named, err := reference.ParseNormalizedNamed(k); err == nil {
			if c, ok := named.(reference.Canonical); ok {
				used[c.Digest()] = true
			}
		}
	}
	removed := map[digest.Digest]bool{}
	var freed int64
	ctx := context.Background()
	for _, d := range cands {
		if d == "" || used[d] || removed[d] {
			continue
		}
		info, err := s.cs.Info(ctx, d)
		if err != nil {
			continue
		}
		if err := s.cs.Delete(ctx, d); err != nil {
			s.log.WithError(err).WithField("blob", d).Warn("removing blob")
			continue
		}
		removed[d] = true
		freed += info.Size
	}
	return removed, freed
}

// GCDisks removes the base disks kept for containers of deleted images once
// no container uses them any more. The daemon may call it after removing a
// container; Delete and Prune call it too.
func (s *Store) GCDisks(users UsersFunc) {
	s.mu.Lock()
	var ids []digest.Digest
	for id := range s.orphans {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		if users != nil {
			if ctrs, _ := users(id.String()); len(ctrs) > 0 {
				continue
			}
		}
		s.mu.Lock()
		if _, still := s.orphans[id]; still && s.images[id] == nil {
			delete(s.orphans, id)
			if err := os.Remove(s.diskPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.WithError(err).Warn("removing orphaned base disk")
			}
			if err := s.saveLocked(); err != nil {
				s.log.WithError(err).Warn("saving image state")
			}
		}
		s.mu.Unlock()
	}
}
