package daemon

import (
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
)

// eventBus keeps recent events for `docker events --since` and fans new
// ones out to subscribers. Publishing never blocks: a subscriber that falls
// a full buffer behind is dropped (its stream ends), as dockerd does.
type eventBus struct {
	mu     sync.Mutex
	recent []events.Message // ring of the last maxRecentEvents
	subs   map[chan events.Message]struct{}
}

const (
	maxRecentEvents  = 1024
	subscriberBuffer = 256
)

func newEventBus() *eventBus {
	return &eventBus{subs: map[chan events.Message]struct{}{}}
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
	for ch := range b.subs {
		select {
		case ch <- m:
		default:
			delete(b.subs, ch)
			close(ch)
		}
	}
}

// subscribe returns the recorded events and a channel of new ones; call
// the returned cancel function when done.
func (b *eventBus) subscribe() ([]events.Message, <-chan events.Message, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	past := append([]events.Message(nil), b.recent...)
	ch := make(chan events.Message, subscriberBuffer)
	b.subs[ch] = struct{}{}
	cancel := func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	}
	return past, ch, cancel
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
	// The deprecated fields the CLI's default format still prints.
	if typ == events.ContainerEventType {
		m.Status = string(action)
		m.ID = id
		m.From = attrs["image"]
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
