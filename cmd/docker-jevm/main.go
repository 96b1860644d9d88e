// Command docker-jevm is a docker CLI plugin: `docker jevm migrate
// CONTAINER tcp://HOST:PORT` moves a running container to another jevmd
// while it runs (docs/MIGRATION.md). It speaks to the daemon the docker
// CLI speaks to (its -H, --context, TLS settings and DOCKER_HOST, through
// the CLI's own plugin library), which then drives the target daemon.
//
// Install it where the docker CLI finds plugins, e.g.
// ~/.docker/cli-plugins/docker-jevm (make install puts it in
// /usr/local/lib/docker/cli-plugins).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/docker/cli/cli"
	"github.com/docker/cli/cli-plugins/metadata"
	"github.com/docker/cli/cli-plugins/plugin"
	"github.com/docker/cli/cli/command"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/spf13/cobra"

	"github.com/jevm/jevm/api/types/migration"
)

// version is set by the build (-X main.version=...).
var version = "dev"

func main() {
	plugin.Run(func(dockerCli command.Cli) *cobra.Command {
		root := &cobra.Command{
			Use:   "jevm",
			Short: "jevm's own commands",
		}
		root.AddCommand(newMigrateCommand(dockerCli))
		return root
	}, metadata.Metadata{
		SchemaVersion:    "0.1.0",
		Vendor:           "jevm",
		Version:          version,
		ShortDescription: "jevm: live migration of running containers between jevmd hosts",
	})
}

func newMigrateCommand(dockerCli command.Cli) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate CONTAINER TARGET",
		Short: "Move a running container to another jevmd host while it runs",
		Long: "Move a running container to another jevmd host while it runs. TARGET is the\n" +
			"target daemon's TLS API address, tcp://HOST:PORT; the daemons authenticate\n" +
			"each other with their TLS certificates. The container's memory is copied\n" +
			"while it runs, then it pauses briefly for the rest; it keeps its name, ID,\n" +
			"and, where they are free on the target, its addresses.",
		Args: cli.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return migrate(cmd.Context(), dockerCli, args[0], args[1])
		},
	}
}

// migrate asks the daemon to migrate the container and shows its
// progress as the CLI shows a pull's.
func migrate(ctx context.Context, dockerCli command.Cli, name, target string) error {
	apiClient := dockerCli.Client()
	u, err := daemonURL(apiClient.DaemonHost(), apiClient.HTTPClient())
	if err != nil {
		return err
	}
	body, _ := json.Marshal(migration.Request{Target: target})
	u.Path = "/containers/" + url.PathEscape(name) + "/jevm/migrate"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if u.Host == unixHost {
		req.Host = "api.moby.localhost"
	}
	resp, err := apiClient.HTTPClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var m struct {
			Message string `json:"message"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &m) != nil || m.Message == "" {
			m.Message = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("Error response from daemon: %s", m.Message)
	}
	return jsonmessage.DisplayJSONMessagesToStream(resp.Body, dockerCli.Out(), nil)
}

// unixHost stands for the daemon's socket in URLs: the client's transport
// dials the socket whatever the URL says.
const unixHost = "docker.sock"

// daemonURL is the base URL of the daemon at host (unix://, tcp://,
// or http(s)://) for the client's HTTP client.
func daemonURL(host string, hc *http.Client) (*url.URL, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "unix", "npipe":
		return &url.URL{Scheme: "http", Host: unixHost}, nil
	case "tcp", "http", "https":
		scheme := "http"
		if t, ok := hc.Transport.(*http.Transport); ok && t.TLSClientConfig != nil || u.Scheme == "https" {
			scheme = "https"
		}
		return &url.URL{Scheme: scheme, Host: u.Host}, nil
	case "ssh":
		return nil, errors.New("docker jevm migrate does not support ssh:// daemons yet: use -H unix:// or tcp://")
	}
	return nil, fmt.Errorf("unsupported daemon address %q", host)
}
