package api

import (
	"testing"

	"github.com/jevm/jevm/api/types/backend"
)

// Details are written as dockerd writes them: sorted by key, each key and
// value query-escaped, joined by commas (the docker CLI's service logs
// parses them back).
func TestLogDetails(t *testing.T) {
	got := string(logDetails([]backend.LogAttr{
		{Key: "com.docker.swarm.task.id", Value: "t1"},
		{Key: "com.docker.swarm.node.id", Value: "n 1"},
		{Key: "com.docker.swarm.service.id", Value: "a,b=c"},
	}))
	want := "com.docker.swarm.node.id=n+1,com.docker.swarm.service.id=a%2Cb%3Dc,com.docker.swarm.task.id=t1"
	if got != want {
		t.Fatalf("details %q, want %q", got, want)
	}
	if got := logDetails(nil); len(got) != 0 {
		t.Fatalf("no details: %q", got)
	}
}
