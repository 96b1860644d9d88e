package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// fileConfig is daemon.json: dockerd's keys where the meaning is the same,
// plus jevm's own VM settings.
type fileConfig struct {
	Hosts              []string `json:"hosts,omitempty"`
	DataRoot           string   `json:"data-root,omitempty"`
	ExecRoot           string   `json:"exec-root,omitempty"`
	RegistryMirrors    []string `json:"registry-mirrors,omitempty"`
	InsecureRegistries []string `json:"insecure-registries,omitempty"`
	Debug              *bool    `json:"debug,omitempty"`
	LogLevel           string   `json:"log-level,omitempty"`
	Pidfile            string   `json:"pidfile,omitempty"`

	// jevm's own.
	Accelerator   string `json:"accelerator,omitempty"`
	VMMemory      string `json:"vm-memory,omitempty"`
	VMCPUs        int    `json:"vm-cpus,omitempty"`
	Kernel        string `json:"kernel,omitempty"`
	KernelModules string `json:"kernel-modules,omitempty"`
	Agent         string `json:"agent,omitempty"`
	QEMU          string `json:"qemu,omitempty"`
}

// flagToKey maps command-line flags to daemon.json keys; dockerd refuses a
// setting given both ways, and so do we.
var flagToKey = map[string]string{
	"H": "hosts", "host": "hosts", "data-root": "data-root", "exec-root": "exec-root",
	"registry-mirror": "registry-mirrors", "insecure-registry": "insecure-registries",
	"D": "debug", "debug": "debug", "l": "log-level", "log-level": "log-level", "p": "pidfile", "pidfile": "pidfile",
	"accel": "accelerator", "vm-memory": "vm-memory", "vm-cpus": "vm-cpus",
	"kernel": "kernel", "kernel-modules": "kernel-modules", "agent": "agent", "qemu": "qemu",
}

// options is the effective configuration.
type options struct {
	configFile         string
	hosts              listFlag
	dataRoot           string
	execRoot           string
	registryMirrors    listFlag
	insecureRegistries listFlag
	debug              bool
	logLevel           string
	pidfile            string
	accel              string
	vmMemory           string
	vmCPUs             int
	kernel             string
	kernelModules      string
	agent              string
	qemu               string
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("jevmd", flag.ContinueOnError)
	fs.StringVar(&o.configFile, "config-file", "/etc/jevm/daemon.json", "daemon configuration file")
	fs.Var(&o.hosts, "H", "daemon socket to listen on: unix:///path or tcp://host:port (repeatable)")
	fs.Var(&o.hosts, "host", "same as -H")
	fs.StringVar(&o.dataRoot, "data-root", "/var/lib/jevm", "root of persistent state (containers, images, templates)")
	fs.StringVar(&o.execRoot, "exec-root", "/run/jevm", "root of run-time state (VM sockets)")
	fs.Var(&o.registryMirrors, "registry-mirror", "preferred Docker Hub mirror (repeatable)")
	fs.Var(&o.insecureRegistries, "insecure-registry", "registry reached over plain HTTP (repeatable)")
	fs.BoolVar(&o.debug, "D", false, "debug logging")
	fs.BoolVar(&o.debug, "debug", false, "debug logging")
	fs.StringVar(&o.logLevel, "l", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.pidfile, "p", "", "pid file")
	fs.StringVar(&o.pidfile, "pidfile", "", "pid file")
	fs.StringVar(&o.accel, "accel", "auto", "VM accelerator: auto (probe KVM, fall back to TCG), kvm or tcg")
	fs.StringVar(&o.vmMemory, "vm-memory", "256M", "memory of a container VM without -m")
	fs.IntVar(&o.vmCPUs, "vm-cpus", 1, "vCPUs of a container VM without --cpus")
	fs.StringVar(&o.kernel, "kernel", "/usr/lib/jevm/vmlinuz", "guest kernel")
	fs.StringVar(&o.kernelModules, "kernel-modules", "/usr/lib/jevm/modules", "guest kernel modules (lib/modules/<release>)")
	fs.StringVar(&o.agent, "agent", "/usr/lib/jevm/jevm-agent", "guest agent binary (static)")
	fs.StringVar(&o.qemu, "qemu", "/usr/bin/qemu-system-x86_64", "QEMU system emulator")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	b, err := os.ReadFile(o.configFile)
	switch {
	case errors.Is(err, os.ErrNotExist) && !set["config-file"]:
		return o, nil // the default file is optional
	case err != nil:
		return nil, fmt.Errorf("read config file: %w", err)
	}
	if strings.TrimSpace(string(b)) == "" {
		return o, nil
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
	apply := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	o.hosts = append(o.hosts, fc.Hosts...)
	apply(&o.dataRoot, fc.DataRoot)
	apply(&o.execRoot, fc.ExecRoot)
	o.registryMirrors = append(o.registryMirrors, fc.RegistryMirrors...)
	o.insecureRegistries = append(o.insecureRegistries, fc.InsecureRegistries...)
	if fc.Debug != nil {
		o.debug = *fc.Debug
	}
	apply(&o.logLevel, fc.LogLevel)
	apply(&o.pidfile, fc.Pidfile)
	apply(&o.accel, fc.Accelerator)
	apply(&o.vmMemory, fc.VMMemory)
	if fc.VMCPUs > 0 {
		o.vmCPUs = fc.VMCPUs
	}
	apply(&o.kernel, fc.Kernel)
	apply(&o.kernelModules, fc.KernelModules)
	apply(&o.agent, fc.Agent)
	apply(&o.qemu, fc.QEMU)
	return o, nil
}
