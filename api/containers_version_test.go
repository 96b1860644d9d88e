package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
)

// Create and list adjust what older clients send and see, as dockerd's
// router does for each API version.
func TestContainerCreateVersionAdjustments(t *testing.T) {
	e := newTestEnv(t)
	e.fake.addImage("busybox:latest")
	create := func(v, query, body string) (int, string) {
		t.Helper()
		resp, b := e.do("POST", "/"+v+"/containers/create"+query, body)
		return resp.StatusCode, string(b)
	}

	// Before API 1.40 an unset IPC mode means dockerd's old default,
	// "shareable"; later clients get the daemon's default.
	if code, body := create("v1.39", "", `{"Image":"busybox"}`); code != 201 || e.fake.lastHostConfig.IpcMode != container.IPCModeShareable {
		t.Fatalf("1.39: %d %s IpcMode=%q", code, body, e.fake.lastHostConfig.IpcMode)
	}
	if code, body := create("v1.39", "", `{"Image":"busybox","HostConfig":{"IpcMode":"private"}}`); code != 201 || e.fake.lastHostConfig.IpcMode != container.IPCModePrivate {
		t.Fatalf("1.39 private: %d %s IpcMode=%q", code, body, e.fake.lastHostConfig.IpcMode)
	}
	if code, body := create("v1.40", "", `{"Image":"busybox"}`); code != 201 || e.fake.lastHostConfig.IpcMode != "" {
		t.Fatalf("1.40: %d %s IpcMode=%q", code, body, e.fake.lastHostConfig.IpcMode)
	}

	// Annotations came with API 1.43.
	ann := `{"Image":"busybox","HostConfig":{"Annotations":{"foo":"bar"}}}`
	if code, _ := create("v1.42", "", ann); code != 201 || e.fake.lastHostConfig.Annotations != nil {
		t.Fatalf("1.42 annotations kept: %v", e.fake.lastHostConfig.Annotations)
	}
	if code, _ := create("v1.43", "", ann); code != 201 || e.fake.lastHostConfig.Annotations["foo"] != "bar" {
		t.Fatalf("1.43 annotations lost: %v", e.fake.lastHostConfig.Annotations)
	}

	// Several networks at create came with API 1.44.
	multi := `{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"net2":{},"net1":{}}}}`
	code, body := create("v1.43", "", multi)
	if code != 400 || !strings.Contains(body, "Container cannot be created with multiple network endpoints: net1, net2") {
		t.Fatalf("1.43 multiple endpoints: %d %s", code, body)
	}
	if code, body := create("v1.44", "", multi); code != 201 || len(e.fake.lastNetConfig.EndpointsConfig) != 2 {
		t.Fatalf("1.44 multiple endpoints: %d %s", code, body)
	}

	// Gateway priorities came with API 1.48: reset before, as dockerd.
	prio := `{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"net1":{"GwPriority":100}}}}`
	if code, body := create("v1.47", "", prio); code != 201 || e.fake.lastNetConfig.EndpointsConfig["net1"].GwPriority != 0 {
		t.Fatalf("1.47 GwPriority kept: %d %s", code, body)
	}
	if code, body := create("v1.48", "", prio); code != 201 || e.fake.lastNetConfig.EndpointsConfig["net1"].GwPriority != 100 {
		t.Fatalf("1.48 GwPriority lost: %d %s", code, body)
	}

	// The platform query is parsed and handed to the backend (1.41 on).
	if code, body := create("v1.51", "?platform=linux/arm64/v8", `{"Image":"busybox"}`); code != 201 || e.fake.lastPlatform == nil ||
		e.fake.lastPlatform.OS != "linux" || e.fake.lastPlatform.Architecture != "arm64" {
		t.Fatalf("platform: %d %s %+v", code, body, e.fake.lastPlatform)
	}
	if code, _ := create("v1.40", "?platform=linux/arm64", `{"Image":"busybox"}`); code != 201 || e.fake.lastPlatform != nil {
		t.Fatalf("1.40 platform: %+v", e.fake.lastPlatform)
	}
	if code, body := create("v1.51", "?platform=linux/a%20b", `{"Image":"busybox"}`); code != 400 {
		t.Fatalf("bad platform: %d %s", code, body)
	}
}

func TestContainerListAnnotationsVersionGate(t *testing.T) {
	e := newTestEnv(t)
	e.fake.addImage("busybox:latest")
	if resp, body := e.do("POST", "/v1.51/containers/create?name=a1", `{"Image":"busybox","HostConfig":{"Annotations":{"foo":"bar"}}}`); resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	list := func(v string) []container.Summary {
		resp, body := e.do("GET", "/"+v+"/containers/json?all=1", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", v, resp.StatusCode, body)
		}
		var l []container.Summary
		if err := json.Unmarshal(body, &l); err != nil || len(l) != 1 {
			t.Fatalf("%s: %v %s", v, err, body)
		}
		return l
	}
	if got := list("v1.45")[0].HostConfig.Annotations; got != nil {
		t.Errorf("API 1.45 shows annotations %v", got)
	}
	if got := list("v1.46")[0].HostConfig.Annotations; got["foo"] != "bar" {
		t.Errorf("API 1.46 annotations = %v", got)
	}
}

// /info for older clients: the bridge-nf fields (always false) before
// API 1.50, the fields added later dropped.
func TestInfoVersionGates(t *testing.T) {
	e := newTestEnv(t)
	get := func(v string) map[string]json.RawMessage {
		resp, body := e.do("GET", "/"+v+"/info", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", v, resp.StatusCode, body)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	old := get("v1.49")
	for _, k := range []string{"BridgeNfIptables", "BridgeNfIp6tables"} {
		if string(old[k]) != "false" {
			t.Errorf("API 1.49: %s = %s", k, old[k])
		}
	}
	if string(old["OSType"]) != `"linux"` || string(old["NCPU"]) != "2" {
		t.Errorf("API 1.49 lost the Info fields: %v", old)
	}
	cur := get("v1.50")
	for _, k := range []string{"BridgeNfIptables", "BridgeNfIp6tables"} {
		if _, ok := cur[k]; ok {
			t.Errorf("API 1.50 has %s", k)
		}
	}
}
