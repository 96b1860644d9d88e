package api

import (
	"encoding/json"
	"testing"
)

// Image inspect carries the fields each API version was written against:
// compose v1 (API 1.41) reads ContainerConfig.
func TestImageInspectVersionGates(t *testing.T) {
	e := newTestEnv(t)
	e.fake.images["busybox:latest"] = "sha256:abc"
	get := func(v string) map[string]json.RawMessage {
		resp, body := e.do("GET", "/"+v+"/images/busybox/json", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", v, resp.StatusCode, body)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	old := get("v1.41")
	if _, ok := old["ContainerConfig"]; !ok {
		t.Errorf("API 1.41: no ContainerConfig")
	}
	cur := get("v1.51")
	for _, k := range []string{"ContainerConfig", "VirtualSize", "Container"} {
		if _, ok := cur[k]; ok {
			t.Errorf("API 1.51 has %s", k)
		}
	}
}
