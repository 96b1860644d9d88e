package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/docker/docker/api/types/container"

	units "github.com/docker/go-units"

	"github.com/jevm/jevm/api"
	"github.com/jevm/jevm/daemon"
	"github.com/jevm/jevm/internal/guestassets"
	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/volumes"
)

// guestPaths are what a jeVM boots.
type guestPaths struct {
	kernel, modules, agent string
}

// settings is the configuration in the daemon's own terms, checked as a
// whole; --validate stops here.
type settings struct {
	daemon daemon.Config
	guest  guestPaths
	listen api.ListenOptions // TLS of the tcp:// hosts; main adds the socket group and logger
}

func (o *options) daemonSettings() (*settings, error) {
	g, err := o.resolveGuest()
	if err != nil {
		return nil, err
	}
	memBytes, err := units.RAMInBytes(o.vmMemory)
	if err != nil {
		return nil, fmt.Errorf("vm-memory: %w", err)
	}
	cfg := daemon.Config{
		DataRoot:            o.dataRoot,
		ExecRoot:            o.execRoot,
		DefaultShape:        vmbackend.Shape{MemoryMiB: int(memBytes >> 20), VCPUs: o.vmCPUs},
		ServerVersion:       version,
		APIVersion:          apiVersion,
		MinAPIVersion:       minAPIVersion,
		GitCommit:           gitCommit,
		RegistryMirrors:     o.registryMirrors,
		InsecureRegistries:  o.insecureRegistries,
		Debug:               o.debug,
		Experimental:        o.experimental,
		LiveRestoreDisabled: !o.liveRestore,
		VMPoolSize:          o.vmPoolSize,
	}
	for _, s := range o.sharedStorage {
		ss, err := volumes.ParseSharedStorage(s)
		if err != nil {
			return nil, err
		}
		cfg.SharedStorage = append(cfg.SharedStorage, ss)
	}
	if err := o.networkConfig(&cfg.Network); err != nil {
		return nil, err
	}
	if err := o.containerDefaults(&cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	listen, err := o.listenOptions()
	if err != nil {
		return nil, err
	}
	if cfg.MigrationTLS, err = o.migrationTLSConfig(); err != nil {
		return nil, err
	}
	return &settings{daemon: cfg, guest: g, listen: listen}, nil
}

// resolveGuest finds the kernel, modules and agent: each flag given wins;
// the rest come from --guest-dir, else from the first install directory
// that holds a guest (next to the jevmd binary first), and the agent, if
// that directory has none, from next to jevmd.
func (o *options) resolveGuest() (guestPaths, error) {
	g := guestPaths{kernel: o.kernel, modules: o.kernelModules, agent: o.agent}
	exe, _ := os.Executable()
	if g.kernel == "" || g.modules == "" || g.agent == "" {
		var a guestassets.Assets
		var err error
		if o.guestDir != "" {
			a, err = guestassets.Load(o.guestDir)
		} else {
			a, err = guestassets.Find(guestassets.Candidates(exe))
		}
		switch {
		case err == nil:
			if g.kernel == "" {
				g.kernel = a.Kernel
			}
			if g.modules == "" {
				g.modules = a.Modules
			}
			if g.agent == "" {
				if _, serr := os.Stat(a.Agent); serr == nil {
					g.agent = a.Agent
				}
			}
		case g.kernel == "" || g.modules == "":
			return g, err
		}
	}
	if g.agent == "" && exe != "" {
		g.agent = filepath.Join(filepath.Dir(exe), guestassets.AgentFile)
	}
	for what, p := range map[string]string{"guest kernel": g.kernel, "guest kernel modules": g.modules, "guest agent": g.agent} {
		if _, err := os.Stat(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return g, fmt.Errorf("%s %s does not exist", what, p)
			}
			return g, fmt.Errorf("%s: %w", what, err)
		}
	}
	return g, nil
}

// networkConfig maps dockerd's network settings onto the daemon's.
func (o *options) networkConfig(n *daemon.NetworkConfig) error {
	switch o.bridge {
	case "":
	case "none":
		n.NoDefaultBridge = true
	default:
		n.DefaultBridge = o.bridge
	}
	if o.bip != "" {
		p, err := netip.ParsePrefix(o.bip)
		if err != nil {
			return fmt.Errorf("invalid --bip %q: %w", o.bip, err)
		}
		n.BridgeIP = p
	}
	for _, a := range o.addressPools {
		base, err := netip.ParsePrefix(a.Base)
		if err != nil {
			return fmt.Errorf("invalid default address pool base %q: %w", a.Base, err)
		}
		n.DefaultAddressPools = append(n.DefaultAddressPools, daemon.AddressPool{Base: base, Size: a.Size})
	}
	n.DNS, n.DNSSearch, n.DNSOptions = o.dns, o.dnsSearch, o.dnsOptions
	n.DisableIPTables = !o.iptables
	n.DisableIPForward = !o.ipForward
	return nil
}

// containerDefaults maps dockerd's per-container defaults (logging,
// ulimits) onto the daemon's.
func (o *options) containerDefaults(cfg *daemon.Config) error {
	cfg.DefaultLogConfig = container.LogConfig{Type: o.logDriver, Config: o.logOpts}
	names := make([]string, 0, len(o.defaultUlimits))
	for name := range o.defaultUlimits {
		names = append(names, name)
	}
	sort.Strings(names) // a stable order for inspect and the agent
	for _, name := range names {
		cfg.DefaultUlimits = append(cfg.DefaultUlimits, o.defaultUlimits[name])
	}
	return nil
}
