package daemon

import (
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// eventFilter applies `docker events --filter` the way dockerd does:
// every given key must match; values of one key are alternatives.
type eventFilter struct {
	args filters.Args
}

func newEventFilter(args filters.Args) *eventFilter { return &eventFilter{args: args} }

func (f *eventFilter) match(m events.Message) bool {
	a := f.args
	return f.matchAction(m) &&
		a.ExactMatch("type", string(m.Type)) &&
		(!a.Contains("scope") || a.ExactMatch("scope", m.Scope)) &&
		f.matchName(m, events.ContainerEventType) &&
		f.matchName(m, events.NetworkEventType) &&
		f.matchName(m, events.VolumeEventType) &&
		f.matchName(m, events.PluginEventType) &&
		f.matchName(m, events.DaemonEventType) &&
		f.matchImage(m) &&
		(!a.Contains("label") || a.MatchKVList("label", m.Actor.Attributes))
}

// matchAction is the "event" filter. "exec_create", "exec_start" and
// "health_status" also match their longer forms ("exec_start: sh -c ...",
// "health_status: healthy"), as with dockerd.
func (f *eventFilter) matchAction(m events.Message) bool {
	for _, v := range f.args.Get("event") {
		switch v {
		case "exec_create", "exec_start", "health_status":
			return f.args.FuzzyMatch("event", string(m.Action))
		}
	}
	return f.args.ExactMatch("event", string(m.Action))
}

// matchName applies the filter named after an object type ("container",
// "network", ...): an ID prefix or the name. Events of other types do not
// match such a filter.
func (f *eventFilter) matchName(m events.Message, typ events.Type) bool {
	key := string(typ)
	if !f.args.Contains(key) {
		return true
	}
	if m.Type != typ {
		return false
	}
	return f.args.FuzzyMatch(key, m.Actor.ID) || f.args.FuzzyMatch(key, m.Actor.Attributes["name"])
}

// matchImage is the "image" filter: the image of a container event, or
// the image an image event is about, by ID or reference, with or without
// its tag.
func (f *eventFilter) matchImage(m events.Message) bool {
	if !f.args.Contains("image") {
		return true
	}
	id, name := m.Actor.ID, m.Actor.Attributes["image"]
	if m.Type == events.ImageEventType {
		name = m.Actor.Attributes["name"]
	}
	for _, v := range []string{id, name, familiarName(id), familiarName(name)} {
		if v != "" && f.args.ExactMatch("image", v) {
			return true
		}
	}
	return false
}

// familiarName drops a reference's tag and default registry
// ("docker.io/library/busybox:1.36" -> "busybox").
func familiarName(s string) string {
	ref, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return s
	}
	return reference.FamiliarName(ref)
}
