package cluster

import (
	"io"
	"net"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	swarmapi "github.com/moby/swarmkit/v2/api"
	"github.com/sirupsen/logrus"

	netctl "github.com/jevm/jevm/network/controller"
)

// Two gossip members on loopback addresses: each learns the other's
// endpoints (with the sender's address as their host), a change arrives,
// a member with another key hears nothing, and a member that leaves takes
// its endpoints with it.
func TestGossip(t *testing.T) {
	if testing.Short() {
		t.Skip("opens gossip sockets")
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	key := []*swarmapi.EncryptionKey{{Subsystem: gossipKeySubsystem, Key: []byte("0123456789abcdef"), LamportTime: 1}}
	port := freePortNum(t)
	member := func(id, addr string, join []string, changes *atomic.Int32) *gossip {
		g := newGossip(func() string { return id }, func() string { return addr }, func() []string { return join }, func() { changes.Add(1) }, logrus.NewEntry(log))
		g.port = port
		t.Cleanup(g.close)
		return g
	}
	var c1, c2, c3 atomic.Int32
	g1 := member("node1", "127.0.0.21", nil, &c1)
	g2 := member("node2", "127.0.0.22", []string{"127.0.0.21"}, &c2)
	g1.Publish([]netctl.OverlayEndpoint{{Network: "n1", IP: "10.0.1.3", Name: "web.1.a", Service: "web", VIP: "10.0.1.2"}})
	if err := g1.setKeys(key); err != nil {
		t.Fatal(err)
	}
	if err := g2.setKeys(key); err != nil {
		t.Fatal(err)
	}
	g2.Publish([]netctl.OverlayEndpoint{{Network: "n1", IP: "10.0.1.4", Name: "web.2.b", Service: "web", VIP: "10.0.1.2"}, {Network: "n2", IP: "10.0.2.9"}})
	waitUntil(t, "node2's endpoints on node1", func() bool { return len(g1.Remote("n1")) == 1 && len(g1.Remote("n2")) == 1 })
	waitUntil(t, "node1's endpoints on node2", func() bool { return len(g2.Remote("n1")) == 1 })
	if got, want := g1.Remote("n1")[0], (netctl.OverlayEndpoint{Network: "n1", IP: "10.0.1.4", Name: "web.2.b", Service: "web", VIP: "10.0.1.2", Host: "127.0.0.22"}); !reflect.DeepEqual(got, want) {
		t.Fatalf("node2's endpoint on node1: %+v", got)
	}
	if c1.Load() == 0 {
		t.Error("node1 was not told of the change")
	}
	g1.Publish(nil)
	waitUntil(t, "node1's endpoints gone from node2", func() bool { return len(g2.Remote("n1")) == 0 })

	// Another swarm's key: not a member.
	g3 := member("node3", "127.0.0.23", []string{"127.0.0.21"}, &c3)
	g3.Publish([]netctl.OverlayEndpoint{{Network: "n1", IP: "10.0.1.66"}})
	if err := g3.setKeys([]*swarmapi.EncryptionKey{{Subsystem: gossipKeySubsystem, Key: []byte("fedcba9876543210"), LamportTime: 1}}); err != nil {
		t.Fatal(err)
	}
	// Its join is refused at once; give its packets time to arrive anyway.
	time.Sleep(3 * time.Second)
	for _, e := range append(g1.Remote("n1"), g2.Remote("n1")...) {
		if e.IP == "10.0.1.66" {
			t.Fatalf("a member with another key was heard: %+v", e)
		}
	}

	g2.close()
	waitUntil(t, "node2's endpoints gone from node1 after it left", func() bool { return len(g1.Remote("n2")) == 0 })
}

// freePortNum is a TCP port free on 127.0.0.21.
func freePortNum(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.21:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
