package imagestore

import (
	"errors"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/jevm/jevm/internal/filterutil"
)

var pruneFilters = map[string]bool{
	"dangling": true,
	"label":    true,
	"label!":   true,
	"until":    true,
}

// Prune deletes unused images as POST /images/prune does: dangling ones
// (no tag) unless the filters say dangling=false, in which case every image
// no container uses; filters: dangling, label, label!, until.
func (s *Store) Prune(pf filters.Args, users UsersFunc) (*image.PruneReport, error) {
	if !s.pruneRunning.CompareAndSwap(false, true) {
		return nil, errdefs.Conflict(errors.New("a prune operation is already running"))
	}
	defer s.pruneRunning.Store(false)
	if err := pf.Validate(pruneFilters); err != nil {
		return nil, err
	}
	danglingOnly, err := pf.GetBoolOrDefault("dangling", true)
	if err != nil {
		return nil, err
	}
	var until time.Time
	if pf.Contains("until") {
		vals := pf.Get("until")
		if len(vals) > 1 {
			return nil, errdefs.InvalidParameter(errors.New("more than one until filter specified"))
		}
		if until, err = filterutil.ParseTime(vals[0], time.Now()); err != nil {
			return nil, err
		}
	}

	type cand struct {
		id   digest.Digest
		refs []string
	}
	var cands []cand
	s.mu.Lock()
	for id, img := range s.images {
		if !until.IsZero() && (img.Config.Created == nil || img.Config.Created.After(until)) {
			continue
		}
		labels := img.Config.Config.Labels
		if !pf.MatchKVList("label", labels) {
			continue
		}
		if pf.Contains("label!") && pf.MatchKVList("label!", labels) {
			continue
		}
		if danglingOnly && s.hasChildrenLocked(id) {
			continue // an intermediate image, in use by its child
		}
		c := cand{id: id}
		refs := s.namedRefsLocked(id)
		if len(refs) > 0 {
			hasTag := false
			for _, r := range refs {
				if _, ok := r.(reference.NamedTagged); ok {
					hasTag = true
				}
			}
			if danglingOnly && hasTag {
				continue
			}
			for _, r := range refs {
				c.refs = append(c.refs, r.String())
			}
		}
		cands = append(cands, c)
	}
	s.mu.Unlock()

	rep := &image.PruneReport{ImagesDeleted: []image.DeleteResponse{}}
	for _, c := range cands {
		targets := c.refs
		if len(targets) == 0 {
			targets = []string{c.id.Encoded()}
		}
		for _, t := range targets {
			var u usage
			if users != nil {
				u.ctrs, u.running = users(c.id.String())
			}
			s.mu.Lock()
			if s.images[c.id] == nil {
				s.mu.Unlock()
				break
			}
			recs, del, err := s.deleteLocked(t, c.id, false, u)
			s.mu.Unlock()
			if del != nil {
				s.finishDelete(del, &recs)
				rep.SpaceReclaimed += uint64(del.freed)
			}
			if err != nil {
				if !errdefs.IsConflict(err) {
					s.log.WithError(err).WithField("image", t).Warn("failed to prune image")
				}
				continue
			}
			rep.ImagesDeleted = append(rep.ImagesDeleted, recs...)
		}
	}
	s.GCDisks(users)
	return rep, nil
}
