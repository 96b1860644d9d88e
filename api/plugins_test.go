package api

import (
	"net/url"
	"strings"
	"testing"
)

// With no plugins jevm answers as a dockerd with none installed.
func TestPluginsAsDockerdWithNone(t *testing.T) {
	e := newTestEnv(t)
	resp, body := e.do("GET", "/v1.51/plugins", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("GET /plugins = %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/plugins?filters="+url.QueryEscape(`{"enabled":{"true":true}}`), nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("GET /plugins with a filter = %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/plugins?filters="+url.QueryEscape(`{"bogus":{"x":true}}`), nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "bogus") {
		t.Fatalf("GET /plugins with an unknown filter = %d %s", resp.StatusCode, body)
	}
	for _, rq := range [][2]string{
		{"GET", "/plugins/vieux/sshfs:latest/json"}, {"POST", "/plugins/vieux/sshfs/enable"},
		{"POST", "/plugins/x/disable"}, {"DELETE", "/plugins/x"}, {"POST", "/plugins/x/set"},
	} {
		resp, body = e.do(rq[0], rq[1], nil)
		if resp.StatusCode != 404 || !strings.Contains(string(body), `"message":"plugin \"`) || !strings.Contains(string(body), `not found`) {
			t.Errorf("%s %s = %d %s", rq[0], rq[1], resp.StatusCode, body)
		}
	}
	resp, body = e.do("POST", "/plugins/pull?remote=vieux/sshfs", nil)
	if resp.StatusCode != 501 || !strings.Contains(string(body), "plugins") {
		t.Errorf("POST /plugins/pull = %d %s", resp.StatusCode, body)
	}
}

// Not in a swarm: dockerd's 503 for what needs one, 501 for creating one.
func TestSwarmAsDockerdOutsideASwarm(t *testing.T) {
	e := newTestEnv(t)
	for _, rq := range [][2]string{
		{"GET", "/swarm"}, {"POST", "/swarm/leave?force=1"}, {"GET", "/nodes"}, {"GET", "/services"},
		{"GET", "/services/web"}, {"GET", "/tasks"}, {"GET", "/secrets"}, {"POST", "/configs/create"}, {"GET", "/v1.51/swarm"},
		{"POST", "/swarm/update"}, {"POST", "/nodes/x/update"}, {"DELETE", "/nodes/x"}, {"GET", "/nodes/x"}, {"GET", "/swarm/unlockkey"},
	} {
		resp, body := e.do(rq[0], rq[1], nil)
		if resp.StatusCode != 503 || !strings.Contains(string(body), "This node is not part of a swarm") {
			t.Errorf("%s %s = %d %s", rq[0], rq[1], resp.StatusCode, body)
		}
	}
	resp, body := e.do("POST", "/swarm/init", "{}")
	if resp.StatusCode != 501 {
		t.Errorf("POST /swarm/init = %d %s", resp.StatusCode, body)
	}
	// The body is read as dockerd reads it before the backend is asked.
	resp, body = e.do("POST", "/swarm/init", "{bad")
	expectError(t, resp, body, 400, "invalid JSON: invalid character 'b' looking for beginning of object key string")
	resp, _ = e.do("GET", "/_ping", nil)
	if got := resp.Header.Get("Swarm"); got != "inactive" {
		t.Errorf("/_ping's Swarm header: %q", got)
	}
}

// The plugin routes with a JSON body read it as dockerd does before
// anything else (moby's TestPluginInvalidJSON).
func TestPluginJSONBodies(t *testing.T) {
	e := newTestEnv(t)
	for _, ep := range []string{"/plugins/foobar/set", "/plugins/foobar/upgrade", "/plugins/pull"} {
		resp, body := e.do("POST", ep, []byte("[]"), "Content-Type", "text/plain")
		expectError(t, resp, body, 400, "unsupported Content-Type header (text/plain): must be 'application/json'")
		resp, body = e.do("POST", ep, "{invalid json")
		expectError(t, resp, body, 400, "invalid JSON: invalid character 'i' looking for beginning of object key string")
		resp, body = e.do("POST", ep, "[] trailing content")
		expectError(t, resp, body, 400, "unexpected content after JSON")
		if resp, body = e.do("POST", ep, ""); resp.StatusCode >= 500 {
			t.Errorf("%s with an empty body: %d %s", ep, resp.StatusCode, body)
		}
	}
}
