package daemon

import (
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// eventBus keeps recent events for `docker events --since` and fans new
// ones out to subscribers. Publishing never blocks: a subscriber that falls
// a full buffer behind is dropped (its stream ends), as dockerd does.
type eventBus struct {
	mu     sync.Mutex
	recent []events.Message // ring of the last maxRecentEvents
	subs   map[chan events.Message]func(events.Message) bool
}

const (
	maxRecentEvents  = 1024
	subscriberBuffer = 256
)

func newEventBus() *eventBus {
	return &eventBus{subs: map[chan events.Message]func(events.Message) bool{}}
}

// publish records an event and delivers it to subscribers.
func (b *eventBus) publish(m events.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.recent) == maxRecentEvents {
		copy(b.recent, b.recent[1:])
		b.recent = b.recent[:maxRecentEvents-1]
	}
	b.recent = append(b.recent, m)
	for ch, match := range b.subs {
		if match != nil && !match(m) {
			continue
		}
		select {
		case ch <- m:
		default:
			delete(b.subs, ch)
			close(ch)
		}
	}
}

// subscribeMatching returns the recorded events past selects (nil: all
// that match) and a channel of the new events match accepts (nil: all);
// call the returned cancel function when done.
// Recording and subscribing happen at once, so no event falls between.
func (b *eventBus) subscribeMatching(match, past func(events.Message) bool) ([]events.Message, <-chan events.Message, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var old []events.Message
	for _, m := range b.recent {
		if (match == nil || match(m)) && (past == nil || past(m)) {
			old = append(old, m)
		}
	}
	ch := make(chan events.Message, subscriberBuffer)
	b.subs[ch] = match
	cancel := func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	}
	return old, ch, cancel
}

// SubscribeToEvents serves GET /events: the recorded events from since to
// until that match ef (none when both are zero; a zero bound is open, as
// with dockerd), and a channel of the new events that match. The channel
// is closed when the subscriber falls too far behind or cancel is called.
func (d *Daemon) SubscribeToEvents(since, until time.Time, ef filters.Args) ([]events.Message, <-chan events.Message, func()) {
	f := newEventFilter(ef)
	past := func(m events.Message) bool {
		if since.IsZero() && until.IsZero() {
			return false
		}
		if !since.IsZero() && m.TimeNano < since.UnixNano() {
			return false
		}
		return until.IsZero() || m.TimeNano <= until.UnixNano()
	}
	return d.events.subscribeMatching(f.match, past)
}

// logEvent publishes an engine event. attrs may be nil; for containers the
// daemon adds "name" and "image" (use containerEvent).
func (d *Daemon) logEvent(typ events.Type, action events.Action, id string, attrs map[string]string) {
	now := time.Now()
	if attrs == nil {
		attrs = map[string]string{}
	}
	m := events.Message{
		Type:     typ,
		Action:   action,
		Actor:    events.Actor{ID: id, Attributes: attrs},
		Scope:    "local",
		Time:     now.Unix(),
		TimeNano: now.UnixNano(),
	}
	// The deprecated fields the CLI's default format still prints, filled
	// as dockerd does.
	switch typ {
	case events.ContainerEventType:
		m.Status = string(action)
		m.ID = id
		m.From = attrs["image"]
	case events.ImageEventType:
		m.Status = string(action)
		m.ID = id
	}
	d.events.publish(m)
}

// containerEvent publishes a container event with dockerd's attributes
// (name, image, and the container's labels). Callers hold c.mu.
func (d *Daemon) containerEvent(c *Container, action events.Action, extra map[string]string) {
	attrs := map[string]string{"name": c.Name, "image": c.ImageRef}
	for k, v := range c.Config.Labels {
		attrs[k] = v
	}
	for k, v := range extra {
		attrs[k] = v
	}
	d.logEvent(events.ContainerEventType, action, c.ID, attrs)
}

// imageEvent publishes an image event; name is the reference the action
// was about (dockerd's "name" attribute).
func (d *Daemon) imageEvent(action events.Action, id, name string, extra map[string]string) {
	attrs := map[string]string{}
	if name != "" {
		attrs["name"] = name
	}
	for k, v := range extra {
		attrs[k] = v
	}
	d.logEvent(events.ImageEventType, action, id, attrs)
}
