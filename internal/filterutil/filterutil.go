// Package filterutil holds the parts of dockerd's filter and time-argument
// semantics that several API areas share (containers, images, networks,
// logs), so each area does not carry its own copy.
package filterutil

import (
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	timetypes "github.com/docker/docker/api/types/time"
	"github.com/docker/docker/errdefs"
)

// MatchLabels applies the "label" filters (KEY or KEY=VALUE must be there)
// and the "label!" filters of prune (KEY or KEY=VALUE must not be).
func MatchLabels(f filters.Args, labels map[string]string) bool {
	if !f.MatchKVList("label", labels) {
		return false
	}
	for _, neg := range f.Get("label!") {
		k, v, hasV := strings.Cut(neg, "=")
		if got, ok := labels[k]; ok && (!hasV || got == v) {
			return false
		}
	}
	return true
}

// ParseTime reads what the CLI sends for `since`, `until` and prune's
// until filter: unix seconds with an optional fraction, RFC 3339, or a
// duration before now. A bad value is an InvalidParameter error (400).
func ParseTime(v string, now time.Time) (time.Time, error) {
	ts, err := timetypes.GetTimestamp(v, now)
	if err != nil {
		return time.Time{}, errdefs.InvalidParameter(err)
	}
	sec, nsec, err := timetypes.ParseTimestamps(ts, 0)
	if err != nil {
		return time.Time{}, errdefs.InvalidParameter(err)
	}
	return time.Unix(sec, nsec), nil
}
