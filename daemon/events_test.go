package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

func evContainer(id, name, image string, labels map[string]string) *Container {
	return &Container{ID: id + strings.Repeat("0", 64-len(id)), Name: name, ImageRef: image, Config: &container.Config{Labels: labels}}
}

func TestEventFilters(t *testing.T) {
	d := &Daemon{events: newEventBus()}
	web := evContainer("abc", "web", "busybox", map[string]string{"app": "shop", "tier": "front"})
	db := evContainer("def", "db", "registry.local:5000/postgres:16", nil)
	d.containerEvent(web, events.ActionCreate, nil)
	d.containerEvent(web, events.ActionDie, map[string]string{"exitCode": "3"})
	d.containerEvent(db, events.ActionStart, nil)
	d.imageEvent(events.ActionPull, "busybox:latest", "busybox:latest", nil)
	d.imageEvent(events.ActionTag, "sha256:1111", "myrepo/thing:v1", nil)
	d.logEvent(events.ContainerEventType, events.ActionPrune, "", map[string]string{"reclaimed": "0"})
	d.containerEvent(web, events.Action("exec_start: sh -c true"), nil)
	d.containerEvent(web, events.Action("health_status: healthy"), nil)

	all, _, cancel := d.events.subscribe()
	cancel()
	if len(all) != 8 {
		t.Fatalf("recorded %d events", len(all))
	}
	if m := all[1]; m.Status != "die" || m.ID != web.ID || m.From != "busybox" || m.Scope != "local" || m.Actor.Attributes["exitCode"] != "3" || m.Actor.Attributes["app"] != "shop" || m.Actor.Attributes["name"] != "web" || m.TimeNano == 0 {
		t.Fatalf("die event %+v", m)
	}
	if m := all[3]; m.Type != events.ImageEventType || m.Status != "pull" || m.ID != "busybox:latest" || m.From != "" {
		t.Fatalf("pull event %+v", m)
	}

	summary := func(f filters.Args) string {
		ef := newEventFilter(f)
		var out []string
		for _, m := range all {
			if ef.match(m) {
				id := m.Actor.ID
				if m.Type == events.ContainerEventType && len(id) == 64 {
					id = id[:3]
				}
				out = append(out, string(m.Action)+"/"+id)
			}
		}
		return strings.Join(out, " ")
	}
	kv := func(pairs ...string) filters.Args {
		a := filters.NewArgs()
		for i := 0; i+1 < len(pairs); i += 2 {
			a.Add(pairs[i], pairs[i+1])
		}
		return a
	}
	for _, c := range []struct {
		f    filters.Args
		want string
	}{
		{kv("type", "image"), "pull/busybox:latest tag/sha256:1111"},
		{kv("container", "web"), "create/abc die/abc exec_start: sh -c true/abc health_status: healthy/abc"},
		{kv("container", "abc"), "create/abc die/abc exec_start: sh -c true/abc health_status: healthy/abc"},
		{kv("container", "db", "container", "web", "event", "start"), "start/def"},
		{kv("event", "die", "event", "pull"), "die/abc pull/busybox:latest"},
		{kv("event", "exec_start"), "exec_start: sh -c true/abc"},
		{kv("event", "health_status"), "health_status: healthy/abc"},
		{kv("label", "app=shop", "event", "create"), "create/abc"},
		{kv("label", "tier"), "create/abc die/abc exec_start: sh -c true/abc health_status: healthy/abc"},
		{kv("label", "app=other"), ""},
		{kv("image", "busybox"), "create/abc die/abc pull/busybox:latest exec_start: sh -c true/abc health_status: healthy/abc"},
		{kv("image", "registry.local:5000/postgres"), "start/def"},
		{kv("image", "myrepo/thing:v1"), "tag/sha256:1111"},
		{kv("image", "sha256:1111"), "tag/sha256:1111"},
		{kv("type", "container", "event", "prune"), "prune/"},
		{kv("scope", "swarm"), ""},
		{kv("scope", "local", "type", "image"), "pull/busybox:latest tag/sha256:1111"},
	} {
		if got := summary(c.f); got != c.want {
			t.Errorf("filter %v:\n got %q\nwant %q", c.f, got, c.want)
		}
	}
}

func TestSubscribeToEvents(t *testing.T) {
	d := &Daemon{events: newEventBus()}
	c := evContainer("abc", "web", "busybox", nil)
	d.containerEvent(c, events.ActionCreate, nil)
	time.Sleep(2 * time.Millisecond)
	mid := time.Now()
	time.Sleep(2 * time.Millisecond)
	d.containerEvent(c, events.ActionStart, nil)
	d.imageEvent(events.ActionPull, "busybox:latest", "busybox:latest", nil)

	actions := func(ms []events.Message) string {
		var s []string
		for _, m := range ms {
			s = append(s, string(m.Action))
		}
		return strings.Join(s, ",")
	}
	// Neither since nor until: only new events.
	past, live, cancel := d.SubscribeToEvents(time.Time{}, time.Time{}, filters.NewArgs())
	if len(past) != 0 {
		t.Fatalf("past without since: %v", actions(past))
	}
	cancel()
	if _, ok := <-live; ok {
		t.Fatal("channel open after cancel")
	}
	past, _, cancel = d.SubscribeToEvents(mid, time.Time{}, filters.NewArgs())
	cancel()
	if got := actions(past); got != "start,pull" {
		t.Fatalf("since mid: %s", got)
	}
	past, _, cancel = d.SubscribeToEvents(time.Time{}, mid, filters.NewArgs())
	cancel()
	if got := actions(past); got != "create" {
		t.Fatalf("until mid: %s", got)
	}
	past, live, cancel = d.SubscribeToEvents(mid.Add(-time.Hour), time.Time{}, filters.NewArgs(filters.Arg("type", "container")))
	defer cancel()
	if got := actions(past); got != "create,start" {
		t.Fatalf("filtered: %s", got)
	}
	d.imageEvent(events.ActionTag, "sha256:1", "x:1", nil)
	d.containerEvent(c, events.ActionDie, map[string]string{"exitCode": "0"})
	select {
	case m := <-live:
		if m.Action != events.ActionDie {
			t.Fatalf("live event %+v, want the die (the tag is filtered out)", m)
		}
	case <-time.After(time.Second):
		t.Fatal("no live event")
	}
}

func TestEventBusDropsSlowSubscriber(t *testing.T) {
	b := newEventBus()
	_, live, cancel := b.subscribe()
	defer cancel()
	for i := 0; i < subscriberBuffer+1; i++ {
		b.publish(events.Message{Action: events.ActionStart})
	}
	n := 0
	for range live {
		n++
	}
	if n != subscriberBuffer {
		t.Fatalf("got %d events before the channel closed", n)
	}
	for i := 0; i < maxRecentEvents+10; i++ {
		b.publish(events.Message{Action: events.ActionStart, TimeNano: int64(i)})
	}
	past, _, cancel2 := b.subscribe()
	cancel2()
	if len(past) != maxRecentEvents || past[len(past)-1].TimeNano != maxRecentEvents+9 {
		t.Fatalf("ring: %d events, last %d", len(past), past[len(past)-1].TimeNano)
	}
}

// subscribe returns all recorded events and a channel of all new ones.
func (b *eventBus) subscribe() ([]events.Message, <-chan events.Message, func()) {
	return b.subscribeMatching(nil, nil)
}
