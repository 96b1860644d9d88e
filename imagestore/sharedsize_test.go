package imagestore

import (
	"testing"

	"github.com/docker/docker/api/types/image"
)

func TestListSharedSize(t *testing.T) {
	s := newTestStore(t, "")
	base := makeLayer(t, dir("bin/", 0o755), file("bin/sh", "12345678"))
	a := recordImage(t, s, makeImage(t, []string{"sh"}, nil, base, makeLayer(t, file("a", "aaa"))), "a:1")
	b := recordImage(t, s, makeImage(t, []string{"sh"}, map[string]string{"b": "1"}, base), "b:1")
	c := recordImage(t, s, makeImage(t, []string{"sh"}, map[string]string{"c": "1"}, makeLayer(t, file("c", "cc"))), "c:1")

	got := func(opts image.ListOptions) map[string]int64 {
		l, err := s.List(opts)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, i := range l {
			out[i.ID] = i.SharedSize
		}
		return out
	}
	plain := got(image.ListOptions{})
	if plain[a.ID.String()] != -1 || plain[c.ID.String()] != -1 {
		t.Errorf("SharedSize without shared-size: %v", plain)
	}
	shared := got(image.ListOptions{SharedSize: true})
	if shared[a.ID.String()] != 8 || shared[b.ID.String()] != 8 || shared[c.ID.String()] != 0 {
		t.Errorf("SharedSize: %v (want 8, 8, 0)", shared)
	}
}
