package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	timetypes "github.com/docker/docker/api/types/time"
	"github.com/docker/docker/errdefs"
)

// eventFilterKeys are the filters GET /events accepts, as dockerd's.
var eventFilterKeys = map[string]bool{
	"config":    true,
	"container": true,
	"daemon":    true,
	"event":     true,
	"image":     true,
	"label":     true,
	"network":   true,
	"node":      true,
	"plugin":    true,
	"scope":     true,
	"secret":    true,
	"service":   true,
	"type":      true,
	"volume":    true,
}

// eventTime parses a since/until value: unix seconds with an optional
// fraction (what the CLI sends), RFC 3339, or a duration before now. The
// zero time means not given.
func eventTime(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	ts, err := timetypes.GetTimestamp(v, now)
	if err != nil {
		return time.Time{}, errdefs.InvalidParameter(fmt.Errorf("invalid value for %q: %w", name, err))
	}
	sec, nsec, err := timetypes.ParseTimestamps(ts, 0)
	if err != nil {
		return time.Time{}, errdefs.InvalidParameter(fmt.Errorf("invalid value for %q: %w", name, err))
	}
	return time.Unix(sec, nsec), nil
}

// getEvents streams events as JSON, one object per line, each flushed:
// first the recorded ones between since and until, then new ones. With
// until in the past the stream ends after the recorded events; with until
// in the future it ends at until.
func (s *Server) getEvents(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	now := time.Now()
	since, err := eventTime("since", r.Form.Get("since"), now)
	if err != nil {
		return err
	}
	until, err := eventTime("until", r.Form.Get("until"), now)
	if err != nil {
		return err
	}
	if !until.IsZero() && until.Before(since) {
		return errdefs.InvalidParameter(fmt.Errorf("`since` time (%s) cannot be after `until` time (%s)", r.Form.Get("since"), r.Form.Get("until")))
	}
	ef, err := parseFilters(r)
	if err != nil {
		return err
	}
	if err := ef.Validate(eventFilterKeys); err != nil {
		return errdefs.InvalidParameter(err)
	}

	ctx, cancel := s.streamContext(ctx)
	defer cancel()
	past, live, unsubscribe := s.backend.SubscribeToEvents(since, until, ef)
	defer unsubscribe()

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	flush()
	enc := json.NewEncoder(w)
	for _, m := range past {
		if err := enc.Encode(m); err != nil {
			return nil
		}
	}
	flush()
	if !until.IsZero() && !until.After(time.Now()) {
		return nil
	}
	var timeout <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case m, ok := <-live:
			if !ok {
				return nil // fell behind: the client reconnects with since
			}
			if !until.IsZero() && m.TimeNano > until.UnixNano() {
				return nil
			}
			if err := enc.Encode(m); err != nil {
				return nil
			}
			flush()
		case <-timeout:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
