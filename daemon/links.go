package daemon

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
)

// Legacy links (`docker run --link db:alias`), as dockerd keeps them: the
// linked container must exist at create and run at start; the linking
// container gets an /etc/hosts entry for the alias (on every network: it
// resolves for this container only, as dockerd's per-container link
// aliases do) and, on the default bridge, dockerd's ALIAS_* environment.

// link is one --link, parsed.
type link struct {
	target string // the linked container's name, without "/"
	alias  string
}

// parseLinks reads HostConfig.Links in the CLI's form ("name:alias",
// "name") or dockerd's stored form ("/name:/parent/alias").
func parseLinks(links []string) ([]link, error) {
	var out []link
	for _, l := range links {
		target, alias, ok := strings.Cut(l, ":")
		if !ok {
			alias = target
		}
		target = strings.TrimPrefix(target, "/")
		if i := strings.LastIndex(alias, "/"); i >= 0 {
			alias = alias[i+1:]
		}
		if target == "" || alias == "" {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid link format: %q", l))
		}
		out = append(out, link{target: target, alias: alias})
	}
	return out, nil
}

// normalizeLinks checks a new container's links and stores them as dockerd
// shows them ("/db:/web/alias"). The linked containers must exist.
func (d *Daemon) normalizeLinks(name string, hc *container.HostConfig) error {
	links, err := parseLinks(hc.Links)
	if err != nil {
		return err
	}
	if len(links) > 0 && hc.NetworkMode.IsContainer() {
		return errdefs.InvalidParameter(fmt.Errorf("conflicting options: container type network can't be used with links. This would result in undefined behavior"))
	}
	norm := make([]string, 0, len(links))
	for _, l := range links {
		t, err := d.containers.get(l.target)
		if err != nil {
			// 400, not the lookup's 404: the request is what is wrong.
			return errdefs.InvalidParameter(fmt.Errorf("could not get container for %s: %v", l.target, err))
		}
		if t.Name == name {
			return errdefs.InvalidParameter(fmt.Errorf("could not link to %s: a container cannot link to itself", l.target))
		}
		norm = append(norm, "/"+t.Name+":/"+name+"/"+l.alias)
	}
	if len(norm) > 0 {
		hc.Links = norm
	}
	return nil
}

// linkNetwork is the network through which c reaches linked containers:
// its own primary one.
func linkNetwork(c *Container) string {
	mode := string(c.HostConfig.NetworkMode)
	if mode == "" || mode == "default" {
		return "bridge"
	}
	return mode
}

// resolveLinks finds the addresses of c's linked containers at start and
// returns the /etc/hosts entries ("alias name:ip", ExtraHosts' form) and
// the environment dockerd gives on the default bridge. Callers hold c.mu;
// the linked containers' locks are taken one at a time.
func (d *Daemon) resolveLinks(c *Container) (hosts, env []string, err error) {
	links, err := parseLinks(c.HostConfig.Links)
	if err != nil || len(links) == 0 {
		return nil, nil, err
	}
	netName := linkNetwork(c)
	for _, l := range links {
		t, gerr := d.containers.get(l.target)
		if gerr != nil {
			return nil, nil, errdefs.InvalidParameter(fmt.Errorf("could not get container for %s: %v", l.target, gerr))
		}
		if t == c {
			continue
		}
		t.mu.Lock()
		running := t.running()
		tName, tCfg := t.Name, t.Config
		t.mu.Unlock()
		if !running {
			return nil, nil, errdefs.System(fmt.Errorf("Cannot link to a non running container: /%s AS /%s/%s", tName, c.Name, l.alias))
		}
		ip, ok := "", false
		if d.net != nil {
			ip, ok = d.net.IPOn(t.ID, netName)
		}
		if !ok {
			return nil, nil, errdefs.InvalidParameter(fmt.Errorf("cannot link to /%s: it is not on network %s", tName, netName))
		}
		names := l.alias
		if l.alias != tName {
			names += " " + tName
		}
		hosts = append(hosts, names+":"+ip)
		if netName == "bridge" {
			env = append(env, linkEnv(l.alias, "/"+c.Name+"/"+l.alias, ip, tCfg)...)
		}
	}
	return hosts, env, nil
}

// linkEnv is dockerd's environment for one link: ALIAS_NAME, ALIAS_PORT
// (the lowest exposed port) and ALIAS_PORT_<port>_<proto>{,_ADDR,_PORT,
// _PROTO} for each exposed port, and ALIAS_ENV_<var> for the linked
// container's environment but HOME and PATH.
func linkEnv(alias, fullName, ip string, cfg *container.Config) []string {
	prefix := strings.ToUpper(strings.ReplaceAll(alias, "-", "_"))
	env := []string{prefix + "_NAME=" + fullName}
	var ports []nat.Port
	for p := range cfg.ExposedPorts {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool {
		if ports[i].Int() != ports[j].Int() {
			return ports[i].Int() < ports[j].Int()
		}
		return ports[i].Proto() == "tcp" && ports[j].Proto() != "tcp"
	})
	for i, p := range ports {
		proto, port := p.Proto(), strconv.Itoa(p.Int())
		url := proto + "://" + ip + ":" + port
		if i == 0 {
			env = append(env, prefix+"_PORT="+url)
		}
		key := prefix + "_PORT_" + port + "_" + strings.ToUpper(proto)
		env = append(env, key+"="+url, key+"_ADDR="+ip, key+"_PORT="+port, key+"_PROTO="+proto)
	}
	for _, kv := range cfg.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "HOME" || k == "PATH" {
			continue
		}
		env = append(env, prefix+"_ENV_"+k+"="+v)
	}
	return env
}

// removeLink serves `docker rm --link /parent/alias`: the parent forgets
// the link; neither container is touched otherwise.
func (d *Daemon) removeLink(ref string) error {
	full := "/" + strings.TrimPrefix(ref, "/")
	i := strings.LastIndex(full, "/")
	if i <= 0 {
		return errdefs.InvalidParameter(fmt.Errorf("Conflict, cannot remove the default link name of the container"))
	}
	parentName, alias := full[1:i], full[i+1:]
	parent, err := d.containers.get(parentName)
	if err != nil {
		return errdefs.NotFound(fmt.Errorf("Cannot get parent %s for link name %s", "/"+parentName, full))
	}
	parent.mu.Lock()
	defer parent.mu.Unlock()
	links, err := parseLinks(parent.HostConfig.Links)
	if err != nil {
		return err
	}
	var kept []string
	found := false
	for i, l := range links {
		if l.alias == alias {
			found = true
			continue
		}
		kept = append(kept, parent.HostConfig.Links[i])
	}
	if !found {
		return errdefs.NotFound(fmt.Errorf("Could not find link %s", full))
	}
	parent.HostConfig.Links = kept
	return parent.save()
}
