package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// SubscribeToEvents makes the shared fake a Backend: no events, ever.
func (f *fakeBackend) SubscribeToEvents(since, until time.Time, ef filters.Args) ([]events.Message, <-chan events.Message, func()) {
	return nil, make(chan events.Message), func() {}
}

// eventsFake is a fake backend with an event source the test drives.
type eventsFake struct {
	*fakeBackend
	mu         sync.Mutex
	past       []events.Message
	live       chan events.Message
	since      time.Time
	until      time.Time
	ef         filters.Args
	subscribed chan struct{}
	cancelled  chan struct{}
}

func (f *eventsFake) SubscribeToEvents(since, until time.Time, ef filters.Args) ([]events.Message, <-chan events.Message, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.since, f.until, f.ef = since, until, ef
	close(f.subscribed)
	var once sync.Once
	return f.past, f.live, func() { once.Do(func() { close(f.cancelled) }) }
}

func newEventsEnv(t *testing.T, past ...events.Message) (*eventsFake, *httptest.Server) {
	f := &eventsFake{
		fakeBackend: newFakeBackend(),
		past:        past,
		live:        make(chan events.Message, 16),
		subscribed:  make(chan struct{}),
		cancelled:   make(chan struct{}),
	}
	srv := NewServer(f, Options{Logger: testLogger(t)})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return f, hs
}

func ev(action events.Action, id string, t time.Time) events.Message {
	return events.Message{
		Type:     events.ContainerEventType,
		Action:   action,
		Status:   string(action),
		ID:       id,
		Actor:    events.Actor{ID: id, Attributes: map[string]string{"name": "c-" + id}},
		Scope:    "local",
		Time:     t.Unix(),
		TimeNano: t.UnixNano(),
	}
}

type eventLine struct {
	m   events.Message
	err error
}

// readEvents decodes the stream's lines onto a channel, closed at its end.
func readEvents(t *testing.T, resp *http.Response) <-chan eventLine {
	ch := make(chan eventLine, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var m events.Message
			err := json.Unmarshal(sc.Bytes(), &m)
			ch <- eventLine{m, err}
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan eventLine) events.Message {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("event stream ended early")
		}
		if l.err != nil {
			t.Fatalf("bad event line: %v", l.err)
		}
		return l.m
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return events.Message{}
}

func expectEnd(t *testing.T, ch <-chan eventLine, within time.Duration) {
	t.Helper()
	select {
	case l, ok := <-ch:
		if ok {
			t.Fatalf("unexpected event %+v", l.m)
		}
	case <-time.After(within):
		t.Fatalf("stream did not end within %s", within)
	}
}

func TestEventsPastOnly(t *testing.T) {
	base := time.Now().Add(-time.Minute)
	f, hs := newEventsEnv(t, ev("create", "a", base), ev("start", "a", base.Add(time.Second)))
	since := base.Add(-time.Second)
	until := time.Now().Add(-time.Second)
	q := url.Values{}
	q.Set("since", since.Format(time.RFC3339Nano))
	q.Set("until", unixString(until))
	q.Set("filters", `{"type":{"container":true},"label":{"a=b":true}}`)
	resp, err := http.Get(hs.URL + "/v1.51/events?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := readEvents(t, resp)
	if m := next(t, ch); m.Action != "create" || m.Actor.ID != "a" || m.Actor.Attributes["name"] != "c-a" || m.Status != "create" || m.ID != "a" {
		t.Fatalf("first event %+v", m)
	}
	if m := next(t, ch); m.Action != "start" {
		t.Fatalf("second event %+v", m)
	}
	expectEnd(t, ch, 5*time.Second)

	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.since.Equal(since) || f.until.UnixNano() != until.UnixNano() {
		t.Fatalf("backend got since %v until %v, want %v %v", f.since, f.until, since, until)
	}
	if !f.ef.ExactMatch("type", "container") || f.ef.ExactMatch("type", "image") || !f.ef.Contains("label") {
		t.Fatalf("backend got filters %v", f.ef)
	}
	select {
	case <-f.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not cancelled at the end of the stream")
	}
}

// unixString formats t as the CLI sends since/until: "seconds.nanoseconds".
func unixString(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

func TestEventsLiveStreamFlushed(t *testing.T) {
	f, hs := newEventsEnv(t, ev("create", "old", time.Now()))
	resp, err := http.Get(hs.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ch := readEvents(t, resp)
	<-f.subscribed
	// The backend returns past events only when asked for; whatever it
	// returns is sent. Here: "old", then each live event as it comes.
	if m := next(t, ch); m.Actor.ID != "old" {
		t.Fatalf("past event %+v", m)
	}
	for _, id := range []string{"x", "y", "z"} {
		f.live <- ev("die", id, time.Now())
		// Each event arrives on its own: the stream is flushed per event.
		if m := next(t, ch); m.Actor.ID != id || m.Action != "die" {
			t.Fatalf("live event %+v, want %s", m, id)
		}
	}
	// A closed subscription (the subscriber fell behind) ends the stream.
	close(f.live)
	expectEnd(t, ch, 5*time.Second)
}

func TestEventsUntilInFuture(t *testing.T) {
	f, hs := newEventsEnv(t)
	until := time.Now().Add(700 * time.Millisecond)
	start := time.Now()
	resp, err := http.Get(hs.URL + "/events?until=" + unixString(until))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ch := readEvents(t, resp)
	<-f.subscribed
	f.live <- ev("start", "a", time.Now())
	if m := next(t, ch); m.Actor.ID != "a" {
		t.Fatalf("event %+v", m)
	}
	expectEnd(t, ch, 5*time.Second)
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("stream ended after %s, before until", d)
	}
	// An event stamped after until is not sent even if it is delivered.
	f2, hs2 := newEventsEnv(t)
	resp2, err := http.Get(hs2.URL + "/events?until=" + unixString(time.Now().Add(3*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	ch2 := readEvents(t, resp2)
	<-f2.subscribed
	f2.live <- ev("start", "late", time.Now().Add(time.Hour))
	expectEnd(t, ch2, 5*time.Second)
}

func TestEventsClientGoneCancels(t *testing.T) {
	f, hs := newEventsEnv(t)
	req, _ := http.NewRequest("GET", hs.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	<-f.subscribed
	resp.Body.Close()
	select {
	case <-f.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not cancelled after the client went away")
	}
}

func TestEventsBadParameters(t *testing.T) {
	_, hs := newEventsEnv(t)
	for _, c := range []struct{ query, msg string }{
		{"filters=" + url.QueryEscape(`{"nope":{"x":true}}`), "invalid filter 'nope'"},
		{"filters=notjson", ""},
		{"since=yesterday", "since"},
		{"until=abc", "until"},
		{"since=200&until=100", "cannot be after"},
	} {
		resp, err := http.Get(hs.URL + "/events?" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Message string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(body.Message, c.msg) {
			t.Errorf("%s: %d %q, want 400 with %q", c.query, resp.StatusCode, body.Message, c.msg)
		}
	}
}
