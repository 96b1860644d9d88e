package daemon

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

// In-memory files: checked, bounded, handed to the start request and
// never in the container's saved configuration.
func TestSetContainerFiles(t *testing.T) {
	d := testDaemon(t)
	c := testContainer(t, d, "files")
	ctx := context.Background()
	for name, files := range map[string][]backend.ContainerFile{
		"relative":  {{Target: "run/secrets/x"}},
		"root":      {{Target: "/"}},
		"twice":     {{Target: "/a"}, {Target: "/b/../a"}},
		"too large": {{Target: "/a", Data: make([]byte, maxMemFilesBytes/2+1)}, {Target: "/b", Data: make([]byte, maxMemFilesBytes/2)}},
	} {
		if err := d.SetContainerFiles(ctx, c.ID, files); !errdefs.IsInvalidParameter(err) {
			t.Errorf("%s: %v, want an invalid parameter", name, err)
		}
	}
	if err := d.SetContainerFiles(ctx, "nosuch", nil); !errdefs.IsNotFound(err) {
		t.Errorf("an unknown container: %v", err)
	}
	if err := d.SetContainerFiles(ctx, c.ID, []backend.ContainerFile{{Target: "/run/secrets//pw", Data: []byte("hunter2"), UID: 1, GID: 2, Mode: 0o4755}}); err != nil {
		t.Fatal(err)
	}
	req, err := d.startRequest(c, &mountSession{})
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Files) != 1 || req.Files[0].Target != "/run/secrets/pw" || string(req.Files[0].Data) != "hunter2" || req.Files[0].Mode != 0o755 || req.Files[0].UID != 1 {
		t.Fatalf("start request files: %+v", req.Files)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "aHVudGVyMg") || strings.Contains(string(b), "hunter2") {
		t.Fatalf("the saved configuration holds the file: %s", b)
	}
}
