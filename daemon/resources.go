package daemon

import (
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend"
)

// A container's CPU settings bound its VM's QEMU process through the VM's
// cgroup (vmbackend/qemu/cgroup.go, docs/RESOURCES.md): the vCPUs are
// QEMU threads, so --cpu-shares, --cpus, --cpu-quota/--cpu-period and
// --cpuset-cpus/--cpuset-mems mean for the container's processes what
// they mean under dockerd. -m is the VM's RAM (its shape).

// resourcesFor is what the VM backend enforces for hc.
func resourcesFor(hc *container.HostConfig) vmbackend.Resources {
	return vmbackend.Resources{
		CPUShares:  hc.CPUShares,
		NanoCPUs:   hc.NanoCPUs,
		CPUQuota:   hc.CPUQuota,
		CPUPeriod:  hc.CPUPeriod,
		CpusetCpus: hc.CpusetCpus,
		CpusetMems: hc.CpusetMems,
	}
}

// checkCPUResources checks r's CPU settings as dockerd does and, where the
// host cannot enforce one, either discards it with a warning (create,
// dockerd's behaviour) or refuses it (update: the user asked for a change
// that would not happen).
func checkCPUResources(r *container.Resources, sup vmbackend.ResourceSupport, refuse bool) (warnings []string, err error) {
	if r.NanoCPUs > 0 && r.CPUPeriod > 0 {
		return nil, errdefs.InvalidParameter(fmt.Errorf("Conflicting options: Nano CPUs and CPU Period cannot both be set"))
	}
	if r.NanoCPUs > 0 && r.CPUQuota > 0 {
		return nil, errdefs.InvalidParameter(fmt.Errorf("Conflicting options: Nano CPUs and CPU Quota cannot both be set"))
	}
	if r.NanoCPUs != 0 {
		nc := goruntime.NumCPU()
		if r.NanoCPUs < 0 || r.NanoCPUs > int64(nc)*1e9 {
			return nil, errdefs.InvalidParameter(fmt.Errorf("range of CPUs is from 0.01 to %[1]d.00, as there are only %[1]d CPUs available", nc))
		}
	}
	if r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000) {
		return nil, errdefs.InvalidParameter(fmt.Errorf("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"))
	}
	if r.CPUQuota > 0 && r.CPUQuota < 1000 {
		return nil, errdefs.InvalidParameter(fmt.Errorf("CPU cfs quota can not be less than 1ms (i.e. 1000)"))
	}
	if r.CpusetCpus != "" {
		if err := checkCPUList(r.CpusetCpus, usableCPUs(), "CPUs", "cpus"); err != nil {
			return nil, err
		}
	}
	if r.CpusetMems != "" {
		if err := checkCPUList(r.CpusetMems, onlineNodes(), "memory nodes", "mems"); err != nil {
			return nil, err
		}
	}

	unsupported := func(flag string) error {
		return errdefs.InvalidParameter(fmt.Errorf("jevm: %s cannot be enforced on this host: %s", flag, sup.Unsupported))
	}
	if r.CPUShares > 0 && !sup.CPUShares {
		if refuse {
			return nil, unsupported("--cpu-shares")
		}
		warnings = append(warnings, "jevm: this host gives VMs no cpu cgroup: CPU shares discarded")
		r.CPUShares = 0
	}
	if (r.CPUQuota != 0 || r.CPUPeriod != 0) && !sup.CPUCfs {
		if refuse {
			return nil, unsupported("--cpu-quota/--cpu-period")
		}
		warnings = append(warnings, "jevm: this host gives VMs no cpu cgroup: CPU period/quota discarded")
		r.CPUQuota, r.CPUPeriod = 0, 0
	}
	if r.NanoCPUs > 0 && !sup.CPUCfs {
		if refuse {
			return nil, unsupported("--cpus")
		}
		// --cpus still sizes the VM (its vCPU count, rounded up); only
		// the fraction goes unenforced.
		if r.NanoCPUs%1e9 != 0 {
			warnings = append(warnings, "jevm: this host gives VMs no cpu cgroup: --cpus is rounded up to whole vCPUs")
		}
	}
	if (r.CpusetCpus != "" || r.CpusetMems != "") && !sup.Cpuset {
		if refuse {
			return nil, unsupported("--cpuset-cpus/--cpuset-mems")
		}
		warnings = append(warnings, "jevm: this host gives VMs no cpuset cgroup: Cpuset discarded")
		r.CpusetCpus, r.CpusetMems = "", ""
	}
	return warnings, nil
}

// checkCPUList checks a cpuset list ("0-2,4") and that every member is in
// avail, with dockerd's messages.
func checkCPUList(list string, avail map[int]bool, what, flag string) error {
	set, err := parseCPUList(list)
	if err != nil {
		return errdefs.InvalidParameter(fmt.Errorf("Invalid value %s for cpuset %s: %w", list, flag, err))
	}
	for n := range set {
		if !avail[n] {
			return errdefs.InvalidParameter(fmt.Errorf("Requested %s are not available - requested %s, available: %s", what, list, formatCPUList(avail)))
		}
	}
	return nil
}

// parseCPUList parses the kernel's list format: "0-3,5,7-8".
func parseCPUList(s string) (map[int]bool, error) {
	set := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("invalid format: %s", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("invalid format: %s", s)
			}
		}
		if b-a > 1<<16 {
			return nil, fmt.Errorf("invalid format: %s", s)
		}
		for i := a; i <= b; i++ {
			set[i] = true
		}
	}
	return set, nil
}

func formatCPUList(set map[int]bool) string {
	max := -1
	for n := range set {
		if n > max {
			max = n
		}
	}
	var parts []string
	for i := 0; i <= max; i++ {
		if !set[i] {
			continue
		}
		j := i
		for j+1 <= max && set[j+1] {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(i))
		} else {
			parts = append(parts, strconv.Itoa(i)+"-"+strconv.Itoa(j))
		}
		i = j
	}
	return strings.Join(parts, ",")
}

// usableCPUs are the CPUs jevmd (and so its VMs) may run on.
func usableCPUs() map[int]bool {
	set := map[int]bool{}
	var mask unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mask); err == nil {
		for i := 0; i < len(mask)*64; i++ {
			if mask.IsSet(i) {
				set[i] = true
			}
		}
		return set
	}
	for i := 0; i < goruntime.NumCPU(); i++ {
		set[i] = true
	}
	return set
}

// onlineNodes are the host's memory (NUMA) nodes.
func onlineNodes() map[int]bool {
	if set, err := parseCPUList(strings.TrimSpace(readFileString("/sys/devices/system/node/online"))); err == nil {
		return set
	}
	return map[int]bool{0: true}
}

func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
