package daemon

import (
	"reflect"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
)

func TestParseLinks(t *testing.T) {
	got, err := parseLinks([]string{"db:database", "cache", "/redis:/web/r"})
	want := []link{{"db", "database"}, {"cache", "cache"}, {"redis", "r"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("parseLinks = %v, %v", got, err)
	}
	if _, err := parseLinks([]string{":x"}); err == nil {
		t.Fatal("a link without a container was accepted")
	}
}

// dockerd's link environment (moby's daemon/links).
func TestLinkEnv(t *testing.T) {
	cfg := &container.Config{
		ExposedPorts: nat.PortSet{"6379/tcp": {}, "53/udp": {}, "53/tcp": {}},
		Env:          []string{"PATH=/bin", "HOME=/root", "SECRET=s3", "EMPTY="},
	}
	got := linkEnv("my-db", "/web/my-db", "172.17.0.5", cfg)
	want := []string{
		"MY_DB_NAME=/web/my-db",
		"MY_DB_PORT=tcp://172.17.0.5:53",
		"MY_DB_PORT_53_TCP=tcp://172.17.0.5:53", "MY_DB_PORT_53_TCP_ADDR=172.17.0.5", "MY_DB_PORT_53_TCP_PORT=53", "MY_DB_PORT_53_TCP_PROTO=tcp",
		"MY_DB_PORT_53_UDP=udp://172.17.0.5:53", "MY_DB_PORT_53_UDP_ADDR=172.17.0.5", "MY_DB_PORT_53_UDP_PORT=53", "MY_DB_PORT_53_UDP_PROTO=udp",
		"MY_DB_PORT_6379_TCP=tcp://172.17.0.5:6379", "MY_DB_PORT_6379_TCP_ADDR=172.17.0.5", "MY_DB_PORT_6379_TCP_PORT=6379", "MY_DB_PORT_6379_TCP_PROTO=tcp",
		"MY_DB_ENV_SECRET=s3", "MY_DB_ENV_EMPTY=",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("linkEnv =\n%q\nwant\n%q", got, want)
	}
}
