package controller

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	jnet "github.com/jevm/jevm/network"
)

// stateFromDaemon is DATA_ROOT/network/state.json as jevmd wrote it when
// the controller was part of package daemon: an upgraded daemon must find
// its networks, endpoints and bound ports, and write them back the same.
const stateFromDaemon = `{
  "networks": [
    {
      "id": "1111111111111111111111111111111111111111111111111111111111111111",
      "name": "bridge",
      "driver": "bridge",
      "created": "2026-11-01T10:00:00Z",
      "options": {"com.docker.network.bridge.default_bridge": "true", "com.docker.network.driver.mtu": "1500"},
      "subnet": "172.17.0.0/16",
      "gateway": "172.17.0.1",
      "bridge": "jevm0",
      "mtu": 1500,
      "lastIp": "172.17.0.2",
      "endpoints": {
        "eeee": {"id": "eeee", "containerId": "cccc", "ip": "172.17.0.2", "mac": "02:42:ac:11:00:02", "tap": "tapeeee", "ifName": "eth0", "defaultRoute": true, "dns": ["10.0.0.53"]}
      }
    },
    {
      "id": "2222222222222222222222222222222222222222222222222222222222222222",
      "name": "app",
      "driver": "bridge",
      "created": "2026-11-02T10:00:00Z",
      "internal": true,
      "labels": {"k": "v"},
      "subnet": "10.9.0.0/24",
      "gateway": "10.9.0.1",
      "ipRange": "10.9.0.128/25",
      "aux": {"r": "10.9.0.200"},
      "userIpam": true,
      "bridge": "jevm-2222222222",
      "mtu": 1500,
      "fromBip": false,
      "endpoints": {
        "ffff": {"id": "ffff", "containerId": "cccc", "ip": "10.9.0.130", "mac": "02:42:0a:09:00:82", "tap": "tapffff", "ifName": "eth1", "aliases": ["db"]}
      }
    }
  ],
  "ports": {"cccc": [{"proto": "tcp", "containerPort": 80, "hostIp": "0.0.0.0", "hostPort": 8080}]}
}`

func TestStateFileFromDaemon(t *testing.T) {
	d := newTestEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.WriteFile(path, []byte(stateFromDaemon), 0o600); err != nil {
		t.Fatal(err)
	}
	nm := &Controller{names: d.names, log: d.log, path: path, nets: map[string]*netRecord{}, ports: map[string][]jnet.PortBinding{}}
	if err := nm.load(); err != nil {
		t.Fatal(err)
	}
	app := nm.byNameLocked("app")
	if app == nil || nm.byNameLocked("bridge") == nil || app.pool == nil || app.Endpoints["ffff"].Aliases[0] != "db" || len(nm.ports["cccc"]) != 1 {
		t.Fatalf("loaded %+v, ports %v", nm.nets, nm.ports)
	}
	nm.mu.Lock()
	err := nm.saveLocked()
	nm.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	var before, after any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal([]byte(stateFromDaemon), &before); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &after); err != nil {
		t.Fatal(err)
	}
	// fromBip false is omitted when written back.
	delete(before.(map[string]any)["networks"].([]any)[1].(map[string]any), "fromBip")
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("written back differently:\n%s", b)
	}
}
