package daemon

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	dtypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend"
)

// SystemInfo serves /info: real host figures, container counts and which
// accelerator the VMs use.
func (d *Daemon) SystemInfo(ctx context.Context) (*system.Info, error) {
	var running, paused, stopped int
	all := d.containers.all()
	for _, c := range all {
		c.mu.Lock()
		switch c.State.Status {
		case container.StateRunning:
			running++
		case container.StatePaused:
			paused++
		default:
			stopped++
		}
		c.mu.Unlock()
	}
	hostname, _ := os.Hostname()
	accel := d.vms.Accelerator()
	info := &system.Info{
		ID:                d.daemonID(),
		Containers:        len(all),
		ContainersRunning: running,
		ContainersPaused:  paused,
		ContainersStopped: stopped,
		Images:            d.images.Count(),
		Driver:            "qcow2",
		DriverStatus: [][2]string{
			{"Base disks", "ext4, one per image"},
			{"Container disks", "qcow2 copy-on-write overlays"},
			{"VM pool", d.pool.status()},
		},
		// -m is the VM's RAM (create.go's shapeFor).
		MemoryLimit:        true,
		Debug:              d.cfg.Debug,
		NGoroutines:        goruntime.NumGoroutine(),
		NFd:                openFDs(),
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		LoggingDriver:      d.defaultLogConfig().Type,
		KernelVersion:      kernelRelease(),
		OperatingSystem:    osPrettyName(),
		OSType:             "linux",
		Architecture:       goruntime.GOARCH,
		IndexServerAddress: "https://index.docker.io/v1/",
		RegistryConfig: &registry.ServiceConfig{
			Mirrors:               d.cfg.RegistryMirrors,
			InsecureRegistryCIDRs: nil,
			IndexConfigs:          map[string]*registry.IndexInfo{},
		},
		NCPU:          goruntime.NumCPU(),
		MemTotal:      memTotal(),
		DockerRootDir: d.cfg.DataRoot,
		Name:          hostname,
		Labels: []string{
			"com.jevm.vmm=" + d.vms.Name(),
			"com.jevm.accelerator=" + accel,
		},
		ServerVersion: d.cfg.ServerVersion,
		Runtimes: map[string]system.RuntimeWithStatus{
			runtimeName: {Runtime: system.Runtime{Path: d.vms.Name(), Args: []string{"--accel", accel}}},
		},
		DefaultRuntime: runtimeName,
		// Not part of a swarm, as dockerd reports it (Swarm mode is not
		// there yet; api/swarm.go answers its endpoints).
		Swarm:              swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive},
		LiveRestoreEnabled: !d.cfg.LiveRestoreDisabled,
		ExperimentalBuild:  d.cfg.Experimental,
		Isolation:          "",
		// seccomp: security.go compiles dockerd's default profile for
		// every container's processes.
		SecurityOptions: []string{"name=seccomp,profile=" + seccompBuiltin, "name=jevm,vmm=" + d.vms.Name() + ",accelerator=" + accel},
	}
	fillResourceInfo(info, d.vms.ResourceSupport())
	for _, r := range d.cfg.InsecureRegistries {
		info.RegistryConfig.IndexConfigs[r] = &registry.IndexInfo{Name: r, Secure: false}
	}
	if accel == "tcg" {
		info.Warnings = append(info.Warnings, "WARNING: jevm runs its VMs with QEMU TCG (software emulation): KVM is not usable on this host")
	}
	d.fillNetworkInfo(info) // network.go
	return info, nil
}

// SystemVersion serves /version.
func (d *Daemon) SystemVersion(ctx context.Context) dtypes.Version {
	v := dtypes.Version{
		Version:       d.cfg.ServerVersion,
		APIVersion:    d.cfg.APIVersion,
		MinAPIVersion: d.cfg.MinAPIVersion,
		GitCommit:     d.cfg.GitCommit,
		GoVersion:     goruntime.Version(),
		Os:            goruntime.GOOS,
		Arch:          goruntime.GOARCH,
		KernelVersion: kernelRelease(),
		Experimental:  d.cfg.Experimental,
	}
	v.Platform.Name = "jevm"
	v.Components = []dtypes.ComponentVersion{
		{Name: "Engine", Version: d.cfg.ServerVersion, Details: map[string]string{
			"ApiVersion": d.cfg.APIVersion, "MinAPIVersion": d.cfg.MinAPIVersion,
			"GitCommit": d.cfg.GitCommit, "GoVersion": goruntime.Version(), "Os": goruntime.GOOS, "Arch": goruntime.GOARCH,
		}},
		{Name: "VMM", Version: d.vms.Name(), Details: map[string]string{"Accelerator": d.vms.Accelerator()}},
	}
	return v
}

// daemonID is stable per data root, as dockerd's engine ID is.
func (d *Daemon) daemonID() string {
	sum := sha256.Sum256([]byte(d.cfg.DataRoot))
	return strings.ToUpper(hex.EncodeToString(sum[:16]))
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func osPrettyName() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return "linux"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "linux"
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// fillResourceInfo reports what the VMs' cgroups enforce (resources.go,
// vmbackend/qemu/cgroup.go). MemoryLimit is true either way: -m is the
// VM's RAM. PidsLimit stays false: --pids-limit would bound the guest's
// processes, and the VM's cgroup bounds QEMU's threads instead. Swap and
// kernel memory mean nothing to a VM.
func fillResourceInfo(info *system.Info, sup vmbackend.ResourceSupport) {
	info.CgroupDriver = sup.CgroupDriver
	info.CgroupVersion = sup.CgroupVersion
	info.CPUShares = sup.CPUShares
	info.CPUCfsPeriod = sup.CPUCfs
	info.CPUCfsQuota = sup.CPUCfs
	info.CPUSet = sup.Cpuset
	if sup.CgroupDriver == "none" {
		info.Warnings = append(info.Warnings, "WARNING: jevm runs its VMs without cgroups ("+sup.Unsupported+"): --cpu-shares, --cpu-quota and --cpuset-cpus are not enforced")
	}
}

// openFDs counts the daemon's open file descriptors (dockerd's NFd).
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}
