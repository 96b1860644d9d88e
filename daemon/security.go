package daemon

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/internal/seccomp"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Confinement of a container's processes inside its VM, as runc confines
// them under dockerd: seccomp, masked and read-only paths, a read-only
// /sys/fs/cgroup. The VM boundary protects the host; these protect the
// guest kernel and give docker users what they expect.

// Seccomp profile names of --security-opt seccomp=... (dockerd's).
const (
	seccompUnconfined = "unconfined"
	seccompBuiltin    = "builtin"
)

// securityOptions is HostConfig.SecurityOpt as dockerd reads it.
type securityOptions struct {
	// SeccompProfile: "" (the default), "unconfined", "builtin", or a
	// profile's JSON (the CLI sends a file's content).
	SeccompProfile  string
	NoNewPrivileges bool
	WritableCgroups *bool
}

// parseSecurityOpts reads --security-opt values with dockerd's checks and
// messages. label= and apparmor= are accepted and have no effect: the
// guest has neither SELinux nor AppArmor.
func parseSecurityOpts(opts []string) (securityOptions, error) {
	var so securityOptions
	for _, opt := range opts {
		switch opt {
		case "no-new-privileges":
			so.NoNewPrivileges = true
			continue
		case "writable-cgroups":
			t := true
			so.WritableCgroups = &t
			continue
		case "disable":
			continue
		}
		var k, v string
		var ok bool
		if strings.Contains(opt, "=") {
			k, v, ok = strings.Cut(opt, "=")
		} else if strings.Contains(opt, ":") {
			k, v, ok = strings.Cut(opt, ":") // deprecated spelling, still taken
		}
		if !ok {
			return so, errdefs.InvalidParameter(fmt.Errorf("invalid --security-opt 1: %q", opt))
		}
		switch k {
		case "label", "apparmor":
		case "seccomp":
			so.SeccompProfile = v
		case "no-new-privileges":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return so, errdefs.InvalidParameter(fmt.Errorf("invalid --security-opt 2: %q", opt))
			}
			so.NoNewPrivileges = b
		case "writable-cgroups":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return so, errdefs.InvalidParameter(fmt.Errorf("invalid --security-opt 2: %q", opt))
			}
			so.WritableCgroups = &b
		default:
			return so, errdefs.InvalidParameter(fmt.Errorf("invalid --security-opt 2: %q", opt))
		}
	}
	return so, nil
}

// containerSeccomp compiles the container's seccomp filter for the
// agent, as dockerd chooses the profile: none for seccomp=unconfined;
// with --privileged, only a profile given explicitly; else the given
// profile or the default one. caps is the container's bounding set (nil:
// all), which the profile's includes/excludes read. Execs get the
// container's filter, as with runc.
func containerSeccomp(hc *container.HostConfig) (*agentproto.SeccompFilter, error) {
	so, err := parseSecurityOpts(hc.SecurityOpt)
	if err != nil {
		return nil, err
	}
	var p *seccomp.Profile
	switch {
	case so.SeccompProfile == seccompUnconfined:
		return nil, nil
	case hc.Privileged && (so.SeccompProfile == "" || so.SeccompProfile == seccompBuiltin):
		return nil, nil
	case so.SeccompProfile == "" || so.SeccompProfile == seccompBuiltin:
		p = seccomp.Default()
	default:
		if p, err = seccomp.Parse([]byte(so.SeccompProfile)); err != nil {
			return nil, errdefs.InvalidParameter(err)
		}
	}
	caps, err := containerCapabilities(hc)
	if err != nil {
		return nil, err
	}
	bounding := everyCapability()
	if caps != nil {
		bounding = *caps
	}
	// The guest kernel's release is not known here; "" satisfies any
	// minKernel: the kernels jevm boots are newer than any the default
	// profile names.
	r, err := p.Resolve(bounding, "")
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	if r == nil {
		return nil, nil
	}
	prog, err := seccomp.Compile(r)
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	b := make([]byte, 0, 8*len(prog.Instructions))
	for _, ins := range prog.Instructions {
		b = binary.LittleEndian.AppendUint16(b, ins.Op)
		b = append(b, ins.Jt, ins.Jf)
		b = binary.LittleEndian.AppendUint32(b, ins.K)
	}
	return &agentproto.SeccompFilter{Program: b, Flags: prog.Flags}, nil
}

// noNewPrivileges reports --security-opt no-new-privileges.
func noNewPrivileges(hc *container.HostConfig) bool {
	so, err := parseSecurityOpts(hc.SecurityOpt)
	return err == nil && so.NoNewPrivileges
}

// writableCgroups: /sys/fs/cgroup is read-write for --privileged or
// --security-opt writable-cgroups[=true], as with dockerd.
func writableCgroups(hc *container.HostConfig) bool {
	so, err := parseSecurityOpts(hc.SecurityOpt)
	if err != nil {
		return false
	}
	if so.WritableCgroups != nil {
		return *so.WritableCgroups
	}
	return hc.Privileged
}

// defaultReadonlyPaths are dockerd's (moby's oci defaults).
var defaultReadonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// defaultMaskedPaths are dockerd's, with the thermal_throttle directory
// of each of the host's possible CPUs that has one, as dockerd lists them
// (a guest has fewer CPUs; paths it lacks are skipped there).
var defaultMaskedPaths = sync.OnceValue(func() []string {
	paths := []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	for _, cpu := range possibleCPUs() {
		p := fmt.Sprintf("/sys/devices/system/cpu/cpu%d/thermal_throttle", cpu)
		if _, err := os.Stat(p); err == nil {
			paths = append(paths, p)
		}
	}
	return paths
})

// possibleCPUs reads /sys/devices/system/cpu/possible ("0-3,5").
func possibleCPUs() []int {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return nil
	}
	var cpus []int
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return cpus
		}
		z := a
		if isRange {
			if z, err = strconv.Atoi(hi); err != nil {
				return cpus
			}
		}
		for i := a; i <= z; i++ {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// defaultSecurityPaths fills in dockerd's masked and read-only paths at
// create when the client left them unset (nil; an empty list is kept:
// nothing masked); --privileged leaves them unset.
func defaultSecurityPaths(hc *container.HostConfig) {
	if hc.Privileged {
		return
	}
	if hc.MaskedPaths == nil {
		hc.MaskedPaths = append([]string(nil), defaultMaskedPaths()...)
	}
	if hc.ReadonlyPaths == nil {
		hc.ReadonlyPaths = append([]string(nil), defaultReadonlyPaths...)
	}
}
