package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	units "github.com/docker/go-units"

	"github.com/jevm/jevm/vmbackend/qemu"
	"github.com/jevm/jevm/volumes"
)

// fileConfig is daemon.json: dockerd's keys where the meaning is the same,
// plus jevm's own VM settings. Booleans and numbers whose zero value is a
// real setting are pointers, so "absent" differs from "false" or 0.
type fileConfig struct {
	Hosts              []string `json:"hosts,omitempty"`
	DataRoot           string   `json:"data-root,omitempty"`
	ExecRoot           string   `json:"exec-root,omitempty"`
	CgroupParent       string   `json:"cgroup-parent,omitempty"`
	RegistryMirrors    []string `json:"registry-mirrors,omitempty"`
	InsecureRegistries []string `json:"insecure-registries,omitempty"`
	Debug              *bool    `json:"debug,omitempty"`
	LogLevel           string   `json:"log-level,omitempty"`
	Pidfile            string   `json:"pidfile,omitempty"`
	Group              string   `json:"group,omitempty"`
	TLS                *bool    `json:"tls,omitempty"`
	TLSVerify          *bool    `json:"tlsverify,omitempty"`
	TLSCACert          string   `json:"tlscacert,omitempty"`
	TLSCert            string   `json:"tlscert,omitempty"`
	TLSKey             string   `json:"tlskey,omitempty"`

	Bridge              string        `json:"bridge,omitempty"`
	BIP                 string        `json:"bip,omitempty"`
	DefaultAddressPools []addressPool `json:"default-address-pools,omitempty"`
	DNS                 []string      `json:"dns,omitempty"`
	DNSSearch           []string      `json:"dns-search,omitempty"`
	DNSOptions          []string      `json:"dns-opts,omitempty"`
	IPTables            *bool         `json:"iptables,omitempty"`
	IPForward           *bool         `json:"ip-forward,omitempty"`
	UserlandProxy       *bool         `json:"userland-proxy,omitempty"`

	Experimental           *bool                    `json:"experimental,omitempty"`
	LiveRestore            *bool                    `json:"live-restore,omitempty"`
	LogDriver              string                   `json:"log-driver,omitempty"`
	LogOpts                map[string]string        `json:"log-opts,omitempty"`
	DefaultUlimits         map[string]*units.Ulimit `json:"default-ulimits,omitempty"`
	MaxConcurrentDownloads *int                     `json:"max-concurrent-downloads,omitempty"`
	ShutdownTimeout        *int                     `json:"shutdown-timeout,omitempty"`

	// jevm's own.
	Accelerator   string `json:"accelerator,omitempty"`
	VMMemory      string `json:"vm-memory,omitempty"`
	VMCPUs        int    `json:"vm-cpus,omitempty"`
	TCGTBSize     *int   `json:"tcg-tb-size,omitempty"`
	VMPoolSize    *int   `json:"vm-pool-size,omitempty"`
	VMUser        string `json:"vm-user,omitempty"`
	GuestDir      string `json:"guest-dir,omitempty"`
	Kernel        string `json:"kernel,omitempty"`
	KernelModules string `json:"kernel-modules,omitempty"`
	Agent         string `json:"agent,omitempty"`
	QEMU          string `json:"qemu,omitempty"`
	// SharedStorage: DIR=nfs://SERVER[:PORT]/EXPORT[?OPTIONS] each.
	SharedStorage []string `json:"shared-storage,omitempty"`
}

// addressPool is one entry of dockerd's default-address-pools.
type addressPool struct {
	Base string `json:"base"`
	Size int    `json:"size"`
}

// flagToKey maps command-line flags to daemon.json keys; dockerd refuses a
// setting given both ways, and so do we.
var flagToKey = map[string]string{
	"H": "hosts", "host": "hosts", "data-root": "data-root", "exec-root": "exec-root", "cgroup-parent": "cgroup-parent",
	"registry-mirror": "registry-mirrors", "insecure-registry": "insecure-registries",
	"D": "debug", "debug": "debug", "l": "log-level", "log-level": "log-level", "p": "pidfile", "pidfile": "pidfile",
	"G": "group", "group": "group",
	"tls": "tls", "tlsverify": "tlsverify", "tlscacert": "tlscacert", "tlscert": "tlscert", "tlskey": "tlskey",
	"b": "bridge", "bridge": "bridge", "bip": "bip", "default-address-pool": "default-address-pools",
	"dns": "dns", "dns-search": "dns-search", "dns-opt": "dns-opts",
	"iptables": "iptables", "ip-forward": "ip-forward", "userland-proxy": "userland-proxy",
	"experimental": "experimental", "live-restore": "live-restore",
	"log-driver": "log-driver", "log-opt": "log-opts", "default-ulimit": "default-ulimits",
	"max-concurrent-downloads": "max-concurrent-downloads", "shutdown-timeout": "shutdown-timeout",
	"accel": "accelerator", "vm-memory": "vm-memory", "vm-cpus": "vm-cpus", "guest-dir": "guest-dir", "tcg-tb-size": "tcg-tb-size", "vm-pool-size": "vm-pool-size",
	"vm-user": "vm-user", "kernel": "kernel", "kernel-modules": "kernel-modules", "agent": "agent", "qemu": "qemu",
	"shared-storage": "shared-storage",
}

// dockerd's defaults for the settings below.
const (
	// defaultVMPoolSize: two blanks, so that a start finds one while the
	// blank the previous start claimed is being replaced.
	defaultVMPoolSize = 2
	maxVMPoolSize     = 64

	defaultShutdownTimeout        = 15
	defaultMaxConcurrentDownloads = 3
	defaultSocketGroup            = "docker"
)

// options is the effective configuration.
type options struct {
	configFile         string
	hosts              listFlag
	dataRoot           string
	execRoot           string
	cgroupParent       string
	registryMirrors    listFlag
	insecureRegistries listFlag
	sharedStorage      listFlag
	debug              bool
	logLevel           string
	pidfile            string
	group              string
	groupExplicit      bool // named by the admin: a missing group is an error

	// dockerd's API TLS settings; tls and tlsVerify are nil when neither
	// the command line nor daemon.json says them (see resolveTLS).
	tls        *bool
	tlsVerify  *bool
	tlsCACert  string
	tlsCert    string
	tlsKey     string
	tlsCertSet bool // named by the admin, not the default under the cert dir
	tlsKeySet  bool

	bridge         string
	bip            string
	addressPools   []addressPool
	dns            listFlag
	dnsSearch      listFlag
	dnsOptions     listFlag
	iptables       bool
	ipForward      bool
	userlandProxy  bool
	experimental   bool
	liveRestore    bool
	logDriver      string
	logOpts        map[string]string
	defaultUlimits map[string]*units.Ulimit
	maxDownloads   int
	shutdownSecs   int

	accel         string
	vmMemory      string
	vmCPUs        int
	tcgTBSize     int
	vmPoolSize    int
	vmUser        string
	guestDir      string
	kernel        string
	kernelModules string
	agent         string
	qemu          string

	// Actions instead of running the daemon.
	validateOnly bool
	showVersion  bool
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// poolFlag is dockerd's --default-address-pool base=CIDR,size=N.
type poolFlag struct{ pools *[]addressPool }

func (p poolFlag) String() string {
	if p.pools == nil {
		return ""
	}
	var s []string
	for _, a := range *p.pools {
		s = append(s, fmt.Sprintf("base=%s,size=%d", a.Base, a.Size))
	}
	return strings.Join(s, " ")
}

func (p poolFlag) Set(v string) error {
	var a addressPool
	for _, field := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok {
			return fmt.Errorf("invalid field %q: expected base=CIDR,size=N", field)
		}
		switch strings.ToLower(k) {
		case "base":
			a.Base = val
		case "size":
			n, err := strconv.Atoi(val)
			if err != nil {
				return fmt.Errorf("invalid size %q: %w", val, err)
			}
			a.Size = n
		default:
			return fmt.Errorf("unexpected key %q in %q: expected base and size", k, v)
		}
	}
	if a.Base == "" || a.Size == 0 {
		return fmt.Errorf("%q: both base and size are required", v)
	}
	*p.pools = append(*p.pools, a)
	return nil
}

// mapFlag collects KEY=VALUE pairs (--log-opt).
type mapFlag struct{ m *map[string]string }

func (f mapFlag) String() string {
	if f.m == nil {
		return ""
	}
	var s []string
	for k, v := range *f.m {
		s = append(s, k+"="+v)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func (f mapFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("invalid key/value pair %q: expected KEY=VALUE", v)
	}
	if *f.m == nil {
		*f.m = map[string]string{}
	}
	(*f.m)[k] = val
	return nil
}

// ulimitFlag is dockerd's --default-ulimit NAME=SOFT[:HARD].
type ulimitFlag struct{ m *map[string]*units.Ulimit }

func (f ulimitFlag) String() string {
	if f.m == nil {
		return ""
	}
	var s []string
	for _, u := range *f.m {
		s = append(s, u.String())
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func (f ulimitFlag) Set(v string) error {
	u, err := units.ParseUlimit(v)
	if err != nil {
		return err
	}
	if *f.m == nil {
		*f.m = map[string]*units.Ulimit{}
	}
	(*f.m)[u.Name] = u
	return nil
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("jevmd", flag.ContinueOnError)
	fs.StringVar(&o.configFile, "config-file", "/etc/jevm/daemon.json", "daemon configuration file")
	fs.Var(&o.hosts, "H", "daemon socket to listen on: unix:///path, tcp://host:port or fd:// (systemd socket activation); repeatable")
	fs.Var(&o.hosts, "host", "same as -H")
	fs.StringVar(&o.dataRoot, "data-root", "/var/lib/jevm", "root of persistent state (containers, images, templates)")
	fs.StringVar(&o.execRoot, "exec-root", "/run/jevm", "root of run-time state (VM sockets)")
	fs.StringVar(&o.cgroupParent, "cgroup-parent", "", "the cgroup, under jevmd's own, that holds one cgroup per VM (default \"jevm\"); two jevmd on one machine need two")
	fs.Var(&o.registryMirrors, "registry-mirror", "preferred Docker Hub mirror (repeatable)")
	fs.Var(&o.insecureRegistries, "insecure-registry", "registry reached over plain HTTP (repeatable)")
	fs.Var(&o.sharedStorage, "shared-storage", "DIR=nfs://SERVER[:PORT]/EXPORT[?OPTION&...]: DIR holds the same files as that NFS export, which the VMs mount for volumes and bind mounts in DIR, so that they follow checkpoints and migrated containers (repeatable; NFS mounts of the host are found without it); DIR=none: the host shares DIR over 9p even if it is on an NFS mount")
	fs.BoolVar(&o.debug, "D", false, "debug logging")
	fs.BoolVar(&o.debug, "debug", false, "debug logging")
	fs.StringVar(&o.logLevel, "l", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.pidfile, "p", "", "pid file")
	fs.StringVar(&o.pidfile, "pidfile", "", "pid file")
	fs.StringVar(&o.group, "G", defaultSocketGroup, "group of the unix sockets")
	fs.StringVar(&o.group, "group", defaultSocketGroup, "group of the unix sockets")
	var tlsOn, tlsVerify bool
	certDir := defaultCertDir()
	fs.BoolVar(&tlsOn, "tls", false, "serve tcp:// hosts over TLS; implied by --tlsverify")
	fs.BoolVar(&tlsVerify, "tlsverify", false, "serve tcp:// hosts over TLS and let in only clients with a certificate signed by --tlscacert")
	fs.StringVar(&o.tlsCACert, "tlscacert", filepath.Join(certDir, defaultCAFile), "trust client certificates signed only by this CA")
	fs.StringVar(&o.tlsCert, "tlscert", filepath.Join(certDir, defaultCertFile), "TLS certificate of the API")
	fs.StringVar(&o.tlsKey, "tlskey", filepath.Join(certDir, defaultKeyFile), "TLS key of the API")

	fs.StringVar(&o.bridge, "b", "", "Linux bridge of the default \"bridge\" network (default jevm0; \"none\": no default bridge)")
	fs.StringVar(&o.bridge, "bridge", "", "same as -b")
	fs.StringVar(&o.bip, "bip", "", "address and prefix of the default bridge's gateway, e.g. 172.30.0.1/16")
	fs.Var(poolFlag{&o.addressPools}, "default-address-pool", "pool for network subnets: base=CIDR,size=N (repeatable)")
	fs.Var(&o.dns, "dns", "DNS server for containers (repeatable)")
	fs.Var(&o.dnsSearch, "dns-search", "DNS search domain for containers (repeatable)")
	fs.Var(&o.dnsOptions, "dns-opt", "DNS option for containers (repeatable)")
	fs.BoolVar(&o.iptables, "iptables", true, "install iptables rules (NAT, forwarding, isolation)")
	fs.BoolVar(&o.ipForward, "ip-forward", true, "enable IPv4 forwarding on the host")
	fs.BoolVar(&o.userlandProxy, "userland-proxy", true, "publish ports with the userland proxy (jevm's only way today)")
	fs.BoolVar(&o.experimental, "experimental", false, "enable experimental features")
	fs.BoolVar(&o.liveRestore, "live-restore", true, "keep containers running while the daemon is down (false: stop them at shutdown)")
	fs.StringVar(&o.logDriver, "log-driver", "", "default logging driver of containers (default json-file)")
	fs.Var(mapFlag{&o.logOpts}, "log-opt", "default logging driver option KEY=VALUE (repeatable)")
	fs.Var(ulimitFlag{&o.defaultUlimits}, "default-ulimit", "default ulimit of containers NAME=SOFT[:HARD] (repeatable)")
	fs.IntVar(&o.maxDownloads, "max-concurrent-downloads", defaultMaxConcurrentDownloads, "layers downloaded at once by one pull")
	fs.IntVar(&o.shutdownSecs, "shutdown-timeout", defaultShutdownTimeout, "seconds to wait for containers at shutdown (-1: no limit)")

	fs.StringVar(&o.accel, "accel", "auto", "VM accelerator: auto (probe KVM, fall back to TCG), kvm or tcg")
	fs.StringVar(&o.vmMemory, "vm-memory", "256M", "memory of a container VM without -m")
	fs.IntVar(&o.vmCPUs, "vm-cpus", 1, "vCPUs of a container VM without --cpus")
	fs.IntVar(&o.vmPoolSize, "vm-pool-size", defaultVMPoolSize, "blank VMs kept restored and running per VM shape, so that a start claims one instead of cloning the template (0: no pool); each holds about the memory of an idle container")
	fs.StringVar(&o.vmUser, "vm-user", qemu.DefaultUser, "user QEMU runs as, keeping only the capabilities its file sharing needs (created if it is the default and missing; root: QEMU keeps jevmd's privileges)")
	fs.IntVar(&o.tcgTBSize, "tcg-tb-size", 0, "MiB of translated code a TCG VM keeps (0: jevm's default, 16; -1: QEMU's, 1 GiB); smaller saves memory per VM, larger retranslates less")
	fs.StringVar(&o.guestDir, "guest-dir", "", "directory with the guest kernel (vmlinuz, release, lib/modules) and agent; default: BINDIR/../lib/jevm, /usr/local/lib/jevm, /usr/lib/jevm")
	fs.StringVar(&o.kernel, "kernel", "", "guest kernel (default: from the guest directory)")
	fs.StringVar(&o.kernelModules, "kernel-modules", "", "guest kernel modules, lib/modules/<release> (default: from the guest directory)")
	fs.StringVar(&o.agent, "agent", "", "static guest agent binary (default: from the guest directory, else next to jevmd)")
	fs.StringVar(&o.qemu, "qemu", "/usr/bin/qemu-system-x86_64", "QEMU system emulator")

	fs.BoolVar(&o.validateOnly, "validate", false, "validate the configuration and exit")
	fs.BoolVar(&o.showVersion, "v", false, "print the version and exit")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.groupExplicit = set["G"] || set["group"]
	if set["tls"] {
		o.tls = &tlsOn
	}
	if set["tlsverify"] {
		o.tlsVerify = &tlsVerify
	}
	o.tlsCertSet, o.tlsKeySet = set["tlscert"], set["tlskey"]
	if o.showVersion {
		return o, nil
	}

	b, err := os.ReadFile(o.configFile)
	switch {
	case errors.Is(err, os.ErrNotExist) && !set["config-file"]:
		return o, o.finish() // the default file is optional
	case err != nil:
		return nil, fmt.Errorf("read config file: %w", err)
	}
	if strings.TrimSpace(string(b)) == "" {
		return o, o.finish()
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", o.configFile, err)
	}
	var fc fileConfig
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return nil, fmt.Errorf("config file %s: %w", o.configFile, err)
	}
	var conflicts []string
	for name := range set {
		if key, ok := flagToKey[name]; ok {
			if _, inFile := raw[key]; inFile {
				conflicts = append(conflicts, fmt.Sprintf("%s: (from flag: %s, from file: %s)", key, fs.Lookup(name).Value.String(), strings.TrimSpace(string(raw[key]))))
			}
		}
	}
	if len(conflicts) > 0 {
		sort.Strings(conflicts)
		return nil, fmt.Errorf("unable to configure the jevm daemon with file %s: the following directives are specified both as a flag and in the configuration file: %s", o.configFile, strings.Join(conflicts, ", "))
	}
	o.apply(&fc)
	return o, o.finish()
}

// apply copies what daemon.json sets over the flag defaults (a setting
// cannot come from both, parseOptions checked that).
func (o *options) apply(fc *fileConfig) {
	str := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	boolean := func(dst *bool, v *bool) {
		if v != nil {
			*dst = *v
		}
	}
	integer := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	o.hosts = append(o.hosts, fc.Hosts...)
	str(&o.dataRoot, fc.DataRoot)
	str(&o.execRoot, fc.ExecRoot)
	str(&o.cgroupParent, fc.CgroupParent)
	o.registryMirrors = append(o.registryMirrors, fc.RegistryMirrors...)
	o.insecureRegistries = append(o.insecureRegistries, fc.InsecureRegistries...)
	o.sharedStorage = append(o.sharedStorage, fc.SharedStorage...)
	boolean(&o.debug, fc.Debug)
	str(&o.logLevel, fc.LogLevel)
	str(&o.pidfile, fc.Pidfile)
	if fc.Group != "" {
		o.group, o.groupExplicit = fc.Group, true
	}
	if fc.TLS != nil {
		o.tls = fc.TLS
	}
	if fc.TLSVerify != nil {
		o.tlsVerify = fc.TLSVerify
	}
	str(&o.tlsCACert, fc.TLSCACert)
	if fc.TLSCert != "" {
		o.tlsCert, o.tlsCertSet = fc.TLSCert, true
	}
	if fc.TLSKey != "" {
		o.tlsKey, o.tlsKeySet = fc.TLSKey, true
	}

	str(&o.bridge, fc.Bridge)
	str(&o.bip, fc.BIP)
	o.addressPools = append(o.addressPools, fc.DefaultAddressPools...)
	o.dns = append(o.dns, fc.DNS...)
	o.dnsSearch = append(o.dnsSearch, fc.DNSSearch...)
	o.dnsOptions = append(o.dnsOptions, fc.DNSOptions...)
	boolean(&o.iptables, fc.IPTables)
	boolean(&o.ipForward, fc.IPForward)
	boolean(&o.userlandProxy, fc.UserlandProxy)
	boolean(&o.experimental, fc.Experimental)
	boolean(&o.liveRestore, fc.LiveRestore)
	str(&o.logDriver, fc.LogDriver)
	if len(fc.LogOpts) > 0 {
		o.logOpts = fc.LogOpts
	}
	if len(fc.DefaultUlimits) > 0 {
		o.defaultUlimits = fc.DefaultUlimits
	}
	integer(&o.maxDownloads, fc.MaxConcurrentDownloads)
	integer(&o.shutdownSecs, fc.ShutdownTimeout)

	str(&o.accel, fc.Accelerator)
	str(&o.vmMemory, fc.VMMemory)
	if fc.VMCPUs > 0 {
		o.vmCPUs = fc.VMCPUs
	}
	integer(&o.tcgTBSize, fc.TCGTBSize)
	integer(&o.vmPoolSize, fc.VMPoolSize)
	str(&o.vmUser, fc.VMUser)
	str(&o.guestDir, fc.GuestDir)
	str(&o.kernel, fc.Kernel)
	str(&o.kernelModules, fc.KernelModules)
	str(&o.agent, fc.Agent)
	str(&o.qemu, fc.QEMU)
}

// finish derives what depends on several settings, then checks them.
func (o *options) finish() error {
	o.resolveTLS()
	return o.check()
}

// check refuses settings that are wrong on their own, with dockerd's
// wording where dockerd has one. What needs the daemon's packages to judge
// (network, logging) is checked by daemonConfig.
func (o *options) check() error {
	if o.maxDownloads < 1 {
		return fmt.Errorf("invalid max concurrent downloads: %d", o.maxDownloads)
	}
	if o.shutdownSecs < -1 {
		return fmt.Errorf("invalid shutdown timeout %d: -1 (no limit) or more", o.shutdownSecs)
	}
	if o.bip != "" {
		if _, err := netip.ParsePrefix(o.bip); err != nil {
			return fmt.Errorf("invalid --bip %q: expected an address with a prefix length, e.g. 172.30.0.1/16: %w", o.bip, err)
		}
	}
	if o.bridge == "none" && o.bip != "" {
		return errors.New("you specified -b & --bip, mutually exclusive options. Configure IP range either using existing bridge or by creating new one")
	}
	for name, u := range o.defaultUlimits {
		if u == nil || u.Name == "" {
			return fmt.Errorf("default-ulimits: %q has no value", name)
		}
		if u.Name != name {
			return fmt.Errorf("default-ulimits: key %q does not match the ulimit's Name %q", name, u.Name)
		}
	}
	if c := o.cgroupParent; c != "" && (strings.HasPrefix(c, "/") || c != filepath.Clean(c) || strings.HasPrefix(c, "..")) {
		return fmt.Errorf("invalid cgroup-parent %q: a relative path under jevmd's own cgroup, e.g. jevm-2", c)
	}
	if o.vmPoolSize < 0 || o.vmPoolSize > maxVMPoolSize {
		return fmt.Errorf("invalid vm-pool-size %d: 0 to %d blank VMs per shape", o.vmPoolSize, maxVMPoolSize)
	}
	if o.tcgTBSize < -1 {
		return fmt.Errorf("invalid tcg-tb-size %d: MiB, 0 for jevm's default or -1 for QEMU's", o.tcgTBSize)
	}
	if o.vmCPUs < 1 {
		return fmt.Errorf("invalid vm-cpus %d", o.vmCPUs)
	}
	if _, err := units.RAMInBytes(o.vmMemory); err != nil {
		return fmt.Errorf("vm-memory: %w", err)
	}
	for _, s := range o.sharedStorage {
		if _, err := volumes.ParseSharedStorage(s); err != nil {
			return err
		}
	}
	return nil
}
