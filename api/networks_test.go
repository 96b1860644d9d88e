package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
)

// netFake adds a NetworkBackend to the fake backend.
type netFake struct {
	*fakeBackend
	calls    []string
	lastIPv4 *bool // EnableIPv4 of the last create
}

func (n *netFake) NetworkCreate(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error) {
	n.calls = append(n.calls, "create "+req.Name+" "+req.Driver)
	n.lastIPv4 = req.EnableIPv4
	if req.Name == "dup" {
		return network.CreateResponse{}, errdefs.Conflict(fmt.Errorf("network with name dup already exists"))
	}
	return network.CreateResponse{ID: "id-" + req.Name}, nil
}

func (n *netFake) NetworkList(ctx context.Context, f filters.Args) ([]network.Summary, error) {
	n.calls = append(n.calls, "list "+strings.Join(f.Get("name"), ","))
	return nil, nil
}

func (n *netFake) NetworkInspect(ctx context.Context, ref string, opts network.InspectOptions) (network.Inspect, error) {
	n.calls = append(n.calls, "inspect "+ref)
	if ref == "missing" {
		return network.Inspect{}, errdefs.NotFound(fmt.Errorf("network missing not found"))
	}
	return network.Inspect{Name: ref, ID: "id-" + ref}, nil
}

func (n *netFake) NetworkRemove(ctx context.Context, ref string) error {
	n.calls = append(n.calls, "rm "+ref)
	if ref == "busy" {
		return errdefs.Conflict(fmt.Errorf("error while removing network: network busy id x has active endpoints"))
	}
	return nil
}

func (n *netFake) NetworkConnect(ctx context.Context, ref string, opts network.ConnectOptions) error {
	alias := ""
	if opts.EndpointConfig != nil {
		alias = strings.Join(opts.EndpointConfig.Aliases, ",")
	}
	n.calls = append(n.calls, "connect "+ref+" "+opts.Container+" "+alias)
	return nil
}

func (n *netFake) NetworkDisconnect(ctx context.Context, ref string, opts network.DisconnectOptions) error {
	n.calls = append(n.calls, fmt.Sprintf("disconnect %s %s %v", ref, opts.Container, opts.Force))
	return nil
}

func (n *netFake) NetworksPrune(ctx context.Context, f filters.Args) (*network.PruneReport, error) {
	n.calls = append(n.calls, "prune")
	return &network.PruneReport{NetworksDeleted: []string{"a"}}, nil
}

func TestNetworkRoutes(t *testing.T) {
	e := newTestEnv(t)
	nf := &netFake{fakeBackend: newFakeBackend()}
	hs := httptest.NewServer(NewServer(nf, Options{Logger: testLogger(t)}).Handler())
	t.Cleanup(hs.Close)
	e.hs = hs

	for _, c := range []struct {
		method, path string
		body         any
		status       int
		want         string // substring of the body
	}{
		{"POST", "/v1.51/networks/create", `{"Name":"n1","Driver":"bridge"}`, 201, `"Id":"id-n1"`},
		{"POST", "/networks/create", `{"Name":"dup"}`, 409, "already exists"},
		{"GET", "/v1.51/networks?filters=" + `%7B%22name%22%3A%7B%22n1%22%3Atrue%7D%7D`, nil, 200, "[]"},
		{"GET", "/v1.51/networks/n1", nil, 200, `"Name":"n1"`},
		{"GET", "/v1.51/networks/missing", nil, 404, "not found"},
		{"POST", "/v1.51/networks/n1/connect", `{"Container":"c1","EndpointConfig":{"Aliases":["a1"]}}`, 200, ""},
		{"POST", "/v1.51/networks/n1/connect", `{}`, 400, "container name or ID is required"},
		{"POST", "/v1.51/networks/n1/disconnect", `{"Container":"c1","Force":true}`, 200, ""},
		{"DELETE", "/v1.51/networks/busy", nil, 409, "has active endpoints"},
		{"DELETE", "/v1.51/networks/n1", nil, 204, ""},
		{"POST", "/v1.51/networks/prune", nil, 200, `"NetworksDeleted":["a"]`},
	} {
		resp, body := e.do(c.method, c.path, c.body)
		if resp.StatusCode != c.status || !strings.Contains(string(body), c.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", c.method, c.path, resp.StatusCode, body, c.status, c.want)
		}
	}
	want := []string{"create n1 bridge", "create dup ", "list n1", "inspect n1", "inspect missing", "connect n1 c1 a1", "disconnect n1 c1 true", "rm busy", "rm n1", "prune"}
	got, _ := json.Marshal(nf.calls)
	wantJ, _ := json.Marshal(want)
	if string(got) != string(wantJ) {
		t.Fatalf("calls:\n%s\nwant\n%s", got, wantJ)
	}
}

// EnableIPv4 came with API 1.48: dropped before, as dockerd does.
func TestNetworkCreateEnableIPv4Version(t *testing.T) {
	e := newTestEnv(t)
	nf := &netFake{fakeBackend: newFakeBackend()}
	hs := httptest.NewServer(NewServer(nf, Options{Logger: testLogger(t)}).Handler())
	t.Cleanup(hs.Close)
	e.hs = hs
	for v, want := range map[string]string{"1.47": "<nil>", "1.48": "false"} {
		resp, body := e.do("POST", "/v"+v+"/networks/create", `{"Name":"n","EnableIPv4":false,"EnableIPv6":true}`)
		got := "<nil>"
		if nf.lastIPv4 != nil {
			got = fmt.Sprint(*nf.lastIPv4)
		}
		if resp.StatusCode != 201 || got != want {
			t.Errorf("API %s: %d %s, EnableIPv4 %s, want %s", v, resp.StatusCode, body, got, want)
		}
	}
}
