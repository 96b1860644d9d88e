package filterutil

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/errdefs"
)

// FuzzMatchLabels: any filters argument that parses, against any labels:
// no panic, and the answer follows the rule (every "label" present, no
// "label!" present).
func FuzzMatchLabels(f *testing.F) {
	f.Add(`{"label":{"a=b":true}}`, "a", "b")
	f.Add(`{"label":{"a":true},"label!":{"a=c":true}}`, "a", "c")
	f.Add(`{"label!":{"=":true}}`, "", "")
	f.Add(`{"label":["a=b=c"]}`, "a", "b=c")
	f.Add(`{"label":{"":true}}`, "", "x")
	f.Fuzz(func(t *testing.T, arg, key, val string) {
		args, err := filters.FromJSON(arg)
		if err != nil {
			if !errdefs.IsInvalidParameter(err) {
				t.Fatalf("FromJSON error is not invalid-parameter: %v", err)
			}
			return
		}
		labels := map[string]string{key: val}
		got := MatchLabels(args, labels)
		want := true
		for _, l := range args.Get("label") {
			k, v, hasV := strings.Cut(l, "=")
			if g, ok := labels[k]; !ok || hasV && g != v {
				want = false
			}
		}
		for _, l := range args.Get("label!") {
			k, v, hasV := strings.Cut(l, "=")
			if g, ok := labels[k]; ok && (!hasV || g == v) {
				want = false
			}
		}
		if got != want {
			t.Fatalf("MatchLabels(%s, %v) = %v, want %v", arg, labels, got, want)
		}
	})
}

// FuzzParseTime: since, until and prune's until accept anything the
// client sends without panicking; a refusal is InvalidParameter (400);
// plain unix seconds mean those seconds, unless the value is also a
// duration ("+0", "-0": dockerd reads those as "now").
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"1700000000", "1700000000.5", "-1", "10m", "-10m", "2025-01-02T03:04:05Z",
		"2025-01-02", "2025-01-02T03:04:05.999999999+01:00", "1e9", "9999999999999999999", ".5", "1.", "", "x", "1h1h1h", "+0", "-0", "0"} {
		f.Add(s)
	}
	now := time.Unix(1735689600, 0)
	f.Fuzz(func(t *testing.T, v string) {
		got, err := ParseTime(v, now)
		if err != nil {
			if !errdefs.IsInvalidParameter(err) {
				t.Fatalf("ParseTime(%q): %v is not invalid-parameter", v, err)
			}
			return
		}
		_, durErr := time.ParseDuration(v)
		if n, perr := strconv.ParseInt(v, 10, 64); perr == nil && (durErr != nil || v == "0") && got.Unix() != n {
			t.Fatalf("ParseTime(%q) = %d", v, got.Unix())
		}
	})
}
