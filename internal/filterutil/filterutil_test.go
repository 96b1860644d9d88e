package filterutil

import (
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/errdefs"
)

func TestMatchLabels(t *testing.T) {
	labels := map[string]string{"a": "1", "b": "2"}
	for _, c := range []struct {
		args []filters.KeyValuePair
		want bool
	}{
		{nil, true},
		{[]filters.KeyValuePair{filters.Arg("label", "a")}, true},
		{[]filters.KeyValuePair{filters.Arg("label", "a=1")}, true},
		{[]filters.KeyValuePair{filters.Arg("label", "a=2")}, false},
		{[]filters.KeyValuePair{filters.Arg("label", "c")}, false},
		{[]filters.KeyValuePair{filters.Arg("label!", "a")}, false},
		{[]filters.KeyValuePair{filters.Arg("label!", "a=2")}, true},
		{[]filters.KeyValuePair{filters.Arg("label!", "c")}, true},
		{[]filters.KeyValuePair{filters.Arg("label", "a"), filters.Arg("label!", "b=2")}, false},
	} {
		if got := MatchLabels(filters.NewArgs(c.args...), labels); got != c.want {
			t.Errorf("%v: got %v", c.args, got)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for in, want := range map[string]time.Time{
		"1699999990.5":         time.Unix(1699999990, 5e8),
		"10m":                  now.Add(-10 * time.Minute),
		"2023-11-14T22:13:20Z": time.Unix(1_700_000_000, 0),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseTime("yesterday-ish", now); !errdefs.IsInvalidParameter(err) {
		t.Errorf("bad value: %v", err)
	}
}
