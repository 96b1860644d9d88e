package imagestore

import (
	"context"
	"sort"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/jevm/jevm/internal/filterutil"
)

var listFilters = map[string]bool{
	"dangling":  true,
	"label":     true,
	"before":    true,
	"since":     true,
	"reference": true,
	"until":     true,
}

// List returns the images as GET /images/json does (filters: reference,
// dangling, label, before, since, until), newest first.
func (s *Store) List(opts image.ListOptions) ([]image.Summary, error) {
	f := opts.Filters
	if err := f.Validate(listFilters); err != nil {
		return nil, err
	}
	danglingOnly, err := f.GetBoolOrDefault("dangling", false)
	if err != nil {
		return nil, err
	}
	var before, since time.Time
	err = f.WalkValues("before", func(v string) error {
		img, err := s.Resolve(v)
		if err != nil {
			return err
		}
		if c := img.Created(); !c.IsZero() && (before.IsZero() || before.After(c)) {
			before = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = f.WalkValues("until", func(v string) error {
		t, err := filterutil.ParseTime(v, time.Now())
		if err != nil {
			return err
		}
		if before.IsZero() || before.After(t) {
			before = t
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = f.WalkValues("since", func(v string) error {
		img, err := s.Resolve(v)
		if err != nil {
			return err
		}
		if c := img.Created(); since.Before(c) {
			since = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	patterns := f.Get("reference")
	var shared map[digest.Digest]int64
	if opts.SharedSize {
		shared = s.sharedSizes(context.Background())
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	parents := map[digest.Digest]bool{}
	for _, img := range s.images {
		if img.Parent != "" {
			parents[img.Parent] = true
		}
	}
	out := []image.Summary{}
	for id, img := range s.images {
		created := img.Created()
		if !before.IsZero() && (created.IsZero() || !created.Before(before)) {
			continue
		}
		if !since.IsZero() && (created.IsZero() || !created.After(since)) {
			continue
		}
		if f.Contains("label") && !f.MatchKVList("label", img.Config.Config.Labels) {
			continue
		}
		sum := image.Summary{
			ID:          id.String(),
			Created:     unixOrZero(created),
			Size:        img.Size,
			SharedSize:  sharedOrUnknown(shared, id),
			Containers:  -1,
			Labels:      img.Config.Config.Labels,
			RepoTags:    []string{},
			RepoDigests: []string{},
			ParentID:    img.Parent.String(),
		}
		for _, named := range s.namedRefsLocked(id) {
			if len(patterns) > 0 {
				found := false
				for _, p := range patterns {
					ok, err := reference.FamiliarMatch(p, named)
					if err != nil {
						return nil, errdefs.InvalidParameter(err)
					}
					if ok {
						found = true
						break
					}
				}
				if !found {
					continue
				}
			}
			switch named.(type) {
			case reference.Canonical:
				sum.RepoDigests = append(sum.RepoDigests, reference.FamiliarString(named))
			case reference.NamedTagged:
				sum.RepoTags = append(sum.RepoTags, reference.FamiliarString(named))
			}
		}
		if len(sum.RepoTags) == 0 && len(sum.RepoDigests) == 0 {
			// An untagged parent is an intermediate image (of a build or a
			// commit): dockerd lists it only with -a, and never as dangling.
			if parents[id] && (!opts.All || danglingOnly) {
				continue
			}
			if f.Contains("dangling") && !danglingOnly {
				continue
			}
			if len(patterns) > 0 {
				continue
			}
		} else if danglingOnly && len(sum.RepoTags) > 0 {
			continue
		}
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Created != out[j].Created {
			return out[i].Created > out[j].Created
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// sharedOrUnknown is an image's SharedSize: -1 unless it was asked for.
func sharedOrUnknown(shared map[digest.Digest]int64, id digest.Digest) int64 {
	if shared == nil {
		return -1
	}
	return shared[id]
}
