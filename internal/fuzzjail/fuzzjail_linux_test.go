package fuzzjail

import (
	"fmt"
	"os"
	"testing"
)

// recorder notes a failure instead of ending the test: Check must fail
// for each escape below.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Fatalf(format string, args ...any) {
	if r.failed == "" {
		r.failed = fmt.Sprintf(format, args...)
	}
}

func TestCheckCatchesEscapes(t *testing.T) {
	for name, escape := range map[string]func() error{
		"write to the sentinel": func() error { return os.WriteFile("/sentinel/victim", []byte("changed"), 0o644) },
		"new file beside root":  func() error { return os.WriteFile("/new", nil, 0o644) },
		"hard link out":         func() error { return os.Link("/sentinel/victim", "/root/link") },
		"removed":               func() error { return os.Remove("/sentinel/dir") },
	} {
		sb := New(t)
		if err := sb.Run(t, escape); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r := &recorder{TB: t}
		sb.Check(r, nil)
		if r.failed == "" {
			t.Errorf("%s: Check did not notice", name)
		}
	}
	sb := New(t)
	if err := sb.Run(t, func() error { return os.WriteFile("/root/inside", []byte("fine"), 0o644) }); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	sb.Check(r, nil)
	if r.failed != "" {
		t.Errorf("a write inside the root: %s", r.failed)
	}
}
